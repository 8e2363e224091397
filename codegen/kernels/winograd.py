"""The Winograd family (codegen/kernels/winograd.c.j2): a dense 3x3 stride-1 convolution
y = act(conv3x3(W, x) + bias) by F(m x m, 3x3), m = 2 or 4 (Lavin & Gray, CVPR 2016), CHW
layout, any padding.

    >>> render(WinogradParams("avx512", mr=6, nr=64)).filename
    'winograd_f2_6x64_avx512.c'
    >>> render(WinogradParams("avx512", mr=24, nr=16, m=4)).filename
    'winograd_f4_24x16_avx512.c'

Why: a dense 3x3 layer's direct / implicit-GEMM kernel (nmconv, chconv) already runs near the
FMA peak, so only fewer multiplies make it faster. F(m x m, 3x3) computes an m x m output tile
from an (m + 2) x (m + 2) input tile with (m + 2)^2 multiplies per (input, output channel)
pair where a direct convolution does 9 m^2: 16 for 4 outputs (F(2x2)), 36 for 16 (F(4x4)).

    for each block of nr output tiles:
      V[xi][ci][tile] = (B^T d B)[xi]           input transform, (m+2)^2 x cin x nr floats (L2)
      for each tile of mr output channels:
        M[xi] = U[xi][mr x cin] V[xi]           (m+2)^2 GEMMs, vectors along tiles
        y = A^T M A + bias, activation          output transform, into CHW

Weights (``pack``): U = G g G^T per (cout, cin), computed here at build time in float64 and
stored float32 as [(m+2)^2][ceil(cout / mr)][cin][mr], zero past cout, so each GEMM step
broadcasts mr consecutive output channels' weights. Sparse layers never run it: a pruned
g's zeros are not zeros of U. The ABI is nmgemm's convolution one (``conv_abi``). codegen.plan
says which layers get it, and which m (prefers_winograd, winograd_side).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codegen import build as kernel_build
from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.kernels.work import FLOAT_BYTES, KernelWork, LoopWork, PackShape, Stream
from codegen.render import Abi, Buffer, RenderedKernel, check_activation, conv_abi
from models.errors import UserError

TEMPLATE = "winograd.c.j2"

# winograd.c.j2 starts its OpenMP team from this many direct-convolution MACs (as chgemm)
PARALLEL_MACS = 1e6

# The transforms (Lavin & Gray 2016, section 4), correlation form: {m: (B^T, G, A^T)} of
# F(m x m, 3x3), output tiles of m x m from input tiles of (m + 2) x (m + 2)
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], float)),
}

# the register tiles (output channels, tile vectors) per flavour, in the order
# default_schedule prefers them: output tiles fill the vectors, channels the accumulator
# rows, within the vector registers. Measured here (best of 20, 1 thread): AVX2 6x16 beats
# 3x32 at 56 x 56 (1.36 vs 1.39 ms) and 28 x 28 (1.29 vs 1.30); wasm's 12 x 4 spills
# (14 x 14: 6.8 ms vs 4.9 for 6 x 8), so wasm has two
TILES: dict[str, tuple[tuple[int, int], ...]] = {
    "avx512": ((6, 4), (12, 2), (24, 1)),
    "avx2": ((6, 2), (3, 4), (12, 1)),
    "neon": ((6, 4), (12, 2), (24, 1)),
    "wasmsimd": ((4, 3), (6, 2)),
    "scalar": ((4, 4),),
}


@dataclass(frozen=True)
class WinogradParams:
    """One F(m x m, 3x3) kernel: ``mr`` output channels x ``nr`` output tiles per register tile
    (nr a multiple of the lanes; also the tile block whose transformed input is kept), output
    tiles of ``m`` x ``m`` (2 or 4)."""
    isa: str
    mr: int = 6
    nr: int = 64
    act: str = "none"
    threads: int = 1
    m: int = 2

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if self.mr < 1 or self.nr < lanes or self.nr % lanes or self.threads < 1:
            raise UserError(f"winograd tile {self.mr}x{self.nr} does not fit {self.isa}", field="tile",
                            fix=f"use nr a multiple of {lanes}, mr >= 1")
        if self.m not in TRANSFORMS:
            raise UserError(f"winograd F({self.m}x{self.m}, 3x3) is not implemented", field="m",
                            fix=f"use m in {sorted(TRANSFORMS)}")
        check_activation(self.act)

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        return f"winograd_f{self.m}_{self.mr}x{self.nr}_{self.isa}{threads}{act}"

    @property
    def alpha(self) -> int:
        """Returns the input tile's side, m + 2."""
        return self.m + 2

    @property
    def points(self) -> int:
        """Returns the transformed tile's points: the GEMMs per tile block."""
        return self.alpha ** 2

    @property
    def input_transform(self) -> tuple[tuple[int, ...], ...]:
        """Returns B^T's integer coefficients (the template writes them as multiply-adds)."""
        return tuple(tuple(int(v) for v in row) for row in TRANSFORMS[self.m][0])

    @property
    def output_transform(self) -> tuple[tuple[int, ...], ...]:
        """Returns A^T's integer coefficients."""
        return tuple(tuple(int(v) for v in row) for row in TRANSFORMS[self.m][2])

    @property
    def coefficients(self) -> tuple[int, ...]:
        """Returns the coefficients other than 0 and +-1 of both transforms (vector constants)."""
        return tuple(sorted({v for rows in (self.input_transform, self.output_transform)
                             for row in rows for v in row if v not in (0, 1, -1)}))

    @property
    def parallel_macs(self) -> float:
        return PARALLEL_MACS


ABI = conv_abi((Buffer("weights", "float"), Buffer("bias", "float", optional=True), Buffer("x", "float")))


def abi(params: WinogradParams) -> Abi:
    return ABI


def render(params: WinogradParams) -> RenderedKernel:
    """Returns the C source of the variant ``params`` describes."""
    return FAMILY.render(params)


def tile_choices(flavour: str) -> list[tuple[int, int]]:
    """Returns the flavour's (mr, nr) register tiles in order of preference."""
    isa = get_isa(flavour)
    return [(mr, vectors * isa.lanes) for mr, vectors in TILES[isa.name]]


def tile_use(tiles: int, nr: int) -> float:
    """Returns the share of the blocks' nr tile lanes that hold real output tiles."""
    return tiles / (math.ceil(tiles / nr) * nr)


def default_schedule(target, flavour: str | None = None, threads: int | None = None,
                     act: str = "none", tiles: int | None = None, m: int = 2) -> WinogradParams:
    """Returns the flavour's register tile for a layer of ``tiles`` 2x2 output tiles: the
    first (TILES' order) whose blocks are 90% real tiles, else the one of the best use
    (widest on ties)."""
    isa = get_isa(flavour or kernel_build.best_flavour(target))
    choices = tile_choices(isa.name)
    mr, nr = choices[0]
    if tiles:
        fitting = [choice for choice in choices if tile_use(tiles, choice[1]) >= 0.9]
        mr, nr = fitting[0] if fitting else max(choices, key=lambda c: (tile_use(tiles, c[1]), c[1]))
    return WinogradParams(isa.name, mr=mr, nr=nr, act=act, m=m,
                          threads=threads if threads is not None else kernel_build.default_threads(target))


def shipped() -> list[WinogradParams]:
    """Returns the shipped variants: every flavour's register tiles, plain, relu and relu6, on
    2 threads (the builds' default on the 2-core hosts here)."""
    return [WinogradParams(isa, mr=mr, nr=nr, act=act, threads=2, m=m)
            for isa in ISAS for m in sorted(TRANSFORMS) for mr, nr in tile_choices(isa)[:3 if m == 2 else 1]
            for act in ("none", "relu", "relu6")]


# ---------------------------------------------------------------- weights


def transform_weights(w: np.ndarray, m: int = 2) -> np.ndarray:
    """Returns U = G g G^T of every (cout, cin) 3x3 kernel of ``w`` for F(m x m, 3x3) as
    [(m + 2)^2][cout][cin] float64 (xi = (m + 2) * row + column of the transformed tile)."""
    cout, cin, kh, kw = w.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"F({m}x{m}, 3x3) takes 3x3 kernels, not {kh}x{kw}")
    g = TRANSFORMS[m][1]
    u = np.einsum("ak,ockl,bl->aboc", g, w.astype(np.float64), g)      # [alpha][alpha][cout][cin]
    return u.reshape((m + 2) ** 2, cout, cin)


def pack(w: np.ndarray, mr: int, m: int = 2) -> np.ndarray:
    """Returns ``w`` (cout x cin x 3 x 3, or cout x cin*9 in (c, ky, kx) order) transformed
    and laid out [(m + 2)^2][ceil(cout / mr)][cin][mr] float32, zero past cout."""
    if w.ndim == 2:
        w = w.reshape(w.shape[0], -1, 3, 3)
    u = transform_weights(w, m)
    cout, cin = w.shape[:2]
    points = u.shape[0]
    tiles = math.ceil(cout / mr)
    padded = np.zeros((points, tiles * mr, cin))
    padded[:, :cout] = u
    return np.ascontiguousarray(padded.reshape(points, tiles, mr, cin).transpose(0, 1, 3, 2)
                                .astype(np.float32))


def buffers(params: WinogradParams, w2d: np.ndarray, bias: np.ndarray | None, x: np.ndarray) -> dict:
    """Returns the harness buffers of one run: ``w2d`` (cout x cin*9) transformed and packed."""
    return {"weights": pack(w2d, params.mr, params.m), "bias": bias, "x": x}


def reference_winograd(u: np.ndarray, x: np.ndarray, pad: int, m: int = 2) -> np.ndarray:
    """Returns the F(m x m, 3x3) convolution of CHW ``x`` with transformed weights ``u``
    ([(m + 2)^2][cout][cin]) in numpy float64: the kernel's algorithm, for checking the transforms."""
    b_t, _, a_t = TRANSFORMS[m]
    alpha = m + 2
    cin, h, w = x.shape
    out_h, out_w = h + 2 * pad - 2, w + 2 * pad - 2
    th, tw = math.ceil(out_h / m), math.ceil(out_w / m)
    padded = np.zeros((cin, m * th + 2, m * tw + 2))
    padded[:, pad:pad + h, pad:pad + w] = x
    d = np.stack([np.stack([padded[:, m * ty:m * ty + alpha, m * tx:m * tx + alpha] for tx in range(tw)], 1)
                  for ty in range(th)], 1)                               # [cin][th][tw][alpha][alpha]
    v = np.einsum("ar,cyxrs,bs->abcyx", b_t, d, b_t).reshape(alpha * alpha, cin, th * tw)
    product = np.einsum("poc,pct->pot", u, v).reshape(alpha, alpha, -1, th, tw)
    y = np.einsum("ar,rsoyx,bs->oyaxb", a_t, product, a_t).reshape(-1, m * th, m * tw)
    return y[:, :out_h, :out_w]


# ---------------------------------------------------------------- what it runs for a workload


@dataclass(frozen=True)
class ConvGeometry:
    """The input plane a 3x3 layer's GEMM sizes leave out: channels, height, width, padding."""
    channels: int
    height: int
    width: int
    pad: int


def _geometry(workload, geometry) -> ConvGeometry:
    """Returns the layer's input plane: ``geometry`` where given, else a square output of the
    workload's pixels at padding 1 (ResNet's 3x3 stride-1 layers)."""
    if geometry is not None:
        return ConvGeometry(geometry.channels, geometry.height, geometry.width, geometry.pad)
    side = math.isqrt(workload.M)
    out_h, out_w = (side, side) if side * side == workload.M else (1, workload.M)
    return ConvGeometry(max(1, math.ceil(workload.K / 9)), out_h, out_w, 1)


def items(blocks: int, co_tiles: int, team: int) -> tuple[int, int]:
    """Returns (output-channel groups, work items) of winograd.c.j2's parallel loop: a layer
    with fewer than 2 x team tile blocks splits its channel tiles in groups too."""
    wanted = 2 * team if team > 1 else 1
    groups = 1 if blocks >= wanted else min(co_tiles, math.ceil(wanted / blocks))
    return groups, blocks * groups


def work(params: WinogradParams, workload, geometry=None) -> KernelWork:
    """Returns what the kernel runs for ``workload`` (M = output pixels, N = cout, K = cin x 9):
    the 16 GEMMs' innermost loop (mr x nr lanes a step, cin steps per transformed point,
    register tile and tile block), the padded copy of the input and the two transforms as
    copies, and the streams (U re-read once per tile block, each block's V once per channel
    tile from L2)."""
    plane = _geometry(workload, geometry)
    cin, cout = plane.channels, workload.N
    out_h, out_w = plane.height + 2 * plane.pad - 2, plane.width + 2 * plane.pad - 2
    points, side = params.points, params.m
    tiles = math.ceil(out_h / side) * math.ceil(out_w / side)
    blocks = math.ceil(tiles / params.nr)
    co_tiles = math.ceil(cout / params.mr)
    macs = float(cout) * cin * 9 * out_h * out_w
    team = max(1, params.threads) if macs >= PARALLEL_MACS else 1
    groups, units = items(blocks, co_tiles, team)
    loops = (LoopWork(params.mr * params.nr, points * blocks * co_tiles * cin),)
    lanes = get_isa(params.isa).lanes
    hp = side * math.ceil(out_h / side) + 2
    wp = (2 * math.ceil(out_w / 2) + 2 * lanes + 2 if side == 2
          else 4 * (math.ceil(out_w / side) + lanes + 1))
    pack = (PackShape(cin * plane.height, plane.width * FLOAT_BYTES, wp * FLOAT_BYTES, 1),
            # the input transform writes each block's V (16 rows of nr floats per channel),
            # once per item's block
            PackShape(points * cin, params.nr * FLOAT_BYTES, params.nr * FLOAT_BYTES, blocks * groups),
            # the output transform reads the 16 M rows of each channel and scatters 4
            PackShape(points * co_tiles * params.mr, params.nr * FLOAT_BYTES, params.nr * FLOAT_BYTES, blocks))
    u_bytes = points * co_tiles * params.mr * cin * FLOAT_BYTES
    streams = (Stream("weights", u_bytes, blocks),
               # one block's V (built in cache by the input transform), read by every
               # channel tile: a panel per block, as hwsim.cpu's memory model reads panels
               Stream("panel", points * cin * params.nr * FLOAT_BYTES, co_tiles * blocks),
               Stream("input", cin * hp * wp * FLOAT_BYTES, 1),
               Stream("output", cout * out_h * out_w * FLOAT_BYTES, 1))
    return KernelWork(loops=loops, parent_trips=(points * blocks * co_tiles,), streams=streams,
                      pixel_tile=params.nr, row_tile=params.mr, memory_tiles=blocks,
                      parallel_units=units, threads=min(team, units), gather=None, pack=pack,
                      tile_stores=params.mr * (params.nr // lanes))


# ---------------------------------------------------------------- runs


# (cout, cin, h, w, pad): tails of channels, odd and even planes, both paddings, one case above
# the 1M-MAC threshold (a threaded variant runs its OpenMP loop), one with a single tile block
CASE_SHAPES = ((5, 3, 9, 11, 1), (13, 7, 6, 5, 0), (20, 16, 17, 15, 1), (70, 24, 3, 3, 1),
               (48, 64, 14, 14, 1))


def cases(params: WinogradParams, rng: np.random.Generator, shapes=CASE_SHAPES) -> list[Case]:
    """Returns runs on ``shapes`` (cout, cin, h, w, pad) with and without bias, and numpy's
    direct-convolution answers."""
    from codegen.reference import reference_conv
    from models.ir import Conv2d

    found = []
    for number, (cout, cin, h, w, pad) in enumerate(shapes):
        weights = rng.standard_normal((cout, cin * 9)).astype(np.float32)
        x = rng.standard_normal((cin, h, w)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
        conv = Conv2d("conv", cin, cout, 3, stride=1, padding=pad)
        expected = reference_conv(weights.reshape(cout, cin, 3, 3), bias, x, conv, params.act)
        found.append(Case(f"case{number}", buffers(params, weights, bias, x),
                          (cout, cin, h, w, 3, 3, 1, pad), expected.reshape(cout, -1)))
    return found


FAMILY = Family(name="winograd", template=TEMPLATE, params_type=WinogradParams, abi=abi,
                shipped=shipped, cases=cases, work=work)
