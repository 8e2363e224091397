"""Bytes a blocked GEMM moves across each cache boundary, as a lower bound on its time.

For the tiled loop nest of the kernels (kernels.py): for each m-tile of MR
pixels, for each block of NR output channels, stream the block's weights and
FMA them with the tile's K x MR activation panel. Per operand:

    weights W   re-read once per m-tile: passes = ceil(M / MR); held between
                passes iff W fits in the level
    panel  X    K x MR x 4 bytes, reused by all N / NR blocks of its m-tile;
                the whole of X crosses each boundary once when the panel fits,
                else each block re-reads the panel rows it uses (all K rows
                dense; K x density rows sparse) from the level that holds it;
                sparse re-reads touch varying subsets of rows, so a fraction
                (usable share of the level / panel) of them still hits
    output Y    written once (N x M x 4 bytes); twice across a level it does not fit
                (read for ownership, then written back: ordinary stores allocate lines)

A stream with footprint F and P passes moves F bytes across a boundary when F
fits in the level above it (<= half its capacity, leaving room for the other
operands and conflict misses), else P x F bytes. Traffic from DRAM also counts
weights once (cold, unless ``warm_weights``: a benchmark that reruns one layer
keeps them cached) and activations unless they fit the last-level cache
(the previous layer left them there).

Time at a level = bytes / bandwidth (bytes per core cycle). DRAM bandwidth
comes from the target (dram_gbps / clock); cache fill bandwidths are not in the
target YAML yet: defaults are one cache line every 2 cycles into L1 and every 4
into L2 (``CacheBandwidths``; pass others to override). L1 itself is not a
level here: loads from L1 are instructions llvm-mca already schedules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from codegen.kernels.work import Stream   # a kernel family's streams, as its module states them

FLOAT_BYTES = 4
INDEX_BYTES = 4            # int32 byte diffs in the fallback kernels
FIT_FRACTION = 0.5         # a stream "fits" a level when it takes at most this share of it


@dataclass(frozen=True)
class CacheBandwidths:
    """Fill bandwidth into each level, bytes per core cycle (l2 = L2 -> L1, l3 = L3 -> L2)."""
    l2: float
    l3: float

    @classmethod
    def default(cls, cache_line_bytes: int) -> "CacheBandwidths":
        return cls(l2=cache_line_bytes / 2, l3=cache_line_bytes / 4)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes into each level (from below) and the cycles they need at that level's bandwidth."""
    bytes_by_level: dict
    cycles_by_level: dict

    @property
    def cycles(self) -> float:
        return max(self.cycles_by_level.values(), default=0.0)

    @property
    def bottleneck(self) -> str:
        return max(self.cycles_by_level, key=self.cycles_by_level.get) if self.cycles_by_level else "none"


def gemm_streams(M: int, N: int, K: int, density: float, mr: int, nr: int, sparse: bool,
                 groups: int = 1) -> tuple[Stream, ...]:
    """Returns the weight, panel and output streams of the tiled sparse/dense GEMM."""
    m_tiles = math.ceil(M / mr)
    n_blocks = math.ceil(N / nr)
    if sparse:
        positions = n_blocks * K * density                # nonzero positions, NR values each
        weight_bytes = positions * (nr * FLOAT_BYTES + INDEX_BYTES) + n_blocks * INDEX_BYTES
    else:
        weight_bytes = N * K * FLOAT_BYTES
    panel_bytes = K * mr * FLOAT_BYTES
    return (Stream("weights", groups * weight_bytes, m_tiles),
            Stream("panel", panel_bytes, n_blocks * m_tiles * groups,
                   pass_bytes=panel_bytes * min(1.0, density) if sparse else panel_bytes),
            Stream("output", groups * N * M * FLOAT_BYTES, 1))


def _level_bytes(streams: tuple[Stream, ...], capacity_bytes: float, m_tiles: int) -> float:
    """Returns the bytes that cross into a level of ``capacity_bytes`` from the level below."""
    total = 0.0
    for stream in streams:
        fits = stream.footprint_bytes <= FIT_FRACTION * capacity_bytes
        if stream.name == "panel":
            # the panel is X split into m-tiles: all of X once when a panel stays resident
            blocks_per_tile = stream.passes // max(m_tiles, 1)
            reread = stream.pass_bytes if stream.pass_bytes is not None else stream.footprint_bytes
            if fits:
                total += stream.footprint_bytes * m_tiles
            elif reread < stream.footprint_bytes:
                # sparse passes touch a different subset of the panel's rows each time: with
                # LRU a touched row is still there with the chance that it fits the share
                # of the level the panel may use (a cyclic dense sweep gets no such hits)
                hit = min(1.0, FIT_FRACTION * capacity_bytes / stream.footprint_bytes)
                total += stream.footprint_bytes * m_tiles + reread * (1.0 - hit) * m_tiles * max(
                    blocks_per_tile - 1, 0)
            else:
                total += reread * m_tiles * blocks_per_tile
        elif stream.name == "output":
            # a stored line that does not stay in the level is read for ownership and
            # written back when evicted: twice its bytes across the boundary
            total += stream.footprint_bytes * (1 if fits else 2)
        else:
            total += stream.footprint_bytes * (1 if fits else stream.passes)
    return total


def estimate(streams: tuple[Stream, ...], m_tiles: int, caches_kb: dict, cache_line_bytes: int,
             dram_bytes_per_cycle: float, cores: int = 1, warm_weights: bool = False,
             bandwidths: CacheBandwidths | None = None) -> MemoryEstimate:
    """Returns bytes and cycles per level for the streams on one machine.

    L1 and L2 are private (their bandwidth scales with ``cores``); L3 and DRAM are shared."""
    bandwidths = bandwidths or CacheBandwidths.default(cache_line_bytes)
    levels = [(name, size) for name, size in (("l1d", caches_kb.get("l1d")), ("l2", caches_kb.get("l2")),
                                              ("l3", caches_kb.get("l3"))) if size]
    bytes_by_level: dict[str, float] = {}
    cycles_by_level: dict[str, float] = {}
    fill_rate = {"l1d": bandwidths.l2 * cores, "l2": bandwidths.l3 * cores, "l3": dram_bytes_per_cycle}
    for index, (name, size_kb) in enumerate(levels):
        moved = _level_bytes(streams, size_kb * 1024, m_tiles)
        bytes_by_level[name] = moved
        rate = fill_rate[name] if index + 1 < len(levels) else dram_bytes_per_cycle
        cycles_by_level[name] = moved / rate
    # DRAM: compulsory traffic into the last level.
    last_kb = levels[-1][1] if levels else 0
    dram = 0.0
    for stream in streams:
        fits_llc = stream.footprint_bytes <= FIT_FRACTION * last_kb * 1024
        if stream.name == "weights":
            dram += 0.0 if (warm_weights and fits_llc) else stream.footprint_bytes * (1 if fits_llc else stream.passes)
        elif stream.name == "panel":
            x_bytes = stream.footprint_bytes * m_tiles
            dram += 0.0 if x_bytes <= FIT_FRACTION * last_kb * 1024 else x_bytes
        else:
            dram += 0.0 if fits_llc else 2 * stream.footprint_bytes
    bytes_by_level["dram"] = dram
    cycles_by_level["dram"] = dram / dram_bytes_per_cycle
    if levels:
        # the last cache's fill is the DRAM traffic just computed, not a re-derived figure
        bytes_by_level.pop(levels[-1][0])
        cycles_by_level.pop(levels[-1][0])
    return MemoryEstimate(bytes_by_level, cycles_by_level)
