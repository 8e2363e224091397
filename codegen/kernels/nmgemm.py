"""The N:M sparse GEMM family (codegen/kernels/nmgemm.c.j2): y = act(W x + bias) with W pruned to
n of every m weights along k; with ``conv`` the input is a CHW image and x its implicit
im2col (a sparse KxK convolution, planned as "nmconv"); n == m is the dense GEMM fallback.

    >>> params = NmGemmParams(n=2, m=8, isa="avx2", mr=4, nr=24, unroll=2)
    >>> render(params).filename
    'nmgemm_2of8_4x24_avx2_u2.c'

Weights layout (``pack``), one stream per tile of mr output rows:
    values  float32 [cout_pad/mr, groups, mr, n]   cout_pad = cout rounded up to mr; pad rows 0
    indices uint8   [cout_pad/mr, groups, mr, n] (shared: [cout_pad/mr, groups, n]),
            the position inside the group
A group with fewer than n nonzeros is filled with zero-valued weights at unused positions.
``pack_index_bits`` stores indices in ceil(log2 m) bits each (the compact storage form).

What the kernel runs for a workload (``work``, read by the CPU cost model):
    for column tile (nr pixels): pack the panel (memcpy of nr pixels of each of k rows);
      for row tile (mr rows): init; group loop unrolled by ``unroll``
      (unroll x n x mr x nr lanes per step), then a remainder loop
      (n x mr x nr lanes) over groups % unroll; store
The weights are re-read once per column tile; the packed panel (groups x m x nr floats)
once per row tile, of which a row tile touches the rows its index sets name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.kernels.work import (FLOAT_BYTES, GatherShape, KernelWork, LoopWork, PackShape, Stream,
                                  im2col_runs_per_tile)
from codegen.layer import KernelRun, run_case
from codegen.reference import apply_activation
from codegen.render import Abi, Buffer, RenderedKernel, check_activation, conv_abi, gemm_abi
from models.errors import UserError

TEMPLATE = "nmgemm.c.j2"


@dataclass(frozen=True)
class NmGemmParams:
    """Schedule of one N:M GEMM kernel variant (see codegen/kernels/nmgemm.c.j2).

    mr: output rows per register tile; nr: pixels per tile (a multiple of the ISA's lanes);
    unroll: groups per loop step; shared: one index set per block of ``mr`` rows;
    kc: k-block in groups (0: none); prefetch: weight prefetch distance in groups (0: none);
    threads: OpenMP threads over column tiles; act: fused activation; conv: the input is a CHW
    image and X its implicit im2col (a sparse KxK convolution, family "nmconv")."""
    n: int
    m: int
    isa: str
    mr: int = 1
    nr: int = 8
    unroll: int = 1
    shared: bool = False
    kc: int = 0
    prefetch: int = 0
    threads: int = 1
    act: str = "none"
    conv: bool = False

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if not 1 <= self.n <= self.m <= 16:
            raise UserError(f"n:m = {self.n}:{self.m} needs 1 <= n <= m <= 16", field="sparsity",
                            fix="use e.g. 2:8")
        if self.mr < 1 or self.nr < lanes or self.nr % lanes:
            raise UserError(f"tile {self.mr}x{self.nr} does not fit {self.isa} ({lanes} lanes)",
                            field="tile", fix=f"use nr a multiple of {lanes}")
        if self.unroll < 1 or self.kc < 0 or self.prefetch < 0 or self.threads < 1:
            raise UserError("unroll, threads >= 1 and kc, prefetch >= 0 are required",
                            field="schedule", fix="e.g. unroll=2 kc=0 prefetch=0 threads=1")
        check_activation(self.act)

    @property
    def dense(self) -> bool:
        """n == m keeps every weight: the kernel reads no indices (the dense GEMM fallback)."""
        return self.n == self.m

    @property
    def name(self) -> str:
        if self.conv:
            family = "conv" if self.dense else f"nmconv_{self.n}of{self.m}"
        else:
            family = "gemm" if self.dense else f"nmgemm_{self.n}of{self.m}"
        parts = [family]
        if self.shared and not self.dense:
            parts.append("shared")
        parts += [f"{self.mr}x{self.nr}", self.isa, f"u{self.unroll}"]
        if self.kc:
            parts.append(f"kc{self.kc}")
        if self.prefetch:
            parts.append(f"pf{self.prefetch}")
        if self.threads > 1:
            parts.append(f"t{self.threads}")
        if self.act != "none":
            parts.append(self.act)
        return "_".join(parts)


# ---------------------------------------------------------------- ABI


_WEIGHTS = (Buffer("values", "float"), Buffer("indices", "uint8_t", optional=True),
            Buffer("bias", "float", optional=True), Buffer("x", "float"))
GEMM_ABI = gemm_abi(_WEIGHTS)
CONV_ABI = conv_abi(_WEIGHTS)


def abi(params: NmGemmParams) -> Abi:
    """Returns the argument list of the GEMM (cout, k, p) or, with ``conv``, the KxK convolution."""
    return CONV_ABI if params.conv else GEMM_ABI


def render(params: NmGemmParams) -> RenderedKernel:
    """Returns the C source of the N:M GEMM (or, with ``conv``, KxK convolution) variant."""
    return FAMILY.render(params)


# ---------------------------------------------------------------- default schedule, variants


def default_schedule(n: int, m: int, target, shared: bool = False, flavour: str | None = None,
                     threads: int | None = None, rows: int | None = None) -> NmGemmParams:
    """Returns the untuned N:M kernel schedule for a target; ``rows`` fixes the register tile's
    rows (the row block of a shared-index pattern) and the pixels then fill the registers."""
    isa = get_isa(flavour or kernel_build.best_flavour(target))
    flavour = isa.name
    mr, nr, unroll = isa.nm_tiles[2 if n == m else 1 if shared else 0]  # codegen.isa's untuned tiles
    if rows:
        lanes = isa.lanes
        vectors = max(1, (isa.vector_registers - 2) // rows)
        if flavour == "wasmsimd":  # measured (768x768x128, 2:8 on 8 rows): 8x8 beats 8x4
            vectors = max(2, vectors)
        mr, nr = rows, min(vectors, 4) * lanes
    return NmGemmParams(n, m, flavour, mr=mr, nr=nr, unroll=unroll, shared=shared,
                        threads=threads if threads is not None else kernel_build.default_threads(target))


# a dense one-pixel layer's rows a tile: two vectors, at most this many (see matvec_schedule)
MATVEC_ROWS = 16


def matvec_schedule(params: NmGemmParams) -> NmGemmParams:
    """Returns ``params`` for a dense one-pixel layer (a classifier at batch 1): two vectors
    of output rows a tile, at most MATVEC_ROWS. nmgemm.c.j2's matrix-vector path multiplies a
    tile's MR rows by one input at a time and the compiler puts the rows in the vector lanes,
    so the default tiles' 6 (avx512, avx2) or 2 (wasm) rows left most lanes empty. Measured on
    the Xeon, 1000 x 1024 (ms, numpy 0.032-0.034): avx512 on 2 threads mr 6 0.056, 16 0.032,
    32 0.034; avx2 mr 6 0.060, 8 0.034, 16 0.033, 32 0.034; wasm SIMD128 under wasmtime mr 2
    0.274, 4 0.187, 8 0.166, 16 0.417. A sparse pattern keeps its tile: its rows gather their
    inputs by index (2:8 on avx512: mr 6 0.041, mr 16 0.052)."""
    lanes = get_isa(params.isa).lanes
    if not params.dense or lanes < 4:
        return params
    rows = min(MATVEC_ROWS, 2 * lanes)
    return replace(params, mr=rows, nr=lanes)


SHIPPED_PATTERNS: tuple[tuple[int, int], ...] = ((2, 4), (2, 8), (1, 8), (4, 16))


def shipped() -> list[NmGemmParams]:
    """Returns the shipped variants: every flavour x tile x pattern, per-row and shared index
    sets, the dense GEMM fallback (n == m) per flavour and tile, and the sparse KxK
    convolutions (implicit im2col), one tile per flavour."""
    variants = []
    for isa in ISAS:
        for mr, nr in ISAS[isa].shipped_nm_tiles:     # (mr, nr) within the register file
            for n, m in SHIPPED_PATTERNS:
                variants.append(NmGemmParams(n, m, isa, mr=mr, nr=nr, unroll=2))
                variants.append(NmGemmParams(n, m, isa, mr=mr, nr=nr, unroll=2, shared=True))
            variants.append(NmGemmParams(1, 1, isa, mr=mr, nr=nr, unroll=4))
    variants += [NmGemmParams(n, m, isa, mr=ISAS[isa].shipped_nm_tiles[0][0],
                              nr=ISAS[isa].shipped_nm_tiles[0][1], unroll=2, conv=True)
                 for isa in ISAS for n, m in ((2, 8), (8, 8))]
    return variants


# ---------------------------------------------------------------- packing


@dataclass(frozen=True)
class NmPacked:
    """N:M weights in the nmgemm layout (see the module docstring); ``row_values`` and
    ``row_indices`` give the same data per output row ([cout_pad, groups, n])."""
    n: int
    m: int
    mr: int
    shared: bool
    cout: int
    k: int
    values: np.ndarray
    indices: np.ndarray

    @property
    def groups(self) -> int:
        return self.values.shape[1]

    @property
    def row_values(self) -> np.ndarray:
        tiles, groups, mr, n = self.values.shape
        return self.values.transpose(0, 2, 1, 3).reshape(tiles * mr, groups, n)

    @property
    def row_indices(self) -> np.ndarray:
        """[cout_pad, groups, n] per-row indices (a shared set repeated for its rows)."""
        if self.shared:
            return np.repeat(self.indices, self.mr, axis=0)
        tiles, groups, mr, n = self.indices.shape
        return self.indices.transpose(0, 2, 1, 3).reshape(tiles * mr, groups, n)


def _grouped(w: np.ndarray, m: int, mr: int) -> np.ndarray:
    """Returns w zero-padded to (cout_pad, groups, m)."""
    cout, k = w.shape
    groups = -(-k // m)
    cout_pad = -(-cout // mr) * mr
    padded = np.zeros((cout_pad, groups * m), dtype=np.float32)
    padded[:cout, :k] = w
    return padded.reshape(cout_pad, groups, m)


def _positions(keep: np.ndarray, n: int, what: str) -> np.ndarray:
    """Returns, for each group in ``keep`` (..., m) bool, n positions: kept ones first (ascending)."""
    counts = keep.sum(axis=-1)
    if counts.size and counts.max() > n:
        raise UserError(f"{what}: a group keeps {int(counts.max())} weights, more than n={n}",
                        field="sparsity", fix="mask the weights with the same n:m before packing")
    if n == keep.shape[-1]:  # dense (n == m): kernels read position j at slot j, no indices
        return np.broadcast_to(np.arange(n, dtype=np.uint8), keep.shape).copy()
    order = np.argsort(~keep, axis=-1, kind="stable")
    return order[..., :n].astype(np.uint8)


def pack(w: np.ndarray, n: int, m: int, mr: int = 1, shared: bool = False) -> NmPacked:
    """Returns the nmgemm layout of the masked matrix ``w`` (cout x k).

    >>> packed = pack(np.array([[0, 3, 0, 0, 5, 0, 0, 0]], np.float32), 1, 4)
    >>> packed.values.ravel().tolist(), packed.indices.ravel().tolist()
    ([3.0, 5.0], [1, 0])
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise UserError(f"weights must be 2-D (cout x k), got shape {w.shape}", field="weights",
                        fix="reshape conv weights to (cout, cin*r*s)")
    grouped = _grouped(w, m, mr)
    cout_pad, groups, _ = grouped.shape
    if shared:
        block_keep = (grouped.reshape(cout_pad // mr, mr, groups, m) != 0).any(axis=1)
        indices = _positions(block_keep, n, f"{n}:{m} shared by {mr} rows")
        per_row = np.repeat(indices, mr, axis=0)
    else:
        indices = _positions(grouped != 0, n, f"{n}:{m}")
        per_row = indices
    values = np.take_along_axis(grouped, per_row.astype(np.intp), axis=-1)

    def tiled(per_row_array: np.ndarray) -> np.ndarray:  # [rows, g, n] -> [tiles, g, mr, n]
        return np.ascontiguousarray(
            per_row_array.reshape(cout_pad // mr, mr, groups, n).transpose(0, 2, 1, 3))

    return NmPacked(n, m, mr, shared, w.shape[0], w.shape[1], tiled(values),
                    np.ascontiguousarray(indices) if shared else tiled(indices))


def unpack(packed: NmPacked) -> np.ndarray:
    """Returns the dense (cout x k) matrix the packed weights encode."""
    values, per_row = packed.row_values, packed.row_indices
    cout_pad, groups, n = values.shape
    dense = np.zeros((cout_pad, groups, packed.m), dtype=np.float32)
    # np.add.at, not assignment: a zero-valued filler may repeat a position
    rows, grps, _ = np.indices(per_row.shape)
    np.add.at(dense, (rows, grps, per_row.astype(np.intp)), values)
    return dense.reshape(cout_pad, groups * packed.m)[:packed.cout, :packed.k]


def index_bits(m: int) -> int:
    """Bits per N:M index: ceil(log2 m), at least 1."""
    return max(1, math.ceil(math.log2(m)))


def pack_index_bits(indices: np.ndarray, m: int) -> np.ndarray:
    """Returns the indices packed little-endian in ``index_bits(m)`` bits each (uint8 bytes)."""
    bits = index_bits(m)
    flat = indices.astype(np.uint8).ravel()
    bit_planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(bit_planes.ravel(), bitorder="little")


def unpack_index_bits(packed: np.ndarray, m: int, count: int) -> np.ndarray:
    """Inverse of ``pack_index_bits`` for ``count`` indices."""
    bits = index_bits(m)
    planes = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)


def mask_nm_shared(w: np.ndarray, n: int, m: int, rows: int) -> np.ndarray:
    """Returns w with, in every block of ``rows`` output rows and group of ``m`` along k,
    only the ``n`` positions of largest L2 norm over the block kept (the same for all rows).

    This is N:M applied to ``rows`` x 1 blocks: a block pattern inside the N:M bound, which
    lets a kernel load each activation row once for ``rows`` outputs."""
    w = np.asarray(w, dtype=np.float32)
    cout, k = w.shape
    grouped = _grouped(w, m, rows)
    cout_pad, groups, _ = grouped.shape
    norms = np.sqrt((grouped.reshape(cout_pad // rows, rows, groups, m) ** 2).sum(axis=1))
    if k % m:  # positions past k do not exist: never keep them
        norms[:, -1, k % m:] = -1.0
    keep_pos = np.argsort(-norms, axis=-1, kind="stable")[..., :n]
    keep = np.zeros_like(norms, dtype=bool)
    np.put_along_axis(keep, keep_pos, True, axis=-1)
    mask = np.repeat(keep, rows, axis=0).reshape(cout_pad, groups * m)[:cout, :k]
    return np.where(mask, w, 0.0).astype(np.float32)


def mask_nm(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Returns w with the n largest-magnitude weights of every group of m along k kept."""
    return mask_nm_shared(w, n, m, rows=1)


def buffers(params: NmGemmParams, w2d: np.ndarray, bias: np.ndarray | None, x: np.ndarray) -> dict:
    """Returns the harness buffers of one run: ``w2d`` (cout x k, masked) packed for ``params``."""
    packed = pack(w2d, params.n, params.m, mr=params.mr, shared=params.shared)
    return {"values": packed.values, "indices": None if params.dense else packed.indices,
            "bias": bias, "x": x}


# ---------------------------------------------------------------- what it runs for a workload


# nmgemm.c.j2 starts its OpenMP team only with 2+ work items and this many kept MACs
# (cout x groups x n x pixels): below it a woken thread costs more than it saves
PARALLEL_MACS = 1e6

# nmgemm.c.j2, sparse and untuned (kc = 0): k-blocks whose panel rows fit this much of L1
L1_PANEL_BYTES = 32768


def lane_use(pixels: int, channels: int, params: NmGemmParams) -> float:
    """Returns the share of the register tiles' multiply lanes that compute real outputs:
    pixels rounded up to whole vectors (a partial column tile runs the fewest vectors that
    cover it), output channels to the tile's mr rows."""
    lanes = get_isa(params.isa).lanes
    full, rest = divmod(pixels, params.nr)
    computed = full * params.nr + math.ceil(rest / lanes) * lanes
    return pixels / computed * channels / (math.ceil(channels / params.mr) * params.mr)


def _row_chunks(col_tiles: int, row_tiles: int, threads: int) -> int:
    """Row chunks per column tile (nmgemm.c.j2 cuts the rows when there are fewer than 4
    column tiles per thread); work items = column tiles x row chunks."""
    if threads < 2 or col_tiles >= 4 * threads:
        return 1
    chunks = min(row_tiles, math.ceil(4 * threads / col_tiles))
    return math.ceil(row_tiles / math.ceil(row_tiles / chunks))


def _threads(params: NmGemmParams, workload, groups: int, col_tiles: int, row_tiles: int) -> int:
    """Returns the threads the kernel really runs ``workload`` on (its ``if (parallel)`` clause)."""
    threads = max(1, params.threads)
    kept_macs = float(workload.N) * workload.groups * groups * params.n * workload.M
    items = col_tiles * _row_chunks(col_tiles, row_tiles, threads)
    return threads if items >= 2 and kept_macs >= PARALLEL_MACS else 1


def work(params: NmGemmParams, workload, geometry=None) -> KernelWork:
    """Returns what the kernel runs for ``workload`` (a models.lowering.GemmWorkload: M = pixels,
    N = output channels, K = reduction): exact iterations from the loop bounds (the remainder
    loop included), the panel pack, the gathers of per-row index sets and the streams."""
    n, m = params.n, params.m
    lanes_per_vector = get_isa(params.isa).lanes
    groups = math.ceil(workload.K / m)
    col_tiles = math.ceil(workload.M / params.nr)
    row_tiles = math.ceil(workload.N / params.mr)
    # nmgemm.c.j2: a tuned kc; untuned and sparse, as many groups as keep the panel block's
    # rows (m x nr floats a group) within 32 KB of L1; dense: one block
    kc = params.kc or (min(groups, max(1, L1_PANEL_BYTES // (m * params.nr * FLOAT_BYTES)))
                       if not params.dense else groups)
    k_blocks = math.ceil(groups / kc)
    tiles = col_tiles * row_tiles * workload.groups
    full_steps, remainder = 0, 0
    for block in range(k_blocks):
        size = min(kc, groups - block * kc)
        full_steps += size // params.unroll
        remainder += size % params.unroll
    lanes = n * params.mr * params.nr
    # per-row indices: every (row, kept position) fetches its panel row through a loaded index
    picks = 0 if (params.dense or params.shared) else n * params.mr
    # nmgemm.c.j2: a last partial column tile runs the narrowest tile that covers its pixels
    # (its own loops, vv vectors a row); with one vector a row it runs the full tile
    rest = workload.M % params.nr
    vectors = params.nr // lanes_per_vector
    part_vectors = math.ceil(rest / lanes_per_vector) if rest and vectors > 1 else 0
    full_tiles = tiles - (row_tiles * workload.groups if part_vectors else 0)
    loops = [LoopWork(lanes * params.unroll, full_tiles * full_steps, picks * params.unroll)]
    if params.unroll > 1 and remainder:
        loops.append(LoopWork(lanes, full_tiles * remainder, picks))
    if part_vectors:
        part_lanes = n * params.mr * part_vectors * lanes_per_vector
        loops.append(LoopWork(part_lanes * params.unroll, (tiles - full_tiles) * full_steps))
        if params.unroll > 1 and remainder:
            loops.append(LoopWork(part_lanes, (tiles - full_tiles) * remainder))
    if params.conv:
        # the im2col gather: one division per run of a tile's pixels along an output row
        # (a tile of nr pixels starts a new run at each output row it crosses); the per-tap
        # row-segment copies after it are not costed
        runs_per_tile = im2col_runs_per_tile(params.nr, workload.M, geometry)
        loops.append(LoopWork(0, workload.groups * col_tiles * runs_per_tile, divides=True))
    # parents of the group loop, innermost first: row tile, k-block, column tile
    parents = (tiles * k_blocks, col_tiles * k_blocks * workload.groups, col_tiles * workload.groups)
    density = n / m
    index_bytes = 0 if params.dense else 1
    share = params.mr if params.shared else 1
    weight_bytes = row_tiles * params.mr * groups * n * (FLOAT_BYTES + index_bytes / share)
    panel_bytes = groups * m * params.nr * FLOAT_BYTES
    # rows of the panel one row tile touches: the union of its index sets
    touched = 1.0 if params.dense else 1.0 - (1.0 - density) ** (params.mr // share)
    streams = (Stream("weights", workload.groups * weight_bytes, col_tiles),
               Stream("panel", panel_bytes, col_tiles * row_tiles * workload.groups,
                      pass_bytes=panel_bytes * touched),
               Stream("output", workload.groups * workload.N * workload.M * FLOAT_BYTES, 1))
    gather = None
    if picks:
        vector_bytes = lanes_per_vector * FLOAT_BYTES
        gather = GatherShape(vector_bytes=vector_bytes, row_vectors=max(1, params.nr * FLOAT_BYTES // vector_bytes),
                             panel_rows=min(kc, groups) * m, group_rows=m, picks_per_group=picks,
                             slots=min(params.mr, 4))
    # nmgemm.c.j2 packs every column tile, except a dense GEMM on a flavour that reads X's
    # rows in place (codegen.isa's dense_rows_in_place): then only a partial last one (a convolution's gather is the loop above;
    # a dense stride-1 convolution that reads its padded input in place is not told apart
    # here: the workload carries no stride)
    in_place = params.dense and get_isa(params.isa).dense_rows_in_place
    packed_tiles = col_tiles if not in_place else (1 if workload.M % params.nr else 0)
    packing = None if params.conv or not packed_tiles else PackShape(
        rows=groups * m, row_bytes=params.nr * FLOAT_BYTES, stride_bytes=workload.M * FLOAT_BYTES,
        tiles=packed_tiles * workload.groups)
    threads = _threads(params, workload, groups, col_tiles, row_tiles)
    units = col_tiles * _row_chunks(col_tiles, row_tiles, threads)
    # k-blocks (nmgemm.c.j2 KBLOCK): a row tile's sums wait in `partial` (row_tiles x mr x
    # nr floats a thread) between k-blocks and are loaded back at each one after the first
    tile_loads = params.mr * max(1, vectors) * (k_blocks - 1) / k_blocks
    sums_bytes = row_tiles * params.mr * params.nr * FLOAT_BYTES if k_blocks > 1 else 0
    return KernelWork(loops=tuple(loops), parent_trips=parents, streams=streams,
                      pixel_tile=params.nr, row_tile=params.mr, memory_tiles=units,
                      parallel_units=units, threads=threads, gather=gather, pack=packing,
                      tile_stores=params.mr * max(1, params.nr // lanes_per_vector),
                      tile_loads=tile_loads, tile_sums_bytes=sums_bytes)


# ---------------------------------------------------------------- runs


def run_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: NmGemmParams,
              target, workdir: Path, repeats: int = 5, warmup: int = 1) -> KernelRun:
    """Packs the masked ``w`` (cout x k), builds the kernel for ``target``, runs it on ``x``
    (k x p) ``repeats`` times, and checks its output against numpy."""
    packed = pack(w, params.n, params.m, mr=params.mr, shared=params.shared)
    reference = apply_activation(w @ x + (0 if bias is None else bias[:, None]), params.act)
    return run_case(render(params), target, workdir,
                    {"values": packed.values, "indices": packed.indices, "bias": bias, "x": x},
                    (w.shape[0], w.shape[1], x.shape[1]), reference, repeats, warmup)


def cases(params: NmGemmParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs of ``params`` on random masked weights (with tails, with and without bias)
    and numpy's answers: GEMMs (cout, k, p), or CHW convolutions with ``conv``."""
    from codegen.reference import reference_conv
    from models.ir import Conv2d

    found = []
    if params.conv:
        for number, (cout, cin, h, w, k, stride, pad) in enumerate(
                [(5, 3, 9, 11, 3, 1, 1), (6, 3, 7, 7, 5, 2, 2)]):
            weights = mask_nm(rng.standard_normal((cout, cin * k * k)).astype(np.float32), params.n, params.m)
            x = rng.standard_normal((cin, h, w)).astype(np.float32)
            bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
            conv = Conv2d("conv", cin, cout, k, stride=stride, padding=pad)
            expected = reference_conv(weights.reshape(cout, cin, k, k), bias, x, conv, params.act)
            found.append(Case(f"case{number}", buffers(params, weights, bias, x),
                              (cout, cin, h, w, k, k, stride, pad), expected.reshape(cout, -1)))
        return found
    for number, (cout, k, p) in enumerate([(9, 40, 37), (17, 35, 5)]):
        w = rng.standard_normal((cout, k)).astype(np.float32)
        w = mask_nm_shared(w, params.n, params.m, params.mr) if params.shared else mask_nm(w, params.n, params.m)
        x = rng.standard_normal((k, p)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
        expected = apply_activation(w.astype(np.float64) @ x + (0 if bias is None else bias[:, None]), params.act)
        found.append(Case(f"case{number}", buffers(params, w, bias, x), (cout, k, p), expected))
    return found


FAMILY = Family(name="nmgemm", template=TEMPLATE, params_type=NmGemmParams, abi=abi,
                shipped=shipped, cases=cases, work=work)
