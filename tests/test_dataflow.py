"""Properties of hwsim.dataflow.plan_folds that hold without running SCALE-Sim.

The golden numbers are SCALE-Sim 3.0.0's own "Total Cycles" for these layers
(measured with hwsim.scalesim_ref.run_scalesim; the equivalence tests re-check
them against the tool on random shapes).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwsim.dataflow import DATAFLOWS, plan_folds, sparse_reduction

dims = st.integers(1, 300)
array_side = st.integers(1, 64)
dataflows = st.sampled_from(DATAFLOWS)


@pytest.mark.parametrize("M, N, K, rows, cols, dataflow, cycles", [
    (25, 5, 27, 4, 6, "os", 244),    # conv 7x7 ifmap, 3x3 filter, 3 channels, 5 filters
    (20, 13, 12, 4, 6, "os", 299),   # conv 9x8 ifmap, 2x3 filter, 2 channels, 13 filters, stride 2
    (25, 5, 27, 4, 6, "ws", 258),
    (20, 13, 12, 4, 6, "ws", 287),
    (25, 5, 27, 4, 6, "is", 594),
    (20, 13, 12, 4, 6, "is", 299),
    (10, 7, 9, 4, 6, "os", 101),     # GEMM-format topology
    (3, 2, 5, 1, 1, "os", 29),       # 1x1 array: one less than the 30 MACs
    (7, 1, 3, 5, 1, "is", 69),
])
def test_scalesim_golden_cycles(M, N, K, rows, cols, dataflow, cycles):
    assert plan_folds(M, N, K, rows, cols, dataflow).compute_cycles == cycles


@settings(max_examples=200, deadline=None)
@given(M=dims, N=dims, K=dims, rows=array_side, cols=array_side, dataflow=dataflows)
def test_cycles_at_least_the_ideal(M, N, K, rows, cols, dataflow):
    """The array's busy cycles (folds x cycles per fold) never beat rows*cols MACs a cycle.

    SCALE-Sim reports one cycle less than that (the index of the last busy cycle), so
    on a 1x1 array a 30-MAC GEMM reports 29 cycles: the tool itself does (measured)."""
    plan = plan_folds(M, N, K, rows, cols, dataflow)
    busy_cycles = plan.folds * plan.cycles_per_fold
    assert busy_cycles == plan.compute_cycles + 1
    assert busy_cycles >= math.ceil(M * N * K / (rows * cols))
    assert plan.compute_cycles >= math.ceil(M * N * K / (rows * cols)) - 1
    assert 0 < plan.mapping_efficiency <= 1


@settings(max_examples=200, deadline=None)
@given(M=dims, N=dims, K=dims, rows=array_side, cols=array_side, dataflow=dataflows,
       axis=st.sampled_from("MNK"), extra=st.integers(1, 100))
def test_cycles_monotone_in_each_dimension(M, N, K, rows, cols, dataflow, axis, extra):
    shape = {"M": M, "N": N, "K": K}
    bigger = dict(shape, **{axis: shape[axis] + extra})
    assert (plan_folds(**bigger, rows=rows, cols=cols, dataflow=dataflow).compute_cycles
            >= plan_folds(**shape, rows=rows, cols=cols, dataflow=dataflow).compute_cycles)


@settings(max_examples=200, deadline=None)
@given(M=dims, N=dims, K=dims, rows=array_side, cols=array_side, dataflow=dataflows)
def test_folds_cover_the_gemm_once(M, N, K, rows, cols, dataflow):
    plan = plan_folds(M, N, K, rows, cols, dataflow)
    folds = plan.fold_requests()
    assert len(folds.rows_used) == plan.folds == plan.row_folds * plan.col_folds
    assert np.all((folds.rows_used >= 1) & (folds.rows_used <= rows))
    assert np.all((folds.cols_used >= 1) & (folds.cols_used <= cols))
    # every (row tile, col tile) pair once: the PE-tiles sum to the spatial plane,
    # and streaming T through each performs every MAC exactly once
    assert int(np.sum(folds.rows_used * folds.cols_used)) == plan.spatial_rows * plan.spatial_cols
    assert int(np.sum(folds.rows_used * folds.cols_used)) * plan.temporal == M * N * K
    assert sorted((plan.spatial_rows, plan.spatial_cols, plan.temporal)) == sorted((M, N, K))
    assert int(folds.ifmap_reads.sum()) == plan.ifmap_reads >= M * K
    assert int(folds.filter_reads.sum()) == plan.filter_reads >= K * N
    assert int(folds.ofmap_writes.sum()) == plan.ofmap_writes >= M * N
    assert plan.compute_cycles == plan.folds * plan.cycles_per_fold - 1


@settings(max_examples=200, deadline=None)
@given(K=st.integers(1, 5000), m=st.integers(1, 16), data=st.data())
def test_sparse_reduction_bounds(K, m, data):
    n = data.draw(st.integers(1, m))
    reduced = sparse_reduction(K, n, m)
    assert K * n / m <= reduced < K * n / m + n
    if K % m == 0:
        assert reduced == K // m * n
    assert sparse_reduction(K, m, m) >= K
    if n < m:
        assert reduced <= sparse_reduction(K, n + 1, m)


def test_sparse_2_of_8_quarters_the_os_stream():
    dense = plan_folds(64, 64, 1152, 32, 32, "os")
    sparse = plan_folds(64, 64, sparse_reduction(1152, 2, 8), 32, 32, "os")
    assert sparse.temporal == 1152 // 4
    assert sparse.compute_cycles < dense.compute_cycles


@pytest.mark.parametrize("bad", [dict(dataflow="rs"), dict(M=0), dict(rows=0)])
def test_rejects_bad_input(bad):
    arguments = dict(M=4, N=4, K=4, rows=2, cols=2, dataflow="os") | bad
    with pytest.raises(ValueError):
        plan_folds(**arguments)
    with pytest.raises(ValueError):
        sparse_reduction(8, 3, 2)


def test_dataflow_records_state_scalesim_mapping():
    """The one definition (hwsim.dataflow.DATAFLOW_SPECS) against SCALE-Sim's
    calc_spatio_temporal_params and its compute/systolic_compute_*.py operand roles."""
    from hwsim.dataflow import DATAFLOW_SPECS
    assert DATAFLOWS == ("os", "ws", "is") == tuple(DATAFLOW_SPECS)
    table = {name: (spec.spatial_rows, spec.spatial_cols, spec.temporal, spec.cuts, spec.preloads)
             for name, spec in DATAFLOW_SPECS.items()}
    assert table == {
        "os": ("M", "N", "K", {"A": "row", "B": "col", "C": "tile"}, False),
        "ws": ("K", "N", "M", {"A": "row", "B": "tile", "C": "col"}, True),
        "is": ("K", "M", "N", {"A": "tile", "B": "row", "C": "col"}, True)}
    with pytest.raises(ValueError, match="unknown dataflow"):
        plan_folds(4, 4, 4, 2, 2, "rs")
