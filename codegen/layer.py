"""Build and run one kernel on one layer's data on a target, checked against numpy.

Each family module's ``run_layer`` (what ``hwsim run`` and ``bench/kernels.py`` call) packs
its weights and hands the buffers here::

    from codegen.kernels import nmgemm
    params = nmgemm.default_schedule(2, 8, "host")           # or the tuning log's best
    result = nmgemm.run_layer(w_masked, x, bias, params, "host", workdir, repeats=5)
    result.median_s, result.max_abs_error
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.render import RenderedKernel
from targets.cpu import CpuTarget


@dataclass(frozen=True)
class KernelRun:
    """One kernel run on a target: the kernel's name, its timed runs, its error against numpy."""
    kernel: str
    target: str
    times_s: tuple[float, ...]
    max_abs_error: float

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s)) if self.times_s else float("nan")

    @property
    def best_s(self) -> float:
        return float(np.min(self.times_s)) if self.times_s else float("nan")


def run_case(kernel: RenderedKernel, target: str | CpuTarget, workdir: Path, buffers: dict,
             ints: tuple[int, ...], reference: np.ndarray, repeats: int = 5, warmup: int = 1
             ) -> KernelRun:
    """Builds ``kernel`` for ``target`` under ``workdir``, runs it on ``buffers`` / ``ints``
    (its Abi's inputs and sizes) ``repeats`` times, and compares its output with ``reference``."""
    workdir = Path(workdir)
    executable = kernel_build.build(kernel, target, workdir / "build")
    cases = workdir / f"cases-{kernel.name}"
    cases.mkdir(parents=True, exist_ok=True)
    (cases / "cases.txt").unlink(missing_ok=True)
    kernel_build.write_case(cases, "layer", buffers, ints)
    result = kernel_build.run(executable, target, cases, repeats=repeats, warmup=warmup)
    y = kernel_build.read_output(cases, "layer", kernel.abi.output.name, reference.shape)
    return KernelRun(kernel.name, kernel_build.as_target(target).name, tuple(result.times_s),
                     float(np.abs(y - reference).max()))
