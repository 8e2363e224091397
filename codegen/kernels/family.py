"""The record a kernel family module fills in: what the registry, the tests and the cost
model read of a family (codegen/kernels/__init__.py lists them).

A family module (codegen/kernels/<name>.py) holds its ``Params`` (the schedule and epilogue
of one variant, its name carrying them), its ``Abi`` (the one declaration of its argument
list), ``pack`` (weights into the kernel's layout), ``default_schedule``, its shipped variants,
``work`` (what the kernel runs for a workload, for the cost model) and ``cases`` (harness
buffers and the numpy answer, for the equivalence test), and ends with ``FAMILY = Family(...)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from codegen.render import Abi, RenderedKernel, render_template


@dataclass(frozen=True)
class Case:
    """One run of a kernel: the harness's buffers and integer sizes, and numpy's answer."""
    name: str
    buffers: dict
    ints: tuple[int, ...]
    expected: np.ndarray


@dataclass(frozen=True)
class Family:
    """One kernel family: its template (beside it in codegen/kernels), Params type and functions.

    abi(params) -> Abi; shipped() -> [Params] (every one rendered and compiled in CI);
    work(params, workload, geometry) -> codegen.kernels.work.KernelWork, or None where the
    cost model does not cost this family's kernels yet; cases(params, rng) -> [Case]."""
    name: str
    template: str
    params_type: type
    abi: Callable[[object], Abi]
    shipped: Callable[[], list]
    cases: Callable[[object, np.random.Generator], list[Case]]
    work: Callable | None = None

    def render(self, params) -> RenderedKernel:
        """Returns the C source of the variant ``params`` describes."""
        if not isinstance(params, self.params_type):
            raise TypeError(f"{self.name} renders {self.params_type.__name__}, not {type(params).__name__}")
        return render_template(self.template, params, self.abi(params))
