"""The block-sparse family, XNNPACK style (codegen/kernels/spmm.c.j2): y = act(W x + bias) for a
1x1 convolution in CHW with W pruned in blocks of ``nr`` output x ``kb`` input channels.

    >>> render(SpmmParams("avx2", mr=32, nr=4)).filename
    'spmm_32x4_kb1_avx2.c'

Weights layout (``pack``, a ``BlockSparsePacked``): per block row (nr output channels) nr
biases, then nr*kb values per kept block; ``nnz`` kept blocks per block row; ``diffs`` the
byte steps of the input pointer between kept blocks (XNNPACK's dmap).

What the kernel runs for a workload (``work``, read by the CPU cost model):
    full pixel tiles (mr), then one-vector tiles, then single pixels; each tile walks every
    block row's kept blocks (nr x kb x tile lanes per block)
The weights are re-read once per pixel tile, and each tile reads the rows of X its kept
blocks name (in place, M floats apart, through a loaded offset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.kernels.work import FLOAT_BYTES, GatherShape, KernelWork, LoopWork, Stream
from codegen.layer import KernelRun, run_case
from codegen.reference import apply_activation
from codegen.render import Abi, Buffer, OutputBuffer, RenderedKernel, check_activation
from models.errors import UserError

TEMPLATE = "spmm.c.j2"


@dataclass(frozen=True)
class SpmmParams:
    """One XNNPACK-style block-sparse kernel (codegen/kernels/spmm.c.j2): ``mr`` pixels per tile
    (a multiple of the lanes), blocks of ``nr`` output x ``kb`` input channels."""
    isa: str
    mr: int = 8
    nr: int = 1
    kb: int = 1
    act: str = "none"
    threads: int = 1   # OpenMP threads over pixel chunks (issue 15)

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if self.mr < lanes or self.mr % lanes or self.nr < 1 or self.kb < 1 or self.threads < 1:
            raise UserError(f"spmm tile {self.mr}x{self.nr} (block {self.nr}x{self.kb}) does not "
                            f"fit {self.isa}", field="tile", fix=f"use mr a multiple of {lanes}")
        check_activation(self.act)

    @property
    def matvec_vectors(self) -> bool:
        """The one-pixel path sums a block's inputs in 4-float vectors (1 x 4k blocks)."""
        return self.nr == 1 and self.kb % 4 == 0

    @property
    def matvec_sums(self) -> int:
        """Sums one block adds into on the one-pixel path: vectors of 4, else scalars."""
        return self.kb // 4 if self.matvec_vectors else self.nr * self.kb

    @property
    def matvec_sets(self) -> int:
        """Sets of sums on the one-pixel path (blocks unrolled by it): 4 vector chains or 8
        scalar ones in flight cover the FMA latency."""
        return max(1, (4 if self.matvec_vectors else 8) // self.matvec_sums)

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"spmm_{self.mr}x{self.nr}_kb{self.kb}_{self.isa}{threads}{act}"


ABI = Abi(ints=("cout", "cin", "p"),
          inputs=(Buffer("values", "float"), Buffer("nnz", "int32_t"), Buffer("diffs", "int32_t"),
                  Buffer("x", "float")),
          output=OutputBuffer("y", "float", "cout * p"))


def abi(params: SpmmParams) -> Abi:
    return ABI


def render(params: SpmmParams) -> RenderedKernel:
    """Returns the C source of the block-sparse kernel ``params`` describes."""
    return FAMILY.render(params)


def default_schedule(target, nr: int = 1, kb: int = 1, flavour: str | None = None,
                     threads: int | None = None) -> SpmmParams:
    """Returns the untuned kernel for blocks of ``nr`` x ``kb``: the flavour's pixel tile, on
    the target's kernel threads unless ``threads`` says otherwise (as nmgemm's)."""
    isa = get_isa(flavour or kernel_build.best_flavour(target))
    return SpmmParams(isa.name, mr=isa.spmm_pixels, nr=nr, kb=kb,
                      threads=threads if threads is not None else kernel_build.default_threads(target))


def shipped() -> list[SpmmParams]:
    """Returns the shipped variants: NR = 1, 2, 4 output channels (XNNPACK's blocks) and 1x4
    blocks along the input channels, per flavour and pixel tile."""
    return [SpmmParams(isa, mr=mr, nr=nr, kb=kb)
            for isa in ISAS for mr in ISAS[isa].shipped_spmm_pixels
            for nr, kb in ((1, 1), (2, 1), (4, 1), (1, 4))]


# ---------------------------------------------------------------- packing


@dataclass(frozen=True)
class BlockSparsePacked:
    """Block-sparse weights for the spmm kernel: blocks of ``nr`` output x ``kb`` input channels.

    values  float32: per block row (nr output channels): nr biases, then nr*kb values per kept
            block, ordered [input channel in block][output channel in block]
    nnz     int32 [block rows]: kept blocks of each block row
    diffs   int32 [1 + total kept]: diffs[0] = byte offset of the first kept block's first input
            row; then, after each kept block, the byte step to the next one's (XNNPACK's dmap;
            the last step of a block row leads to the first kept block of the next row)
    """
    nr: int
    kb: int
    cout: int
    cin: int
    pixels: int
    values: np.ndarray
    nnz: np.ndarray
    diffs: np.ndarray


def _block_starts(cin: int, kb: int) -> list[int]:
    """Input-channel blocks: 0, kb, 2kb, ...; a ragged last block is moved back to end at cin
    (the channels it shares with the previous block are zeroed in it, see pack)."""
    if cin < kb:
        raise UserError(f"{cin} input channels cannot hold blocks of {kb}", field="sparsity",
                        fix="use a block width at most the input channels")
    starts = list(range(0, cin - kb + 1, kb))
    if cin % kb:
        starts.append(cin - kb)
    return starts


def pack(w: np.ndarray, nr: int, pixels: int, bias: np.ndarray | None = None,
         kb: int = 1) -> BlockSparsePacked:
    """Returns the block-sparse layout of ``w`` (cout x cin): a block of ``nr`` output x ``kb``
    input channels is kept when any of its weights is nonzero. ``pixels`` (the CHW row length)
    sets the byte stride the diffs encode."""
    w = np.asarray(w, dtype=np.float32)
    cout, cin = w.shape
    block_rows = -(-cout // nr)
    padded = np.zeros((block_rows * nr, cin), dtype=np.float32)
    padded[:cout] = w
    bias_pad = np.zeros(block_rows * nr, dtype=np.float32)
    if bias is not None:
        bias_pad[:cout] = bias
    starts = _block_starts(cin, kb)
    values, nnz, offsets = [], [], []
    for row in range(block_rows):
        rows = padded[row * nr:(row + 1) * nr]
        values.append(bias_pad[row * nr:(row + 1) * nr])
        kept = 0
        for number, start in enumerate(starts):
            block = rows[:, start:start + kb].copy()
            if number and start < starts[number - 1] + kb:  # ragged last block: no double count
                block[:, :starts[number - 1] + kb - start] = 0.0
            if not block.any():
                continue
            values.append(block.T.ravel())
            offsets.append(start * pixels * 4)
            kept += 1
        nnz.append(kept)
    offsets_arr = np.array(offsets, dtype=np.int64)
    diffs = np.zeros(1 + len(offsets_arr), dtype=np.int32)
    if len(offsets_arr):
        diffs[0] = offsets_arr[0]
        diffs[1:-1] = np.diff(offsets_arr)
    return BlockSparsePacked(nr, kb, cout, cin, pixels, np.concatenate(values).astype(np.float32),
                             np.array(nnz, dtype=np.int32), diffs)


def unpack(packed: BlockSparsePacked) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dense weights cout x cin, bias) decoded by walking the diffs like the kernel."""
    nr, kb, row_bytes = packed.nr, packed.kb, packed.pixels * 4
    block_rows = len(packed.nnz)
    dense = np.zeros((block_rows * nr, packed.cin), dtype=np.float32)
    bias = np.zeros(block_rows * nr, dtype=np.float32)
    offset, cursor, step = int(packed.diffs[0]) if len(packed.diffs) else 0, 0, 1
    for row in range(block_rows):
        bias[row * nr:(row + 1) * nr] = packed.values[cursor:cursor + nr]
        cursor += nr
        for _ in range(packed.nnz[row]):
            channel = offset // row_bytes
            block = packed.values[cursor:cursor + nr * kb].reshape(kb, nr).T
            dense[row * nr:(row + 1) * nr, channel:channel + kb] += block
            cursor += nr * kb
            offset += int(packed.diffs[step])
            step += 1
    return dense[:packed.cout], bias[:packed.cout]


def mask_blocks(w: np.ndarray, rows: int, cols: int, density: float) -> np.ndarray:
    """Returns w with only the ``density`` fraction of ``rows`` x ``cols`` blocks of largest L2
    norm kept (blocks of ``rows`` output x ``cols`` input channels; ragged edges form smaller
    blocks)."""
    w = np.asarray(w, dtype=np.float32)
    cout, cin = w.shape
    padded = np.zeros((-(-cout // rows) * rows, -(-cin // cols) * cols), dtype=np.float32)
    padded[:cout, :cin] = w
    norms = (padded.reshape(padded.shape[0] // rows, rows, padded.shape[1] // cols, cols) ** 2
             ).sum(axis=(1, 3))
    keep_count = max(1, round(density * norms.size))
    threshold_order = np.argsort(-norms, axis=None, kind="stable")[:keep_count]
    keep = np.zeros(norms.size, dtype=bool)
    keep[threshold_order] = True
    keep = np.repeat(np.repeat(keep.reshape(norms.shape), rows, axis=0), cols, axis=1)
    return np.where(keep[:cout, :cin], w, 0.0).astype(np.float32)


def buffers(params: SpmmParams, w2d: np.ndarray, bias: np.ndarray | None, x: np.ndarray) -> dict:
    """Returns the harness buffers of one run: ``w2d`` (cout x cin) and ``bias`` packed for
    ``params``, ``x`` (cin x pixels)."""
    packed = pack(w2d, params.nr, x.shape[1], bias, kb=params.kb)
    return {"values": packed.values, "nnz": packed.nnz, "diffs": packed.diffs, "x": x}


# ---------------------------------------------------------------- what it runs for a workload


# spmm.c.j2 splits the pixels among its threads from this many kept MACs
PARALLEL_MACS = 5e5
# and, at one pixel, the block rows from this many
MATVEC_PARALLEL_MACS = 256e3


def _matvec_work(params: SpmmParams, workload, block_rows: int, kept: float) -> KernelWork:
    """What spmm.c.j2's one-pixel path runs: every block row walks its kept blocks once,
    ``matvec_sets`` blocks a step, the rest one at a time; the weights and the input are
    read once."""
    sets = params.matvec_sets
    per_block = params.nr * params.kb
    steps = block_rows * math.floor(kept / max(block_rows, 1) / sets) * workload.groups
    rest = max(0.0, kept * workload.groups - steps * sets)
    loops = (LoopWork(per_block * sets, steps), LoopWork(per_block, rest)) if sets > 1 else \
        (LoopWork(per_block, kept * workload.groups),)
    macs = kept * per_block * workload.groups
    threads = params.threads if macs >= MATVEC_PARALLEL_MACS else 1
    weight_bytes = block_rows * params.nr * FLOAT_BYTES + kept * (per_block * FLOAT_BYTES + 4) + block_rows * 4
    streams = (Stream("weights", workload.groups * weight_bytes, 1),
               Stream("panel", workload.groups * workload.K * FLOAT_BYTES, 1),
               Stream("output", workload.groups * workload.N * FLOAT_BYTES, 1))
    return KernelWork(loops=loops, parent_trips=(block_rows * workload.groups,), streams=streams,
                      pixel_tile=1, row_tile=params.nr, memory_tiles=threads, parallel_units=threads,
                      threads=threads)


def _threads(params: SpmmParams, workload, kept: float, lanes: int) -> tuple[int, int]:
    """Returns (threads, pixel chunks) of spmm.c.j2's parallel loop (chunks of whole vectors,
    4 per thread at most)."""
    threads = max(1, params.threads)
    chunks = min(4 * threads, workload.M // lanes)
    if threads < 2 or chunks < 2 or kept * params.nr * params.kb * workload.M * workload.groups < PARALLEL_MACS:
        return 1, 1
    return threads, chunks


def _kept_blocks(workload, kb: int) -> float:
    """Returns the kept blocks of kb input channels per block row at the workload's density."""
    blocks = math.ceil(workload.K / kb)
    return blocks * (workload.density if workload.sparse else 1.0)


def work(params: SpmmParams, workload, geometry=None) -> KernelWork:
    """Returns what the kernel runs for ``workload`` (M = pixels, N = output channels, K =
    input channels): kept blocks at the workload's density, the pixel tiles and tails, the
    in-place row loads and the streams."""
    isa = get_isa(params.isa)
    lanes = isa.lanes
    block_rows = math.ceil(workload.N / params.nr)
    kept = block_rows * _kept_blocks(workload, params.kb)          # kept blocks over all block rows
    if workload.M == 1:
        return _matvec_work(params, workload, block_rows, kept)
    full = workload.M // params.mr
    rest = workload.M - full * params.mr
    if isa.masked_tails:
        # spmm.c.j2: the last p % mr pixels in one tile of the fewest vectors, the last masked
        vector_lanes = -(-rest // lanes) * lanes if rest else 0
        vector, single = (1 if rest else 0), 0
    else:
        vector_lanes = lanes
        vector = rest // lanes if params.mr > lanes else 0
        single = rest - vector * lanes if lanes > 1 else 0
    per_block = params.nr * params.kb
    # each kept block loads kb rows of X in place (rows M floats apart) through a loaded offset
    loops = [LoopWork(per_block * params.mr, full * kept * workload.groups, params.kb)]
    if vector:
        loops.append(LoopWork(per_block * vector_lanes, vector * kept * workload.groups))
    if single:
        loops.append(LoopWork(per_block, single * kept * workload.groups))
    pixel_tiles = full + vector + single
    # spmm.c.j2: input channels in chunks whose rows of a tile fill 32 KB of L1; with more
    # than one chunk every block row is entered once per chunk and keeps its running sums
    # (and cursors) in a per-thread buffer between chunks
    chunks = math.ceil(workload.K / _chunk_channels(params))
    if chunks > 1:
        parents = (pixel_tiles * block_rows * chunks * workload.groups, pixel_tiles * chunks * workload.groups,
                   pixel_tiles * workload.groups)
    else:
        parents = (pixel_tiles * block_rows * workload.groups, pixel_tiles * workload.groups)
    vectors = max(1, params.mr // lanes)
    tile_loads = params.nr * vectors * (chunks - 1) / chunks
    sums_bytes = block_rows * params.nr * params.mr * FLOAT_BYTES if chunks > 1 else 0
    weight_bytes = block_rows * params.nr * FLOAT_BYTES + kept * (per_block * FLOAT_BYTES + 4) + block_rows * 4
    panel_bytes = workload.K * params.mr * FLOAT_BYTES
    density_rows = min(1.0, kept * params.kb / max(block_rows * workload.K, 1))
    streams = (Stream("weights", workload.groups * weight_bytes, max(pixel_tiles, 1)),
               Stream("panel", panel_bytes, max(full, 1) * block_rows * workload.groups,
                      pass_bytes=panel_bytes * min(1.0, density_rows)),
               Stream("output", workload.groups * workload.N * workload.M * FLOAT_BYTES, 1))
    gather = None
    if full and lanes > 1:
        vector_bytes = lanes * FLOAT_BYTES
        gather = GatherShape(vector_bytes=vector_bytes, row_vectors=max(1, params.mr // lanes),
                             panel_rows=min(math.ceil(workload.K / params.kb) * params.kb, _chunk_channels(params)),
                             group_rows=params.kb,
                             picks_per_group=params.kb, slots=min(params.nr, 4),
                             row_stride_bytes=workload.M * FLOAT_BYTES,
                             group_density=min(1.0, workload.density if workload.sparse else 1.0))
    threads, chunks = _threads(params, workload, kept, lanes)
    return KernelWork(loops=tuple(loops), parent_trips=parents, streams=streams,
                      pixel_tile=params.mr, row_tile=params.nr, memory_tiles=chunks,
                      parallel_units=chunks, threads=threads, gather=gather, pack=None,
                      tile_stores=params.nr * vectors, tile_loads=tile_loads, tile_sums_bytes=sums_bytes)


# spmm.c.j2: a chunk's rows of one pixel tile fill this much of L1
L1_CHUNK_BYTES = 32768


def _chunk_channels(params: SpmmParams) -> int:
    """Returns the input channels of one chunk (spmm.c.j2's chunk_channels: whole blocks)."""
    return max(params.kb, L1_CHUNK_BYTES // (params.mr * FLOAT_BYTES) // params.kb * params.kb)


# ---------------------------------------------------------------- runs


def run_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: SpmmParams,
              target, workdir: Path, repeats: int = 5, warmup: int = 1) -> KernelRun:
    """Packs ``w`` (cout x cin) in blocks, builds the kernel for ``target``, runs it on ``x``
    (cin x p) ``repeats`` times, and checks its output against numpy."""
    reference = apply_activation(w @ x + (0 if bias is None else bias[:, None]), params.act)
    return run_case(render(params), target, workdir, buffers(params, w, bias, x),
                    (w.shape[0], w.shape[1], x.shape[1]), reference, repeats, warmup)


def cases(params: SpmmParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs of ``params`` on block-masked weights (ragged blocks, pixel tails, one
    pixel) and numpy's answers."""
    found = []
    for number, ((cout, cin, p), density) in enumerate([((9, 13, 37), 0.3), ((17, 8, 5), 0.8),
                                                        ((11, 29, 1), 0.5)]):
        w = mask_blocks(rng.standard_normal((cout, cin)).astype(np.float32), params.nr, params.kb, density)
        x = rng.standard_normal((cin, p)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        expected = apply_activation(w.astype(np.float64) @ x + bias[:, None], params.act)
        found.append(Case(f"case{number}", buffers(params, w, bias, x), (cout, cin, p), expected))
    return found


FAMILY = Family(name="spmm", template=TEMPLATE, params_type=SpmmParams, abi=abi,
                shipped=shipped, cases=cases, work=work)
