"""What the cost model needs to know about codegen's kernels, read from the kernels themselves.

hwsim/cpu may read codegen's kernel modules (ARCHITECTURE.md; codegen never imports hwsim):
the caller renders a kernel with codegen and hands the result here; ``from_rendered`` reads
its ``.name``, ``.source`` and ``.params`` (lanes and masked tails from codegen.isa's record)
and returns a ``KernelSource`` that says, for one workload, what every multiplying innermost
loop of the kernel executes:

    nmgemm  (templates/nmgemm.c.j2; params n, m, mr output rows, nr pixels, unroll)
            for column tile (nr pixels): pack the panel;
              for row tile (mr rows): init; group loop unrolled by ``unroll``
              (unroll x n x mr x nr lanes per step), then a remainder loop
              (n x mr x nr lanes) over groups % unroll; store
    spmm    (templates/spmm.c.j2; params mr pixels, nr outputs x kb inputs per block)
            full pixel tiles (mr), then one-vector tiles, then single pixels; each
            tile walks every block row's kept blocks (nr x kb x tile lanes per block)

Iterations are exact counts from the loop bounds (the remainder and pixel tails
included), not fitted; llvm-mca gives the cycles of each loop (cpu_model). The memory
streams follow the same blocking: nmgemm re-reads its weights once per column tile and
keeps a packed panel (groups x m x nr floats) per column tile; spmm re-reads its weights
once per pixel tile and reads the rows of X its kept blocks name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from codegen.isa import get_isa
from models.lowering import GemmWorkload
from hwsim.cpu import memory_model
from hwsim.cpu.gather_bench import GatherShape, PackShape
from hwsim.cpu.kernels import KernelSchedule, KernelSource, LoopWork

FLOAT_BYTES = 4


@dataclass(frozen=True)
class DepthwiseGeometry:
    """What a depthwise workload's GEMM sizes leave out: the input plane and its padding."""
    channels: int
    height: int
    width: int
    pad: int


def kind_of(params) -> str:
    """Returns 'nmgemm', 'spmm' or 'dwconv' from a codegen params object's fields."""
    if hasattr(params, "n") and hasattr(params, "m") and hasattr(params, "unroll"):
        return "nmgemm"
    if hasattr(params, "kb"):
        return "spmm"
    if hasattr(params, "k") and hasattr(params, "stride"):
        return "dwconv"
    raise ValueError(f"unknown codegen kernel parameters {params!r}")


def from_rendered(rendered, workload: GemmWorkload, geometry: DepthwiseGeometry | None = None) -> KernelSource:
    """Returns the KernelSource of codegen's ``rendered`` kernel running ``workload``.

    Workload axes: M = pixels (codegen's p), N = output channels (cout), K = reduction (k);
    a depthwise kernel (dwconv) also needs the input plane (``geometry``)."""
    params = rendered.params
    kind = kind_of(params)
    if kind == "dwconv":
        if geometry is None:
            raise ValueError(f"{rendered.name}: a depthwise kernel is costed with its input geometry")
        return _dwconv(rendered, geometry)
    loops, parents, streams, tiles, threads, gather, pack = (_nmgemm if kind == "nmgemm" else _spmm)(params, workload)
    simd = get_isa(params.isa).level.name         # the target's spelling (wasm_simd128)
    return KernelSource(family=kind, simd=simd, schedule=KernelSchedule(_pixel_tile(params), _row_tile(params)),
                        function=rendered.name, c_source=rendered.source, loops=loops,
                        parent_trips=parents, streams=streams, memory_tiles=tiles,
                        parallel_units=tiles, threads=threads, origin="codegen", gather=gather, pack=pack,
                        tile_stores=_tile_stores(params))


def _tile_stores(params) -> float:
    """Returns the vector stores of one register tile (per entry of the group / block loop:
    nmgemm mr rows x nr pixels, or the partial sums of a k-block; spmm nr outputs x mr pixels)."""
    lanes = get_isa(params.isa).lanes
    if kind_of(params) == "nmgemm":
        return params.mr * max(1, params.nr // lanes)
    return params.nr * max(1, params.mr // lanes)


def _pixel_tile(params) -> int:
    return params.nr if kind_of(params) == "nmgemm" else params.mr


def _row_tile(params) -> int:
    return params.mr if kind_of(params) == "nmgemm" else params.nr


def _nmgemm(params, work: GemmWorkload):
    n, m = params.n, params.m
    groups = math.ceil(work.K / m)
    col_tiles = math.ceil(work.M / params.nr)
    row_tiles = math.ceil(work.N / params.mr)
    kc = params.kc or groups
    k_blocks = math.ceil(groups / kc)
    tiles = col_tiles * row_tiles * work.groups
    full_steps, remainder = 0, 0
    for block in range(k_blocks):
        size = min(kc, groups - block * kc)
        full_steps += size // params.unroll
        remainder += size % params.unroll
    lanes = n * params.mr * params.nr
    # per-row indices: every (row, kept position) fetches its panel row through a loaded index
    picks = 0 if (params.n == params.m or getattr(params, "shared", False)) else n * params.mr
    loops = [LoopWork(lanes * params.unroll, tiles * full_steps, picks * params.unroll)]
    if params.unroll > 1 and remainder:
        loops.append(LoopWork(lanes, tiles * remainder, picks))
    if getattr(params, "conv", False):
        # the im2col gather: a division per column of each column tile (its top-left input
        # position); the per-tap copy after it (an add and a bounds test) is not costed
        loops.append(LoopWork(0, work.groups * col_tiles * params.nr, divides=True))
    # parents of the group loop, innermost first: row tile, k-block, column tile
    parents = (tiles * k_blocks, col_tiles * k_blocks * work.groups, col_tiles * work.groups)
    density = n / m
    index_bytes = 0 if params.n == params.m else 1
    share = params.mr if getattr(params, "shared", False) else 1
    weight_bytes = row_tiles * params.mr * groups * n * (FLOAT_BYTES + index_bytes / share)
    panel_bytes = groups * m * params.nr * FLOAT_BYTES
    # rows of the panel one row tile touches: the union of its index sets
    touched = 1.0 if params.n == params.m else 1.0 - (1.0 - density) ** (params.mr // share)
    streams = (memory_model.Stream("weights", work.groups * weight_bytes, col_tiles),
               memory_model.Stream("panel", panel_bytes, col_tiles * row_tiles * work.groups,
                                   pass_bytes=panel_bytes * touched),
               memory_model.Stream("output", work.groups * work.N * work.M * FLOAT_BYTES, 1))
    gather = None
    if picks:
        vector_bytes = get_isa(params.isa).lanes * FLOAT_BYTES
        gather = GatherShape(vector_bytes=vector_bytes, row_vectors=max(1, params.nr * FLOAT_BYTES // vector_bytes),
                             panel_rows=min(kc, groups) * m, group_rows=m, picks_per_group=picks,
                             slots=min(params.mr, 4))
    pack = None if getattr(params, "conv", False) else PackShape(
        rows=groups * m, row_bytes=params.nr * FLOAT_BYTES, stride_bytes=work.M * FLOAT_BYTES,
        tiles=col_tiles * work.groups)
    threads = _nmgemm_threads(params, work, groups, col_tiles, row_tiles)
    units = col_tiles * _row_chunks(col_tiles, row_tiles, threads)
    return tuple(loops), parents, streams, units, threads, gather, pack


# nmgemm.c.j2 starts its OpenMP team only with 2+ work items and this many kept MACs
# (cout x groups x n x pixels): below it a woken thread costs more than it saves
NMGEMM_PARALLEL_MACS = 8e6


def _row_chunks(col_tiles: int, row_tiles: int, threads: int) -> int:
    """Row chunks per column tile (nmgemm.c.j2 cuts the rows when there are fewer than 4
    column tiles per thread); work items = column tiles x row chunks."""
    if threads < 2 or col_tiles >= 4 * threads:
        return 1
    chunks = min(row_tiles, math.ceil(4 * threads / col_tiles))
    return math.ceil(row_tiles / math.ceil(row_tiles / chunks))


def _nmgemm_threads(params, work: GemmWorkload, groups: int, col_tiles: int, row_tiles: int) -> int:
    """Returns the threads the kernel really runs ``work`` on (its ``if (parallel)`` clause)."""
    threads = max(1, getattr(params, "threads", 1))
    kept_macs = float(work.N) * work.groups * groups * params.n * work.M
    items = col_tiles * _row_chunks(col_tiles, row_tiles, threads)
    return threads if items >= 2 and kept_macs >= NMGEMM_PARALLEL_MACS else 1


def _spmm(params, work: GemmWorkload):
    lanes = get_isa(params.isa).lanes
    block_rows = math.ceil(work.N / params.nr)
    kept = block_rows * _kept_blocks(work, params.kb)          # kept blocks over all block rows
    full = work.M // params.mr
    rest = work.M - full * params.mr
    vector = rest // lanes if params.mr > lanes else 0
    single = rest - vector * lanes if lanes > 1 else 0
    per_block = params.nr * params.kb
    # each kept block loads kb rows of X in place (rows M floats apart) through a loaded offset
    loops = [LoopWork(per_block * params.mr, full * kept * work.groups, params.kb)]
    if vector:
        loops.append(LoopWork(per_block * lanes, vector * kept * work.groups))
    if single:
        loops.append(LoopWork(per_block, single * kept * work.groups))
    pixel_tiles = full + vector + single
    parents = (pixel_tiles * block_rows * work.groups, pixel_tiles * work.groups)
    weight_bytes = block_rows * params.nr * FLOAT_BYTES + kept * (per_block * FLOAT_BYTES + 4) + block_rows * 4
    panel_bytes = work.K * params.mr * FLOAT_BYTES
    density_rows = min(1.0, kept * params.kb / max(block_rows * work.K, 1))
    streams = (memory_model.Stream("weights", work.groups * weight_bytes, max(pixel_tiles, 1)),
               memory_model.Stream("panel", panel_bytes, max(full, 1) * block_rows * work.groups,
                                   pass_bytes=panel_bytes * min(1.0, density_rows)),
               memory_model.Stream("output", work.groups * work.N * work.M * FLOAT_BYTES, 1))
    gather = None
    if full and lanes > 1:
        vector_bytes = lanes * FLOAT_BYTES
        gather = GatherShape(vector_bytes=vector_bytes, row_vectors=max(1, params.mr // lanes),
                             panel_rows=math.ceil(work.K / params.kb) * params.kb, group_rows=params.kb,
                             picks_per_group=params.kb, slots=min(params.nr, 4),
                             row_stride_bytes=work.M * FLOAT_BYTES,
                             group_density=min(1.0, work.density if work.sparse else 1.0))
    threads, chunks = _spmm_threads(params, work, kept, lanes)
    return tuple(loops), parents, streams, chunks, threads, gather, None


# spmm.c.j2 splits the pixels among its threads from this many kept MACs
SPMM_PARALLEL_MACS = 2e6


def _spmm_threads(params, work: GemmWorkload, kept: float, lanes: int) -> tuple[int, int]:
    """Returns (threads, pixel chunks) of spmm.c.j2's parallel loop (chunks of whole vectors,
    4 per thread at most)."""
    threads = max(1, getattr(params, "threads", 1))
    chunks = min(4 * threads, work.M // lanes)
    if threads < 2 or chunks < 2 or kept * params.nr * params.kb * work.M * work.groups < SPMM_PARALLEL_MACS:
        return 1, 1
    return threads, chunks


def _kept_blocks(work: GemmWorkload, kb: int) -> float:
    """Returns the kept blocks of kb input channels per block row at the workload's density."""
    blocks = math.ceil(work.K / kb)
    return blocks * (work.density if work.sparse else 1.0)


def _dwconv(rendered, geometry: DepthwiseGeometry) -> KernelSource:
    """templates/dwconv.c.j2: per channel, copy the plane into a zero-padded one (memset +
    a memcpy per row), then per output row a vector loop over ``lanes`` output columns
    (stride 1, and stride 2 from deinterleaved loads) and the rest as one masked vector
    (AVX2, AVX-512) or a scalar loop, which the compiler may vectorize."""
    params = rendered.params
    isa = get_isa(params.isa)
    lanes = isa.lanes
    taps = params.k * params.k
    c, h, w, pad = geometry.channels, geometry.height, geometry.width, geometry.pad
    out_h = (h + 2 * pad - params.k) // params.stride + 1
    out_w = (w + 2 * pad - params.k) // params.stride + 1
    threads = max(1, getattr(params, "threads", 1))     # dwconv.c.j2: over channels, from 1M MACs
    if c < 2 or c * out_h * out_w * taps < 1e6:
        threads = 1
    rows = c * out_h
    vector = out_w // lanes if params.stride in (1, 2) and lanes > 1 else 0
    tail = out_w - vector * lanes
    # the flavours with masked loads and stores end a row with a masked vector
    masked = params.stride in (1, 2) and isa.masked_tails
    loops = []
    if masked:
        # the masked tail is one more vector iteration per row, straight-line code in the
        # row loop: costed as a vector-loop iteration, so the row loop's own body is not
        # counted again (its loop control is a few instructions)
        loops.append(LoopWork(taps * lanes, rows * (vector + (1 if tail else 0))))
    else:
        if vector:
            loops.append(LoopWork(taps * lanes, rows * vector))
        if tail:
            loops.append(LoopWork(taps, rows * tail, trips_per_entry=tail))
    padded_bytes = (h + 2 * pad) * (w + 2 * pad) * FLOAT_BYTES
    streams = (memory_model.Stream("weights", c * taps * FLOAT_BYTES, 1),
               memory_model.Stream("panel", c * h * w * FLOAT_BYTES + c * padded_bytes, 1),
               memory_model.Stream("output", c * out_h * out_w * FLOAT_BYTES, 1))
    return KernelSource(family="dwconv", simd=isa.level.name, schedule=KernelSchedule(lanes, 1),
                        function=rendered.name, c_source=rendered.source, loops=tuple(loops),
                        parent_trips=(0 if masked else rows, c), streams=streams, memory_tiles=1, parallel_units=c if threads > 1 else 1,
                        threads=threads, origin="codegen",
                        # per channel: the memset of the padded plane (costed as a copy of one
                        # plane-sized row: the probe copies, a memset only writes, so an upper
                        # bound) and the memcpy of each input row into it
                        pack=(PackShape(rows=1, row_bytes=padded_bytes, stride_bytes=padded_bytes, tiles=c),
                              PackShape(rows=h, row_bytes=w * FLOAT_BYTES, stride_bytes=w * FLOAT_BYTES,
                                        tiles=c)))
