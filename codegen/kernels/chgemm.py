"""The channel-vectorized dense family (codegen/kernels/chgemm.c.j2): y = act(W x + bias) for a
dense 1x1 / fully connected layer, or (``conv``) a KxK convolution through its im2col, with
vectors along OUTPUT CHANNELS and each pixel's input broadcast.

    >>> render(ChGemmParams("avx512", mr=7, nr=48)).filename
    'chgemm_7x48_avx512.c'

Why a second orientation: nmgemm puts pixels in the vector lanes, so a layer's pixel count is
rounded up to whole vectors; ResNet's and MobileNet's 7 x 7 layers (49 pixels) then fill 49
of 64 AVX-512 lanes. Here the pixels are the register tile's rows (7 x 7 = 7 tiles of 7) and
the output channels (512, 1024) fill the vectors. codegen.plan picks this family for a dense
layer only where its lanes are better used (``lane_use``).

Weights layout (``pack``): float [ceil(cout / nr)][k][nr], zero past cout, so each k step loads
nr consecutive output channels. The ABI is nmgemm's dense one, ``indices`` absent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codegen import build as kernel_build
from codegen.isa import ISAS, get_isa
from codegen.kernels.family import Case, Family
from codegen.kernels.work import FLOAT_BYTES, KernelWork, LoopWork, Stream, im2col_runs_per_tile
from codegen.reference import apply_activation
from codegen.render import Abi, Buffer, RenderedKernel, check_activation, conv_abi, gemm_abi
from models.errors import UserError

TEMPLATE = "chgemm.c.j2"

# chgemm.c.j2 starts its OpenMP team only with 2+ tiles and this many MACs
PARALLEL_MACS = 1e6

# a KxK convolution's im2col is gathered into panels of this many pixels (one panel holds a
# 7 x 7 layer); codegen.plan uses the family up to this many pixels
PANEL_PIXELS = 64


@dataclass(frozen=True)
class ChGemmParams:
    """One channel-vectorized dense kernel: ``mr`` pixels x ``nr`` output channels per register
    tile (nr a multiple of the lanes), ``conv``: the input is a CHW image and X its im2col."""
    isa: str
    mr: int = 7
    nr: int = 48
    act: str = "none"
    conv: bool = False
    threads: int = 1

    def __post_init__(self):
        lanes = get_isa(self.isa).lanes
        if self.mr < 1 or self.nr < lanes or self.nr % lanes or self.threads < 1:
            raise UserError(f"chgemm tile {self.mr}x{self.nr} does not fit {self.isa}", field="tile",
                            fix=f"use nr a multiple of {lanes}, mr >= 1")
        check_activation(self.act)

    @property
    def name(self) -> str:
        act = "" if self.act == "none" else f"_{self.act}"
        threads = f"_t{self.threads}" if self.threads > 1 else ""
        family = "chconv" if self.conv else "chgemm"
        return f"{family}_{self.mr}x{self.nr}_{self.isa}{threads}{act}"

    @property
    def panel_pixels(self) -> int:
        return PANEL_PIXELS

    @property
    def parallel_macs(self) -> float:
        return PARALLEL_MACS


_INPUTS = (Buffer("weights", "float"), Buffer("bias", "float", optional=True), Buffer("x", "float"))
GEMM_ABI = gemm_abi(_INPUTS)
CONV_ABI = conv_abi(_INPUTS)


def abi(params: ChGemmParams) -> Abi:
    return CONV_ABI if params.conv else GEMM_ABI


def render(params: ChGemmParams) -> RenderedKernel:
    """Returns the C source of the variant ``params`` describes."""
    return FAMILY.render(params)


def default_schedule(target, flavour: str | None = None, threads: int | None = None,
                     act: str = "none", conv: bool = False) -> ChGemmParams:
    """Returns the flavour's register tile (codegen.isa's channel_tile)."""
    isa = get_isa(flavour or kernel_build.best_flavour(target))
    mr, nr = isa.channel_tile
    return ChGemmParams(isa.name, mr=mr, nr=nr, act=act, conv=conv,
                        threads=threads if threads is not None else kernel_build.default_threads(target))


def lane_use(pixels: int, channels: int, mr: int, nr: int) -> float:
    """Returns the share of the register tiles' multiply lanes that compute real outputs
    (pixels rounded up to mr, channels to nr)."""
    return pixels / (math.ceil(pixels / mr) * mr) * channels / (math.ceil(channels / nr) * nr)


def shipped() -> list[ChGemmParams]:
    """Returns the shipped variants: GEMM and convolution per flavour, plain, relu and relu6,
    on 2 threads (the builds' default on the 2-core hosts here)."""
    return [ChGemmParams(isa, mr=ISAS[isa].channel_tile[0], nr=ISAS[isa].channel_tile[1], act=act,
                         conv=conv, threads=2)
            for isa in ISAS for conv in (False, True) for act in ("none", "relu", "relu6")]


def pack(w2d: np.ndarray, nr: int) -> np.ndarray:
    """Returns ``w2d`` (cout x k) as [ceil(cout / nr)][k][nr] float32, zero past cout."""
    cout, k = w2d.shape
    tiles = math.ceil(cout / nr)
    padded = np.zeros((tiles * nr, k), np.float32)
    padded[:cout] = w2d
    return np.ascontiguousarray(padded.reshape(tiles, nr, k).transpose(0, 2, 1))


def buffers(params: ChGemmParams, w2d: np.ndarray, bias: np.ndarray | None, x: np.ndarray) -> dict:
    """Returns the harness buffers of one run: ``w2d`` (cout x k) packed for ``params``."""
    return {"weights": pack(w2d, params.nr), "bias": bias, "x": x}


# ---------------------------------------------------------------- what it runs for a workload


def _threads(params: ChGemmParams, workload, tiles: int) -> int:
    macs = float(workload.N) * workload.K * workload.M * workload.groups
    return max(1, params.threads) if tiles >= 2 and macs >= PARALLEL_MACS else 1


def work(params: ChGemmParams, workload, geometry=None) -> KernelWork:
    """Returns what the kernel runs for ``workload`` (M = pixels, N = output channels, K =
    reduction): one k loop per (channel tile, pixel tile), mr x nr lanes a step; the weights
    re-read once per pixel tile, the inputs once per channel tile."""
    col_tiles = math.ceil(workload.N / params.nr)
    pixel_tiles = math.ceil(workload.M / params.mr)
    tiles = col_tiles * pixel_tiles * workload.groups
    loops = [LoopWork(params.mr * params.nr, tiles * workload.K)]
    if params.conv:
        # the im2col gather into panels: one division per run of pixels along an output row
        runs = math.ceil(workload.M / PANEL_PIXELS) * im2col_runs_per_tile(PANEL_PIXELS, workload.M, geometry)
        loops.append(LoopWork(0, workload.groups * runs, divides=True))
    weight_bytes = col_tiles * params.nr * workload.K * FLOAT_BYTES
    input_bytes = workload.K * (math.ceil(workload.M / PANEL_PIXELS) * PANEL_PIXELS if params.conv
                                else workload.M) * FLOAT_BYTES
    streams = (Stream("weights", workload.groups * weight_bytes, pixel_tiles),
               Stream("panel", workload.groups * input_bytes, col_tiles),
               Stream("output", workload.groups * workload.N * workload.M * FLOAT_BYTES, 1))
    threads = _threads(params, workload, tiles)
    lanes = get_isa(params.isa).lanes
    return KernelWork(loops=tuple(loops), parent_trips=(tiles,), streams=streams,
                      pixel_tile=params.mr, row_tile=params.nr, memory_tiles=tiles,
                      parallel_units=tiles, threads=threads, gather=None, pack=None,
                      tile_stores=params.mr * max(1, params.nr // lanes))


# ---------------------------------------------------------------- runs


def cases(params: ChGemmParams, rng: np.random.Generator) -> list[Case]:
    """Returns runs with channel and pixel tails (with and without bias), one above the 1M-MAC
    threshold (a threaded variant runs its OpenMP loop), and numpy's answers."""
    from codegen.reference import reference_conv
    from models.ir import Conv2d

    found = []
    if params.conv:
        for number, (cout, cin, h, k, stride, pad) in enumerate(
                [(5, 3, 9, 3, 1, 1), (70, 16, 12, 3, 2, 1), (100, 64, 9, 3, 1, 1)]):
            weights = rng.standard_normal((cout, cin * k * k)).astype(np.float32)
            x = rng.standard_normal((cin, h, h + 1)).astype(np.float32)
            bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
            conv = Conv2d("conv", cin, cout, k, stride=stride, padding=pad)
            expected = reference_conv(weights.reshape(cout, cin, k, k), bias, x, conv, params.act)
            found.append(Case(f"case{number}", buffers(params, weights, bias, x),
                              (cout, cin, h, h + 1, k, k, stride, pad), expected.reshape(cout, -1)))
        return found
    for number, (cout, k, p) in enumerate([(9, 40, 37), (50, 35, 5), (130, 200, 49)]):
        w = rng.standard_normal((cout, k)).astype(np.float32)
        x = rng.standard_normal((k, p)).astype(np.float32)
        bias = rng.standard_normal(cout).astype(np.float32) if number % 2 == 0 else None
        expected = apply_activation(w.astype(np.float64) @ x + (0 if bias is None else bias[:, None]), params.act)
        found.append(Case(f"case{number}", buffers(params, w, bias, x), (cout, k, p), expected))
    return found


FAMILY = Family(name="chgemm", template=TEMPLATE, params_type=ChGemmParams, abi=abi,
                shipped=shipped, cases=cases, work=work)
