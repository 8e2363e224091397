"""The mapper: per GEMM, the orientation, dataflow and loop order that minimise an objective.

For each lowered GEMM (FF, BP, WU of every layer) the candidates are

    orientation   C = A.B as lowered (MxN) or C^T = B^T.A^T (NxM; SAT's interleave)
    dataflow      each of ``arch.supported_dataflows`` (``dataflow: [os, ws]`` in the YAML)
    loop order    column folds outer or row folds outer (which operand's tiles stay
                  resident in their buffer half: the tiling / buffer reuse choice)

Every candidate is costed by ``hwsim.engine.schedule_gemm`` (the code `hwsim simulate`
runs) and the GEMM keeps the one with the lowest objective run alone (cycles,
energy in pJ, or their product). The step is one DRAM timeline in which a GEMM's
first load overlaps its predecessor's last fold, so the per-GEMM choice is compared,
over the whole step, with every fixed mapping (one orientation, dataflow and loop
order for all GEMMs) and with the engine's own plan; the best of them is returned.
Hence the mapped step is never worse than any fixed mapping, by construction.
"""
from __future__ import annotations

import itertools

import numpy as np

from hwsim.arch import Accelerator
from hwsim.energy import gemm_energy_pj
from hwsim.engine import SimResult, check_supported, result_of, schedule_gemm, shape_key, simulate
from hwsim.sparse_mode import pregeneration_bytes
from hwsim.timeline import local_cycles, rounded_total, step_timeline
from models.lowering import GemmWorkload

OBJECTIVES = ("cycles", "energy", "edp")
LOOP_ORDERS = ("col", "row")


def candidates(arch: Accelerator) -> list[tuple[bool, str, str]]:
    """Returns every (transposed, dataflow, outer) mapping the hardware allows."""
    return list(itertools.product((False, True), arch.supported_dataflows, LOOP_ORDERS))


def _energy_pj(arch: Accelerator, workload: GemmWorkload, schedule) -> float:
    # The pre-generation bytes are the same for every candidate: left out of the choice.
    return gemm_energy_pj(arch.energy, macs=workload.macs, sram_bytes=schedule.sram_bytes,
                          dram_bytes=schedule.dram_bytes, select_groups=schedule.select_groups)


def _score(objective: str, cycles: float, energy_pj: float) -> float:
    if objective == "cycles":
        return round(cycles)
    if objective == "energy":
        return energy_pj
    return cycles * energy_pj


def _step_score(result: SimResult, objective: str) -> float:
    energy_pj = sum(layer.energy_pj for layer in result.layers)
    return _score(objective, result.total_cycles, energy_pj)


def simulate_mapped(arch: Accelerator, workloads: list[GemmWorkload], *, objective: str = "cycles",
                    model_name: str = "model", sparsity: str = "dense", mode: str = "train",
                    batch: int = 1, input_reuse: dict[str, float] | None = None) -> SimResult:
    """Returns the step with each GEMM mapped to minimise ``objective`` (cycles | energy | edp).

    Never worse (on ``objective``) than ``hwsim.engine.simulate`` or any fixed mapping."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} not in {OBJECTIVES}")
    check_supported(arch, workloads, sparsity)
    input_reuse = input_reuse or {}
    names = dict(model_name=model_name, sparsity=sparsity, mode=mode, batch=batch)
    baseline = simulate(arch, workloads, input_reuse=input_reuse, **names)
    if not workloads:
        return baseline
    options = candidates(arch)
    # table[g][c]: GEMM g's schedule under candidate c (all costed by the engine); GEMMs
    # of one shape (repeated blocks) share their row, and so their choice.
    rows: dict = {}
    chosen_by_shape: dict = {}
    table = []
    for workload in workloads:
        reuse = input_reuse.get(workload.layer, 1.0)
        key = (shape_key(workload), reuse)
        if key not in rows:
            rows[key] = [schedule_gemm(arch, workload, transposed=transposed, outer=outer,
                                       reuse=reuse, dataflow=dataflow)
                         for transposed, dataflow, outer in options]
            scores = [_score(objective, local_cycles(arch, schedule),
                             _energy_pj(arch, workload, schedule)) for schedule in rows[key]]
            chosen_by_shape[key] = rows[key][int(np.argmin(scores))]
        table.append(rows[key])
    pregenerated = pregeneration_bytes(arch, workloads)

    def plan_energy_pj(schedules) -> float:
        # The same per-GEMM figures, summed in the same order, as result_of's layers.
        total = 0.0
        for index, (workload, schedule) in enumerate(zip(workloads, schedules)):
            extra_load, extra_store, extra_select = pregenerated.get(index, (0.0, 0.0, 0.0))
            total += float(gemm_energy_pj(
                arch.energy, macs=workload.macs,
                sram_bytes=schedule.sram_bytes + extra_load + extra_store,
                dram_bytes=schedule.dram_bytes + extra_load + extra_store,
                select_groups=schedule.select_groups + extra_select))
        return total

    def plan(schedules) -> tuple[float, list, np.ndarray, np.ndarray]:
        compute, stall = step_timeline(arch, schedules, pregenerated)
        score = _score(objective, rounded_total(compute, stall),
                       plan_energy_pj(schedules) if objective != "cycles" else 0.0)
        return score, schedules, compute, stall

    chosen = [chosen_by_shape[(shape_key(workload), input_reuse.get(workload.layer, 1.0))]
              for workload in workloads]
    plans = [plan(chosen)] + [plan([row[c] for row in table]) for c in range(len(options))]
    score, schedules, compute, stall = min(plans, key=lambda entry: entry[0])
    if _step_score(baseline, objective) <= score:
        return SimResult(baseline.arch, baseline.model, baseline.sparsity, baseline.mode,
                         baseline.batch, baseline.layers, area=baseline.area, mapping=objective)
    return result_of(arch, workloads, schedules, pregenerated, compute, stall,
                     mapping=objective, **names)


__all__ = ["OBJECTIVES", "candidates", "simulate_mapped"]
