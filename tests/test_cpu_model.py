"""CPU cost model properties: monotone in work, above the FMA peak, sparse no slower, clean errors."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from models.errors import UserError
from models.lowering import GemmWorkload
from hwsim.cpu.cpu_model import ElementwiseWork, simulate_cpu
from tests.conftest import require_tools

TOOLS = ("llvm-mca", "llvm-objdump", "aarch64-linux-gnu-gcc", "clang", "gcc")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hwsim-cpu")


def _target(name):
    require_tools(*TOOLS)
    from targets.cpu import load_cpu_target
    return load_cpu_target(name)


def _gemm(M, N, K, density=1.0):
    if density >= 1.0:
        return GemmWorkload("g", "FF", M=M, N=N, K=K)
    return GemmWorkload("g", "FF", M=M, N=N, K=K, sparse=True, pattern="u", density=density)


@settings(max_examples=6, deadline=None)
@given(M=st.integers(8, 4096), N=st.integers(1, 256), K=st.integers(4, 512), grow=st.sampled_from("MNK"),
       density=st.sampled_from([1.0, 0.5, 0.25]))
def test_cycles_never_fall_as_work_grows(cache, M, N, K, grow, density):
    target = _target("snapdragon855")
    bigger = {"M": (2 * M, N, K), "N": (M, 2 * N, K), "K": (M, N, 2 * K)}[grow]
    small, large = simulate_cpu(target, [_gemm(M, N, K, density), _gemm(*bigger, density)], cache_dir=cache)
    assert large.cycles >= small.cycles and large.compute_cycles >= small.compute_cycles


@settings(max_examples=6, deadline=None)
@given(M=st.integers(8, 4096), N=st.integers(1, 512), K=st.integers(8, 1024),
       name=st.sampled_from(["snapdragon855", "cortex-a55", "wasm32-simd128"]),
       density=st.sampled_from([1.0, 0.25, 0.125]), cores=st.sampled_from([1, 4]))
def test_never_faster_than_the_fma_peak(cache, M, N, K, name, density, cores):
    target = dataclasses.replace(_target(name), cores=cores)
    record = simulate_cpu(target, [_gemm(M, N, K, density)], cache_dir=cache)[0]
    peak_macs_per_cycle = target.vector_lanes_f32 * target.fma_units * cores
    assert record.cycles >= record.macs / peak_macs_per_cycle
    assert record.bound in ("compute", "memory") and record.cycles == max(record.compute_cycles, record.memory_cycles)


@pytest.mark.parametrize("name", ["snapdragon855", "cortex-a55", "wasm32-simd128"])
@pytest.mark.parametrize("shape", [(3136, 128, 128), (196, 512, 512), (49, 1024, 1024)])
def test_sparse_never_slower_than_dense_when_compute_bound(cache, name, shape):
    """At 2:8-level density or sparser; at 50% the XNNPACK-style kernel (a load and a
    broadcast per nonzero) is predicted slower than the dense tile on the in-order A55,
    as XNNPACK's sparse path only pays at high sparsity."""
    target = _target(name)
    dense, *sparse = simulate_cpu(target, [_gemm(*shape)] + [_gemm(*shape, d) for d in (0.5, 0.25, 0.125)],
                                  cache_dir=cache)
    for record in sparse[1:]:
        if dense.bound == "compute" and record.bound == "compute":
            assert record.cycles <= dense.cycles
    assert sparse[0].cycles >= sparse[1].cycles >= sparse[2].cycles


def test_depthwise_and_elementwise_layers_are_costed(cache):
    target = _target("snapdragon855")
    dw = GemmWorkload("dw", "FF", M=56 * 56, N=1, K=9, groups=128, op_kind="depthwise")
    records = simulate_cpu(target, [dw, ElementwiseWork("add", 56 * 56 * 128)], cache_dir=cache)
    assert [r.name for r in records] == ["dw", "add"]
    assert all(r.cycles > 0 and r.ms > 0 for r in records)
    assert records[0].macs == 56 * 56 * 128 * 9


def test_unknown_core_is_a_user_error_listing_known_cores(cache):
    target = dataclasses.replace(_target("snapdragon855"), core="cortex-a99")
    with pytest.raises(UserError) as error:
        simulate_cpu(target, [_gemm(64, 64, 64)], cache_dir=cache)
    assert "cortex-a76" in str(error.value)


def test_mca_results_are_cached_where_the_caller_says(tmp_path):
    target = _target("cortex-a55")
    simulate_cpu(target, [_gemm(64, 64, 64)], cache_dir=tmp_path / "c")
    assert list((tmp_path / "c" / "mca").rglob("*.json"))
