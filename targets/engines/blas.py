"""The BLAS numpy calls (OpenBLAS in the PyPI wheels), as a per-GEMM dense baseline on the host.

numpy links its own OpenBLAS (``scipy_openblas``); its thread count is set here through the
library's ``*_set_num_threads`` entry point, found among the shared objects this process has
loaded (threadpoolctl does the same; it is not a dependency). ``info()`` names the library,
its configuration (the kernel it chose for this CPU, e.g. ``Haswell`` or ``Zen``) and threads.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from targets.engines.timing import time_one

NAME = "blas"
_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
        "openblas_get_num_threads64_", "openblas_get_num_threads")
_CONFIG = ("scipy_openblas_get_config64_", "scipy_openblas_get_config",
           "openblas_get_config64_", "openblas_get_config")


@dataclass(frozen=True)
class BlasLibrary:
    """numpy's BLAS: the shared object and its entry points (None where it lacks one)."""
    path: str
    set_threads: Callable[[int], None] | None
    get_threads: Callable[[], int] | None
    config: str


def _loaded_blas_paths() -> list[str]:
    """Returns the paths of loaded shared objects that look like a BLAS (Linux /proc maps)."""
    np.ones((2, 2)) @ np.ones((2, 2))   # numpy loads its BLAS lazily on some builds
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = []
    for line in maps.splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if "blas" in Path(path).name.lower() and path not in paths:
            paths.append(path)
    return paths


def _symbol(library, names: tuple[str, ...]):
    for name in names:
        try:
            return getattr(library, name)
        except AttributeError:
            continue
    return None


def find_library() -> BlasLibrary | None:
    """Returns numpy's BLAS (None when no loaded library exposes OpenBLAS's entry points)."""
    for path in _loaded_blas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        set_threads = _symbol(library, _SET)
        if set_threads is None:
            continue
        get_threads = _symbol(library, _GET)
        config = _symbol(library, _CONFIG)
        text = ""
        if config is not None:
            config.restype = ctypes.c_char_p
            text = (config() or b"").decode(errors="replace")
        set_threads.argtypes = [ctypes.c_int]
        if get_threads is not None:
            get_threads.restype = ctypes.c_int
        return BlasLibrary(path, set_threads, get_threads, text)
    return None


def problems() -> list[str]:
    if find_library() is None:
        return ["numpy's BLAS exposes no OpenBLAS thread control here (the thread count "
                "cannot be fixed, so its times would not be comparable)"]
    return []


def info() -> str:
    """One line: the library, its configuration and current threads."""
    library = find_library()
    if library is None:
        return "numpy BLAS (unknown library)"
    threads = library.get_threads() if library.get_threads else "?"
    return f"{Path(library.path).name} ({library.config.strip()}; {threads} threads)"


class threads:
    """Context manager: numpy's BLAS on ``count`` threads inside, the old count restored after."""

    def __init__(self, count: int):
        self.count = count
        self.library = find_library()
        self.previous = None

    def __enter__(self):
        if self.library is not None:
            if self.library.get_threads is not None:
                self.previous = self.library.get_threads()
            self.library.set_threads(self.count)
        return self

    def __exit__(self, *exc):
        if self.library is not None and self.previous is not None:
            self.library.set_threads(self.previous)
        return False


def gemm_call(cout: int, k: int, p: int, seed: int = 0) -> Callable[[], np.ndarray]:
    """Returns a call of numpy's Y = W X for one GEMM shape (float32, output preallocated)
    on random operands: a dense GEMM's time does not depend on the values."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, k), dtype=np.float32)
    x = rng.standard_normal((k, p), dtype=np.float32)
    y = np.empty((cout, p), dtype=np.float32)
    return lambda: np.matmul(w, x, out=y)


def time_calls(call: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Returns the seconds of ``repeats`` timed calls after ``warmup`` untimed ones."""
    return list(time_one(call, repeats, warmup).times_s)
