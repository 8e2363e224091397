"""codegen's kernel for a workload, rendered and described for the cost model.

hwsim/cpu may read codegen's kernel modules (ARCHITECTURE.md; codegen never imports hwsim):
the cost and the code come from one description, and which kernel a layer gets from one
rule (codegen.plan). ``from_rendered`` takes a kernel codegen rendered and asks its family
(codegen.kernels.family_of its params) what it runs for the workload: every multiplying
innermost loop with its exact iterations, the loops around them, the streams, gathers and
packing copies (codegen.kernels.work.KernelWork); llvm-mca gives each loop's cycles
(cpu_model). ``kernel_source_for`` is what ``hwsim simulate --arch <cpu>`` and the benches
hand to ``simulate_cpu``; ``mca_predictor`` is the cost model the codegen tuner takes where
timing is not real (qemu). Layers codegen has no kernel for return None (hwsim.cpu's own
kernels cost them, and the records say so).
"""
from __future__ import annotations

import os
from pathlib import Path

from codegen.isa import get_isa
from codegen.kernels import family_of
from hwsim.cpu.kernel_source import KernelSchedule, KernelSource
from models.lowering import GemmWorkload


def cache_dir() -> Path:
    """Returns the per-user cache of compiled assembly and llvm-mca results."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "hwsim"


def from_rendered(rendered, workload: GemmWorkload, geometry=None) -> KernelSource:
    """Returns the KernelSource of codegen's ``rendered`` kernel running ``workload``.

    Workload axes: M = pixels (codegen's p), N = output channels (cout), K = reduction (k);
    a depthwise kernel (dwconv) also needs the input plane (``geometry``, a
    codegen.kernels.dwconv.DepthwiseGeometry)."""
    family = family_of(rendered.params)
    if family.work is None:
        raise ValueError(f"{rendered.name}: the {family.name} family has no cost description")
    work = family.work(rendered.params, workload, geometry)
    return KernelSource(family=family.name, simd=get_isa(rendered.params.isa).level.name,
                        schedule=KernelSchedule(work.pixel_tile, work.row_tile),
                        function=rendered.name, c_source=rendered.source, loops=work.loops,
                        parent_trips=work.parent_trips, streams=work.streams,
                        memory_tiles=work.memory_tiles, parallel_units=work.parallel_units,
                        threads=work.threads, origin="codegen", gather=work.gather, pack=work.pack,
                        tile_stores=work.tile_stores, tile_loads=work.tile_loads,
                        tile_sums_bytes=work.tile_sums_bytes)


def kernel_source_for(target, schedules: dict, model=None):
    """Returns the kernel_source callable that renders the kernel codegen.plan picks for a
    workload (the one rule codegen builds by) and describes it for the cost model; depthwise
    layers, the epilogue and KxK convolutions need ``model``."""
    from codegen.build import runnable_flavours
    from codegen.kernels.dwconv import geometry_of
    from codegen.plan import plan_workload

    flavour = runnable_flavours(target)[-1]

    def kernel_source(workload, schedule, _target):
        plan = plan_workload(workload, model, target, schedules, flavour=flavour)
        if plan is None:
            return None                       # grouped, attention, training BP/WU: hwsim.cpu's kernels
        if plan.family == "dwconv":
            return from_rendered(plan.render(), workload, geometry_of(model, workload.layer))
        return from_rendered(plan.render(), workload)

    return kernel_source


def mca_predictor(target):
    """Returns predictor(op, params, target) -> cycles: the llvm-mca model of the candidate's
    rendered kernel, for the codegen scheduler on targets whose timing is not real (qemu)."""
    from codegen.kernels import nmgemm
    from hwsim.cpu.cpu_model import simulate_cpu

    def predict(op, params, _target) -> float:
        workload = GemmWorkload(layer=f"{op.cout}x{op.k}x{op.p}", phase="FF", M=op.p, N=op.cout,
                                K=op.k, sparse=op.n < op.m, density=op.n / op.m,
                                nm=(op.n, op.m) if op.n < op.m else None,
                                pattern=f"{op.n}:{op.m}")
        (record,) = simulate_cpu(target, [workload], None, cache_dir(),
                                 kernel_source=lambda w, s, t: from_rendered(nmgemm.render(params), w))
        return float(record.cycles)

    return predict
