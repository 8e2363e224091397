"""Baseline engines: the ONNX file we write computes what numpy-free engines agree on."""
from __future__ import annotations

import numpy as np
import pytest

from models.loading import load
from targets.engines import mnn_host, onnxruntime_host
from targets.engines.onnx_file import write_onnx
from targets.engines.timing import Timing, interleaved


def test_interleaved_timing_has_every_repeat():
    calls = {"a": lambda: sum(range(100)), "b": lambda: sum(range(1000))}
    timings = interleaved(calls, repeats=5, warmup=1)
    assert all(len(t.times_s) == 5 and t.median_s > 0 for t in timings.values())
    assert Timing((1.0, 2.0, 3.0)).median_s == 2.0


def test_onnxruntime_and_mnn_agree_on_our_onnx_file(tmp_path):
    if onnxruntime_host.problems():
        pytest.skip("; ".join(onnxruntime_host.problems()))
    path = write_onnx(load("resnet18", dataset="cifar10"), tmp_path / "r18.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y1 = onnxruntime_host.run(path, x, 1)[0]
    y2 = onnxruntime_host.run(path, x, 2)[0]
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-4)
    if mnn_host.problems():
        pytest.skip("; ".join(mnn_host.problems()))
    y3 = mnn_host.run(path, x, 1).reshape(y1.shape)
    np.testing.assert_allclose(y3, y1, rtol=1e-3, atol=1e-3 * float(np.abs(y1).max()))


def test_mnn_conversion_leaves_the_environment_alone(tmp_path):
    """MNN's `mnnconvert` wrapper pip-installs aliyun-log-python-sdk (protobuf < 6: `import onnx`
    then fails) and posts a usage log; the converter must run without it."""
    import importlib.metadata

    if mnn_host.problems():
        pytest.skip("; ".join(mnn_host.problems()))
    path = write_onnx(load("resnet18", dataset="cifar10"), tmp_path / "r18.onnx")
    before = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
    assert mnn_host.convert(path).stat().st_size > 0
    after = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
    assert after == before


def test_mnn_sparse_convolution_computes_the_masked_model(tmp_path):
    """MNN's sparse convolution (--detectSparseSpeedUp) on a block-1x4-masked model: it stores
    the weights compressed and computes what ONNX Runtime computes on the same masked file."""
    from models.patterns import parse_pattern
    if onnxruntime_host.problems() or mnn_host.problems():
        pytest.skip("; ".join(onnxruntime_host.problems() + mnn_host.problems()))
    path = write_onnx(load("resnet18", dataset="cifar10"), tmp_path / "r18.onnx",
                      pattern=parse_pattern("block:1x4:0.2"))
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = onnxruntime_host.run(path, x, 1)[0]
    got = mnn_host.run(path, x, 1, sparse=True).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
    assert mnn_host.convert(path, sparse=True).stat().st_size < 0.6 * mnn_host.convert(path).stat().st_size
