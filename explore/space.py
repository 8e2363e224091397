"""The design space of `hwsim explore`: axes, constraints and the workload, validated once.

A space file looks like this (``explore/spaces/sat_small.yaml`` is a bundled one)::

    workload:                      # optional; --model/--dataset/--batch/--mode override it
      mode: train
      batch: 32
      dataset: imagenet
      models:                      # several models weighted into one step
        - {name: resnet50, weight: 0.7}
        - {name: bert_base, weight: 0.3, dataset: null}
    axes:                          # dotted paths into the accelerator YAML, or model.*
      array.rows: [16, 32, 64]
      memory.ifmap_sram_kb: {from: 128, to: 1024, times: 2}     # 128, 256, 512, 1024
      memory.dram_gbps: {from: 9.6, to: 38.4, step: 9.6}
      sparsity.modes: [["2:8"], ["1:8", "2:8", "4:8"]]
      model.sparsity: [dense, "2:8", "1:8"]                     # every weight layer
      model.sparsity.conv1: [dense, "2:8"]                      # one layer (overrides)
      dataflow: [os, [os, ws, is]]                              # a fixed or a reconfigurable array
      mapping: [fixed, edp]                                     # hwsim.mapper off / on (its objective)
      technology: [28nm]                                        # one value: a setting, gives area
    constraints:
      area_mm2: {max: 40}
      energy_mj: {max: 900}
      magnitude_kept: {min: 0.7}   # accuracy-proxy floor (models.pruning_proxy)

Everything a point needs is here and in the base accelerator document; a point is a
mapping {axis path: value} in axis order. Bad input raises ``UserError`` naming the
space file and the field.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from models.errors import UserError, closest, suggest

MODEL_SPARSITY = "model.sparsity"
# Metrics a constraint (and an objective) can name, with the objective aliases of --objectives.
# magnitude_kept is the accuracy proxy of the point's patterns (models.pruning_proxy): the
# weight-count-weighted L2 share of weight magnitude the masks keep, in (0, 1], 1 when dense.
METRICS = ("cycles", "seconds", "energy_mj", "area_mm2", "edp_mj_s", "magnitude_kept")
OBJECTIVE_METRICS = {"cycles": "cycles", "energy": "energy_mj", "area": "area_mm2",
                     "edp": "edp_mj_s", "seconds": "seconds", "magnitude_kept": "magnitude_kept"}
# Metrics where more is better: objectives maximise them (searches minimise their negation).
MAXIMISED_METRICS = frozenset({"magnitude_kept"})
# Metrics that cannot pass 1 (a floor above it can never be met).
SHARE_METRICS = frozenset({"magnitude_kept"})
TOP_KEYS = ("workload", "axes", "constraints", "description")
WORKLOAD_KEYS = ("mode", "batch", "dataset", "models")
MODEL_KEYS = ("name", "weight", "dataset", "batch")
SKIPPED_ARCH_KEYS = ("kind", "name", "description")


@dataclass(frozen=True)
class Axis:
    """One dimension of the space: a dotted path and the values it takes, in order."""
    path: str
    values: tuple[Any, ...]

    @property
    def is_model_axis(self) -> bool:
        return self.path == MODEL_SPARSITY or self.path.startswith(MODEL_SPARSITY + ".")

    @property
    def layer(self) -> str | None:
        """Returns the layer a per-layer sparsity axis overrides (None for the others)."""
        prefix = MODEL_SPARSITY + "."
        return self.path[len(prefix):] if self.path.startswith(prefix) else None


@dataclass(frozen=True)
class Constraint:
    """A bound on one metric of a design: ``metric <= limit`` (or ``>=`` when ``upper`` is False)."""
    metric: str
    limit: float
    upper: bool = True

    def violation(self, metrics: dict[str, float]) -> float:
        """Returns how far a design is outside the bound, relative to it (0 when it is met)."""
        value = metrics[self.metric]
        scale = abs(self.limit) or 1.0
        excess = (value - self.limit) if self.upper else (self.limit - value)
        return max(0.0, excess / scale)

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.upper else '>='} {self.limit:g}"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the workload and its weight in the combined step."""
    name: str
    weight: float
    dataset: str | None
    batch: int


@dataclass(frozen=True)
class Workload:
    """What every design point runs: the weighted models, the mode."""
    models: tuple[ModelSpec, ...]
    mode: str

    def describe(self) -> str:
        return " + ".join(f"{spec.weight:g}x{spec.name}" if len(self.models) > 1 else spec.name
                          for spec in self.models)


@dataclass(frozen=True)
class Space:
    """A validated space: the axes, the constraints and the workload, plus the base arch."""
    source: str
    base_document: dict
    base_source: str
    axes: tuple[Axis, ...]
    constraints: tuple[Constraint, ...]
    workload: Workload

    @property
    def size(self) -> int:
        return math.prod(len(axis.values) for axis in self.axes)

    def point_at(self, indices: tuple[int, ...]) -> dict[str, Any]:
        """Returns the point {path: value} of one index per axis."""
        return {axis.path: axis.values[index] for axis, index in zip(self.axes, indices)}

    def points(self) -> Iterator[dict[str, Any]]:
        """Yields every point, the last axis fastest."""
        for indices in itertools.product(*(range(len(axis.values)) for axis in self.axes)):
            yield self.point_at(indices)

    def context_key(self, evaluator: str) -> str:
        """Returns a hash of everything besides the point that decides a result."""
        workload = [[m.name, m.weight, m.dataset, m.batch] for m in self.workload.models]
        return canonical_hash({"arch": self.base_document, "workload": workload,
                               "mode": self.workload.mode, "evaluator": evaluator})


# ---------------------------------------------------------------- points


def canonical_hash(value: Any) -> str:
    """Returns a 16-hex-digit hash of a JSON value that does not depend on key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def point_key(context_key: str, point: dict[str, Any]) -> str:
    """Returns the results-store key of a point under one run context."""
    return canonical_hash({"context": context_key, "point": point})


def arch_document(space: Space, point: dict[str, Any]) -> dict:
    """Returns the base accelerator mapping with the point's arch axes set."""
    document = copy.deepcopy(space.base_document)
    for path, value in point.items():
        if not path.startswith(MODEL_SPARSITY):
            set_path(document, path, value)
    return document


def set_path(document: dict, path: str, value: Any) -> None:
    """Sets a dotted path in a nested mapping, creating sections on the way."""
    parts = path.split(".")
    node = document
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


def layer_patterns(space: Space, point: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """Returns (the global pattern spec, {layer: spec} overrides) of a point."""
    default = "dense"
    overrides = {}
    for axis in space.axes:
        if axis.path == MODEL_SPARSITY:
            default = str(point[axis.path])
        elif axis.layer is not None:
            overrides[axis.layer] = str(point[axis.path])
    return default, overrides


def is_sparse(space: Space, point: dict[str, Any]) -> bool:
    """Returns True when any layer of the point runs a sparse pattern."""
    default, overrides = layer_patterns(space, point)
    return any(spec != "dense" for spec in [default, *overrides.values()])


# ---------------------------------------------------------------- reading


def _leaf_paths(mapping: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths |= _leaf_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def known_arch_paths(base_document: dict) -> set[str]:
    """Returns the dotted paths an axis may set: the schema's fields and the base file's leaves."""
    from hwsim import arch

    sections = {"array": "ARRAY_KEYS", "sparsity": "SPARSITY_KEYS", "memory": "MEMORY_KEYS",
                "energy_pj": "ENERGY_KEYS", "dataflow_options": "OPTION_KEYS"}
    paths = set()
    for key in getattr(arch, "TOP_KEYS", ()):
        if key in sections:
            paths |= {f"{key}.{sub}" for sub in getattr(arch, sections[key], ())}
        elif key not in SKIPPED_ARCH_KEYS:
            paths.add(key)
    paths |= _leaf_paths(base_document)
    return {path for path in paths if path.split(".")[0] not in SKIPPED_ARCH_KEYS}


def _expand_range(spec: dict, source: str, field: str) -> tuple[Any, ...]:
    """Returns the values of {from, to, step} (arithmetic) or {from, to, times} (geometric)."""
    unknown = set(spec) - {"from", "to", "step", "times"}
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(f"unknown range key '{key}'", source=source, field=f"{field}.{key}",
                        fix=suggest(str(key), ("from", "to", "step", "times")))
    fix = "write {from: 16, to: 64, step: 16} or {from: 128, to: 1024, times: 2}"
    try:
        start, stop = spec["from"], spec["to"]
    except KeyError as missing:
        raise UserError(f"range without '{missing.args[0]}'", source=source, field=field,
                        fix=fix) from None
    for name, number in (("from", start), ("to", stop), *((k, spec[k]) for k in ("step", "times")
                                                         if k in spec)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise UserError(f"{name} must be a finite number, got {number!r}", source=source,
                            field=f"{field}.{name}", fix=fix)
    if start < 0 or stop < 0:
        raise UserError(f"negative range {start}..{stop}", source=source, field=field,
                        fix="hardware sizes are positive: use from >= 1")
    if start > stop:
        raise UserError(f"empty range: from {start} > to {stop}", source=source, field=field,
                        fix=f"swap them: {{from: {stop}, to: {start}, ...}}")
    if ("step" in spec) == ("times" in spec):
        raise UserError("a range needs exactly one of 'step' and 'times'", source=source,
                        field=field, fix=fix)
    integral = all(isinstance(v, int) for v in (start, stop, spec.get("step", 1), spec.get("times", 2)))
    values = []
    if "step" in spec:
        step = spec["step"]
        if step <= 0:
            raise UserError(f"step {step} must be positive", source=source, field=f"{field}.step",
                            fix="use a step > 0")
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        values = [start + i * step for i in range(count)]
    else:
        times = spec["times"]
        if times <= 1:
            raise UserError(f"times {times} must be > 1", source=source, field=f"{field}.times",
                            fix="e.g. times: 2 doubles every step")
        if start == 0:
            raise UserError("a geometric range cannot start at 0", source=source,
                            field=f"{field}.from", fix="start at 1 or more")
        value = start
        while value <= stop * (1 + 1e-9):
            values.append(value)
            value = value * times
    if len(values) > 100_000:
        raise UserError(f"{len(values)} values on one axis", source=source, field=field,
                        fix="use a coarser step")
    return tuple(int(v) if integral else round(float(v), 12) for v in values)


def _axis_values(raw: Any, source: str, field: str) -> tuple[Any, ...]:
    if isinstance(raw, dict):
        return _expand_range(raw, source, field)
    if not isinstance(raw, list):
        raise UserError(f"expected a list of values or a range, got {raw!r}", source=source,
                        field=field, fix="write [16, 32, 64] or {from: 16, to: 64, step: 16}")
    if not raw:
        raise UserError("empty list of values", source=source, field=field,
                        fix="give at least one value")
    values = tuple(raw)
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise UserError(f"negative value {value}", source=source, field=field,
                            fix="hardware sizes and rates are positive")
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise UserError("a value is listed twice", source=source, field=field,
                        fix="list each value once")
    return values


def _check_pattern(spec: Any, source: str, field: str) -> None:
    from models.patterns import nm_of, parse_pattern

    if not isinstance(spec, str):
        raise UserError(f"pattern {spec!r} is not a string", source=source, field=field,
                        fix="quote it: \"2:8\"")
    pattern = parse_pattern(spec, field=field)
    if pattern is not None and nm_of(pattern) is None:
        raise UserError(f"accelerators run N:M sparsity only, not '{spec}'", source=source,
                        field=field, fix="use dense, \"N:M\" (BDWP) or \"nm:N:M\"")


def _group_sizes(base_document: dict, axes: list[Axis]) -> tuple[int, ...]:
    for axis in axes:
        if axis.path == "sparsity.group_size":
            return tuple(v for v in axis.values if isinstance(v, int))
    base = (base_document.get("sparsity") or {}).get("group_size")
    return (base,) if isinstance(base, int) else ()


def _check_modes(axis: Axis, group_sizes: tuple[int, ...], source: str) -> None:
    """Raises UserError when a listed mode fits no group size the space offers."""
    for value in axis.values:
        modes = value if isinstance(value, list) else [value]
        for mode in modes:
            text = str(mode)
            try:
                n, m = (int(part) for part in text.split(":"))
            except ValueError:
                raise UserError(f"cannot read mode {mode!r}", source=source,
                                field=f"axes.{axis.path}", fix="write modes as \"N:M\", e.g. \"2:8\"") from None
            if not 1 <= n <= m:
                raise UserError(f"mode '{text}' needs 1 <= N <= M", source=source,
                                field=f"axes.{axis.path}", fix="e.g. \"2:8\"")
            if group_sizes and not any(size % m == 0 for size in group_sizes):
                raise UserError(f"mode '{text}' needs groups of {m}, but group_size is "
                                f"{' or '.join(map(str, group_sizes))}", source=source,
                                field=f"axes.{axis.path}",
                                fix=f"use modes N:M with M dividing the group size, or add "
                                    f"{m} (or a multiple) to sparsity.group_size")


def _check_arch_value(base_document: dict, base_source: str, axis: Axis, value: Any,
                      source: str) -> None:
    """Raises UserError when one axis value alone makes the base accelerator invalid."""
    from hwsim.arch import parse_accelerator

    document = copy.deepcopy(base_document)
    set_path(document, axis.path, value)
    try:
        parse_accelerator(document, base_source)
    except UserError as error:
        raise UserError(f"value {value!r}: {error.message}", source=source,
                        field=f"axes.{axis.path}", fix=error.fix) from None


def _read_constraints(raw: Any, source: str) -> tuple[Constraint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise UserError("expected a mapping of metric: {max: X} or {min: X}", source=source,
                        field="constraints", fix="e.g. constraints: {area_mm2: {max: 40}}")
    constraints = []
    for metric, bound in raw.items():
        field = f"constraints.{metric}"
        if metric not in METRICS:
            raise UserError(f"unknown metric '{metric}'", source=source, field=field,
                            fix=suggest(str(metric), METRICS))
        if not isinstance(bound, dict) or not bound or set(bound) - {"max", "min"}:
            raise UserError(f"expected {{max: X}} or {{min: X}}, got {bound!r}", source=source,
                            field=field, fix=f"e.g. {metric}: {{max: 40}}")
        for side, limit in bound.items():
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
                raise UserError(f"{side} must be a number, got {limit!r}", source=source,
                                field=f"{field}.{side}", fix=f"e.g. {metric}: {{max: 40}}")
            if limit <= 0 and side == "max":
                raise UserError(f"max {limit} can never be met: {metric} is positive",
                                source=source, field=f"{field}.max", fix="use a limit > 0")
            if metric in SHARE_METRICS and side == "min" and limit > 1:
                raise UserError(f"min {limit} can never be met: {metric} is a share, at most 1",
                                source=source, field=f"{field}.min",
                                fix=f"use a floor in (0, 1], e.g. {metric}: {{min: 0.7}}")
            constraints.append(Constraint(metric, float(limit), upper=side == "max"))
    return tuple(constraints)


def _read_workload(raw: Any, source: str, overrides: dict) -> Workload:
    """Returns the workload: the space's section with the command line's values over it."""
    from models import zoo

    raw = raw or {}
    if not isinstance(raw, dict):
        raise UserError("expected a mapping", source=source, field="workload",
                        fix="e.g. workload: {mode: train, batch: 32, models: [{name: resnet50}]}")
    for key in raw:
        if key not in WORKLOAD_KEYS:
            raise UserError(f"unknown key '{key}'", source=source, field=f"workload.{key}",
                            fix=suggest(str(key), WORKLOAD_KEYS))
    mode = overrides.get("mode") or raw.get("mode") or "train"
    if mode not in ("train", "infer"):
        raise UserError(f"unknown mode '{mode}'", source=source, field="workload.mode",
                        fix="use train or infer")
    batch = overrides.get("batch") or raw.get("batch") or 1
    dataset = overrides.get("dataset") or raw.get("dataset")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch {batch!r} must be a whole number >= 1", source=source,
                        field="workload.batch", fix="e.g. batch: 32")
    if overrides.get("models"):
        entries = [{"name": name} for name in overrides["models"]]
    else:
        entries = raw.get("models") or [{"name": "resnet18"}]
    if not isinstance(entries, list):
        raise UserError("expected a list of models", source=source, field="workload.models",
                        fix="e.g. models: [{name: resnet50, weight: 1}]")
    specs = []
    for index, entry in enumerate(entries):
        field = f"workload.models[{index}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise UserError(f"expected {{name: ..., weight: ...}}, got {entry!r}", source=source,
                            field=field, fix="e.g. {name: resnet50, weight: 1}")
        for key in entry:
            if key not in MODEL_KEYS:
                raise UserError(f"unknown key '{key}'", source=source, field=f"{field}.{key}",
                                fix=suggest(str(key), MODEL_KEYS))
        name = str(entry["name"])
        if "/" not in name and not name.endswith((".json", ".csv", ".onnx")) and name not in zoo.names():
            raise UserError(f"unknown model '{name}'", source=source, field=f"{field}.name",
                            fix=suggest(name, zoo.names()))
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise UserError(f"weight {weight!r} must be a positive number", source=source,
                            field=f"{field}.weight", fix="e.g. weight: 0.5")
        model_batch = entry.get("batch", batch)
        if isinstance(model_batch, bool) or not isinstance(model_batch, int) or model_batch < 1:
            raise UserError(f"batch {model_batch!r} must be a whole number >= 1", source=source,
                            field=f"{field}.batch", fix="e.g. batch: 32")
        specs.append(ModelSpec(name, float(weight), entry.get("dataset", dataset), model_batch))
    return Workload(tuple(specs), mode)


def read_space(path: str, base_document: dict, base_source: str,
               workload_overrides: dict | None = None) -> Space:
    """Returns the validated space of a YAML file over a base accelerator mapping.

    ``workload_overrides`` holds the command line's models, dataset, batch and mode
    (None values leave the file's)."""
    from models.inputs import read_yaml

    document = read_yaml(path, what="space file")
    return parse_space(document, path, base_document, base_source, workload_overrides or {})


def parse_space(document: Any, source: str, base_document: dict, base_source: str,
                workload_overrides: dict) -> Space:
    """Returns the validated Space of a parsed space mapping (see the module docstring)."""
    if not isinstance(document, dict):
        raise UserError("the space file must be a mapping", source=source,
                        fix="start with 'axes:'")
    for key in document:
        if key not in TOP_KEYS:
            raise UserError(f"unknown key '{key}'", source=source, field=str(key),
                            fix=suggest(str(key), TOP_KEYS))
    raw_axes = document.get("axes")
    if not isinstance(raw_axes, dict) or not raw_axes:
        raise UserError("no axes", source=source, field="axes",
                        fix="e.g. axes: {array.rows: [16, 32], model.sparsity: [dense, \"2:8\"]}")
    workload = _read_workload(document.get("workload"), source, workload_overrides)
    known = known_arch_paths(base_document)
    axes = []
    for path, raw in raw_axes.items():
        path = str(path)
        field = f"axes.{path}"
        if not (path == MODEL_SPARSITY or path.startswith(MODEL_SPARSITY + ".") or path in known):
            options = sorted(known | {MODEL_SPARSITY})
            best = closest(path, options)
            raise UserError(f"unknown axis '{path}'", source=source, field=field,
                            fix=f"did you mean '{best}'?" if best else
                            f"use a dotted accelerator path ({', '.join(options)}) or "
                            f"model.sparsity[.LAYER]")
        axes.append(Axis(path, _axis_values(raw, source, field)))
    _check_layers(axes, workload, source)
    group_sizes = _group_sizes(base_document, axes)
    for axis in axes:
        if axis.is_model_axis:
            for value in axis.values:
                _check_pattern(value, source, f"axes.{axis.path}")
        elif axis.path == "sparsity.modes":
            _check_modes(axis, group_sizes, source)
        elif axis.path != "sparsity.group_size":
            for value in axis.values:
                _check_arch_value(base_document, base_source, axis, value, source)
    constraints = _read_constraints(document.get("constraints"), source)
    return Space(source, base_document, base_source, tuple(axes), constraints, workload)


def _check_layers(axes: list[Axis], workload: Workload, source: str) -> None:
    """Raises UserError when a per-layer axis names a layer no model of the workload has."""
    layered = [axis for axis in axes if axis.layer is not None]
    if not layered:
        return
    from models.ir import WEIGHT_OPS
    from models.loading import load

    names: set[str] = set()
    for spec in workload.models:
        model = load(spec.name, dataset=spec.dataset, batch=1)
        names |= {op.name for op in model.ops() if isinstance(op, WEIGHT_OPS)}
    for axis in layered:
        if axis.layer not in names:
            raise UserError(f"no weight layer '{axis.layer}' in {workload.describe()}",
                            source=source, field=f"axes.{axis.path}",
                            fix=suggest(axis.layer, names))
