"""The accuracy proxy of a design point: ``magnitude_kept`` of the patterns it runs.

It depends on (model, patterns) only, never on the hardware, so the driver computes
it, once per distinct pattern choice of a run (each (layer, pattern) mask once, in
``models.pruning_proxy.MagnitudeKept``), and writes it into every record it stores:
``metrics["magnitude_kept"]`` (the lowest over the workload's models: a floor must
hold for each) and each ``per_model`` entry's own value. A record from a store
written before the metric existed is completed in memory the same way on resume
(the value is exact and deterministic; the append-only file is not rewritten).
"""
from __future__ import annotations

from typing import Any

from explore.space import Space, layer_patterns

METRIC = "magnitude_kept"


class AccuracyProxy:
    """``magnitude_kept`` of a space's points; holds each model and its per-layer shares."""

    def __init__(self, space: Space):
        self.space = space
        self._kept: dict[int, Any] = {}                # model index -> MagnitudeKept
        self._values: dict[tuple, tuple[float, tuple[float, ...]]] = {}

    def _model_proxy(self, index: int):
        if index not in self._kept:
            from models.loading import load
            from models.pruning_proxy import MagnitudeKept

            spec = self.space.workload.models[index]
            self._kept[index] = MagnitudeKept(load(spec.name, dataset=spec.dataset, batch=1))
        return self._kept[index]

    def of_point(self, point: dict[str, Any]) -> tuple[float, tuple[float, ...]]:
        """Returns (the lowest magnitude_kept over the workload's models, each model's)."""
        from explore.evaluate import with_layer_patterns

        default, overrides = layer_patterns(self.space, point)
        key = (default, tuple(sorted(overrides.items())))
        if key not in self._values:
            per_model = []
            for index in range(len(self.space.workload.models)):
                proxy = self._model_proxy(index)
                patterned = with_layer_patterns(proxy.model, default, overrides)
                per_model.append(proxy.of(patterned, self.space.workload.mode))
            self._values[key] = (min(per_model), tuple(per_model))
        return self._values[key]

    def complete(self, record: dict) -> dict:
        """Returns ``record`` with magnitude_kept in its metrics and per-model entries
        (a valid record only; one that has them is returned as it is)."""
        if record.get("status") != "ok" or METRIC in record.get("metrics", {}):
            return record
        lowest, per_model = self.of_point(record["point"])
        entries = record.get("per_model") or []
        return {**record, "metrics": {**record["metrics"], METRIC: lowest},
                "per_model": [{**entry, METRIC: value} for entry, value in zip(entries, per_model)]}
