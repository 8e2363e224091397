"""Tiles, buffers and DRAM: bytes moved per fold and the stalls a finite link causes.

A GEMM C(MxN) = A(MxK) . B(KxN) runs as a grid of folds (``row_folds`` x
``col_folds``, from ``hwsim.dataflow.plan_folds``). Each operand is cut along the
fold axes the dataflow maps its dimensions to:

    dataflow   rows<-  cols<-   A (ifmap)   B (filter)   C (ofmap)
    os         M       N        row         col          tile (finished in the PEs)
    ws         K       N        row         tile         col  (partial sums over K)
    is         K       M        tile        row          col  (partial sums over K)

The folds run in a loop order (``outer`` axis, then ``inner``). Reuse is what the
buffers can hold, with half of each buffer kept free for the next tile (double
buffering):

    operand cut along the outer axis   its tile for one outer fold stays resident
                                       across the inner folds if it fits in half its
                                       buffer (and the next one streams into the other
                                       half meanwhile), else it is fetched every fold;
    operand cut along the inner axis   the whole operand stays resident across outer
                                       folds if it fits, else it is fetched every fold;
    tile operand                       fetched (or, for OS's C, written) once per fold;
    accumulating output (ws, is)       written once when its resident set fits in half
                                       the ofmap buffer, else partial sums spill: a
                                       write every fold and a read on every revisit.

All of it is numpy over the (outer x inner) fold grid: no per-cycle loops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AXES = ("row", "col")


@dataclass(frozen=True)
class Operand:
    """One GEMM operand as the memory system sees it.

    ``footprint_bytes``: what it occupies in its SRAM (compressed when sparse).
    ``dram_bytes``: what one full fetch moves from DRAM (dense when N:M weights are
    selected on the fly). ``cut``: 'row', 'col' or 'tile' (see the module table).
    ``accumulates``: an output whose partial sums must survive across folds.
    ``array_bytes``: what one pass of the array reads (defaults to the footprint;
    larger for an im2col matrix, which the SRAM holds as the raw feature map)."""
    role: str
    cut: str
    footprint_bytes: float
    dram_bytes: float
    buffer_bytes: int
    is_output: bool = False
    accumulates: bool = False
    array_bytes: float | None = None

    @property
    def pass_bytes(self) -> float:
        return self.footprint_bytes if self.array_bytes is None else self.array_bytes


@dataclass(frozen=True)
class FoldTraffic:
    """Per-fold DRAM loads/stores in schedule order (representative folds, each
    standing for ``weights`` folds), and the GEMM's byte totals."""
    outer: str
    load_bytes: np.ndarray
    store_bytes: np.ndarray
    weights: np.ndarray
    loads_by_role: dict
    sram_bytes: float
    dram_bytes: float


@dataclass(frozen=True)
class FoldAxis:
    """The folds along one array axis, run-length compressed.

    Folds 3 .. count-4 are identical and so are their neighbours two back (a
    fold's wait depends on its own load, the previous fold's compute and the store
    of the one before: ``stall_cycles``), so one representative with ``weights`` =
    their number stands for all of them; the others (first three, last three:
    first-fold loads, the partial last tile, and prefetches of it) are kept one by
    one. Timelines over the representatives, weighted, equal timelines over every
    fold (tests/test_engine.py checks it against uncompressed axes)."""
    fractions: np.ndarray
    weights: np.ndarray
    count: int


def fold_axis(dim: int, tile: int, folds: int) -> FoldAxis:
    """Returns the share of ``dim`` each fold covers (full tiles, a partial last one), compressed.

    >>> axis = fold_axis(330, 32, 11)
    >>> axis.weights.tolist(), round(float((axis.fractions * axis.weights).sum()), 9)
    ([1, 1, 1, 5, 1, 1, 1], 1.0)
    """
    last = dim - tile * (folds - 1)
    if folds < 8:
        sizes = np.full(folds, float(tile))
        sizes[-1] = last
        return FoldAxis(sizes / dim, np.ones(folds, dtype=np.int64), folds)
    # folds 0, 1, 2, 3, folds-3, folds-2 are full tiles, folds-1 the partial one: built
    # directly, so memory does not grow with the fold count (--batch 65536: 200 MB before)
    sizes = np.array([float(tile)] * 6 + [float(last)])
    weights = np.array([1, 1, 1, folds - 6, 1, 1, 1], dtype=np.int64)
    return FoldAxis(sizes / dim, weights, folds)


def default_outer(dataflow: str) -> str:
    """Returns SCALE-Sim's loop order: column folds outer, row folds inner, every dataflow."""
    return "col"


def fold_traffic(row_axis: FoldAxis, col_axis: FoldAxis,
                 operands: list[Operand], outer: str) -> FoldTraffic:
    """Returns the DRAM bytes each fold loads and stores, in (outer, inner) order.

    >>> a = Operand("A", "row", 100, 100, 1000); b = Operand("B", "col", 100, 100, 1000)
    >>> c = Operand("C", "tile", 100, 100, 1000, is_output=True)
    >>> halves = fold_axis(2, 1, 2)
    >>> t = fold_traffic(halves, halves, [a, b, c], "row")
    >>> t.load_bytes.tolist(), t.store_bytes.tolist()    # both fit: read once, A prefetched
    ([125.0, 75.0, 0.0, 0.0], [25.0, 25.0, 25.0, 25.0])
    """
    axes = {"row": row_axis, "col": col_axis}
    inner = "col" if outer == "row" else "row"
    outer_fractions, inner_fractions = axes[outer].fractions, axes[inner].fractions
    counts = (axes[outer].count, axes[inner].count)
    grid = (len(outer_fractions), len(inner_fractions))
    first_inner = np.zeros(grid, dtype=bool)
    first_inner[:, 0] = True
    first_outer = np.zeros(grid, dtype=bool)
    first_outer[0, :] = True
    last_inner = np.zeros(grid, dtype=bool)
    last_inner[:, -1] = True
    last_outer = np.zeros(grid, dtype=bool)
    last_outer[-1, :] = True
    every = np.ones(grid, dtype=bool)

    loads = np.zeros(grid)
    stores = np.zeros(grid)
    loads_by_role: dict[str, np.ndarray] = {}
    sram_bytes = 0.0
    for operand in operands:
        if operand.cut == "tile":
            share = np.outer(outer_fractions, inner_fractions)
            resident_share, fits = None, True
            first, last = every, every
        elif operand.cut == outer:
            share = np.repeat(outer_fractions[:, None], grid[1], axis=1)
            resident_share = outer_fractions.max()
            first, last = first_inner, last_inner
        else:
            share = np.repeat(inner_fractions[None, :], grid[0], axis=0)
            resident_share = 1.0
            first, last = first_outer, last_outer
        if resident_share is not None:
            fits = resident_share * operand.footprint_bytes <= operand.buffer_bytes / 2
        spread = fits and operand.cut == outer
        if not operand.is_output:
            if spread:
                # Double buffering at the reused tile: outer tile o+1 streams in
                # while the inner folds of outer tile o compute.
                fetched = _spread_ahead(outer_fractions * operand.dram_bytes, grid[1], counts[1])
            else:
                fetched = share * operand.dram_bytes * (first if fits else every)
            loads += fetched
            loads_by_role[operand.role] = fetched.ravel()
            # The array reads the operand once per fold it takes part in.
            sram_bytes += operand.pass_bytes * _array_passes(operand.cut, outer, counts)
        elif spread:
            # A finished outer tile drains while the next outer tile computes.
            stores += _spread_behind(outer_fractions * operand.dram_bytes, grid[1], counts[1])
            sram_bytes += operand.pass_bytes * (2 * _array_passes(operand.cut, outer, counts) - 1)
        elif not operand.accumulates or fits:
            stores += share * operand.dram_bytes * (last if operand.cut != "tile" else every)
            sram_bytes += operand.pass_bytes * (
                1 if operand.cut == "tile" else 2 * _array_passes(operand.cut, outer, counts) - 1)
        else:
            # Partial sums spill: every fold writes its share back, every revisit reads it.
            stores += share * operand.dram_bytes
            loads += share * operand.dram_bytes * ~first
            sram_bytes += operand.pass_bytes * (2 * _array_passes(operand.cut, outer, counts) - 1)
    weights = np.outer(axes[outer].weights, axes[inner].weights).ravel()
    load_flat, store_flat = loads.ravel(), stores.ravel()
    dram_bytes = float(((load_flat + store_flat) * weights).sum())
    return FoldTraffic(outer, load_flat, store_flat, weights, loads_by_role,
                       sram_bytes + dram_bytes, dram_bytes)


def _spread_ahead(tile_bytes: np.ndarray, inner_reps: int, inner_folds: int) -> np.ndarray:
    """Returns a fold grid where outer tile o+1's bytes load evenly during outer tile o.

    Tile 0 loads before the first fold (``load[0]``)."""
    grid = np.zeros((len(tile_bytes), inner_reps))
    grid[0, 0] = tile_bytes[0]
    grid[:-1, :] += tile_bytes[1:, None] / inner_folds
    return grid


def _spread_behind(tile_bytes: np.ndarray, inner_reps: int, inner_folds: int) -> np.ndarray:
    """Returns a fold grid where outer tile o's bytes drain evenly during outer tile o+1.

    The last tile drains after the last fold (charged to the last fold's store)."""
    grid = np.zeros((len(tile_bytes), inner_reps))
    grid[1:, :] += tile_bytes[:-1, None] / inner_folds
    grid[-1, -1] += tile_bytes[-1]
    return grid


def _array_passes(cut: str, outer: str, grid: tuple[int, int]) -> int:
    """Returns how many folds use each element of an operand cut along ``cut``."""
    if cut == "tile":
        return 1
    # An operand cut along one axis is used by every fold of the other axis.
    return grid[1] if cut == outer else grid[0]


def transfer_cycles(load_bytes: np.ndarray, store_bytes: np.ndarray, bytes_per_cycle: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (load, store) cycles per fold over a link of ``bytes_per_cycle``."""
    return load_bytes / bytes_per_cycle, store_bytes / bytes_per_cycle


def stall_cycles(load_cycles: np.ndarray, store_cycles: np.ndarray, compute_cycles: np.ndarray,
                 overlap: bool) -> np.ndarray:
    # (On run-length compressed folds the entries are per representative fold; the
    # caller multiplies by the weights: a run of identical folds waits identically.)
    """Returns the cycles spent waiting on DRAM before each fold, plus a final drain entry.

    Overlapped (double buffering, offline schedule): while fold f computes, the link
    loads fold f+1's inputs and drains fold f-1's outputs, so the wait after fold f is
        max(0, load[f+1] + store[f-1] - compute[f]);
    fold 0's load is exposed, and the last store drains after the last fold. Not
    overlapped: every transfer serialises with compute, wait = load[f] + store[f].
    Entry f is the wait before fold f; the extra last entry is the drain at the end.

    >>> stall_cycles(np.array([4., 4.]), np.array([1., 1.]), np.array([10., 10.]), True).tolist()
    [4.0, 0.0, 1.0]
    """
    if len(compute_cycles) == 0:
        return np.zeros(1)
    if not overlap:
        return np.append(load_cycles + store_cycles, 0.0)
    next_load = np.append(load_cycles[1:], 0.0)
    previous_store = np.concatenate(([0.0], store_cycles[:-1]))
    wait_after = np.maximum(0.0, next_load + previous_store - compute_cycles)
    stalls = np.concatenate(([load_cycles[0]], wait_after))
    stalls[-1] += store_cycles[-1]
    return stalls
