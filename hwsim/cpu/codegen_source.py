"""codegen's kernel for a workload, rendered and described for the cost model.

hwsim/cpu may read codegen's kernel modules (ARCHITECTURE.md): the cost and the code come
from one description, and which kernel a layer gets from one rule (codegen.plan).
``kernel_source_for`` is what ``hwsim simulate --arch <cpu>`` and the benches hand to
``simulate_cpu``; ``mca_predictor`` is the cost model the codegen tuner takes where timing
is not real (qemu). Layers codegen has no kernel for return None (hwsim.cpu's
own kernels cost them, and the records say so).
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Returns the per-user cache of compiled assembly and llvm-mca results."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "hwsim"


def kernel_source_for(target, schedules: dict, model=None):
    """Returns the kernel_source callable that renders the kernel codegen.plan picks for a
    workload (the one rule codegen builds by) and describes it for the cost model; depthwise
    layers, the epilogue and KxK convolutions need ``model``."""
    from codegen.build import runnable_flavours
    from codegen.plan import plan_workload
    from hwsim.cpu.codegen_kernels import from_rendered

    flavour = runnable_flavours(target)[-1]

    def kernel_source(workload, schedule, _target):
        plan = plan_workload(workload, model, target, schedules, flavour=flavour)
        if plan is None:
            return None                       # grouped, attention, training BP/WU: hwsim.cpu's kernels
        if plan.family == "dwconv":
            return from_rendered(plan.render(), workload, _depthwise_geometry(model, workload))
        return from_rendered(plan.render(), workload)

    return kernel_source


def _depthwise_geometry(model, workload):
    """Returns the input plane of a depthwise layer (what its GEMM sizes leave out)."""
    from hwsim.cpu.codegen_kernels import DepthwiseGeometry

    op = model.op(workload.layer)
    (spec,) = model.input_specs(op.name)
    return DepthwiseGeometry(spec.shape[1], spec.shape[2], spec.shape[3], op.padding[0])


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
