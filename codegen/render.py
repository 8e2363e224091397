"""Shared rendering machinery: the ABI declaration, the Jinja environment, the harness.

A kernel family (codegen/kernels/<family>.py) declares its argument list once, as an
``Abi``; the C prototype, the harness's call and the files the harness reads and writes
are all rendered from that one declaration::

    >>> abi = Abi(ints=("n",), inputs=(Buffer("a", "float"),), output=OutputBuffer("y", "float", "n"))
    >>> abi.prototype("relu_avx2")
    'void relu_avx2(size_t n, const float* restrict a, float* restrict y)'
    >>> abi.call
    '(size_t) n, a, y'

``render_template`` renders a family's template (codegen/kernels/<family>.c.j2) into a
``RenderedKernel`` (its C source, its Abi, its parameters); ``render_harness`` writes a main()
that reads .bin files, times the kernel and writes the output (templates/harness.c.j2).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from codegen.isa import get_isa
from models.errors import UserError

TEMPLATES_DIR = Path(__file__).parent / "templates"            # the shared harness
FAMILY_TEMPLATES_DIR = Path(__file__).parent / "kernels"       # each family's, beside its module
ACTIVATIONS = ("none", "relu", "relu6")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(FAMILY_TEMPLATES_DIR), str(TEMPLATES_DIR)]),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def check_activation(act: str) -> None:
    """Raises UserError for an activation no template fuses."""
    if act not in ACTIVATIONS:
        raise UserError(f"unknown activation {act!r}", field="act",
                        fix=f"use one of {', '.join(ACTIVATIONS)}")


# ---------------------------------------------------------------- ABI (what the harness calls)


@dataclass(frozen=True)
class Buffer:
    name: str
    ctype: str
    optional: bool = False


@dataclass(frozen=True)
class OutputBuffer:
    name: str
    ctype: str
    size: str                 # a C expression over the Abi's integer names


@dataclass(frozen=True)
class Abi:
    """A kernel's argument list, declared once: integer sizes (``size_t``), input buffers
    (``const T*``), one output buffer, in that order; ``params``, ``call`` and ``prototype``
    are rendered from it. ``restrict``: the pointers are declared restrict."""
    ints: tuple[str, ...]
    inputs: tuple[Buffer, ...]
    output: OutputBuffer
    x86_features: tuple[str, ...] = ()
    restrict: bool = True

    @property
    def params(self) -> str:
        """Returns the C parameter list."""
        qualifier = " restrict" if self.restrict else ""
        return ", ".join([f"size_t {name}" for name in self.ints]
                         + [f"const {buf.ctype}*{qualifier} {buf.name}" for buf in self.inputs]
                         + [f"{self.output.ctype}*{qualifier} {self.output.name}"])

    @property
    def call(self) -> str:
        """Returns the harness's argument list (its ints are C longs read from the case file)."""
        return ", ".join([f"(size_t) {name}" for name in self.ints]
                         + [buf.name for buf in self.inputs] + [self.output.name])

    def prototype(self, kernel: str) -> str:
        return f"void {kernel}({self.params})"

    def for_isa(self, isa: str) -> "Abi":
        """Returns the Abi with the x86 features a flavour needs (the harness checks them)."""
        return dataclasses.replace(self, x86_features=get_isa(isa).x86_features)


@dataclass(frozen=True)
class RenderedKernel:
    """C source of one kernel variant; ``filename`` carries its parameters."""
    name: str
    source: str
    abi: Abi
    isa: str
    params: object = field(compare=False)

    @property
    def filename(self) -> str:
        return f"{self.name}.c"

    @property
    def source_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def gemm_abi(inputs: tuple[Buffer, ...]) -> Abi:
    """Returns the argument list of a GEMM family's kernel Y[cout x p] = W[cout x k] X[k x p]."""
    return Abi(ints=("cout", "k", "p"), inputs=inputs, output=OutputBuffer("y", "float", "cout * p"))


def conv_abi(inputs: tuple[Buffer, ...]) -> Abi:
    """Returns the argument list of a GEMM family's KxK convolution of a CHW image."""
    return Abi(ints=("cout", "cin", "h", "w", "kh", "kw", "stride", "pad"), inputs=inputs,
               output=OutputBuffer("y", "float", "cout * ((h + 2 * pad - kh) / stride + 1)"
                                                 " * ((w + 2 * pad - kw) / stride + 1)"))


def render_template(template: str, params, abi: Abi) -> RenderedKernel:
    """Returns ``template`` (a file under codegen/kernels) rendered for ``params`` (a family's
    Params: ``.name`` and ``.isa``). The template sees ``p`` (the params), ``isa`` (its
    codegen.isa record), ``scalar`` (the scalar record), ``name`` and ``abi``."""
    abi = abi.for_isa(params.isa)
    source = _environment().get_template(template).render(
        p=params, isa=get_isa(params.isa), scalar=get_isa("scalar"), name=params.name, abi=abi)
    return RenderedKernel(params.name, source, abi, params.isa, params)


# ---------------------------------------------------------------- harness


def render_harness(kernel: RenderedKernel) -> str:
    """Returns a main() that runs ``kernel`` on .bin files and prints HWSIM_TIMES."""
    return _environment().get_template("harness.c.j2").render(kernel=kernel.name, abi=kernel.abi)
