"""The pooling family (codegen/kernels/pool.c.j2): max / average over a window (CHW, padding
skipped by max and counted by average, like PyTorch), or global average pooling.

    >>> render(PoolParams("max", "neon")).filename
    'pool_max_neon.c'

No cost description yet (``work`` None): the CPU cost model costs pooling layers as streams
(hwsim.cpu.cpu_model.simulate_elementwise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.reference import reference_pool
from codegen.render import Abi, Buffer, OutputBuffer, RenderedKernel
from models.errors import UserError

TEMPLATE = "pool.c.j2"
KINDS = ("max", "avg", "gavg")


@dataclass(frozen=True)
class PoolParams:
    """Max / average (windowed, CHW) or global average pooling (codegen/kernels/pool.c.j2)."""
    kind: str
    isa: str
    threads: int = 1   # OpenMP threads over channels (pool.c.j2; from PARALLEL_TAPS taps)

    def __post_init__(self):
        get_isa(self.isa)
        if self.kind not in KINDS:
            raise UserError(f"unknown pooling {self.kind!r}", field="kind",
                            fix=f"use one of {', '.join(KINDS)}")
        if self.threads < 1:
            raise UserError("pooling threads must be >= 1", field="threads", fix="use threads=1")

    @property
    def name(self) -> str:
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"pool_{self.kind}_{self.isa}{threads}"

    @property
    def parallel_taps(self) -> int:
        """The work (window taps) from which pool.c.j2 runs its channels on threads."""
        return PARALLEL_TAPS


# pool.c.j2 starts its OpenMP team from this many window taps (channels x outputs x taps):
# below it waking a worker costs more than the loop
PARALLEL_TAPS = 200_000


GLOBAL_ABI = Abi(ints=("c", "hw"), inputs=(Buffer("x", "float"),), output=OutputBuffer("y", "float", "c"))
WINDOW_ABI = Abi(ints=("c", "h", "w", "kh", "kw", "stride", "pad"), inputs=(Buffer("x", "float"),),
                 output=OutputBuffer("y", "float", "c * ((h + 2 * pad - kh) / stride + 1)"
                                                   " * ((w + 2 * pad - kw) / stride + 1)"))


def abi(params: PoolParams) -> Abi:
    return GLOBAL_ABI if params.kind == "gavg" else WINDOW_ABI


def render(params: PoolParams) -> RenderedKernel:
    """Returns the C source of the pooling kernel ``params`` describes."""
    return FAMILY.render(params)


def shipped() -> list[PoolParams]:
    """Returns every kind per flavour, single-threaded and on 2 threads."""
    return [PoolParams(kind, isa, threads) for isa in ISAS for kind in KINDS for threads in (1, 2)]


def cases(params: PoolParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs over odd planes, windows, strides and padding (the last above
    PARALLEL_TAPS, so a threaded variant runs its OpenMP loop), and numpy's answers."""
    found = []
    for number, (c, h, w, k, stride, pad) in enumerate([(3, 9, 30, 3, 1, 1), (2, 11, 13, 3, 2, 1),
                                                         (9, 111, 113, 3, 2, 1)]):
        x = rng.standard_normal((c, h, w)).astype(np.float32)
        if params.kind == "gavg":
            found.append(Case(f"case{number}", {"x": x}, (c, h * w), x.reshape(c, -1).mean(axis=1)))
        else:
            found.append(Case(f"case{number}", {"x": x}, (c, h, w, k, k, stride, pad),
                              reference_pool(x, params.kind, (k, k), stride, pad)))
    return found


FAMILY = Family(name="pool", template=TEMPLATE, params_type=PoolParams, abi=abi,
                shipped=shipped, cases=cases)
