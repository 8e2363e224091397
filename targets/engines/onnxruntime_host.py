"""ONNX Runtime on the host (CPU execution provider), intra_op_num_threads = threads."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np

from targets.engines.timing import Timing, time_one

NAME = "onnxruntime"


def problems() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return ["the Python package onnxruntime is not installed (pip install onnxruntime)"]
    return []


def version() -> str:
    import onnxruntime
    return onnxruntime.__version__


def prepare(model_file: Path, x: np.ndarray, threads: int) -> Callable[[], list[np.ndarray]]:
    """Returns a call that runs one inference (session built once, warm-up left to the caller)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(x, dtype=np.float32)}
    return lambda: session.run(None, feed)


def run(model_file: Path, x: np.ndarray, threads: int) -> list[np.ndarray]:
    return prepare(model_file, x, threads)()


def time(model_file: Path, x: np.ndarray, threads: int, repeats: int) -> Timing:
    return time_one(prepare(model_file, x, threads), repeats)
