"""Render, build and run one sparse layer on a target, checked against numpy.

This is what ``hwsim run`` and ``bench/kernels.py`` call::

    from codegen.layer import default_nmgemm, run_nmgemm_layer
    params = default_nmgemm(2, 8, "host")                   # or the tuning log's best
    result = run_nmgemm_layer(w_masked, x, bias, params, "host", workdir, repeats=5)
    result.median_s, result.max_abs_error

Weights are 2-D (cout x cin*r*s); a 1x1 convolution's activations are CHW (cin x pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.isa import get_isa
from codegen.packing import pack_block_sparse, pack_nm
from codegen.reference import apply_activation, reference_conv
from codegen.render import (DwconvParams, NmGemmParams, SpmmParams, render_dwconv, render_nmgemm,
                            render_spmm)
from models.ir import Conv2d
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


def best_flavour(target: str | CpuTarget) -> str:
    """Returns the widest kernel flavour the target runs (AVX-512 only when detected)."""
    return kernel_build.runnable_flavours(target)[-1]


def default_threads(target: str | CpuTarget) -> int:
    target = kernel_build.as_target(target)
    return target.cores if target.isa == "x86_64" else 1


def default_nmgemm(n: int, m: int, target: str | CpuTarget, shared: bool = False,
                   flavour: str | None = None, threads: int | None = None,
                   rows: int | None = None) -> NmGemmParams:
    """Returns the untuned N:M kernel schedule for a target; ``rows`` fixes the register tile's
    rows (the row block of a shared-index pattern) and the pixels then fill the registers."""
    isa = get_isa(flavour or best_flavour(target))
    flavour = isa.name
    mr, nr, unroll = isa.nm_tiles[1 if shared else 0]     # codegen.isa: the untuned tiles
    if rows:
        lanes = isa.lanes
        vectors = max(1, (isa.vector_registers - 2) // rows)
        if flavour == "wasmsimd":  # measured (768x768x128, 2:8 on 8 rows): 8x8 beats 8x4
            vectors = max(2, vectors)
        mr, nr = rows, min(vectors, 4) * lanes
    return NmGemmParams(n, m, flavour, mr=mr, nr=nr, unroll=unroll, shared=shared,
                        threads=threads if threads is not None else default_threads(target))


def default_spmm(target: str | CpuTarget, nr: int = 1, kb: int = 1,
                 flavour: str | None = None) -> SpmmParams:
    isa = get_isa(flavour or best_flavour(target))
    return SpmmParams(isa.name, mr=isa.spmm_pixels, nr=nr, kb=kb)


def run_nmgemm_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: NmGemmParams,
                     target: str | CpuTarget, workdir: Path, repeats: int = 5, warmup: int = 1
                     ) -> KernelRun:
    """Packs the masked ``w`` (cout x k), builds the kernel for ``target``, runs it on ``x``
    (k x p) ``repeats`` times, and checks its output against numpy."""
    workdir = Path(workdir)
    kernel = render_nmgemm(params)
    executable = kernel_build.build(kernel, target, workdir / "build")
    packed = pack_nm(w, params.n, params.m, mr=params.mr, shared=params.shared)
    cases = workdir / f"cases-{kernel.name}"
    cases.mkdir(parents=True, exist_ok=True)
    (cases / "cases.txt").unlink(missing_ok=True)
    kernel_build.write_case(cases, "layer", {"values": packed.values, "indices": packed.indices,
                                             "bias": bias, "x": x}, (w.shape[0], w.shape[1], x.shape[1]))
    result = kernel_build.run(executable, target, cases, repeats=repeats, warmup=warmup)
    y = kernel_build.read_output(cases, "layer", "y", (w.shape[0], x.shape[1]))
    reference = apply_activation(w @ x + (0 if bias is None else bias[:, None]), params.act)
    return KernelRun(kernel.name, kernel_build.as_target(target).name, tuple(result.times_s),
                       float(np.abs(y - reference).max()))


def run_spmm_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: SpmmParams,
                   target: str | CpuTarget, workdir: Path, repeats: int = 5, warmup: int = 1
                   ) -> KernelRun:
    """The block-sparse (XNNPACK-style) counterpart of ``run_nmgemm_layer``."""
    workdir = Path(workdir)
    kernel = render_spmm(params)
    executable = kernel_build.build(kernel, target, workdir / "build")
    packed = pack_block_sparse(w, params.nr, x.shape[1], bias, kb=params.kb)
    cases = workdir / f"cases-{kernel.name}"
    cases.mkdir(parents=True, exist_ok=True)
    (cases / "cases.txt").unlink(missing_ok=True)
    kernel_build.write_case(cases, "layer", {"values": packed.values, "nnz": packed.nnz,
                                             "diffs": packed.diffs, "x": x},
                            (w.shape[0], w.shape[1], x.shape[1]))
    result = kernel_build.run(executable, target, cases, repeats=repeats, warmup=warmup)
    y = kernel_build.read_output(cases, "layer", "y", (w.shape[0], x.shape[1]))
    reference = apply_activation(w @ x + (0 if bias is None else bias[:, None]), params.act)
    return KernelRun(kernel.name, kernel_build.as_target(target).name, tuple(result.times_s),
                       float(np.abs(y - reference).max()))


def run_dwconv_layer(w: np.ndarray, x: np.ndarray, bias: np.ndarray | None, params: DwconvParams,
                     pad: int, target: str | CpuTarget, workdir: Path, repeats: int = 5,
                     warmup: int = 1) -> KernelRun:
    """Builds the depthwise kernel for ``target``, runs it on ``x`` (c x h x w) with weights
    ``w`` (c x k x k) ``repeats`` times, and checks its output against numpy."""
    workdir = Path(workdir)
    kernel = render_dwconv(params)
    executable = kernel_build.build(kernel, target, workdir / "build")
    cases = workdir / f"cases-{kernel.name}"
    cases.mkdir(parents=True, exist_ok=True)
    (cases / "cases.txt").unlink(missing_ok=True)
    channels, height, width = x.shape
    kernel_build.write_case(cases, "layer", {"weights": w, "bias": bias, "x": x},
                            (channels, height, width, pad))
    result = kernel_build.run(executable, target, cases, repeats=repeats, warmup=warmup)
    conv = Conv2d("dw", channels, channels, params.k, stride=params.stride, padding=pad, groups=channels)
    reference = reference_conv(w.reshape(channels, 1, params.k, params.k), bias, x, conv, params.act)
    y = kernel_build.read_output(cases, "layer", "y", reference.shape)
    return KernelRun(kernel.name, kernel_build.as_target(target).name, tuple(result.times_s),
                       float(np.abs(y - reference).max()))
