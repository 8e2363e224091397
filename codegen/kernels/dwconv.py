"""The depthwise convolution family (codegen/kernels/dwconv.c.j2): a k x k window per channel with
a compile-time stride, + bias, activation, on a CHW image.

    >>> render(DwconvParams("avx2", 3, 2, "relu6")).filename
    'dwconv_3x3_s2_avx2_relu6.c'

The weights are used as they are (c x k x k): no packing. What the kernel runs for a workload
(``work``, read by the CPU cost model): per channel, copy each input row once into an L1
ring of zero-padded rows (a small plane whole), then per output row a vector loop over ``lanes`` output
columns (stride 1, and stride 2 from deinterleaved loads) and the rest as one masked vector
(AVX2, AVX-512) or a scalar loop, which the compiler may vectorize.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.kernels.work import FLOAT_BYTES, KernelWork, LoopWork, PackShape, Stream, memory_ops
from codegen.layer import KernelRun, run_case
from codegen.reference import reference_conv
from codegen.render import Abi, Buffer, OutputBuffer, RenderedKernel, check_activation
from models.errors import UserError
from models.ir import Conv2d

TEMPLATE = "dwconv.c.j2"


@dataclass(frozen=True)
class DwconvParams:
    """Depthwise k x k convolution with a compile-time stride (codegen/kernels/dwconv.c.j2)."""
    isa: str
    k: int = 3
    stride: int = 1
    act: str = "none"
    threads: int = 1   # OpenMP threads over channels (issue 15)

    def __post_init__(self):
        get_isa(self.isa)
        check_activation(self.act)
        if self.k < 1 or self.stride < 1 or self.threads < 1:
            raise UserError("kernel size and stride must be >= 1", field="dwconv",
                            fix="use e.g. k=3 stride=1")

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"dwconv_{self.k}x{self.k}_s{self.stride}_{self.isa}{threads}{act}"


def abi(params: DwconvParams) -> Abi:
    k, s = params.k, params.stride
    return Abi(ints=("c", "h", "w", "pad"),
               inputs=(Buffer("weights", "float"), Buffer("bias", "float", optional=True),
                       Buffer("x", "float")),
               output=OutputBuffer("y", "float", f"c * ((h + 2 * pad - {k}) / {s} + 1)"
                                                 f" * ((w + 2 * pad - {k}) / {s} + 1)"))


def render(params: DwconvParams) -> RenderedKernel:
    """Returns the C source of the depthwise kernel ``params`` describes."""
    return FAMILY.render(params)


def default_schedule(op: Conv2d, input_shape: tuple[int, ...], flavour: str, act: str = "none",
                     threads: int = 1) -> DwconvParams | None:
    """Returns the kernel of depthwise layer ``op`` on an input of ``input_shape`` (NCHW), or
    None where the family has none: non-square kernels, strides or padding, a batch > 1."""
    if op.kernel[0] != op.kernel[1] or op.stride[0] != op.stride[1] or len(input_shape) != 4 \
            or input_shape[0] != 1 or op.padding[0] != op.padding[1]:
        return None
    return DwconvParams(flavour, op.kernel[0], op.stride[0], act, threads=threads)


def shipped() -> list[DwconvParams]:
    """Returns the shipped variants: 3x3 at strides 1 and 2, plain and relu6, per flavour."""
    return [DwconvParams(isa, 3, stride, act) for isa in ISAS for stride in (1, 2)
            for act in ("none", "relu6")]


# ---------------------------------------------------------------- what it runs for a workload


@dataclass(frozen=True)
class DepthwiseGeometry:
    """What a depthwise workload's GEMM sizes leave out: the input plane and its padding."""
    channels: int
    height: int
    width: int
    pad: int


def geometry_of(model, layer: str) -> DepthwiseGeometry:
    """Returns the input plane of depthwise layer ``layer`` of ``model`` (batch 1, NCHW)."""
    op = model.op(layer)
    (spec,) = model.input_specs(op.name)
    return DepthwiseGeometry(spec.shape[1], spec.shape[2], spec.shape[3], op.padding[0])


# dwconv.c.j2 splits the channels among its threads from this many MACs
PARALLEL_MACS = 1e5


def work(params: DwconvParams, workload, geometry: DepthwiseGeometry | None = None) -> KernelWork:
    """Returns what the kernel runs on the input plane ``geometry`` (the workload's GEMM sizes
    leave it out): the row loops (masked tails or a scalar tail loop), the padding copies
    and the streams."""
    if geometry is None:
        raise ValueError(f"{params.name}: a depthwise kernel is costed with its input geometry")
    isa = get_isa(params.isa)
    lanes = isa.lanes
    taps = params.k * params.k
    c, h, w, pad = geometry.channels, geometry.height, geometry.width, geometry.pad
    out_h = (h + 2 * pad - params.k) // params.stride + 1
    out_w = (w + 2 * pad - params.k) // params.stride + 1
    threads = max(1, params.threads)     # dwconv.c.j2: over channels, from 100k MACs
    if c < 2 or c * out_h * out_w * taps < PARALLEL_MACS:
        threads = 1
    vector = out_w // lanes if params.stride in (1, 2) and lanes > 1 else 0
    tail = out_w - vector * lanes
    # the flavours with masked loads and stores end a row with a masked vector
    masked = params.stride in (1, 2) and isa.masked_tails
    padded_w = w + 2 * pad
    pitch = -(-(padded_w + 3 * lanes) // lanes) * lanes
    ring_rows = params.k + 2 * params.stride
    whole_plane = (h + 2 * pad) * pitch * FLOAT_BYTES <= 16384 or ring_rows > h + 2 * pad
    if whole_plane:
        ring_rows = h + 2 * pad
    vectors = vector + (1 if masked and tail else 0)
    # dwconv.c.j2 at stride 1 (vectors): output rows in pairs, each tap row loaded once for
    # both (K + 1 rows, 2 K x K FMAs, 2 stores per vector); an odd last row on its own
    pair = params.stride == 1 and lanes > 1
    pairs = out_h // 2 if pair else 0
    singles = out_h - 2 * pairs
    loops = []
    for rows_per_step, steps in ((2, c * pairs), (1, c * singles)):
        if not steps:
            continue
        accesses = _vector_accesses(params, lanes, pitch, ring_rows, out_h, out_w, vectors,
                                    min(c, 4), rows_per_step) if vectors else None
        if masked:
            # the masked tail is one more vector iteration per row (the same tap loads from the
            # ring's slack, a masked store), straight-line code in the row loop: costed as a
            # vector-loop iteration; the row loop's own path (AsmLoop.through_child) leaves it out
            loops.append(LoopWork(rows_per_step * taps * lanes, steps * vectors, memory_ops=accesses))
        else:
            if vector:
                loops.append(LoopWork(rows_per_step * taps * lanes, steps * vector, memory_ops=accesses))
            if tail:
                loops.append(LoopWork(rows_per_step * taps, steps * tail, trips_per_entry=tail))
    # dwconv.c.j2: each input row is copied once (vector loads and stores) into an L1 ring of
    # zero-padded rows; a ring smaller than the plane also clears a padding row per pad row
    # at the top and bottom (a memset of one padded row); a small plane's ring is the plane,
    # zeroed once per thread
    streams = (Stream("weights", c * taps * FLOAT_BYTES, 1),
               Stream("panel", c * h * w * FLOAT_BYTES, 1),
               Stream("output", c * out_h * out_w * FLOAT_BYTES, 1))
    packs = [PackShape(rows=h, row_bytes=w * FLOAT_BYTES, stride_bytes=w * FLOAT_BYTES, tiles=c)]
    if pad and not whole_plane:
        packs.append(PackShape(rows=2 * pad, row_bytes=padded_w * FLOAT_BYTES,
                               stride_bytes=padded_w * FLOAT_BYTES, tiles=c))
    # parents: the row loop (its own path: ring row pointers, loop control; once per step)
    # and the channel loop
    return KernelWork(loops=tuple(loops), parent_trips=(c * (pairs + singles), c), streams=streams,
                      pixel_tile=lanes, row_tile=1, memory_tiles=1,
                      parallel_units=c if threads > 1 else 1, threads=threads,
                      # the row copies into the ring, costed as the probe's memcpy of each
                      # input row (and the padding rows' clears as copies: an upper bound)
                      pack=tuple(packs))


def _vector_accesses(params: DwconvParams, lanes: int, pitch: int, ring_rows: int, out_h: int,
                     out_w: int, vectors: int, channels: int, rows_per_step: int = 1):
    """Returns the tap loads and output stores of the vector loop with their line offsets, over
    ``channels`` output planes (dwconv.c.j2: ring rows ``pitch`` floats apart from a 64-byte
    aligned ring, row ky of output row oy in slot (oy * stride + ky) % ring_rows; taps at
    columns ox + kx (stride 2: the two vectors at 2 ox + kx and 2 ox + kx + lanes that a
    deinterleaved load reads); the output plane from a 64-byte aligned y). ``rows_per_step``
    2: the stride-1 loop over a pair of output rows (K + 1 tap rows, two stores)."""
    vector_bytes = lanes * FLOAT_BYTES
    loads: dict = {}
    stores: dict = {}
    iterations = 0
    steps = range(0, out_h - 1, 2) if rows_per_step == 2 else range(out_h)
    for ch in range(channels):
        for oy in steps:
            for v in range(vectors):
                ox = v * lanes
                iterations += 1
                for ky in range(params.k + rows_per_step - 1):
                    row = ((oy * params.stride + ky) % ring_rows) * pitch
                    for kx in range(params.k):
                        starts = ((ox + kx,) if params.stride == 1
                                  else (2 * ox + kx, 2 * ox + kx + lanes))
                        for column in starts:
                            key = (vector_bytes, (row + column) * FLOAT_BYTES % 64)
                            loads[key] = loads.get(key, 0) + 1
                for r in range(rows_per_step):
                    key = (vector_bytes, ((ch * out_h + oy + r) * out_w + ox) * FLOAT_BYTES % 64)
                    stores[key] = stores.get(key, 0) + 1
    return memory_ops(loads, stores, iterations)


# ---------------------------------------------------------------- runs


def buffers(params: DwconvParams, weights: np.ndarray, bias: np.ndarray | None, x: np.ndarray) -> dict:
    """Returns the harness buffers of one run (the weights c x k x k as they are)."""
    return {"weights": weights, "bias": bias, "x": x}


def _reference(params: DwconvParams, w: np.ndarray, bias, x: np.ndarray, pad: int) -> np.ndarray:
    channels = x.shape[0]
    conv = Conv2d("dw", channels, channels, params.k, stride=params.stride, padding=pad, groups=channels)
    return reference_conv(w.reshape(channels, 1, params.k, params.k), bias, x, conv, params.act)


def run_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: DwconvParams,
              pad: int, target, workdir: Path, repeats: int = 5, warmup: int = 1) -> KernelRun:
    """Builds the depthwise kernel for ``target``, runs it on ``x`` (c x h x w) with weights
    ``w`` (c x k x k) ``repeats`` times, and checks its output against numpy."""
    channels, height, width = x.shape
    return run_case(render(params), target, workdir, buffers(params, w, bias, x),
                    (channels, height, width, pad), _reference(params, w, bias, x, pad), repeats, warmup)


def cases(params: DwconvParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs on planes whose widths leave partial vectors on every flavour, with and
    without padding and bias, and numpy's answers."""
    found = []
    for number, (c, h, w, pad) in enumerate([(3, 9, 30, 1), (2, 5, 67, 0)]):
        pad = min(pad, (params.k - 1) // 2) if params.k > 1 else 0
        x = rng.standard_normal((c, h, w)).astype(np.float32)
        weights = rng.standard_normal((c, params.k, params.k)).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32) if number % 2 == 0 else None
        found.append(Case(f"case{number}", buffers(params, weights, bias, x), (c, h, w, pad),
                          _reference(params, weights, bias, x, pad)))
    return found


FAMILY = Family(name="dwconv", template=TEMPLATE, params_type=DwconvParams, abi=abi,
                shipped=shipped, cases=cases, work=work)
