"""MNN on the host (pip ``MNN``): the ONNX file converted once by its ``mnnconvert``.

SparseByteNN's comparison engine: its dense CPU backend, and (``sparse=True``) its sparse
convolution: the converter's --detectSparseSpeedUp stores a masked model's zero-heavy
convolution weights in MNN's sparse format where its check predicts a speed-up (MobileNet-v1
with block 1x4 at 80%: 16.9 MB -> 6.9 MB; outputs equal the dense conversion's to 3e-7).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from targets.engines.timing import Timing, time_one

NAME = "mnn"


# MNN's converter proper (its C++ extension), called without the ``mnnconvert`` wrapper: the
# wrapper imports MNN.tools.utils.log, which runs ``pip install -U aliyun-log-python-sdk`` when
# that is missing (it downgraded protobuf below what onnx needs, breaking `import onnx` in the
# venv) and posts a usage record to Alibaba's log service. A benchmark does neither.
CONVERT = "import sys, _tools; _tools.mnnconvert(sys.argv)"


def _converter() -> str | None:
    """Returns the Python that has MNN's converter extension (_tools), or None."""
    return sys.executable if importlib.util.find_spec("_tools") is not None else None


def problems() -> list[str]:
    if importlib.util.find_spec("MNN") is None:
        return ["the Python package MNN is not installed (pip install MNN==3.6.1; mk/web.mk)"]
    if _converter() is None:
        return ["MNN's converter extension (_tools) is missing from the MNN package"]
    return []


def version() -> str:
    import MNN
    return MNN.version()


def convert(onnx_file: Path, sparse: bool = False) -> Path:
    """Returns the .mnn beside the ONNX file (converted when missing or older); ``sparse``:
    converted with --detectSparseSpeedUp into <name>.sparse.mnn."""
    onnx_file = Path(onnx_file)
    target = onnx_file.with_suffix(".sparse.mnn" if sparse else ".mnn")
    if not target.exists() or target.stat().st_mtime < onnx_file.stat().st_mtime:
        completed = subprocess.run([_converter(), "-c", CONVERT, "-f", "ONNX", "--modelFile", str(onnx_file),
                                    "--MNNModel", str(target), "--bizCode", "hwsim",
                                    *(["--detectSparseSpeedUp"] if sparse else [])],
                                   capture_output=True, text=True, timeout=600)
        if completed.returncode != 0 or "Converted Success" not in completed.stdout:
            raise RuntimeError(f"mnnconvert failed: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return target


def prepare(model_file: Path, x: np.ndarray, threads: int, sparse: bool = False) -> Callable[[], np.ndarray]:
    """Returns a call that runs one inference of the ONNX file on ``x`` (its sparse
    convolution with ``sparse``)."""
    import MNN.expr as F
    import MNN.nn as nn
    runtime = nn.create_runtime_manager(({"backend": "CPU", "numThread": threads},))
    module = nn.load_module_from_file(str(convert(model_file, sparse)), ["x"], ["y"],
                                      runtime_manager=runtime)
    var = F.const(np.ascontiguousarray(x, dtype=np.float32), list(x.shape), F.NCHW)
    return lambda: np.array(module.forward(var).read())


def run(model_file: Path, x: np.ndarray, threads: int, sparse: bool = False) -> np.ndarray:
    return prepare(model_file, x, threads, sparse)()


def time(model_file: Path, x: np.ndarray, threads: int, repeats: int) -> Timing:
    return time_one(prepare(model_file, x, threads), repeats)
