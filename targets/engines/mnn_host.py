"""MNN on the host (pip ``MNN``): the ONNX file converted once by its ``mnnconvert``.

SparseByteNN's comparison engine, dense CPU backend. Its sparse convolution on masked
weights is not wired here yet (not checked which converter option enables it).
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from targets.engines.timing import Timing, time_one

NAME = "mnn"


def _converter() -> str | None:
    return shutil.which("mnnconvert") or shutil.which("mnnconvert", path=str(Path(sys.executable).parent))


def problems() -> list[str]:
    if importlib.util.find_spec("MNN") is None:
        return ["the Python package MNN is not installed (pip install MNN==3.6.1; mk/web.mk)"]
    if _converter() is None:
        return ["MNN's converter mnnconvert is not on PATH"]
    return []


def version() -> str:
    import MNN
    return MNN.version()


def convert(onnx_file: Path) -> Path:
    """Returns the .mnn beside the ONNX file (converted when missing or older)."""
    onnx_file = Path(onnx_file)
    target = onnx_file.with_suffix(".mnn")
    if not target.exists() or target.stat().st_mtime < onnx_file.stat().st_mtime:
        completed = subprocess.run([_converter(), "-f", "ONNX", "--modelFile", str(onnx_file),
                                    "--MNNModel", str(target), "--bizCode", "hwsim"],
                                   capture_output=True, text=True, timeout=600)
        if completed.returncode != 0 or "Converted Success" not in completed.stdout:
            raise RuntimeError(f"mnnconvert failed: {completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return target


def prepare(model_file: Path, x: np.ndarray, threads: int) -> Callable[[], np.ndarray]:
    import MNN.expr as F
    import MNN.nn as nn
    runtime = nn.create_runtime_manager(({"backend": "CPU", "numThread": threads},))
    module = nn.load_module_from_file(str(convert(model_file)), ["x"], ["y"],
                                      runtime_manager=runtime)
    var = F.const(np.ascontiguousarray(x, dtype=np.float32), list(x.shape), F.NCHW)
    return lambda: np.array(module.forward(var).read())


def run(model_file: Path, x: np.ndarray, threads: int) -> np.ndarray:
    return prepare(model_file, x, threads)()


def time(model_file: Path, x: np.ndarray, threads: int, repeats: int) -> Timing:
    return time_one(prepare(model_file, x, threads), repeats)
