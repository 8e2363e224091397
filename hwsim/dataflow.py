"""How a GEMM folds onto a systolic array, and how many cycles that takes.

Closed forms that equal SCALE-Sim 3.0.0 (``pip install scalesim==3.0.0``) cycle for
cycle on a stall-free run, without generating its per-cycle demand matrices.

A GEMM is M x N x K: M output pixels (x batch), N filters, K = Cin*R*S, as
``models.lowering`` produces it. Each dataflow maps two GEMM dimensions onto the
array's rows and columns (spatial, Sr and Sc) and streams the third through time (T)
(SCALE-Sim's topology_utils.calc_spatio_temporal_params):

    dataflow   Sr (array rows)   Sc (array cols)   T (time)
    os         M                 N                 K
    ws         K                 N                 M
    is         K                 M                 N

The GEMM is cut into ceil(Sr/rows) x ceil(Sc/cols) folds, run one after another
(column fold outer, row fold inner). Each fold occupies a fixed number of cycles,
whatever its edge folds leave unused, because SCALE-Sim pads every fold to the full
array. The per-fold length is the row count of one fold of its demand matrices:

    os  T + rows + cols - 2       compute/systolic_compute_os.py: each fold streams T
                                  operand rows, waits cols-1 rows for the outputs to
                                  drain, and the skew of the pipeline fill adds rows-1
    ws  2*rows + cols + T - 2     compute/systolic_compute_ws.py: rows cycles to load
    is  2*rows + cols + T - 2     the stationary operand, T streamed, cols-1 drain and
                                  rows-1 skew (compute/systolic_compute_is.py has the
                                  same shape with the ifmap stationary)

SCALE-Sim's COMPUTE_REPORT.csv "Total Cycles" is the cycle at which the last ofmap
demand row is serviced (memory/double_buffered_scratchpad_mem.py,
service_memory_requests: max of the serviced cycles, rows numbered from 0), so
without stalls a layer reports one less than the sum of its folds:

    compute_cycles = row_folds * col_folds * cycles_per_fold - 1

SRAM traffic (the element requests SCALE-Sim's DETAILED_ACCESS_REPORT.csv counts):
an operand that streams through time is re-read by every fold along the other
spatial axis; the stationary one is read once.

    os  ifmap = col_folds*M*K   filter = row_folds*K*N   ofmap = M*N
    ws  ifmap = col_folds*M*K   filter = K*N             ofmap = row_folds*M*N (partial sums)
    is  ifmap = M*K             filter = col_folds*K*N   ofmap = row_folds*M*N (partial sums)

(for os SCALE-Sim adds rows+cols per fold to its ofmap count, an artefact of how it
tallies padded folds: ``scalesim_ofmap_sram_writes`` reproduces it, ``ofmap_writes`` does not.)

tests/test_scalesim_equivalence.py checks all of this against the tool itself
(random conv and GEMM layers, arrays from 1x1 to 32x32, all three dataflows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np



# The GEMM dimensions each operand spans: A (ifmap, M x K), B (filter, K x N), C (ofmap, M x N).
OPERAND_DIMS = {"A": ("M", "K"), "B": ("K", "N"), "C": ("M", "N")}


@dataclass(frozen=True)
class Dataflow:
    """One dataflow, stated once: which GEMM dimension goes on the array's rows, on its
    columns and through time (SCALE-Sim's topology_utils.calc_spatio_temporal_params, the
    table in the module docstring). Everything else follows from those three:

    - ``cuts``: the fold axis that cuts each operand. One that spans the temporal
      dimension streams through the array along the axis of its other dimension ('row'
      or 'col': re-read by every fold along the other axis); the one that does not is
      stationary ('tile': it stays in the PEs, read, or for C written, once per fold).
    - ``preloads``: the stationary operand is an input, loaded (``rows`` cycles) before
      the others stream (ws, is); os keeps its outputs stationary and preloads nothing.

    >>> DATAFLOW_SPECS["ws"].cuts
    {'A': 'row', 'B': 'tile', 'C': 'col'}
    """
    name: str
    spatial_rows: str          # the GEMM dimension (M, N or K) on the array rows
    spatial_cols: str          # ... on the array columns
    temporal: str              # ... streamed through time

    @property
    def cuts(self) -> dict[str, str]:
        """Returns {operand: 'row' | 'col' | 'tile'}, the fold axis that cuts it."""
        def cut(dims: tuple[str, str]) -> str:
            if self.temporal not in dims:
                return "tile"
            return "row" if self.spatial_rows in dims else "col"
        return {role: cut(dims) for role, dims in OPERAND_DIMS.items()}

    @property
    def preloads(self) -> bool:
        return self.cuts["C"] != "tile"

    def dims(self, M: int, N: int, K: int) -> tuple[int, int, int]:
        """Returns (Sr, Sc, T): the GEMM's extents on array rows, array columns and time."""
        extent = {"M": M, "N": N, "K": K}
        return extent[self.spatial_rows], extent[self.spatial_cols], extent[self.temporal]

    def cycles_per_fold(self, rows: int, cols: int, temporal: int) -> int:
        """Returns one fold's cycles: T streamed, cols-1 drain, rows-1 skew (+ rows preload)."""
        return temporal + rows + cols - 2 + (rows if self.preloads else 0)


# The one definition of the dataflows (arch files, engine, mapper and tests read it).
DATAFLOW_SPECS: dict[str, Dataflow] = {
    "os": Dataflow("os", spatial_rows="M", spatial_cols="N", temporal="K"),
    "ws": Dataflow("ws", spatial_rows="K", spatial_cols="N", temporal="M"),
    "is": Dataflow("is", spatial_rows="K", spatial_cols="M", temporal="N"),
}
DATAFLOWS = tuple(DATAFLOW_SPECS)


def dataflow_spec(name: str) -> Dataflow:
    """Returns the record of dataflow ``name`` (ValueError when there is none)."""
    try:
        return DATAFLOW_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataflow {name!r}; expected one of {DATAFLOWS}") from None


@dataclass(frozen=True)
class FoldRequests:
    """Per-fold SRAM element requests in SCALE-Sim's fold order (column fold outer); the
    DRAM bytes per fold, which depend on the buffers, are ``hwsim.memory.FoldTraffic``.

    Each array has one entry per fold: rows/cols of the array it uses, and the
    ifmap (M x K operand) and filter (K x N operand) elements it reads from SRAM and
    the ofmap (M x N) elements it writes."""
    rows_used: np.ndarray
    cols_used: np.ndarray
    ifmap_reads: np.ndarray
    filter_reads: np.ndarray
    ofmap_writes: np.ndarray


@dataclass(frozen=True)
class FoldPlan:
    """How one M x N x K GEMM maps onto a rows x cols array under one dataflow.

    ``compute_cycles`` equals SCALE-Sim 3.0.0's per-layer "Total Cycles" on a
    stall-free run; ``cycles_per_fold`` x folds is the busy time of the array
    (one more than ``compute_cycles``, see the module docstring)."""
    dataflow: str
    rows: int
    cols: int
    M: int
    N: int
    K: int
    spatial_rows: int
    spatial_cols: int
    temporal: int
    row_folds: int
    col_folds: int
    cycles_per_fold: int
    compute_cycles: int
    ifmap_reads: int
    filter_reads: int
    ofmap_writes: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K

    @property
    def utilization(self) -> float:
        """Returns MACs / (PEs x compute_cycles): SCALE-Sim's "Overall Util %" / 100."""
        return self.macs / (self.rows * self.cols * self.compute_cycles)

    @property
    def mapping_efficiency(self) -> float:
        """Returns the mean over folds of the PEs holding work: "Mapping Efficiency %" / 100."""
        return self.spatial_rows * self.spatial_cols / (self.folds * self.rows * self.cols)

    @property
    def scalesim_ofmap_sram_writes(self) -> int:
        """Returns SCALE-Sim's "SRAM OFMAP Writes", including its os per-fold artefact."""
        if self.dataflow == "os":
            return self.ofmap_writes + self.folds * (self.rows + self.cols)
        return self.ofmap_writes

    def fold_requests(self) -> FoldRequests:
        """Returns the per-fold array use and SRAM traffic (numpy, one entry per fold).

        Sums equal ``ifmap_reads``, ``filter_reads`` and ``ofmap_writes``."""
        rows_used = _tile_sizes(self.spatial_rows, self.rows)
        cols_used = _tile_sizes(self.spatial_cols, self.cols)
        # column fold outer, row fold inner (every systolic_compute_*.py loops so)
        rows_used = np.tile(rows_used, self.col_folds)
        cols_used = np.repeat(cols_used, self.row_folds)
        by_cut = {"tile": rows_used * cols_used, "row": self.temporal * rows_used,
                  "col": self.temporal * cols_used}
        cuts = dataflow_spec(self.dataflow).cuts
        return FoldRequests(rows_used, cols_used, by_cut[cuts["A"]], by_cut[cuts["B"]],
                           by_cut[cuts["C"]])


def _tile_sizes(extent: int, tile: int) -> np.ndarray:
    """Returns the sizes of the ceil(extent/tile) tiles that cover ``extent``."""
    count = math.ceil(extent / tile)
    sizes = np.full(count, tile, dtype=np.int64)
    sizes[-1] = extent - tile * (count - 1)
    return sizes


def spatio_temporal(M: int, N: int, K: int, dataflow: str) -> tuple[int, int, int]:
    """Returns (Sr, Sc, T): the GEMM dims on array rows, array cols and time."""
    return dataflow_spec(dataflow).dims(M, N, K)


def plan_folds(M: int, N: int, K: int, rows: int, cols: int, dataflow: str) -> FoldPlan:
    """Returns the fold plan and SCALE-Sim-exact compute cycles of an M x N x K GEMM.

    >>> plan_folds(25, 5, 27, rows=4, cols=6, dataflow="os").compute_cycles
    244
    >>> plan_folds(25, 5, 27, rows=4, cols=6, dataflow="ws").compute_cycles
    258
    """
    for name, value in (("M", M), ("N", N), ("K", K), ("rows", rows), ("cols", cols)):
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1")
    spec = dataflow_spec(dataflow)
    spatial_rows, spatial_cols, temporal = spec.dims(M, N, K)
    row_folds = math.ceil(spatial_rows / rows)
    col_folds = math.ceil(spatial_cols / cols)
    cycles_per_fold = spec.cycles_per_fold(rows, cols, temporal)
    compute_cycles = row_folds * col_folds * cycles_per_fold - 1
    # A streaming operand is re-read by every fold along the other axis (module docstring).
    rereads = {"row": col_folds, "col": row_folds, "tile": 1}
    ifmap, filt, ofmap = (rereads[spec.cuts[role]] * size
                          for role, size in (("A", M * K), ("B", K * N), ("C", M * N)))
    return FoldPlan(dataflow=dataflow, rows=rows, cols=cols, M=M, N=N, K=K,
                    spatial_rows=spatial_rows, spatial_cols=spatial_cols, temporal=temporal,
                    row_folds=row_folds, col_folds=col_folds,
                    cycles_per_fold=cycles_per_fold, compute_cycles=compute_cycles,
                    ifmap_reads=ifmap, filter_reads=filt, ofmap_writes=ofmap)


def sparse_reduction(K: int, n: int, m: int) -> int:
    """Returns the reduction length an N:M sparse GEMM costs: ceil(K/m) groups x n.

    SAT's PEs pick, per group of m reduction steps, the n nonzero weights' matching
    activations, so a group costs n MAC cycles (SAT.md). Pass the result as K to
    ``plan_folds`` to time the sparse GEMM (a partial last group still costs n).

    >>> sparse_reduction(64, 2, 8)
    16
    """
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got {n}:{m}")
    if K < 1:
        raise ValueError(f"K={K} must be >= 1")
    return math.ceil(K / m) * n
