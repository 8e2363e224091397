"""One `hwsim explore` run end to end: search, front, outputs (the CLI only parses flags).

The results store is DIR/results.jsonl: a rerun with the same DIR resumes.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from explore.accuracy_proxy import AccuracyProxy
from explore.evaluate import evaluator_name
from explore.outputs import Front, infeasibility, pareto_front, write_outputs
from explore.search import Driver, SearchOutcome, exhaustive, metric_values, nsga2, violations
from explore.space import MODEL_SPARSITY, OBJECTIVE_METRICS, Space
from explore.store import ResultsStore
from models.errors import UserError

STORE_NAME = "results.jsonl"


@dataclass(frozen=True)
class ExploreSettings:
    """The run's choices besides the space: what to optimise, how many points, where."""
    objectives: tuple[str, ...]
    budget: int
    out_dir: str
    seed: int = 0
    method: str = "auto"          # auto | exhaustive | nsga2
    progress: bool = True


def parse_objectives(text: str) -> tuple[str, ...]:
    """Returns the objective names of a comma list (cycles, energy, area, edp, seconds
    minimised; magnitude_kept maximised)."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise UserError(f"no objective in '{text}'", field="--objectives",
                        fix="e.g. --objectives cycles,energy,area")
    for name in names:
        if name not in OBJECTIVE_METRICS:
            from models.errors import suggest
            raise UserError(f"unknown objective '{name}'", field="--objectives",
                            fix=suggest(name, OBJECTIVE_METRICS))
    return names


def check_area_available(space: Space, objectives: tuple[str, ...]) -> None:
    """Raises UserError when the run needs area and hwsim has no area model yet."""
    wants = "area" in objectives or any(c.metric == "area_mm2" for c in space.constraints)
    if wants and "area" not in evaluator_name():
        raise UserError("this hwsim has no area model (hwsim.area) yet", field="--objectives",
                        fix="leave area out, e.g. --objectives cycles,energy, and drop "
                            "area_mm2 constraints")
    axis = next((a for a in space.axes if a.path == "technology"), None)
    priced = all(v is not None for v in axis.values) if axis else \
        space.base_document.get("technology") is not None
    if wants and not priced:
        raise UserError(f"area needs a technology node, and '{space.base_source}' names none "
                        "(an FPGA design has no mm2 of its own)", source=space.source,
                        field="axes.technology",
                        fix="add the axis 'technology: [28nm]' (or 7nm) to the space, or leave "
                            "area out: --objectives cycles,energy")


def reference_points(space: Space) -> list[dict]:
    """Returns the base accelerator's own points: its arch values, each pattern of the space."""
    patterns = next((axis.values for axis in space.axes if axis.path == MODEL_SPARSITY), ("dense",))
    points = []
    for pattern in patterns:
        point = {}
        for axis in space.axes:
            if axis.path == MODEL_SPARSITY:
                point[axis.path] = pattern
            elif axis.layer is not None:
                point[axis.path] = pattern
            else:
                node = space.base_document
                for part in axis.path.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                if node is None and len(axis.values) == 1:
                    node = axis.values[0]     # a setting of the whole space (e.g. technology)
                if node is None:
                    break
                point[axis.path] = node
        else:
            points.append(point)
    return points


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, desc="explore", unit="pt", file=sys.stderr, disable=not enabled,
               dynamic_ncols=True)

    def update(record, tracker) -> None:
        bar.update(1)
        bar.set_postfix(front=len(tracker.front), refresh=False)
    return bar, update


def run_explore(space: Space, settings: ExploreSettings, backend) -> tuple[SearchOutcome, Front, list[str]]:
    """Returns the search outcome, the front and the written files of one run."""
    check_area_available(space, settings.objectives)
    os.makedirs(settings.out_dir, exist_ok=True)
    store = ResultsStore(os.path.join(settings.out_dir, STORE_NAME), space.context_key(evaluator_name()))
    method = settings.method
    if method == "auto":
        method = "exhaustive" if space.size <= settings.budget else "nsga2"
    total = space.size if method == "exhaustive" else settings.budget
    bar, update = _progress_bar(total, settings.progress)
    proxy = AccuracyProxy(space)          # one per run: each (model, pattern) costed once
    try:
        if method == "exhaustive":
            outcome = exhaustive(space, settings.objectives, store, backend, progress=update,
                                 proxy=proxy)
        else:
            outcome = nsga2(space, settings.objectives, store, backend, settings.budget,
                            seed=settings.seed, progress=update, proxy=proxy)
        bar.close()
        references = Driver(space, settings.objectives, store, backend, None,
                            proxy).cost(reference_points(space))
    finally:
        bar.close()
    if not any(record["status"] == "ok" for record in outcome.records):
        reason = next((r.get("reason") for r in outcome.records), "the space is empty")
        raise UserError(f"no point of the space is a valid accelerator: {reason}",
                        source=space.source, field="axes",
                        fix="widen the axes (e.g. larger SRAM for larger arrays, modes the "
                            "patterns need)")
    front = pareto_front(space, outcome.records, settings.objectives)
    paths = write_outputs(space, outcome, front, references, settings.out_dir)
    missed = infeasibility(space, outcome.records)
    if missed:
        constraint, closest = missed
        values = ", ".join(f"{name} {closest['metrics'][OBJECTIVE_METRICS[name]]:.4g}"
                           for name in settings.objectives)
        raise UserError(f"no point meets '{constraint}'; the closest is {closest['point']} "
                        f"({values}); all points are in {settings.out_dir}/all.csv",
                        source=space.source, field=f"constraints.{constraint.split()[0]}",
                        fix="relax the limit or widen the axes")
    return outcome, front, paths


def summary_lines(space: Space, outcome: SearchOutcome, front: Front) -> list[str]:
    """Returns the terminal summary: counts, then one line per front design."""
    lines = [f"{outcome.method}: {len(outcome.records)} points of {space.size} "
             f"({outcome.evaluated} costed now, {outcome.reused} from the store); "
             f"front {len(front.records)} designs"]
    failed = infeasible_counts(space, outcome.records)
    if failed:
        lines.append("infeasible: " + ", ".join(f"{count} break {text}"
                                                 for text, count in failed.items()))
    for index, record in enumerate(front.records):
        values = metric_values(record, front.objectives)
        text = ", ".join(f"{name} {value:.6g}" for name, value in zip(front.objectives, values))
        knee = "  <- knee" if index == front.knee else ""
        lines.append(f"  p{index:02d}-{record['key'][:8]}  {record['point']}  {text}{knee}")
    return lines


def infeasible_counts(space: Space, records: list[dict]) -> dict[str, int]:
    """Returns {constraint: how many valid points break it} (a point may break several)."""
    counts: dict[str, int] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        for constraint, violation in zip(space.constraints, violations(space, record)):
            if violation > 0:
                counts[constraint.describe()] = counts.get(constraint.describe(), 0) + 1
    return counts
