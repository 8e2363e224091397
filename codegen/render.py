"""Render kernel templates to C: one template per family, parameters in the file name.

    >>> params = NmGemmParams(n=2, m=8, isa="avx2", mr=4, nr=24, unroll=2)
    >>> kernel = render_nmgemm(params)
    >>> kernel.filename
    'nmgemm_2of8_4x24_avx2_u2.c'

A ``RenderedKernel`` carries its C source and its ``Abi`` (the argument list), from which
``render_harness`` writes a main() that reads .bin files, times the kernel and writes the
output (see templates/harness.c.j2).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from codegen.isa import get_isa
from models.errors import UserError

TEMPLATES_DIR = Path(__file__).parent / "templates"
ACTIVATIONS = ("none", "relu", "relu6")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


# ---------------------------------------------------------------- ABI (what the harness calls)


@dataclass(frozen=True)
class Buffer:
    name: str
    ctype: str
    optional: bool = False


@dataclass(frozen=True)
class Abi:
    """A kernel's argument list: integer sizes, input buffers, one output buffer.

    ``output.size`` is a C expression over the integer names; ``call`` the C argument list."""
    ints: tuple[str, ...]
    inputs: tuple[Buffer, ...]
    output: "OutputBuffer"
    params: str
    call: str
    x86_features: tuple[str, ...] = ()

    def prototype(self, kernel: str) -> str:
        return f"void {kernel}({self.params})"


@dataclass(frozen=True)
class OutputBuffer:
    name: str
    ctype: str
    size: str


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


def _x86_features(isa: str) -> tuple[str, ...]:
    return get_isa(isa).x86_features


# ---------------------------------------------------------------- N:M sparse GEMM


NMGEMM_ABI_PARAMS = ("size_t cout, size_t k, size_t p, const float* restrict values, "
                     "const uint8_t* restrict indices, const float* restrict bias, "
                     "const float* restrict x, float* restrict y")


@dataclass(frozen=True)
class NmGemmParams:
    """Schedule of one N:M GEMM kernel variant (see templates/nmgemm.c.j2).

    mr: output rows per register tile; nr: pixels per tile (a multiple of the ISA's lanes);
    unroll: groups per loop step; shared: one index set per block of ``mr`` rows;
    kc: k-block in groups (0: none); prefetch: weight prefetch distance in groups (0: none);
    threads: OpenMP threads over column tiles; act: fused activation; conv: the input is a CHW
    image and X its implicit im2col (a sparse KxK convolution, family "nmconv")."""
    n: int
    m: int
    isa: str
    mr: int = 1
    nr: int = 8
    unroll: int = 1
    shared: bool = False
    kc: int = 0
    prefetch: int = 0
    threads: int = 1
    act: str = "none"
    conv: bool = False

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if not 1 <= self.n <= self.m <= 16:
            raise UserError(f"n:m = {self.n}:{self.m} needs 1 <= n <= m <= 16", field="sparsity",
                            fix="use e.g. 2:8")
        if self.mr < 1 or self.nr < lanes or self.nr % lanes:
            raise UserError(f"tile {self.mr}x{self.nr} does not fit {self.isa} ({lanes} lanes)",
                            field="tile", fix=f"use nr a multiple of {lanes}")
        if self.unroll < 1 or self.kc < 0 or self.prefetch < 0 or self.threads < 1:
            raise UserError("unroll, threads >= 1 and kc, prefetch >= 0 are required",
                            field="schedule", fix="e.g. unroll=2 kc=0 prefetch=0 threads=1")
        if self.act not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.act!r}", field="act",
                            fix=f"use one of {', '.join(ACTIVATIONS)}")

    @property
    def dense(self) -> bool:
        """n == m keeps every weight: the kernel reads no indices (the dense GEMM fallback)."""
        return self.n == self.m

    @property
    def name(self) -> str:
        if self.conv:
            family = "conv" if self.dense else f"nmconv_{self.n}of{self.m}"
        else:
            family = "gemm" if self.dense else f"nmgemm_{self.n}of{self.m}"
        parts = [family]
        if self.shared and not self.dense:
            parts.append("shared")
        parts += [f"{self.mr}x{self.nr}", self.isa, f"u{self.unroll}"]
        if self.kc:
            parts.append(f"kc{self.kc}")
        if self.prefetch:
            parts.append(f"pf{self.prefetch}")
        if self.threads > 1:
            parts.append(f"t{self.threads}")
        if self.act != "none":
            parts.append(self.act)
        return "_".join(parts)


def nmgemm_abi(isa: str) -> Abi:
    return Abi(ints=("cout", "k", "p"),
               inputs=(Buffer("values", "float"), Buffer("indices", "uint8_t", optional=True),
                       Buffer("bias", "float", optional=True), Buffer("x", "float")),
               output=OutputBuffer("y", "float", "cout * p"),
               params=NMGEMM_ABI_PARAMS,
               call="(size_t) cout, (size_t) k, (size_t) p, values, indices, bias, x, y",
               x86_features=_x86_features(isa))


NMCONV_ABI_PARAMS = ("size_t cout, size_t cin, size_t h, size_t w, size_t kh, size_t kw, "
                     "size_t stride, size_t pad, const float* restrict values, "
                     "const uint8_t* restrict indices, const float* restrict bias, "
                     "const float* restrict x, float* restrict y")


def nmconv_abi(isa: str) -> Abi:
    ints = ("cout", "cin", "h", "w", "kh", "kw", "stride", "pad")
    return Abi(ints=ints,
               inputs=(Buffer("values", "float"), Buffer("indices", "uint8_t", optional=True),
                       Buffer("bias", "float", optional=True), Buffer("x", "float")),
               output=OutputBuffer("y", "float", "cout * ((h + 2 * pad - kh) / stride + 1)"
                                                 " * ((w + 2 * pad - kw) / stride + 1)"),
               params=NMCONV_ABI_PARAMS,
               call=", ".join(f"(size_t) {name}" for name in ints)
               + ", values, indices, bias, x, y",
               x86_features=_x86_features(isa))


def render_nmgemm(params: NmGemmParams) -> RenderedKernel:
    """Returns the C source of the N:M GEMM (or, with ``conv``, KxK convolution) variant."""
    isa = get_isa(params.isa)
    source = _environment().get_template("nmgemm.c.j2").render(p=params, isa=isa, name=params.name)
    abi = nmconv_abi(params.isa) if params.conv else nmgemm_abi(params.isa)
    return RenderedKernel(params.name, source, abi, params.isa, params)


# ---------------------------------------------------------------- block-sparse 1x1 convolution


SPMM_ABI_PARAMS = ("size_t cout, size_t cin, size_t p, const float* restrict values, "
                   "const int32_t* restrict nnz, const int32_t* restrict diffs, "
                   "const float* restrict x, float* restrict y")


@dataclass(frozen=True)
class SpmmParams:
    """One XNNPACK-style block-sparse kernel (templates/spmm.c.j2): ``mr`` pixels per tile
    (a multiple of the lanes), blocks of ``nr`` output x ``kb`` input channels."""
    isa: str
    mr: int = 8
    nr: int = 1
    kb: int = 1
    act: str = "none"
    threads: int = 1   # OpenMP threads over pixel chunks (issue 15)

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if self.mr < lanes or self.mr % lanes or self.nr < 1 or self.kb < 1 or self.threads < 1:
            raise UserError(f"spmm tile {self.mr}x{self.nr} (block {self.nr}x{self.kb}) does not "
                            f"fit {self.isa}", field="tile", fix=f"use mr a multiple of {lanes}")
        if self.act not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.act!r}", field="act",
                            fix=f"use one of {', '.join(ACTIVATIONS)}")

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"spmm_{self.mr}x{self.nr}_kb{self.kb}_{self.isa}{threads}{act}"


def spmm_abi(isa: str) -> Abi:
    return Abi(ints=("cout", "cin", "p"),
               inputs=(Buffer("values", "float"), Buffer("nnz", "int32_t"),
                       Buffer("diffs", "int32_t"), Buffer("x", "float")),
               output=OutputBuffer("y", "float", "cout * p"),
               params=SPMM_ABI_PARAMS,
               call="(size_t) cout, (size_t) cin, (size_t) p, values, nnz, diffs, x, y",
               x86_features=_x86_features(isa))


def render_spmm(params: SpmmParams) -> RenderedKernel:
    """Returns the C source of the block-sparse kernel ``params`` describes."""
    source = _environment().get_template("spmm.c.j2").render(
        p=params, isa=get_isa(params.isa), scalar=get_isa("scalar"), name=params.name)
    return RenderedKernel(params.name, source, spmm_abi(params.isa), params.isa, params)


# ---------------------------------------------------------------- dense ops a whole model needs


ELTWISE_OPS = ("relu", "relu6", "add", "add_relu")
POOL_KINDS = ("max", "avg", "gavg")


def _check_isa_act(isa: str, act: str = "none") -> None:
    get_isa(isa)
    if act not in ACTIVATIONS:
        raise UserError(f"unknown activation {act!r}", field="act",
                        fix=f"use one of {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class EltwiseParams:
    """y = op(a[, b]) over n floats, ``unroll`` vectors per step (templates/eltwise.c.j2)."""
    op: str
    isa: str
    unroll: int = 2

    def __post_init__(self):
        _check_isa_act(self.isa)
        if self.op not in ELTWISE_OPS or self.unroll < 1:
            raise UserError(f"unknown elementwise op {self.op!r}", field="op",
                            fix=f"use one of {', '.join(ELTWISE_OPS)}")

    @property
    def binary(self) -> bool:
        return self.op.startswith("add")

    @property
    def name(self) -> str:
        return f"eltwise_{self.op}_{self.isa}_x{self.unroll}"


@dataclass(frozen=True)
class PoolParams:
    """Max / average (windowed, CHW) or global average pooling (templates/pool.c.j2)."""
    kind: str
    isa: str

    def __post_init__(self):
        _check_isa_act(self.isa)
        if self.kind not in POOL_KINDS:
            raise UserError(f"unknown pooling {self.kind!r}", field="kind",
                            fix=f"use one of {', '.join(POOL_KINDS)}")

    @property
    def name(self) -> str:
        return f"pool_{self.kind}_{self.isa}"


@dataclass(frozen=True)
class DwconvParams:
    """Depthwise k x k convolution with a compile-time stride (templates/dwconv.c.j2)."""
    isa: str
    k: int = 3
    stride: int = 1
    act: str = "none"
    threads: int = 1   # OpenMP threads over channels (issue 15)

    def __post_init__(self):
        _check_isa_act(self.isa, self.act)
        if self.k < 1 or self.stride < 1 or self.threads < 1:
            raise UserError("kernel size and stride must be >= 1", field="dwconv",
                            fix="use e.g. k=3 stride=1")

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"dwconv_{self.k}x{self.k}_s{self.stride}_{self.isa}{threads}{act}"


def _render(template: str, params, abi: Abi) -> RenderedKernel:
    source = _environment().get_template(template).render(
        p=params, isa=get_isa(params.isa), scalar=get_isa("scalar"), name=params.name)
    return RenderedKernel(params.name, source, abi, params.isa, params)


def render_eltwise(params: EltwiseParams) -> RenderedKernel:
    abi = Abi(ints=("n",), inputs=(Buffer("a", "float"), Buffer("b", "float", optional=True)),
              output=OutputBuffer("y", "float", "n"),
              params="size_t n, const float* restrict a, const float* restrict b, float* restrict y",
              call="(size_t) n, a, b, y", x86_features=_x86_features(params.isa))
    return _render("eltwise.c.j2", params, abi)


def render_pool(params: PoolParams) -> RenderedKernel:
    if params.kind == "gavg":
        abi = Abi(ints=("c", "hw"), inputs=(Buffer("x", "float"),),
                  output=OutputBuffer("y", "float", "c"),
                  params="size_t c, size_t hw, const float* restrict x, float* restrict y",
                  call="(size_t) c, (size_t) hw, x, y", x86_features=_x86_features(params.isa))
    else:
        ints = ("c", "h", "w", "kh", "kw", "stride", "pad")
        abi = Abi(ints=ints, inputs=(Buffer("x", "float"),),
                  output=OutputBuffer("y", "float", "c * ((h + 2 * pad - kh) / stride + 1)"
                                                    " * ((w + 2 * pad - kw) / stride + 1)"),
                  params="size_t c, size_t h, size_t w, size_t kh, size_t kw, size_t stride, "
                         "size_t pad, const float* restrict x, float* restrict y",
                  call=", ".join(f"(size_t) {name}" for name in ints) + ", x, y",
                  x86_features=_x86_features(params.isa))
    return _render("pool.c.j2", params, abi)


def render_dwconv(params: DwconvParams) -> RenderedKernel:
    k, s = params.k, params.stride
    abi = Abi(ints=("c", "h", "w", "pad"),
              inputs=(Buffer("weights", "float"), Buffer("bias", "float", optional=True),
                      Buffer("x", "float")),
              output=OutputBuffer("y", "float", f"c * ((h + 2 * pad - {k}) / {s} + 1)"
                                                f" * ((w + 2 * pad - {k}) / {s} + 1)"),
              params="size_t c, size_t h, size_t w, size_t pad, const float* restrict weights, "
                     "const float* restrict bias, const float* restrict x, float* restrict y",
              call="(size_t) c, (size_t) h, (size_t) w, (size_t) pad, weights, bias, x, y",
              x86_features=_x86_features(params.isa))
    return _render("dwconv.c.j2", params, abi)


# ---------------------------------------------------------------- harness


def render_harness(kernel: RenderedKernel) -> str:
    """Returns a main() that runs ``kernel`` on .bin files and prints HWSIM_TIMES."""
    return _environment().get_template("harness.c.j2").render(kernel=kernel.name, abi=kernel.abi)
