"""Kernel equivalence: every flavour's output equals numpy's product of the masked weights.

Each hypothesis example renders one kernel variant (random n:m with n <= m <= 16, tile,
unroll, shared index sets, k-blocking, activation), builds it with its harness for a target
(host: scalar reference, AVX2, AVX-512 when the CPU has it; wasm32 in wasmtime; aarch64
NEON under qemu) and runs a batch of random shapes (with tails) in one program.
Builds are cached by the rendered source hash inside the session's tmp dir.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import build as kernel_build
from codegen.isa import get_isa
from codegen.kernels import shipped_kernels
from codegen.kernels.dwconv import DwconvParams, render as render_dwconv
from codegen.kernels.eltwise import OPS as ELTWISE_OPS, EltwiseParams, render as render_eltwise
from codegen.kernels.nmgemm import (NmGemmParams, mask_nm, mask_nm_shared, pack as pack_nm, pack_index_bits,
                                    render as render_nmgemm, unpack as unpack_nm, unpack_index_bits)
from codegen.kernels.pool import KINDS as POOL_KINDS, PoolParams, render as render_pool
from codegen.kernels.spmm import (SpmmParams, mask_blocks, pack as pack_block_sparse, render as render_spmm,
                                  unpack as unpack_block_sparse)
from codegen.render import render_harness
from tests.conftest import require_target

TOLERANCE = 1e-4  # relative to the magnitude of the reference (float32 sums of ~100 terms)

# (kernel flavour, target): the flavours each runner executes.
FLAVOURS = [("scalar", "host"), ("avx2", "host"), ("avx512", "host"),
            ("scalar", "wasm32-simd128"), ("wasmsimd", "wasm32-simd128"),
            ("scalar", "snapdragon855"), ("neon", "snapdragon855")]


# ---------------------------------------------------------------- packing properties


@st.composite
def nm_matrices(draw):
    m = draw(st.integers(1, 16))
    n = draw(st.integers(1, m))
    mr = draw(st.integers(1, 6))
    shared = draw(st.booleans())
    cout = draw(st.integers(1, 20))
    k = draw(st.integers(1, 50))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, k)).astype(np.float32)
    w = mask_nm_shared(w, n, m, mr) if shared else mask_nm(w, n, m)
    # prune a few more: groups with fewer than n nonzeros must pack too
    w[rng.random(w.shape) < 0.2] = 0.0
    return w, n, m, mr, shared


@settings(max_examples=60, deadline=None)
@given(nm_matrices())
def test_pack_nm_decodes_back(case):
    w, n, m, mr, shared = case
    packed = pack_nm(w, n, m, mr=mr, shared=shared)
    tiles, groups = -(-w.shape[0] // mr), -(-w.shape[1] // m)
    assert packed.values.shape == (tiles, groups, mr, n)
    assert packed.indices.shape == ((tiles, groups, n) if shared else (tiles, groups, mr, n))
    assert packed.indices.max(initial=0) < m
    np.testing.assert_array_equal(unpack_nm(packed), w)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 16), st.integers(0, 200), st.integers(0, 2**31))
def test_index_bits_decode_back(m, count, seed):
    indices = np.random.default_rng(seed).integers(0, m, count).astype(np.uint8)
    packed = pack_index_bits(indices, m)
    assert len(packed) == -(-count * max(1, int(np.ceil(np.log2(m)))) // 8)
    np.testing.assert_array_equal(unpack_index_bits(packed, m, count), indices)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), st.integers(4, 30), st.sampled_from([1, 2, 4]), st.sampled_from([1, 3, 4]),
       st.integers(1, 9), st.integers(0, 2**31))
def test_pack_block_sparse_decodes_back(cout, cin, nr, kb, pixels, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, cin)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0.0
    bias = rng.standard_normal(cout).astype(np.float32)
    dense, decoded_bias = unpack_block_sparse(pack_block_sparse(w, nr, pixels, bias, kb=kb))
    np.testing.assert_array_equal(dense, w)
    np.testing.assert_array_equal(decoded_bias, bias)


def test_pack_nm_rejects_a_group_over_n():
    with pytest.raises(Exception, match="more than n=1"):
        pack_nm(np.ones((1, 4), np.float32), 1, 4)


def test_mask_nm_keeps_the_largest():
    w = np.array([[1, -5, 2, 0.5, 3, 3.5, -4, 1]], np.float32)
    np.testing.assert_array_equal(mask_nm(w, 1, 4), [[0, -5, 0, 0, 0, 0, -4, 0]])


# ---------------------------------------------------------------- kernel equivalence


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("kernels")


@st.composite
def nmgemm_cases(draw, flavour: str):
    lanes = get_isa(flavour).lanes
    m = draw(st.integers(1, 16))
    n = draw(st.integers(1, m))
    mr = draw(st.integers(1, 6))
    params = NmGemmParams(
        n, m, flavour, mr=mr, nr=lanes * draw(st.integers(1, 3 if lanes > 1 else 6)),
        unroll=draw(st.integers(1, 3)), shared=draw(st.booleans()),
        kc=draw(st.sampled_from([0, 0, 1, 3])), prefetch=draw(st.sampled_from([0, 4])),
        act=draw(st.sampled_from(["none", "none", "relu", "relu6"])))
    shapes = draw(st.lists(st.tuples(st.integers(1, 23), st.integers(1, 70), st.integers(1, 53)),
                           min_size=2, max_size=4))
    return params, shapes, draw(st.integers(0, 2**31))


def _reference(w, x, bias, act):
    y = w.astype(np.float64) @ x.astype(np.float64) + bias[:, None]
    if act in ("relu", "relu6"):
        y = np.maximum(y, 0.0)
    if act == "relu6":
        y = np.minimum(y, 6.0)
    return y


def run_and_compare(name: str, executable, target: str, workdir: Path, expected: dict) -> None:
    """Runs every case written to workdir in one process and checks each output against numpy."""
    kernel_build.run(executable, target, workdir, timeout_s=120)
    for case, reference in expected.items():
        y = kernel_build.read_output(workdir, case, "y", reference.shape)
        scale = max(1.0, float(np.abs(reference).max()))
        np.testing.assert_allclose(y, reference, atol=TOLERANCE * scale, rtol=TOLERANCE,
                                   err_msg=f"{name} on {target}, {case}")


def check_nmgemm(params: NmGemmParams, shapes, seed: int, target: str, build_dir) -> None:
    kernel = render_nmgemm(params)
    executable = kernel_build.build(kernel, target, build_dir)
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{kernel.name}-", dir=build_dir))
    rng = np.random.default_rng(seed)
    expected = {}
    for number, (cout, k, p) in enumerate(shapes):
        w = rng.standard_normal((cout, k)).astype(np.float32)
        w = (mask_nm_shared(w, params.n, params.m, params.mr) if params.shared
             else mask_nm(w, params.n, params.m))
        w[rng.random(w.shape) < 0.1] = 0.0
        x = rng.standard_normal((k, p)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        packed = pack_nm(w, params.n, params.m, mr=params.mr, shared=params.shared)
        with_bias = number % 2 == 0  # odd cases pass NULL (an empty file): no bias
        kernel_build.write_case(workdir, f"case{number}", {
            "values": packed.values, "indices": packed.indices,
            "bias": bias if with_bias else None, "x": x}, (cout, k, p))
        expected[f"case{number}"] = _reference(w, x, bias if with_bias else 0 * bias, params.act)
    run_and_compare(kernel.name, executable, target, workdir, expected)


@pytest.mark.parametrize("flavour,target", FLAVOURS, ids=[f"{f}-{t}" for f, t in FLAVOURS])
def test_nmgemm_matches_numpy(flavour, target, build_dir):
    require_target(target, flavour)

    @settings(max_examples=8, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(nmgemm_cases(flavour))
    def check(case):
        params, shapes, seed = case
        check_nmgemm(params, shapes, seed, target, build_dir)

    check()


@pytest.mark.parametrize("flavour,target", FLAVOURS, ids=[f"{f}-{t}" for f, t in FLAVOURS])
def test_nmgemm_threads_and_dense_fallback(flavour, target, build_dir):
    """Golden schedule corners: OpenMP (host only), the dense n == m kernel, 16:16."""
    require_target(target, flavour)
    lanes = get_isa(flavour).lanes
    threads = 2 if target == "host" else 1
    for params in (NmGemmParams(3, 3, flavour, mr=3, nr=2 * lanes, unroll=2, threads=threads),
                   NmGemmParams(16, 16, flavour, mr=2, nr=lanes, kc=2),
                   NmGemmParams(1, 16, flavour, mr=5, nr=lanes, shared=True, threads=threads)):
        check_nmgemm(params, [(9, 40, 37), (17, 35, 5)], 7, target, build_dir)


HOST_FLAVOURS = [(f, t) for f, t in FLAVOURS if t == "host" and f != "scalar"]


@pytest.mark.parametrize("flavour,target", HOST_FLAVOURS, ids=[f"{f}-{t}" for f, t in HOST_FLAVOURS])
def test_nmgemm_parallel_paths(flavour, target, build_dir, monkeypatch):
    """Above the kernel's 1M-MAC threshold on 2 threads: few column tiles (row chunks reading
    panels all threads packed once) and many (each thread packs its own), GEMM and 3x3 conv
    (im2col panels, and the stride-1 padded-grid path that reads the input in place)."""
    require_target(target, flavour)
    from codegen.layer import run_case
    from codegen.reference import reference_conv
    from models.ir import Conv2d

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lanes = get_isa(flavour).lanes
    for n, m in ((4, 4), (2, 8)):
        params = NmGemmParams(n, m, flavour, mr=6, nr=4 * lanes, unroll=2, threads=2)
        # (cout, k, p): 1 column tile cut in row chunks / enough tiles for every thread
        check_nmgemm(params, [(70, 1200, 4 * lanes - 3), (20, 400, 40 * lanes + 5)], 3, target, build_dir)
        conv = NmGemmParams(n, m, flavour, mr=6, nr=4 * lanes, unroll=2, threads=2, conv=True)
        rng = np.random.default_rng(5)
        # 64 rows on 13 x 13: im2col panels; 12 rows on 30 x 29: the padded-grid direct path
        for cout, cin, h, w, stride in ((64, 64, 13, 13, 1), (12, 64, 30, 29, 1), (12, 64, 30, 29, 2)):
            weights = mask_nm(rng.standard_normal((cout, cin * 9)).astype(np.float32), n, m)
            x = rng.standard_normal((cin, h, w)).astype(np.float32)
            bias = rng.standard_normal(cout).astype(np.float32)
            layer = Conv2d("conv", cin, cout, 3, stride=stride, padding=1)
            expected = reference_conv(weights.reshape(cout, cin, 3, 3), bias, x, layer, "none")
            packed = pack_nm(weights, n, m, mr=6)
            run = run_case(render_nmgemm(conv), target, Path(tempfile.mkdtemp(dir=build_dir)),
                           {"values": packed.values, "indices": None if conv.dense else packed.indices,
                            "bias": bias, "x": x}, (cout, cin, h, w, 3, 3, stride, 1),
                           expected.reshape(cout, -1), repeats=1)
            assert run.max_abs_error < 1e-3, (n, m, cout, h, w, run.max_abs_error)


@st.composite
def spmm_cases(draw, flavour: str):
    lanes = get_isa(flavour).lanes
    params = SpmmParams(flavour, mr=lanes * draw(st.integers(1, 4)), nr=draw(st.sampled_from([1, 2, 4])),
                        kb=draw(st.sampled_from([1, 1, 2, 4, 8])),
                        act=draw(st.sampled_from(["none", "relu", "relu6"])))
    shapes = draw(st.lists(st.tuples(st.integers(1, 23), st.integers(8, 40), st.integers(1, 70)),
                           min_size=2, max_size=4))
    # and one pixel (a classifier at batch 1: the kernel's matrix-vector path)
    shapes.append((draw(st.integers(1, 23)), draw(st.integers(8, 40)), 1))
    return params, shapes, draw(st.sampled_from([0.1, 0.3, 0.8])), draw(st.integers(0, 2**31))


def check_spmm(params: SpmmParams, shapes, density: float, seed: int, target: str, build_dir):
    kernel = render_spmm(params)
    executable = kernel_build.build(kernel, target, build_dir)
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{kernel.name}-", dir=build_dir))
    rng = np.random.default_rng(seed)
    expected = {}
    for number, (cout, cin, p) in enumerate(shapes):
        w = mask_blocks(rng.standard_normal((cout, cin)).astype(np.float32), params.nr, params.kb,
                        density)
        x = rng.standard_normal((cin, p)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32)
        packed = pack_block_sparse(w, params.nr, p, bias, kb=params.kb)
        kernel_build.write_case(workdir, f"case{number}", {
            "values": packed.values, "nnz": packed.nnz, "diffs": packed.diffs, "x": x},
            (cout, cin, p))
        expected[f"case{number}"] = _reference(w, x, bias, params.act)
    run_and_compare(kernel.name, executable, target, workdir, expected)


@pytest.mark.parametrize("flavour,target", FLAVOURS, ids=[f"{f}-{t}" for f, t in FLAVOURS])
def test_spmm_matches_numpy(flavour, target, build_dir):
    require_target(target, flavour)

    @settings(max_examples=6, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(spmm_cases(flavour))
    def check(case):
        check_spmm(*case, target, build_dir)

    check()


# ---------------------------------------------------------------- KxK convolution and dense ops


def conv_reference(x, w, stride, pad):
    """Returns the convolution of CHW x with (cout, cin, kh, kw) w, as (cout, oh*ow)."""
    cin, h, width = x.shape
    cout, _, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (width + 2 * pad - kw) // stride + 1
    cols = np.zeros((cin, kh, kw, out_h, out_w), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            cols[:, ky, kx] = padded[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
    return w.reshape(cout, -1) @ cols.reshape(cin * kh * kw, -1)


def window_reference(x, kind, kh, kw, stride, pad, weights=None):
    """Returns max/avg pooling (padding skipped by max, counted by avg) or, with ``weights``
    (c, kh, kw), the depthwise convolution of CHW x."""
    c, h, width = x.shape
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (width + 2 * pad - kw) // stride + 1
    out = np.full((c, out_h, out_w), fill)
    for ky in range(kh):
        for kx in range(kw):
            window = padded[:, ky:ky + stride * out_h:stride, kx:kx + stride * out_w:stride]
            if kind == "max":
                out = np.maximum(out, window)
            elif kind == "avg":
                out = out + window / (kh * kw)
            else:
                out = out + weights[:, ky, kx][:, None, None] * window
    return out


def run_cases(kernel, target, build_dir, cases):
    """Builds ``kernel``, runs every (name, buffers, ints, reference) case in one program and
    compares the outputs."""
    executable = kernel_build.build(kernel, target, build_dir)
    workdir = Path(tempfile.mkdtemp(prefix=f"run-{kernel.name}-", dir=build_dir))
    for name, buffers, ints, _ in cases:
        kernel_build.write_case(workdir, name, buffers, ints)
    kernel_build.run(executable, target, workdir, timeout_s=120)
    for name, _, _, reference in cases:
        y = kernel_build.read_output(workdir, name, "y", reference.shape)
        np.testing.assert_allclose(y, reference, atol=1e-4 * max(1.0, float(np.abs(reference).max())),
                                   rtol=1e-4, err_msg=f"{kernel.name} on {target}, {name}")


SIMD_FLAVOURS = [(f, t) for f, t in FLAVOURS if f != "scalar" or t == "host"]


@pytest.mark.parametrize("flavour,target", SIMD_FLAVOURS, ids=[f"{f}-{t}" for f, t in SIMD_FLAVOURS])
def test_sparse_conv_matches_numpy(flavour, target, build_dir):
    require_target(target, flavour)
    rng = np.random.default_rng(3)
    lanes = get_isa(flavour).lanes
    for n, m in ((2, 8), (3, 3)):
        params = NmGemmParams(n, m, flavour, mr=3, nr=2 * lanes, unroll=2, conv=True)
        cases = []
        for number, (cout, cin, h, w, k, stride, pad) in enumerate(
                [(5, 3, 9, 11, 3, 1, 1), (8, 4, 8, 8, 3, 2, 1), (4, 2, 5, 6, 1, 1, 0), (6, 3, 7, 7, 5, 2, 2)]):
            weights = mask_nm(rng.standard_normal((cout, cin * k * k)).astype(np.float32), n, m)
            x = rng.standard_normal((cin, h, w)).astype(np.float32)
            packed = pack_nm(weights, n, m, mr=3)
            cases.append((f"case{number}", {"values": packed.values, "indices": packed.indices,
                                            "bias": None, "x": x}, (cout, cin, h, w, k, k, stride, pad),
                          conv_reference(x, weights.reshape(cout, cin, k, k), stride, pad)))
        run_cases(render_nmgemm(params), target, build_dir, cases)


@pytest.mark.parametrize("flavour,target", SIMD_FLAVOURS, ids=[f"{f}-{t}" for f, t in SIMD_FLAVOURS])
def test_dense_ops_match_numpy(flavour, target, build_dir):
    require_target(target, flavour)
    rng = np.random.default_rng(4)
    for op in ELTWISE_OPS:
        cases = []
        for number, size in enumerate([1, 7, 33, 100]):
            a = 4 * rng.standard_normal(size).astype(np.float32)
            b = 4 * rng.standard_normal(size).astype(np.float32)
            expected = {"relu": np.maximum(a, 0), "relu6": np.clip(a, 0, 6), "add": a + b,
                        "add_relu": np.maximum(a + b, 0)}[op]
            cases.append((f"case{number}", {"a": a, "b": b}, (size,), expected))
        run_cases(render_eltwise(EltwiseParams(op, flavour)), target, build_dir, cases)
    shapes = [(3, 9, 30, 3, 1, 1), (2, 8, 8, 2, 2, 0), (4, 7, 7, 7, 1, 0), (2, 11, 13, 3, 2, 1),
              (2, 10, 17, 3, 3, 1), (3, 12, 40, 5, 2, 2)]
    for kind in POOL_KINDS:
        cases = []
        for number, (c, h, w, k, stride, pad) in enumerate(shapes):
            x = rng.standard_normal((c, h, w)).astype(np.float32)
            if kind == "gavg":
                cases.append((f"case{number}", {"x": x}, (c, h * w), x.reshape(c, -1).mean(axis=1)))
            else:
                cases.append((f"case{number}", {"x": x}, (c, h, w, k, k, stride, pad),
                              window_reference(x, kind, k, k, stride, pad)))
        run_cases(render_pool(PoolParams(kind, flavour)), target, build_dir, cases)
    for stride in (1, 2):
        cases = []
        # widths: partial vectors on every flavour, and at stride 2 a 16-lane vector too
        for number, (c, h, w, pad) in enumerate([(3, 9, 30, 1), (2, 8, 8, 1), (4, 7, 5, 0),
                                                 (2, 5, 67, 1)]):
            x = rng.standard_normal((c, h, w)).astype(np.float32)
            weights = rng.standard_normal((c, 3, 3)).astype(np.float32)
            bias = rng.standard_normal(c).astype(np.float32)
            expected = np.clip(window_reference(x, "dw", 3, 3, stride, pad, weights)
                               + bias[:, None, None], 0, 6)
            cases.append((f"case{number}", {"weights": weights, "bias": bias, "x": x}, (c, h, w, pad),
                          expected))
        run_cases(render_dwconv(DwconvParams(flavour, 3, stride, "relu6")), target, build_dir, cases)


# ---------------------------------------------------------------- every shipped variant compiles


def _arch_target(isa: str) -> str:
    return {"neon": "snapdragon855", "wasmsimd": "wasm32-simd128"}.get(isa, "host")


@pytest.fixture(scope="module")
def compiled_variants(tmp_path_factory):
    """Compiles every shipped variant once per target (one compiler call per flag set)."""
    kernels = shipped_kernels()
    results = {}
    for target in ("host", "snapdragon855", "wasm32-simd128"):
        if kernel_build.target_problems(target):
            continue
        mine = [kernel for kernel in kernels if _arch_target(kernel.isa) == target]
        results[target] = kernel_build.compile_many(mine, target, tmp_path_factory.mktemp(target))
    return results


SHIPPED = [(kernel.name, kernel.isa) for kernel in shipped_kernels()]


@pytest.mark.parametrize("name,isa", SHIPPED, ids=[name for name, _ in SHIPPED])
def test_shipped_variant_compiles(name, isa, compiled_variants):
    # the scalar reference compiles here on the host; the equivalence tests above also build
    # it for aarch64 and wasm32
    for target in [_arch_target(isa)]:
        if target not in compiled_variants:
            require_target(target, isa)
        assert compiled_variants[target][name] == "", compiled_variants[target][name]


def test_shipped_names_carry_parameters():
    names = [name for name, _ in SHIPPED]
    assert "nmgemm_2of8_4x24_avx2_u2" in names
    assert "nmgemm_2of8_shared_4x24_avx2_u2" in names
    assert len(set(names)) == len(names)


def test_harness_names_the_protocol():
    harness = render_harness(render_nmgemm(NmGemmParams(2, 8, "avx2", mr=4, nr=24)))
    assert "HWSIM_TIMES" in harness and "CLOCK_MONOTONIC" in harness
    assert '__builtin_cpu_supports("avx2")' in harness
