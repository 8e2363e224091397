"""The accelerator engine: invariants of cycles, traffic and MACs, and BDWP's speedup structure."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import load_arch
from hwsim.dataflow import DATAFLOWS, plan_folds, sparse_reduction
from hwsim.engine import best_schedule, im2col_reuse, simulate
from hwsim.memory import stall_cycles
from models.ir import Conv2d, Dense, Elementwise, GraphBuilder, Pool2d, Reshape
from models.lowering import GemmWorkload, lower
from models.patterns import BDWP
from tests.conftest import small_cnn


def variant(arch, *, dataflow=None, rows=None, cols=None, dram_gbps=None, sram_kb=None, **options):
    """Returns ``arch`` with some fields replaced (array, dataflow, bandwidth, buffers, switches)."""
    array = dataclasses.replace(arch.array, rows=rows or arch.array.rows, cols=cols or arch.array.cols)
    memory = arch.memory
    if dram_gbps is not None:
        memory = dataclasses.replace(memory, dram_gbps=dram_gbps)
    if sram_kb is not None:
        memory = dataclasses.replace(memory, ifmap_sram_kb=sram_kb, filter_sram_kb=sram_kb,
                                     ofmap_sram_kb=sram_kb)
    return dataclasses.replace(arch, array=array, dataflow=dataflow or arch.dataflow, memory=memory,
                               options=dataclasses.replace(arch.options, **options))


@pytest.fixture(scope="module")
def sat():
    return load_arch("sat")


def gemm(M, N, K, phase="FF", nm=None, groups=1):
    sparse = nm is not None
    return GemmWorkload(layer="g", phase=phase, M=M, N=N, K=K, groups=groups, op_kind="conv2d",
                        sparse=sparse, pattern=f"{nm[0]}:{nm[1]}" if sparse else None,
                        density=nm[0] / nm[1] if sparse else 1.0, nm=nm)


def two_conv_model(channels=64, size=16):
    """conv(3->c) then conv(c->c): the second layer has FF, BP and WU, all groupable by 8."""
    builder = GraphBuilder("two_conv")
    x = builder.input("image", (1, 3, size, size))
    x = builder.add(Conv2d("conv1", 3, channels, 3, padding=1), x)
    x = builder.add(Elementwise("relu", "relu"), x)
    x = builder.add(Conv2d("conv2", channels, channels, 3, padding=1), x)
    x = builder.add(Pool2d("pool", global_pool=True), x)
    x = builder.add(Reshape("flatten"), x)
    builder.add(Dense("fc", channels, 16), x)
    return builder.build()


shapes = st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 64).map(lambda g: 8 * g))


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dataflow=st.sampled_from(DATAFLOWS), n=st.sampled_from([1, 2, 4]),
       on_the_fly=st.booleans())
def test_sparse_never_slower_than_dense(sat, shape, dataflow, n, on_the_fly):
    """Up to the start-up load of the first fold, which is exposed (nothing to hide it
    under) and can be larger when sparse mode packs the GEMM into fewer, bigger folds
    (hypothesis found M=N=1, K=64 on WS: 1-2 cycles)."""
    arch = variant(sat, dataflow=dataflow, pregenerate_sparse_weights=not on_the_fly)
    M, N, K = shape
    dense = simulate(arch, [gemm(M, N, K)])
    sparse_gemm = gemm(M, N, K, nm=(n, 8))
    sparse = simulate(arch, [sparse_gemm])
    startup = best_schedule(arch, sparse_gemm).load_bytes[0] / arch.dram_bytes_per_cycle
    assert sparse.total_cycles <= dense.total_cycles + math.ceil(startup)
    assert sparse.compute_cycles <= dense.compute_cycles


@settings(max_examples=30, deadline=None)
@given(blocks=st.tuples(st.integers(1, 8), st.integers(1, 8)), K=st.integers(32, 512),
       dataflow=st.sampled_from(DATAFLOWS), interleave=st.booleans())
def test_more_pes_never_slower_when_compute_bound(sat, blocks, K, dataflow, interleave):
    """With unbounded bandwidth and full folds, a 32x32 array beats a 16x16 one."""
    M, N = 32 * blocks[0], 32 * blocks[1]
    fast_memory = dict(dataflow=dataflow, dram_gbps=1e9, sram_kb=1 << 20, interleave=interleave)
    small = simulate(variant(sat, rows=16, cols=16, **fast_memory), [gemm(M, N, K)])
    large = simulate(variant(sat, rows=32, cols=32, **fast_memory), [gemm(M, N, K)])
    assert large.total_cycles <= small.total_cycles


@settings(max_examples=25, deadline=None)
@given(shape=shapes, dataflow=st.sampled_from(DATAFLOWS), sparse=st.booleans(),
       groups=st.integers(1, 3))
def test_zero_stalls_with_unbounded_bandwidth(sat, shape, dataflow, sparse, groups):
    arch = variant(sat, dataflow=dataflow, dram_gbps=1e12)
    result = simulate(arch, [gemm(*shape, nm=(2, 8) if sparse else None, groups=groups)])
    assert result.stall_cycles == 0
    assert result.total_cycles == result.compute_cycles


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dataflow=st.sampled_from(DATAFLOWS), nm=st.sampled_from([None, (1, 8), (2, 8), (4, 8)]),
       groups=st.integers(1, 3), interleave=st.booleans(), overlap=st.booleans())
def test_cycles_never_below_macs_per_pe(sat, shape, dataflow, nm, groups, interleave, overlap):
    arch = variant(sat, dataflow=dataflow, interleave=interleave, offline_schedule=overlap)
    workload = gemm(*shape, nm=nm, groups=groups)
    result = simulate(arch, [workload])
    assert result.total_cycles * arch.array.pes >= workload.macs
    assert 0 < result.utilization <= 1.0


@settings(max_examples=15, deadline=None)
@given(channels=st.sampled_from([8, 16, 32]), size=st.sampled_from([8, 16]),
       sparsity=st.sampled_from([None, BDWP(2, 8), BDWP(1, 8)]), batch=st.integers(1, 4),
       mode=st.sampled_from(["train", "infer"]))
def test_macs_conserved(sat, channels, size, sparsity, batch, mode):
    model = small_cnn(channels, size=size).with_sparsity(sparsity)
    workloads = lower(model, mode=mode, batch=batch)
    result = simulate(sat, workloads, input_reuse=im2col_reuse(model))
    assert result.macs == sum(w.macs for w in workloads)
    assert [(layer.name, layer.phase) for layer in result.layers] == \
        [(w.layer, w.phase) for w in workloads]


@settings(max_examples=20, deadline=None)
@given(shape=shapes, dataflow=st.sampled_from(DATAFLOWS), gbps=st.sampled_from([1.0, 5.0, 19.2]))
def test_switches_off_never_faster(sat, shape, dataflow, gbps):
    """Turning off interleave or the offline schedule can only cost cycles."""
    workloads = [gemm(*shape, nm=(2, 8)), gemm(shape[1], shape[0], shape[2], phase="WU")]
    base = variant(sat, dataflow=dataflow, dram_gbps=gbps)
    cycles = simulate(base, workloads).total_cycles
    assert simulate(variant(base, offline_schedule=False), workloads).total_cycles >= cycles
    assert simulate(variant(base, interleave=False), workloads).total_cycles >= cycles


def test_more_bandwidth_never_slower(sat):
    model = small_cnn(32, size=16).with_sparsity(BDWP(2, 8))
    workloads = lower(model, "train", batch=4)
    cycles = [simulate(variant(sat, dram_gbps=gbps), workloads).total_cycles
              for gbps in (1, 4, 19.2, 100, 1e6)]
    assert cycles == sorted(cycles, reverse=True)
    assert cycles[0] > cycles[-1]


# ---------------------------------------------------------------- golden structure


def test_sparse_fold_uses_compressed_reduction(sat):
    """OS, no stalls: a 2:8 GEMM's folds run sparse_reduction(K, 2, 8) = K/4 steps."""
    arch = variant(sat, dram_gbps=1e12, interleave=False)
    M, N, K = 256, 64, 576
    dense = simulate(arch, [gemm(M, N, K)])
    sparse = simulate(arch, [gemm(M, N, K, nm=(2, 8))])
    assert dense.compute_cycles == plan_folds(M, N, K, 32, 32, "os").compute_cycles
    assert sparse.compute_cycles == plan_folds(M, N, sparse_reduction(K, 2, 8), 32, 32, "os").compute_cycles
    assert sparse_reduction(K, 2, 8) == K // 4


def test_bdwp_speedup_structure(sat):
    """One conv layer at 2:8, ample bandwidth: FF and BP ~4x faster, WU unchanged, step ~2x."""
    arch = variant(sat, dram_gbps=1e12)
    base = two_conv_model(64, 16)
    reuse = im2col_reuse(base)
    dense = simulate(arch, lower(base, "train", batch=8), input_reuse=reuse)
    sparse = simulate(arch, lower(base.with_sparsity(BDWP(2, 8)), "train", batch=8),
                      input_reuse=reuse, sparsity="2:8")
    by_key = {(layer.name, layer.phase): layer for layer in dense.layers}
    conv2 = {layer.phase: layer for layer in sparse.layers if layer.name == "conv2"}
    assert conv2["FF"].sparse and conv2["BP"].sparse and not conv2["WU"].sparse
    for phase in ("FF", "BP"):
        ratio = by_key[("conv2", phase)].total_cycles / conv2[phase].total_cycles
        assert 3.5 <= ratio <= 4.0, (phase, ratio)
    assert conv2["WU"].total_cycles == by_key[("conv2", "WU")].total_cycles
    layer_dense = sum(by_key[("conv2", p)].total_cycles for p in ("FF", "BP", "WU"))
    layer_sparse = sum(conv2[p].total_cycles for p in ("FF", "BP", "WU"))
    assert 1.85 <= layer_dense / layer_sparse <= 2.0
    # conv1 (3 input channels) stays dense in FF, so the whole step falls below the layer's 2x.
    first = {layer.phase: layer for layer in sparse.layers if layer.name == "conv1"}
    assert not first["FF"].sparse
    assert 1.0 < dense.total_cycles / sparse.total_cycles < layer_dense / layer_sparse


def test_on_the_fly_weights_move_more_dram_when_weights_refetched(sat):
    """Small filter buffer: weights are refetched, dense each time when selected on the fly."""
    arch = variant(sat, sram_kb=16)
    workload = [gemm(2048, 256, 1152, nm=(2, 8))]
    pre = simulate(arch, workload)
    fly = simulate(variant(arch, pregenerate_sparse_weights=False), workload)
    assert fly.dram_bytes > pre.dram_bytes
    assert fly.layers[0].select_groups > 0 and pre.layers[0].index_bytes > 0
    assert fly.total_cycles >= pre.total_cycles


def test_pregeneration_charged_once_per_step_to_wu(sat):
    model = two_conv_model(64, 8).with_sparsity(BDWP(2, 8))
    result = simulate(sat, lower(model, "train", batch=2))
    wu = {layer.name: layer for layer in result.layers if layer.phase == "WU"}
    assert wu["conv2"].select_groups == 2 * 64 * 64 * 9 // 8      # FF and BP masks, groups of 8
    off = simulate(variant(sat, pregenerate_sparse_weights=False), lower(model, "train", batch=2))
    assert {layer.name: layer for layer in off.layers if layer.phase == "WU"}["conv2"].select_groups == 0


def test_stall_timeline_closed_form():
    compute = np.array([10.0, 10.0, 10.0])
    loads = np.array([5.0, 12.0, 3.0])
    stores = np.array([2.0, 2.0, 2.0])
    # before fold 0: 5; after fold 0: 12 - 10; after fold 1: 3 + 2 - 10 < 0; end: 2 - 10 < 0, + 2
    assert stall_cycles(loads, stores, compute, True).tolist() == [5.0, 2.0, 0.0, 2.0]
    assert stall_cycles(loads, stores, compute, False).tolist() == [7.0, 14.0, 5.0, 0.0]


def test_summary_dict_schema(sat):
    model = small_cnn(16, size=8).with_sparsity(BDWP(2, 8))
    result = simulate(sat, lower(model, "train"), model_name="small_cnn", sparsity="2:8")
    document = result.summary_dict()
    for key in ("tool", "version", "arch", "model", "sparsity", "mode", "batch", "total_cycles",
                "seconds", "energy_j", "layers"):
        assert key in document
    assert document["tool"] == "hwsim" and document["arch"] == "sat-vcu1525"
    assert document["total_cycles"] == sum(layer["total_cycles"] for layer in document["layers"])
    assert document["seconds"] == pytest.approx(document["total_cycles"] / 200e6)
    for layer in document["layers"]:
        for key in ("name", "phase", "M", "N", "K", "sparse", "compute_cycles", "stall_cycles",
                    "total_cycles", "utilization", "sram_bytes", "dram_bytes", "energy_pj"):
            assert key in layer
        assert layer["total_cycles"] == layer["compute_cycles"] + layer["stall_cycles"]


def test_block_sparsity_rejected(sat):
    from models.errors import UserError
    from models.patterns import parse_pattern
    model = small_cnn(16, size=8).with_sparsity(parse_pattern("block:1x4:0.25"))
    with pytest.raises(UserError, match="supports only N:M"):
        simulate(sat, lower(model, "train"))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(M=st.integers(1, 3000), N=st.integers(1, 700), K=st.integers(1, 200).map(lambda g: 8 * g),
       dataflow=st.sampled_from(DATAFLOWS), gbps=st.sampled_from([1.0, 5.0, 19.2]),
       sram_kb=st.sampled_from([16, 64, 512]), switches=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       sparse=st.booleans(), groups=st.integers(1, 2))
def test_compressed_folds_equal_every_fold(sat, M, N, K, dataflow, gbps, sram_kb, switches,
                                           sparse, groups):
    """Run-length compressed fold axes give the cycles and bytes of simulating every fold."""
    import hwsim.engine as engine
    from hwsim.memory import FoldAxis, fold_axis

    def every_fold(dim, tile, folds):
        sizes = np.full(folds, float(tile))
        sizes[-1] = dim - tile * (folds - 1)
        return FoldAxis(sizes / dim, np.ones(folds, dtype=np.int64), folds)

    interleave, overlap, pregenerate = switches
    arch = variant(sat, dataflow=dataflow, dram_gbps=gbps, sram_kb=sram_kb, interleave=interleave,
                   offline_schedule=overlap, pregenerate_sparse_weights=pregenerate)
    workloads = [gemm(M, N, K, nm=(2, 8) if sparse else None, groups=groups), gemm(N, M, K, phase="WU")]
    compressed = simulate(arch, workloads)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "fold_axis", every_fold)
        full = simulate(arch, workloads)
    assert engine.fold_axis is fold_axis
    assert compressed.total_cycles == pytest.approx(full.total_cycles, rel=1e-3, abs=2)
    assert compressed.dram_bytes == pytest.approx(full.dram_bytes, rel=1e-9, abs=2)


def test_interleave_never_loses_to_fixed_orientation_across_gemm_boundaries(sat):
    """Regression: a per-GEMM orientation choice once lost 4 cycles to the FF orientation
    because the next GEMM's first load overlaps this GEMM's last fold."""
    workloads = [gemm(33, 3, 8, nm=(2, 8)), gemm(3, 33, 8, phase="WU")]
    base = variant(sat, dataflow="ws", dram_gbps=1.0)
    assert simulate(variant(base, interleave=False), workloads).total_cycles >= \
        simulate(base, workloads).total_cycles
