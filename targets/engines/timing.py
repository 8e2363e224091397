"""Median and spread of interleaved repeats: what every engine's ``time`` returns."""
from __future__ import annotations

import time as _time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


# After a call, an engine's thread pool spins before its threads sleep, taking a core from
# whatever runs next (measured on a 2-vCPU Zen 4 host, 2 threads: OpenBLAS spent 104 ms of CPU
# in the 0.2 s after a GEMM, ONNX Runtime 40 ms after a ResNet-18 inference, none later)
POOL_SPIN_S = 0.3


def let_pools_sleep() -> None:
    """Waits until the pools of the engines this process just ran (BLAS, ONNX Runtime) sleep,
    so that the next thing timed, a kernel executable, has the cores to itself."""
    _time.sleep(POOL_SPIN_S)


@dataclass(frozen=True)
class Timing:
    """Seconds of every timed run; median and spread (interquartile, min, max) from them."""
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s))

    @property
    def iqr_s(self) -> float:
        low, high = np.percentile(self.times_s, [25, 75])
        return float(high - low)

    def as_dict(self) -> dict:
        return {"median_s": self.median_s, "iqr_s": self.iqr_s, "min_s": min(self.times_s),
                "max_s": max(self.times_s), "repeats": len(self.times_s)}


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
                ) -> dict[str, Timing]:
    """Returns each callable's Timing, its repeats interleaved round-robin with the others',
    so that a burst of machine load slows every engine alike instead of one."""
    for call in runs.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, call in runs.items():
            start = _time.perf_counter()
            call()
            times[name].append(_time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in times.items()}


def time_one(call: Callable[[], object], repeats: int, warmup: int = 2) -> Timing:
    return interleaved({"one": call}, repeats, warmup)["one"]


def run_all(calls: Sequence[Callable[[], object]]) -> list[object]:
    return [call() for call in calls]
