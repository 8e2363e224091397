"""codegen's kernel for a workload, rendered and described for the cost model.

hwsim/cpu may read codegen's kernel modules (ARCHITECTURE.md): the cost and the code come
from one description. ``kernel_source_for`` is what ``hwsim simulate --arch <cpu>`` and the
benches hand to ``simulate_cpu``; ``mca_predictor`` is the cost model the codegen tuner takes
where timing is not real (qemu). Layers codegen has no kernel for return None (hwsim.cpu's
own kernels cost them, and the records say so).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def cache_dir() -> Path:
    """Returns the per-user cache of compiled assembly and llvm-mca results."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "hwsim"


def kernel_source_for(target, schedules: dict, model=None):
    """Returns the kernel_source callable that renders codegen's kernel for a workload
    (depthwise layers need ``model`` for their input plane, stride and epilogue)."""
    from codegen.build import runnable_flavours
    from codegen.layer import default_nmgemm, default_spmm
    from codegen.render import render_nmgemm, render_spmm
    from hwsim.cpu.codegen_kernels import from_rendered

    flavour = runnable_flavours(target)[-1]

    def kernel_source(workload, schedule, _target):
        if workload.op_kind == "depthwise" and model is not None and workload.phase == "FF":
            return _depthwise_source(model, workload, flavour)
        if workload.op_kind not in ("conv2d", "dense") or workload.groups != 1:
            return None                       # grouped, attention, training BP/WU: hwsim.cpu's kernels
        kxk = _is_kxk_conv(model, workload)
        act = _activation(model, workload)     # the fused epilogue codegen renders in
        if workload.sparse and workload.nm is None and not kxk:
            nr, kb = _block_of(workload.pattern)
            params = dataclasses.replace(default_spmm(target, nr=nr, kb=kb, flavour=flavour), act=act)
            return from_rendered(render_spmm(params), workload)
        # N:M layers run the N:M kernel; a KxK convolution under a block / unstructured
        # pattern runs codegen's dense KxK kernel on the masked weights (no sparse KxK kernel)
        n, m = workload.nm if workload.sparse and workload.nm else (1, 1)
        key = f"{workload.N}x{workload.K}x{workload.M}:{n}:{m}"
        params = schedules.get(key) or default_nmgemm(n, m, target, flavour=flavour)
        # a KxK convolution is codegen's KxK kernel, which gathers its own im2col panel
        params = dataclasses.replace(params, act=act, conv=kxk)
        return from_rendered(render_nmgemm(params), workload)

    return kernel_source


def _activation(model, workload) -> str:
    """Returns the activation codegen fuses into a forward layer's kernel ("none" otherwise)."""
    from models.fusion import epilogue_of

    if model is None or workload.phase != "FF":
        return "none"
    return epilogue_of(model, workload.layer).activation


def _is_kxk_conv(model, workload) -> bool:
    """True for a forward convolution codegen runs as its KxK kernel (not a 1x1 GEMM)."""
    from models.ir import Conv2d

    if model is None or workload.phase != "FF" or workload.op_kind != "conv2d":
        return False
    op = model.op(workload.layer)
    return isinstance(op, Conv2d) and not op.is_pointwise


def _depthwise_source(model, workload, flavour: str):
    """Returns codegen's dwconv kernel for one depthwise layer (None where codegen has none:
    non-square kernels or strides, or a layer batch > 1 codegen does not build)."""
    from codegen.render import DwconvParams, render_dwconv
    from hwsim.cpu.codegen_kernels import DepthwiseGeometry, from_rendered

    op = model.op(workload.layer)
    (spec,) = model.input_specs(op.name)
    if op.kernel[0] != op.kernel[1] or op.stride[0] != op.stride[1] or len(spec.shape) != 4 \
            or spec.shape[0] != 1 or op.padding[0] != op.padding[1]:
        return None
    params = DwconvParams(flavour, op.kernel[0], op.stride[0], _activation(model, workload))
    geometry = DepthwiseGeometry(spec.shape[1], spec.shape[2], spec.shape[3], op.padding[0])
    return from_rendered(render_dwconv(params), workload, geometry)


def _block_of(spec: str | None) -> tuple[int, int]:
    from models.patterns import Block, Group, parse_pattern

    pattern = parse_pattern(spec) if spec else None
    if isinstance(pattern, Block):
        return pattern.rows, pattern.cols
    if isinstance(pattern, Group):
        return pattern.group_size, 1
    return 1, 1


def mca_predictor(target):
    """Returns predictor(op, params, target) -> cycles: the llvm-mca model of the candidate's
    rendered kernel, for the codegen scheduler on targets whose timing is not real (qemu)."""
    from codegen.render import render_nmgemm
    from hwsim.cpu.codegen_kernels import from_rendered
    from hwsim.cpu.cpu_model import simulate_cpu
    from models.lowering import GemmWorkload

    def predict(op, params, _target) -> float:
        workload = GemmWorkload(layer=f"{op.cout}x{op.k}x{op.p}", phase="FF", M=op.p, N=op.cout,
                                K=op.k, sparse=op.n < op.m, density=op.n / op.m,
                                nm=(op.n, op.m) if op.n < op.m else None,
                                pattern=f"{op.n}:{op.m}")
        (record,) = simulate_cpu(target, [workload], None, cache_dir(),
                                 kernel_source=lambda w, s, t: from_rendered(render_nmgemm(params), w))
        return float(record.cycles)

    return predict
