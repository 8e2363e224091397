"""Costs one design point: the accelerator it names, running the weighted workload.

``simulate_design`` is the one seam to the simulator: hwsim.engine.simulate, or
hwsim.mapper.simulate_mapped when the point's accelerator names a ``mapping``
(the YAML key `hwsim simulate` reads too, so a front YAML re-simulates the same),
plus hwsim.area when the accelerator has a technology.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from explore.space import Space, arch_document, layer_patterns
from models.errors import UserError


@dataclass(frozen=True)
class DesignCost:
    """What the simulator says about one accelerator running one model's step."""
    cycles: int
    energy_j: float
    area_mm2: float | None
    seconds: float


def evaluator_name() -> str:
    """Returns the name of the cost seam in use; part of every store key (switching re-evaluates)."""
    return "hwsim.engine+area" if _area_function() else "hwsim.engine"


def _area_function():
    """Returns hwsim.area's accelerator area function when the area model exists, else None."""
    try:
        from hwsim import area
    except ImportError:
        return None
    for name in ("accelerator_area_mm2", "area_mm2", "total_area_mm2"):
        function = getattr(area, name, None)
        if callable(function):
            return function
    return None


def simulate_design(arch, workloads, *, model_name: str, sparsity: str, mode: str, batch: int,
                    input_reuse: dict[str, float]) -> DesignCost:
    """Returns cycles, energy and area of ``arch`` running ``workloads`` (the seam to hwsim).

    ``arch.mapping`` set (cycles | energy | edp): each GEMM mapped by hwsim.mapper."""
    from hwsim.engine import simulate

    names = dict(model_name=model_name, sparsity=sparsity, mode=mode, batch=batch,
                 input_reuse=input_reuse)
    if getattr(arch, "mapping", None):
        from hwsim.mapper import simulate_mapped
        result = simulate_mapped(arch, workloads, objective=arch.mapping, **names)
    else:
        result = simulate(arch, workloads, **names)
    area = _area_function()
    area_mm2 = None
    if area is not None and getattr(arch, "technology", None) is not None:  # no technology: no area
        value = area(arch)
        area_mm2 = float(getattr(value, "total_mm2", value))
    return DesignCost(result.total_cycles, result.energy_j, area_mm2, result.seconds)


def with_layer_patterns(model, default_spec: str, overrides: dict[str, str]):
    """Returns the model with ``default_spec`` on every weight layer and the overrides on theirs."""
    from models.ir import WEIGHT_OPS
    from models.patterns import parse_pattern

    weight_layers = [op.name for op in model.ops() if isinstance(op, WEIGHT_OPS)]
    mine = {layer: spec for layer, spec in overrides.items() if layer in weight_layers}
    model = model.with_sparsity(parse_pattern(default_spec), skip=tuple(mine))
    for spec in sorted(set(mine.values())):
        chosen = {layer for layer, value in mine.items() if value == spec}
        model = model.with_sparsity(parse_pattern(spec),
                                    skip=tuple(name for name in weight_layers if name not in chosen))
    return model


class Evaluator:
    """Costs points of one space; keeps each model and its lowered workloads between points.

    One instance per worker process (or Ray actor): lowering depends on the
    patterns only, not on the hardware, so it is done once per pattern choice."""

    def __init__(self, space: Space):
        self.space = space
        self._models: dict[int, tuple[Any, dict]] = {}
        self._lowered: dict[tuple, list] = {}

    def _model(self, index: int):
        if index not in self._models:
            from hwsim.engine import im2col_reuse
            from models.loading import load

            spec = self.space.workload.models[index]
            base = load(spec.name, dataset=spec.dataset, batch=1)
            self._models[index] = (base, im2col_reuse(base))
        return self._models[index]

    def _workloads(self, index: int, default: str, overrides: dict[str, str]) -> list:
        key = (index, default, tuple(sorted(overrides.items())))
        if key not in self._lowered:
            from models.lowering import lower

            base, _ = self._model(index)
            spec = self.space.workload.models[index]
            model = with_layer_patterns(base, default, overrides)
            self._lowered[key] = lower(model, mode=self.space.workload.mode, batch=spec.batch)
        return self._lowered[key]

    def evaluate(self, point: dict[str, Any]) -> dict:
        """Returns the record body of a point: status, metrics, per-model costs, seconds spent."""
        from hwsim.arch import parse_accelerator

        started = time.perf_counter()
        default, overrides = layer_patterns(self.space, point)
        sparsity = default if not overrides else f"{default}+{len(overrides)} layer overrides"
        try:
            arch = parse_accelerator(arch_document(self.space, point), self.space.base_source)
            per_model = []
            for index, spec in enumerate(self.space.workload.models):
                base, reuse = self._model(index)
                cost = simulate_design(arch, self._workloads(index, default, overrides),
                                       model_name=base.name, sparsity=sparsity,
                                       mode=self.space.workload.mode, batch=spec.batch,
                                       input_reuse=reuse)
                per_model.append({"model": spec.name, "weight": spec.weight, "cycles": cost.cycles,
                                  "energy_j": cost.energy_j, "seconds": cost.seconds})
        except UserError as error:
            return {"status": "invalid", "reason": error.message,
                    "eval_s": time.perf_counter() - started}
        cycles = sum(entry["weight"] * entry["cycles"] for entry in per_model)
        seconds = sum(entry["weight"] * entry["seconds"] for entry in per_model)
        energy_mj = sum(entry["weight"] * entry["energy_j"] for entry in per_model) * 1e3
        metrics = {"cycles": int(cycles) if float(cycles).is_integer() else cycles,
                   "seconds": seconds, "energy_mj": energy_mj,
                   "area_mm2": cost.area_mm2, "edp_mj_s": energy_mj * seconds}
        return {"status": "ok", "metrics": metrics, "per_model": per_model,
                "sparsity": sparsity, "eval_s": time.perf_counter() - started}
