"""What a kernel does for one workload: its multiplying loops, the loops around them, its
memory streams, indexed row loads and packing copies, as counts from the kernel's own loop
bounds.

Every family module (codegen/kernels/<family>.py) returns a ``KernelWork`` from its
``work(params, workload, geometry)``; the CPU cost model (hwsim/cpu) reads it and costs each
loop with llvm-mca, the streams with its memory model, the gathers and copies with its host
probes. The cost model mirrors no family: what the kernel runs is said once, beside its
template.

    >>> work = nmgemm.work(NmGemmParams(2, 8, "avx2", mr=4, nr=24, unroll=2), workload)
    >>> work.loops[0]          # the unrolled group loop of the full tile
    LoopWork(mac_lanes=384, iterations=..., gathers=16)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FLOAT_BYTES = 4


@dataclass(frozen=True)
class MemoryOps:
    """The vector loads and stores ``iterations`` iterations of a loop issue, each as
    (bytes, byte offset past a 64-byte line start), where the core's cost depends on
    alignment: a load or store whose 32-byte half crosses a line takes two L1 accesses on
    Zen, a line-crossing store more (hwsim.cpu.gather_bench.memory_ops_cycles measures the
    mix on the host)."""
    loads: tuple[tuple[int, int], ...]
    stores: tuple[tuple[int, int], ...]
    iterations: int = 1


def memory_ops(loads: dict, stores: dict, iterations: int, period: int = 16) -> MemoryOps:
    """Returns the MemoryOps of a loop from histograms {(bytes, offset): count} over
    ``iterations`` iterations, scaled to ``period`` iterations (counts rounded; the probe runs
    whole instructions)."""
    def scaled(histogram: dict) -> tuple[tuple[int, int], ...]:
        # largest remainders: the counts add up to the rounded total, however many offsets
        # share it (rounding each alone lost 5 of 16 stores spread over 16 offsets)
        exact = {key: count * period / max(iterations, 1) for key, count in sorted(histogram.items())}
        counts = {key: math.floor(value) for key, value in exact.items()}
        left = round(sum(exact.values())) - sum(counts.values())
        for key in sorted(exact, key=lambda key: counts[key] - exact[key])[:max(0, left)]:
            counts[key] += 1
        return tuple(op for (size, offset), count in counts.items() for op in [(size, offset % 64)] * count)
    return MemoryOps(scaled(loads), scaled(stores), period)


@dataclass(frozen=True)
class LoopWork:
    """One multiplying innermost loop of a kernel: lanes per iteration and total iterations.

    ``mac_lanes`` is what one iteration of the *source* loop multiplies; the compiled loop
    with that many lanes (or a multiple, when the compiler unrolled it) is costed."""
    mac_lanes: int
    iterations: float
    gathers: int = 0         # rows fetched through a loaded index per iteration (gather_bench)
    # > 0: a scalar source loop of this many trips per entry that the compiler may have
    # vectorized (mac_lanes x V lanes per compiled iteration, a scalar remainder after it)
    trips_per_entry: int = 0
    # a loop that multiplies nothing but divides once or more per iteration: a KxK
    # convolution's im2col gather ((pixel) / out_w per element); the kernel's innermost
    # dividing loop with the fewest divisions is costed
    divides: bool = False
    # its vector loads and stores with their alignment (None: all line-aligned, or unknown)
    memory_ops: MemoryOps | None = None


@dataclass(frozen=True)
class Stream:
    """One operand's traffic: ``footprint_bytes`` read ``passes`` times, reusable iff it fits."""
    name: str
    footprint_bytes: float
    passes: int
    pass_bytes: float | None = None    # bytes one re-read touches (sparse: only rows with nonzeros)


@dataclass(frozen=True)
class GatherShape:
    """One kernel's gathered-row access: the panel and what each pick loads."""
    vector_bytes: int          # 16 (SSE / wasm SIMD128 under Cranelift), 32 (AVX2), 64 (AVX-512)
    row_vectors: int           # vectors loaded per picked row
    panel_rows: int            # rows of the panel one sweep walks
    group_rows: int            # rows per group a pick is drawn from (N:M's m)
    picks_per_group: int       # picks per group per sweep (mr x n)
    slots: int                 # independent accumulator rows (register tile rows, at most 4)
    row_stride_bytes: int = 0  # bytes between rows (0: rows are contiguous, a packed panel)
    group_density: float = 1.0 # share of groups with picks (block sparsity: kept blocks)


@dataclass(frozen=True)
class PackShape:
    """A kernel's panel packing: ``tiles`` times, copy ``row_bytes`` from each of ``rows`` rows
    ``stride_bytes`` apart (codegen nmgemm: memcpy of NR pixels of each of k rows of X)."""
    rows: int
    row_bytes: int
    stride_bytes: int
    tiles: int


@dataclass(frozen=True)
class KernelWork:
    """One workload's run of one kernel variant.

    loops: every multiplying innermost loop with its iterations (the full tile's first);
    parent_trips: entries of the loops around the first one, innermost first; streams: the
    memory traffic of the kernel's blocking, counted over ``memory_tiles`` pixel tiles;
    parallel_units: independent work items the kernel's ``threads`` share; gather: its
    indexed row loads (None: none); pack: its memcpy packing (a PackShape or a tuple of
    them); tile_stores: vector stores of the output tile (or its running sums) per entry of
    the first parent; tile_loads / tile_sums_bytes: the running sums read back (see below);
    pixel_tile x row_tile: the register tile (pixels x output channels)."""
    loops: tuple[LoopWork, ...]
    parent_trips: tuple[float, ...]
    streams: tuple[Stream, ...]
    pixel_tile: int
    row_tile: int
    memory_tiles: int = 1
    parallel_units: int = 1
    threads: int = 1
    gather: GatherShape | None = None
    pack: PackShape | tuple[PackShape, ...] | None = None
    tile_stores: float = 0.0
    # a tile whose reduction is cut in blocks keeps running sums between them: vector loads
    # of them per entry of the first parent (on average over the blocks), and the bytes of
    # the running-sum buffer one thread walks (where those loads come from: L1 or beyond)
    tile_loads: float = 0.0
    tile_sums_bytes: int = 0


def im2col_runs_per_tile(tile_pixels: int, pixels: int, geometry=None) -> float:
    """Returns the runs along output rows a tile of ``tile_pixels`` consecutive output pixels
    falls in (an im2col gather does one division per run): a new run at each row it crosses.
    The output width is the geometry's, else the side of a square output of ``pixels``."""
    side = math.isqrt(pixels)
    out_w = getattr(geometry, "width", None) or (side if side * side == pixels else pixels)
    return min(tile_pixels, 1 + (tile_pixels - 1) / max(1, out_w))
