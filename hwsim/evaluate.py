"""The library entry point: one accelerator running one lowered workload -> a DesignCost.

``hwsim simulate`` and ``hwsim explore`` both call ``evaluate``, so a design the
explorer reports re-simulates to the same cycles, energy and area::

    from hwsim.arch import load_arch, with_overrides, accelerator_to_yaml
    from hwsim.evaluate import lower_workload, evaluate

    arch = with_overrides(load_arch("sat"), {"array.rows": 64})
    workload = lower_workload("resnet50", "2:8", mode="train", batch=32, dataset="imagenet")
    cost = evaluate(arch, workload)                        # today's fixed mapping
    mapped = evaluate(arch, workload, objective="edp")     # the mapper picks each GEMM's mapping
    cost.cycles, cost.energy_j, cost.area_mm2, cost.edp_j_s, cost.perf_per_mm2
    text = accelerator_to_yaml(arch)                        # load_arch(file) == arch

``objective=None`` keeps the engine's own choices (SCALE-Sim-equal where the
YAML asks for it); "cycles", "energy" or "edp" runs ``hwsim.mapper``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.arch import Accelerator
from hwsim.engine import SimResult
from models.errors import UserError
from models.lowering import GemmWorkload

OBJECTIVES = ("cycles", "energy", "edp")


@dataclass(frozen=True)
class Workload:
    """A lowered step: the GEMMs of one model under one pattern, and what the engine needs with them.

    ``input_reuse``: {conv layer: im2col elements per unique feature-map element}
    (``hwsim.engine.im2col_reuse``), so DRAM moves feature maps, not im2col matrices."""
    model_name: str
    sparsity: str
    mode: str
    batch: int
    gemms: tuple[GemmWorkload, ...]
    input_reuse: dict = field(default_factory=dict, compare=False, hash=False)


def lower_workload(model: str, sparsity: str = "dense", *, mode: str = "train", batch: int = 1,
                   dataset: str | None = None, input_size: int | None = None,
                   base=None) -> Workload:
    """Returns the lowered workload of a zoo name or model file under one pattern spec.

    ``base``: an already loaded batch-1 model (skips loading; ``model`` is then ignored)."""
    from hwsim.engine import im2col_reuse
    from models.loading import load
    from models.lowering import lower
    from models.patterns import parse_pattern

    if batch < 1:
        raise UserError(f"batch {batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    base = base if base is not None else load(model, dataset=dataset, input_size=input_size, batch=1)
    pattern = parse_pattern(sparsity, field="--sparsity")
    gemms = lower(base.with_sparsity(pattern), mode=mode, batch=batch)
    return Workload(base.name, sparsity, mode, batch, tuple(gemms), im2col_reuse(base))


@dataclass(frozen=True)
class DesignCost:
    """What one accelerator costs on one workload: the figures `hwsim simulate` reports.

    ``energy_pj``/``energy_j``: dynamic energy of the step (event counts).
    ``area_mm2``: the area model's total (None when the YAML has no technology).
    ``edp_j_s``: energy x delay of the step. ``perf_per_mm2``: effective GOPS per mm2,
    counting 2 ops per *dense* MAC, so a sparse design that finishes sooner scores higher.
    ``result``: the per-GEMM records (compare=False: equality is on the figures)."""
    arch_name: str
    model: str
    sparsity: str
    mode: str
    batch: int
    objective: str | None
    cycles: int
    compute_cycles: int
    stall_cycles: int
    seconds: float
    energy_pj: float
    energy_j: float
    edp_j_s: float
    dram_bytes: int
    macs: int
    dense_macs: int
    utilization: float
    area_mm2: float | None
    perf_per_mm2: float | None
    power_w: float
    result: SimResult = field(compare=False, repr=False)

    def as_dict(self) -> dict:
        """Returns the figures (no per-GEMM records) as a JSON-ready mapping."""
        return {key: getattr(self, key) for key in self.__dataclass_fields__ if key != "result"}


def cost_of(result: SimResult, objective: str | None = None) -> DesignCost:
    """Returns the DesignCost of a simulated step (area from the result's arch when it has it)."""
    energy_pj = sum(layer.energy_pj for layer in result.layers)
    figures = result.cost_figures()
    seconds = result.seconds
    return DesignCost(
        arch_name=result.arch.name, model=result.model, sparsity=result.sparsity,
        mode=result.mode, batch=result.batch, objective=objective,
        cycles=result.total_cycles, compute_cycles=result.compute_cycles,
        stall_cycles=result.stall_cycles, seconds=seconds, energy_pj=energy_pj,
        energy_j=result.energy_j, edp_j_s=figures["edp_j_s"],
        dram_bytes=result.dram_bytes, macs=result.macs,
        dense_macs=sum(layer.dense_macs for layer in result.layers),
        utilization=result.utilization, area_mm2=figures["area_mm2"],
        perf_per_mm2=figures["perf_per_mm2"],
        power_w=figures["power_w"], result=result)


def simulate_workload(arch: Accelerator, workload: Workload, *,
                      objective: str | None = None) -> SimResult:
    """Returns the simulated step; with an objective each GEMM's mapping is chosen by the mapper."""
    from hwsim.engine import simulate

    if objective is not None and objective not in OBJECTIVES:
        raise UserError(f"unknown objective '{objective}'", field="--map",
                        fix=f"use one of {', '.join(OBJECTIVES)}")
    kwargs = dict(model_name=workload.model_name, sparsity=workload.sparsity, mode=workload.mode,
                  batch=workload.batch, input_reuse=workload.input_reuse)
    if objective is None:
        return simulate(arch, list(workload.gemms), **kwargs)
    from hwsim.mapper import simulate_mapped
    return simulate_mapped(arch, list(workload.gemms), objective=objective, **kwargs)


def evaluate(arch: Accelerator, workload: Workload, *, objective: str | None = None) -> DesignCost:
    """Returns cycles, energy, area, EDP and perf/mm2 of ``arch`` running ``workload``.

    The same code path as `hwsim simulate` (which prints ``cost.result``)."""
    return cost_of(simulate_workload(arch, workload, objective=objective), objective)
