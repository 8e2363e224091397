"""The elementwise family (codegen/kernels/eltwise.c.j2): y = op(a[, b]) over n floats (relu,
relu6, add, add + relu), ``unroll`` vectors per step.

    >>> render(EltwiseParams("add_relu", "avx2")).filename
    'eltwise_add_relu_avx2_x2.c'

No cost description yet (``work`` None): the CPU cost model costs elementwise layers as
streams (hwsim.cpu.cpu_model.simulate_elementwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.render import Abi, Buffer, OutputBuffer, RenderedKernel
from models.errors import UserError

TEMPLATE = "eltwise.c.j2"
OPS = ("relu", "relu6", "add", "add_relu")


@dataclass(frozen=True)
class EltwiseParams:
    """y = op(a[, b]) over n floats, ``unroll`` vectors per step (codegen/kernels/eltwise.c.j2)."""
    op: str
    isa: str
    unroll: int = 2

    def __post_init__(self):
        get_isa(self.isa)
        if self.op not in OPS or self.unroll < 1:
            raise UserError(f"unknown elementwise op {self.op!r}", field="op",
                            fix=f"use one of {', '.join(OPS)}")

    @property
    def binary(self) -> bool:
        return self.op.startswith("add")

    @property
    def name(self) -> str:
        return f"eltwise_{self.op}_{self.isa}_x{self.unroll}"


ABI = Abi(ints=("n",), inputs=(Buffer("a", "float"), Buffer("b", "float", optional=True)),
          output=OutputBuffer("y", "float", "n"))


def abi(params: EltwiseParams) -> Abi:
    return ABI


def render(params: EltwiseParams) -> RenderedKernel:
    """Returns the C source of the elementwise kernel ``params`` describes."""
    return FAMILY.render(params)


def shipped() -> list[EltwiseParams]:
    """Returns every op per flavour, 2 vectors per step."""
    return [EltwiseParams(op, isa, unroll=2) for isa in ISAS for op in OPS]


def cases(params: EltwiseParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs of lengths with and without vector tails, and numpy's answers."""
    found = []
    for number, size in enumerate([1, 7, 33, 100]):
        a = 4 * rng.standard_normal(size).astype(np.float32)
        b = 4 * rng.standard_normal(size).astype(np.float32)
        expected = {"relu": np.maximum(a, 0), "relu6": np.clip(a, 0, 6), "add": a + b,
                    "add_relu": np.maximum(a + b, 0)}[params.op]
        found.append(Case(f"case{number}", {"a": a, "b": b}, (size,), expected))
    return found


FAMILY = Family(name="eltwise", template=TEMPLATE, params_type=EltwiseParams, abi=abi,
                shipped=shipped, cases=cases)
