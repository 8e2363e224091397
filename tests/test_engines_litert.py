"""LiteRT (XNNPACK delegate) as a host baseline: the .tflite it times computes what ONNX
Runtime computes on the same network, XNNPACK really runs it, and its problems are one line.
Needs .venv-tf (mk/torch.mk): skipped without it, failed without it when CI is set."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from models.loading import load
from targets.engines import litert, onnxruntime_host
from targets.engines.onnx_file import write_onnx

TOLERANCE = 1e-4          # max |LiteRT - ORT| / max |ORT|, float32 on one fixed input


def _need_litert():
    problems = litert.problems() + onnxruntime_host.problems()
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def test_problems_name_a_missing_venv_in_one_line(tmp_path):
    problems = litert.problems(venv_python=tmp_path / "no-venv" / "bin" / "python")
    assert len(problems) == 1 and "\n" not in problems[0] and "no-venv" in problems[0]


def test_tflite_of_our_onnx_file_agrees_with_onnxruntime(tmp_path):
    """The .tflite e2e times (rebuilt from the ONNX file ORT and MNN run, same weights):
    depthwise + pointwise convs, stride-2 padding, batch norm, relu6, residual adds, dense."""
    _need_litert()
    model = load("mobilenet_v2", dataset="cifar10")
    path = write_onnx(model, tmp_path / "mnv2.onnx", seed=3)
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = onnxruntime_host.run(path, x, 1)[0]
    session = litert.prepare(path, x, 2)
    try:
        assert session.info["xnnpack"] and session.info["whole_graph_delegated"], session.info
        assert session.info["threads"] == 2
        got = session.output()
        assert _relative_error(got, expected) <= TOLERANCE
        timing = litert.Timing(tuple(session.times_s(3)))
        assert len(timing.times_s) == 3 and timing.median_s > 0
        session()                                   # the call e2e times
    finally:
        session.close()
    other = write_onnx(model, tmp_path / "other.onnx", seed=4)    # the check can fail
    assert _relative_error(litert.run(other, x, 1), expected) > 100 * TOLERANCE


@pytest.mark.slow
def test_keras_mobilenet_tflite_agrees_with_onnxruntime_on_its_tf2onnx_export(tmp_path):
    """A Keras user's route: keras.applications MobileNet (alpha 0.25, 128 px) as .tflite
    (TF's converter) and as ONNX (tf2onnx), both run on one fixed NHWC input."""
    _need_litert()
    tflite, onnx_file = litert.keras_pair("mobilenet", 0.25, 128, tmp_path)
    x = np.random.default_rng(7).standard_normal((1, 128, 128, 3)).astype(np.float32)
    expected = onnxruntime_host.run(onnx_file, x, 1)[0].reshape(1, -1)
    got = litert.run(tflite, x, 1).reshape(1, -1)
    assert _relative_error(got, expected) <= TOLERANCE


def test_a_session_without_xnnpack_is_refused(tmp_path):
    _need_litert()
    path = write_onnx(load("mobilenet_v1", dataset="cifar10"), tmp_path / "mnv1.onnx")
    tflite = litert.convert(path)
    x = np.zeros((1, 32, 32, 3), np.float32)
    with pytest.raises(RuntimeError, match="did not apply its XNNPACK delegate"):
        litert.Session(Path(tflite), x, 1, default_delegates=False)
