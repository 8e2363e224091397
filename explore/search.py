"""The search over a space: every point when the budget covers the space, NSGA-II otherwise.

Both drivers look each point up in the results store first and send only the
missing ones to the backend, so a resumed run evaluates nothing twice. NSGA-II
(Optuna's sampler, seeded) asks a generation, the backend costs it in parallel,
and the answers are told back in the order asked: the run is deterministic for a
seed whatever the backend, and a resumed run replays the stored answers and
arrives where the killed one stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from explore.accuracy_proxy import AccuracyProxy
from explore.space import MAXIMISED_METRICS, OBJECTIVE_METRICS, Space, point_key
from explore.store import ResultsStore


@dataclass
class SearchOutcome:
    """The records a search visited (in visiting order) and how many it costed now."""
    records: list[dict]
    evaluated: int = 0
    reused: int = 0
    method: str = "exhaustive"
    extra: dict = field(default_factory=dict)


def metric_values(record: dict, objectives: tuple[str, ...]) -> list[float]:
    """Returns the record's value of each objective, as reported (magnitude_kept as a share)."""
    return [float(record["metrics"][OBJECTIVE_METRICS[name]]) for name in objectives]


def objective_values(record: dict, objectives: tuple[str, ...]) -> list[float]:
    """Returns the vector every search, front, knee and hypervolume minimises: each
    objective's value, negated for the ones where more is better (magnitude_kept)."""
    return [-value if OBJECTIVE_METRICS[name] in MAXIMISED_METRICS else value
            for name, value in zip(objectives, metric_values(record, objectives))]


def violations(space: Space, record: dict) -> list[float]:
    """Returns each constraint's relative violation (0 = met) for an evaluated record."""
    return [constraint.violation(record["metrics"]) for constraint in space.constraints]


def feasible(space: Space, record: dict) -> bool:
    return record.get("status") == "ok" and not any(violations(space, record))


class FrontTracker:
    """The current front's size, kept up to date point by point (for the progress bar)."""

    def __init__(self, space: Space, objectives: tuple[str, ...]):
        self.space, self.objectives = space, objectives
        self.front: list[list[float]] = []

    def add(self, record: dict) -> None:
        from explore.pareto import dominates

        if not feasible(self.space, record):
            return
        vector = objective_values(record, self.objectives)
        if any(dominates(other, vector) or other == vector for other in self.front):
            return
        self.front = [other for other in self.front if not dominates(vector, other)] + [vector]


class Driver:
    """Shared by both searches: store look-ups, costing the missing points, progress."""

    def __init__(self, space: Space, objectives: tuple[str, ...], store: ResultsStore, backend,
                 progress: Callable[[dict, FrontTracker], None] | None,
                 proxy: AccuracyProxy | None = None):
        self.space, self.objectives, self.store, self.backend = space, objectives, store, backend
        self.progress = progress
        # magnitude_kept depends on the patterns only: the driver adds it, not the workers.
        self.proxy = proxy or AccuracyProxy(space)
        self.tracker = FrontTracker(space, objectives)
        self.evaluated = self.reused = 0

    def cost(self, points: list[dict[str, Any]]) -> list[dict]:
        """Returns the record of every point, costing (and storing) only the missing ones."""
        keys = [point_key(self.store.context_key, point) for point in points]
        missing: dict[str, dict] = {}
        for key, point in zip(keys, points):
            if key in self.store:
                self.reused += 1
                # A store from before magnitude_kept existed: completed in memory, exactly.
                self.store.amend(self.proxy.complete(self.store.get(key)))
                self._report(self.store.get(key))
            else:
                missing.setdefault(key, point)
        order = list(missing)
        for index, body in self.backend.run([missing[key] for key in order]):
            record = self.proxy.complete({"key": order[index], "point": missing[order[index]], **body})
            self.store.add(record)
            self.evaluated += 1
            self._report(self.store.get(order[index]))
        return [self.store.get(key) for key in keys]

    def _report(self, record: dict) -> None:
        self.tracker.add(record)
        if self.progress:
            self.progress(record, self.tracker)


def exhaustive(space: Space, objectives: tuple[str, ...], store: ResultsStore, backend,
               progress=None, chunk: int = 256, proxy: AccuracyProxy | None = None) -> SearchOutcome:
    """Returns the records of every point of the space (costing the ones not stored)."""
    driver = Driver(space, objectives, store, backend, progress, proxy)
    records: list[dict] = []
    batch: list[dict] = []
    for point in space.points():
        batch.append(point)
        if len(batch) >= chunk:
            records += driver.cost(batch)
            batch = []
    if batch:
        records += driver.cost(batch)
    return SearchOutcome(records, driver.evaluated, driver.reused, "exhaustive")


def nsga2(space: Space, objectives: tuple[str, ...], store: ResultsStore, backend, budget: int,
          seed: int = 0, population: int | None = None, progress=None,
          proxy: AccuracyProxy | None = None) -> SearchOutcome:
    """Returns the records NSGA-II visits until ``budget`` distinct valid points are costed.

    Each axis is a categorical parameter over its value indices; invalid points
    (a combination the accelerator schema rejects) are told as failed trials, and
    constraint violations reach the sampler through ``Trial.set_constraint``."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    population = population or max(8, min(50, budget // 10))
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["minimize"] * len(objectives), sampler=sampler)
    driver = Driver(space, objectives, store, backend, progress, proxy)
    seen: dict[str, dict] = {}
    asked = 0
    # Duplicates and invalid points do not count: stop asking after 20 x budget trials.
    while len([r for r in seen.values() if r["status"] == "ok"]) < budget and asked < 20 * budget:
        want = budget - len([r for r in seen.values() if r["status"] == "ok"])
        trials = [study.ask() for _ in range(min(population, max(want, 1)))]
        asked += len(trials)
        points = [space.point_at(tuple(trial.suggest_categorical(axis.path, list(range(len(axis.values))))
                                       for axis in space.axes)) for trial in trials]
        for trial, record in zip(trials, driver.cost(points)):
            seen.setdefault(record["key"], record)
            if record["status"] != "ok":
                study.tell(trial, state=TrialState.FAIL)
                continue
            # Optuna 5's constraint record (its constraints_func is deprecated): <= 0 is met.
            for index, violation in enumerate(violations(space, record)):
                trial.set_constraint(f"c{index}", violation)
            study.tell(trial, objective_values(record, objectives))
    return SearchOutcome(list(seen.values()), driver.evaluated, driver.reused, "nsga2",
                         {"trials": asked, "population": population, "seed": seed})
