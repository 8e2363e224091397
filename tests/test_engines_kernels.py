"""The speed paths of the kernel templates (issue 15) agree with numpy on the host's widest
flavour, on 1 and 2 threads: spmm's channel chunks (cin past one L1 chunk) and masked pixel
tails, dwconv's rotating row ring (planes past the whole-plane size) at strides 1 and 2, and
the im2col gather's row runs (tiles wider than an output row, padding columns, stride 2)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codegen.build import best_flavour
from codegen.kernels import dwconv, nmgemm, spmm
from codegen.reference import reference_conv
from models.ir import Conv2d
from models.patterns import NM, apply_mask
from tests.conftest import require_tools


@pytest.fixture(autouse=True)
def _cc():
    require_tools("cc")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("nr,kb,cin,pixels", [(1, 4, 600, 196), (4, 1, 300, 49), (1, 1, 260, 100)])
def test_spmm_channel_chunks_and_tails(nr, kb, cin, pixels, threads, tmp_path, monkeypatch):
    """cin past the 32 KB chunk of a 64-pixel tile (128 channels at avx512, 256 at avx2) walks
    every row's blocks in several chunks; p % lanes != 0 leaves a masked tail vector."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    rng = np.random.default_rng(cin + pixels)
    flavour = best_flavour("host")
    cout = 70
    w = spmm.mask_blocks(rng.standard_normal((cout, cin)).astype(np.float32), nr, kb, 0.25)
    x = rng.standard_normal((cin, pixels)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    params = spmm.SpmmParams(flavour, mr=64 if flavour == "avx512" else 32, nr=nr, kb=kb,
                             threads=2, act="relu")
    result = spmm.run_layer(w, x, bias, params, "host", tmp_path, repeats=1)
    scale = float(np.abs(w @ x).max())
    assert result.max_abs_error <= 1e-5 * scale


@pytest.mark.parametrize("stride", [1, 2])
def test_dwconv_row_ring(stride, tmp_path, monkeypatch):
    """A 70 x 75 plane is past the whole-plane ring (16 KB): rows rotate through K + 2 * stride
    slots, padding rows are zeroed as they come round."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    rng = np.random.default_rng(stride)
    channels, height, width = 12, 70, 75
    x = rng.standard_normal((channels, height, width)).astype(np.float32)
    taps = rng.standard_normal((channels, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    params = dwconv.DwconvParams(best_flavour("host"), 3, stride, "relu6", threads=2)
    result = dwconv.run_layer(taps, x, bias, params, 1, "host", tmp_path, repeats=1)
    assert result.max_abs_error < 1e-4


@pytest.mark.parametrize("stride,pad,side", [(2, 1, 31), (1, 1, 9), (2, 0, 20), (1, 2, 13)])
def test_conv_gather_runs(stride, pad, side, tmp_path):
    """Output rows narrower than the pixel tile (several runs per tile), padding columns on
    both sides, stride 2's deinterleaved loads; dense and 2:8 weights."""
    from codegen.layer import run_case

    rng = np.random.default_rng(side)
    flavour = best_flavour("host")
    cin, cout = 8, 13
    x = rng.standard_normal((cin, side, side)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    conv = Conv2d("c", cin, cout, 3, stride=stride, padding=pad)
    for n, m in ((1, 1), (2, 8)):
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
        w2d = w.reshape(cout, -1)
        if n != m:
            w2d = apply_mask(w2d, NM(n, m, axis=1).mask(w2d))
        params = nmgemm.default_schedule(n, m, "host", flavour=flavour)
        params = dataclasses.replace(params, act="relu", conv=True)
        packed = nmgemm.pack(w2d, n, m, mr=params.mr, shared=params.shared)
        reference = reference_conv(w2d.reshape(w.shape), bias, x, conv, "relu")
        result = run_case(nmgemm.render(params), "host", tmp_path / f"{n}of{m}",
                          {"values": packed.values, "indices": None if n == m else packed.indices,
                           "bias": bias, "x": x},
                          (cout, cin, side, side, 3, 3, stride, pad), reference, repeats=1)
        assert result.max_abs_error < 1e-4, (n, m)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("k,stride,pad,width", [(3, 2, 1, 70), (3, 2, 1, 33), (2, 2, 0, 67),
                                              (3, 1, 1, 45)])
def test_pool_vector_columns(kind, k, stride, pad, width, tmp_path):
    """Rows wide enough for vectors of output columns at stride 2 (deinterleaved loads) and 1,
    with the border columns scalar (ResNet-18's 3x3 s2 max pooling)."""
    from codegen.kernels import pool
    from codegen.layer import run_case
    from codegen.reference import reference_pool

    rng = np.random.default_rng(width)
    channels, height = 3, 11
    x = rng.standard_normal((channels, height, width)).astype(np.float32)
    reference = reference_pool(x, kind, (k, k), stride, pad)
    result = run_case(pool.render(pool.PoolParams(kind, best_flavour("host"))), "host", tmp_path,
                      {"x": x}, (channels, height, width, k, k, stride, pad), reference, repeats=1)
    assert result.max_abs_error < 1e-5
