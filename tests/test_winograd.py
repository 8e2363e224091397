"""The Winograd F(2x2, 3x3) family (codegen/kernels/winograd.py + winograd.c.j2).

    its algorithm in numpy (transformed weights, tiles, inverse transform) equals a direct
    convolution for odd and even planes, padding 0 and 1
    the packed weights are U = G g G^T in the [16][cout tiles][cin][mr] layout, zero past cout
    every host flavour's kernels equal numpy's direct convolution on channel and plane tails,
    every activation, 1 and 2 threads; wasm32 (wasmtime) and aarch64 NEON (qemu) through the
    family registry
    work() counts the 16 GEMMs' multiplies exactly; the default tile follows its rule
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen import build as kernel_build
from codegen.kernels import family_named, winograd
from codegen.kernels.winograd import WinogradParams
from codegen.reference import apply_activation, reference_conv
from models.ir import Conv2d
from models.lowering import GemmWorkload
from tests.conftest import require_target

ACTS = ("none", "relu", "relu6")


def _direct(w, bias, x, pad, act="none"):
    cout, cin = w.shape[:2]
    return reference_conv(w, bias, x, Conv2d("c", cin, cout, 3, padding=pad), act)


@settings(max_examples=30, deadline=None)
@given(cout=st.integers(1, 9), cin=st.integers(1, 7), h=st.integers(1, 14), w=st.integers(1, 14),
       pad=st.sampled_from([0, 1]), m=st.sampled_from([2, 4]), seed=st.integers(0, 2**16))
def test_numpy_algorithm_equals_direct_convolution(cout, cin, h, w, pad, m, seed):
    if h + 2 * pad < 3 or w + 2 * pad < 3:
        return
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((cout, cin, 3, 3))
    x = rng.standard_normal((cin, h, w))
    got = winograd.reference_winograd(winograd.transform_weights(weights, m), x, pad, m)
    np.testing.assert_allclose(got, _direct(weights, None, x, pad), atol=1e-10 * (1 + cin))


@settings(max_examples=20, deadline=None)
@given(cout=st.integers(1, 30), cin=st.integers(1, 9), mr=st.integers(1, 24), m=st.sampled_from([2, 4]),
       seed=st.integers(0, 999))
def test_pack_is_the_transform_in_tiles_of_mr_channels(cout, cin, mr, m, seed):
    w = np.random.default_rng(seed).standard_normal((cout, cin, 3, 3)).astype(np.float32)
    packed = winograd.pack(w.reshape(cout, -1), mr, m)
    tiles, points = math.ceil(cout / mr), (m + 2) ** 2
    assert packed.shape == (points, tiles, cin, mr) and packed.dtype == np.float32
    u = winograd.transform_weights(w, m)                           # [points][cout][cin]
    rows = packed.transpose(0, 1, 3, 2).reshape(points, tiles * mr, cin)
    np.testing.assert_allclose(rows[:, :cout], u, rtol=1e-6, atol=1e-6)
    assert not rows[:, cout:].any()
    # the last point of the transformed tile is the kernel's last tap (G's last row is 0 0 1);
    # the first is its first tap scaled by G[0][0] (1 for F(2x2), 1/4 for F(4x4))
    np.testing.assert_allclose(u[-1], w[:, :, 2, 2], rtol=1e-6)
    np.testing.assert_allclose(u[0], w[:, :, 0, 0] * winograd.TRANSFORMS[m][1][0, 0] ** 2, rtol=1e-6)


def test_a_non_3x3_kernel_is_refused():
    with pytest.raises(ValueError):
        winograd.transform_weights(np.zeros((2, 2, 5, 5)))


# ---------------------------------------------------------------- the kernels against numpy


SHAPES = st.tuples(st.integers(1, 40), st.integers(1, 20), st.integers(1, 17), st.integers(1, 17),
                   st.sampled_from([0, 1]))


# allowed error, a share of the largest pre-activation output: F(4x4)'s transforms (coefficients
# up to 8 and 1/24) lose more float32 digits than F(2x2)'s
TOLERANCE = {2: 1e-5, 4: 3e-5}


def _run(params: WinogradParams, target: str, shapes, seed: int, build_dir: Path) -> None:
    """Runs ``params`` on every (cout, cin, h, w, pad) of ``shapes`` in one harness run and
    compares each output with numpy's direct convolution (TOLERANCE of its largest)."""
    rng = np.random.default_rng(seed)
    kernel = winograd.render(params)
    executable = kernel_build.build(kernel, target, build_dir)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    expected = {}
    for number, (cout, cin, h, w, pad) in enumerate(shapes):
        if h + 2 * pad < 3 or w + 2 * pad < 3:
            continue
        weights = rng.standard_normal((cout, cin * 9)).astype(np.float32)
        x = rng.standard_normal((cin, h, w)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
        kernel_build.write_case(workdir, f"case{number}", winograd.buffers(params, weights, bias, x),
                                (cout, cin, h, w, 3, 3, 1, pad))
        plain = _direct(weights.reshape(cout, cin, 3, 3), bias, x, pad)
        expected[f"case{number}"] = (apply_activation(plain, params.act).reshape(cout, -1),
                                     max(1.0, float(np.abs(plain).max())))
    if not expected:
        return
    kernel_build.run(executable, target, workdir, timeout_s=120)
    for case, (reference, scale) in expected.items():
        y = kernel_build.read_output(workdir, case, "y", reference.shape)
        assert float(np.abs(y - reference).max()) <= TOLERANCE[params.m] * scale, \
            f"{kernel.name} on {target}, {case}"


HOST_VARIANTS = [WinogradParams(flavour, mr, nr, act, threads, m)
                 for flavour in ("avx512", "avx2", "scalar") for m in (2, 4)
                 for number, (mr, nr) in enumerate(winograd.tile_choices(flavour)[:3 if m == 2 else 1])
                 for act, threads in [(ACTS[number % 3], 1 + number % 2), (ACTS[(number + 1) % 3], 2 - number % 2)]]


@pytest.mark.parametrize("params", HOST_VARIANTS, ids=[p.name for p in HOST_VARIANTS])
def test_kernels_match_numpy_on_the_host(params, tmp_path_factory):
    require_target("host", params.isa)
    build_dir = tmp_path_factory.mktemp(params.name)

    @settings(max_examples=3, deadline=None)
    @given(shapes=st.lists(SHAPES, min_size=3, max_size=6), seed=st.integers(0, 2**16))
    def check(shapes, seed):
        _run(params, "host", shapes, seed, build_dir)

    check()


def test_threaded_kernel_splits_channels_of_a_single_block(tmp_path):
    """One tile block (a 7 x 7 layer), above the 1M-MAC threshold: the two threads share its
    output channels (each transforms the block again); and a layer of many blocks."""
    require_target("host", "avx2")
    for act in ACTS:
        for m in (2, 4):
            _run(WinogradParams("avx2", 6, 16, act, threads=2, m=m), "host",
                 [(70, 96, 7, 7, 1), (33, 24, 30, 29, 1), (9, 64, 12, 12, 0)], 5, tmp_path)


CROSS = [("wasmsimd", "wasm32-simd128"), ("neon", "snapdragon855")]


@pytest.mark.slow
@pytest.mark.parametrize("flavour,target", CROSS, ids=[f for f, _ in CROSS])
def test_kernels_match_numpy_cross(flavour, target, tmp_path):
    """Every register tile of the flavour, from the family registry, on its runner."""
    require_target(target, flavour)
    family = family_named("winograd")
    mine = [params for params in family.shipped() if params.isa == flavour]
    assert {(p.mr, p.nr) for p in mine} == set(winograd.tile_choices(flavour)) and {p.m for p in mine} == {2, 4}
    kinds = sorted({(p.m, p.mr, p.nr) for p in mine})
    for number, kind in enumerate(kinds):     # each (m, tile) once, the activations in turn
        (params,) = [p for p in mine if (p.m, p.mr, p.nr) == kind and p.act == ACTS[number % 3]]
        _run(params, target, [(5, 3, 9, 11, 1), (13, 7, 6, 5, 0), (20, 16, 17, 15, 1), (17, 5, 3, 4, 1)],
             number, tmp_path)


# ---------------------------------------------------------------- what it runs, its schedule


@settings(max_examples=60, deadline=None)
@given(cout=st.integers(1, 600), cin=st.integers(1, 600), side=st.integers(1, 60),
       flavour=st.sampled_from(["avx512", "avx2", "neon", "wasmsimd", "scalar"]),
       threads=st.integers(1, 4), m=st.sampled_from([2, 4]))
def test_work_counts_the_gemms_multiplies(cout, cin, side, flavour, threads, m):
    """The GEMM loop's lanes x iterations are the (m + 2)^2 GEMMs' multiplies over whole
    register tiles: exactly 16 x tiles x cin x cout for F(2x2) (36 x for F(4x4)) where tiles
    and channels fill them."""
    points = (m + 2) ** 2
    for mr, nr in winograd.tile_choices(flavour):
        params = WinogradParams(flavour, mr, nr, threads=threads, m=m)
        workload = GemmWorkload("c", "FF", M=side * side, N=cout, K=cin * 9, op_kind="conv2d")
        work = winograd.work(params, workload)
        tiles = math.ceil(side / m) ** 2
        padded = points * math.ceil(tiles / nr) * nr * cin * math.ceil(cout / mr) * mr
        loop = work.loops[0]
        assert loop.mac_lanes * loop.iterations == padded >= points * tiles * cin * cout
        if tiles % nr == 0 and cout % mr == 0:
            assert loop.mac_lanes * loop.iterations == points * tiles * cin * cout
        assert 1 <= work.threads <= max(1, threads) and work.parallel_units >= 1


def test_work_of_resnet18_first_stage_layer():
    """64 x 64 x 56 x 56 on the AVX-512 default tile: 784 tiles in 13 blocks of 64, 11 tiles
    of 6 channels; 16 x 13 x 11 x 64 GEMM steps of 384 lanes."""
    params = winograd.default_schedule("host", "avx512", threads=2, tiles=784)
    assert (params.mr, params.nr) == (6, 64)
    work = winograd.work(params, GemmWorkload("c", "FF", M=3136, N=64, K=576, op_kind="conv2d"))
    assert work.loops[0].mac_lanes == 384 and work.loops[0].iterations == 16 * 13 * 11 * 64
    assert work.threads == 2 and work.parallel_units == 13


@settings(max_examples=40, deadline=None)
@given(tiles=st.integers(1, 5000), flavour=st.sampled_from(["avx512", "avx2", "neon", "wasmsimd"]))
def test_default_tile_is_the_first_that_fills_its_blocks(tiles, flavour):
    params = winograd.default_schedule("host", flavour, tiles=tiles)
    choices = winograd.tile_choices(flavour)
    fitting = [c for c in choices if winograd.tile_use(tiles, c[1]) >= 0.9]
    if fitting:
        assert (params.mr, params.nr) == fitting[0]
    else:
        assert winograd.tile_use(tiles, params.nr) == max(winograd.tile_use(tiles, c[1]) for c in choices)


@pytest.mark.parametrize("target_name", ["host", "wasm32-simd128"])
def test_the_cpu_model_costs_a_winograd_layer(target_name, tmp_path):
    """hwsim.cpu finds the kernel's GEMM loop (mr x nr lanes) in its compiled code and costs
    the layer no faster than the FMA peak allows for the 16 GEMMs' multiplies."""
    from hwsim.cpu.codegen_source import from_rendered
    from hwsim.cpu.cpu_model import simulate_cpu
    from targets.cpu import load_cpu_target
    from tests.conftest import require_tools

    require_tools("llvm-mca")
    require_target(target_name, kernel_build.runnable_flavours(target_name)[-1])
    target = load_cpu_target(target_name)
    params = winograd.default_schedule(target, kernel_build.runnable_flavours(target)[-1], tiles=196)
    workload = GemmWorkload("c", "FF", M=28 * 28, N=128, K=128 * 9, op_kind="conv2d")
    (record,) = simulate_cpu(target, [workload], None, tmp_path,
                             kernel_source=lambda work, _schedule, _target: from_rendered(winograd.render(params), work))
    multiplies = 16 * 196 * 128 * 128
    peak = target.vector_lanes_f32 * target.fma_units * min(target.cores, params.threads)
    assert record.cycles >= multiplies / peak and record.ms > 0
