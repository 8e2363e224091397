"""What `hwsim explore --out DIR` writes: the front (JSON, CSV, one accelerator YAML per
design), every point (CSV), 2-D front plots, a parallel-coordinates plot, index.html.

All files are written atomically; the plots use matplotlib's Agg backend.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass

import yaml

from explore.pareto import dominates, front_indices, knee_index
from explore.search import feasible, objective_values, violations
from explore.space import (MAXIMISED_METRICS, METRICS, OBJECTIVE_METRICS, Space, arch_document,
                           is_sparse, layer_patterns)
from models.fileio import write_atomic

METRIC_LABELS = {"cycles": "cycles per step", "energy_mj": "energy per step (mJ)",
                 "area_mm2": "area (mm2)", "edp_mj_s": "EDP (mJ s)", "seconds": "seconds per step",
                 "magnitude_kept": "weight L2 magnitude kept (share)"}
# Shares near 1 read better on a linear axis; the hardware metrics span decades.
LINEAR_METRICS = frozenset({"magnitude_kept"})


@dataclass(frozen=True)
class Front:
    """The feasible non-dominated records of a run, their knee, and the run's settings."""
    records: tuple[dict, ...]
    knee: int | None
    objectives: tuple[str, ...]


def pareto_front(space: Space, records: list[dict], objectives: tuple[str, ...]) -> Front:
    """Returns the front of the feasible records, ordered by the first objective."""
    candidates = [record for record in records if feasible(space, record)]
    vectors = [objective_values(record, objectives) for record in candidates]
    chosen = [candidates[i] for i in front_indices(vectors)]
    chosen.sort(key=lambda record: (objective_values(record, objectives), record["key"]))
    knee = knee_index([objective_values(r, objectives) for r in chosen]) if chosen else None
    return Front(tuple(chosen), knee, objectives)


def design_name(space: Space, index: int, record: dict) -> str:
    return f"p{index:02d}-{record['key'][:8]}"


def simulate_commands(space: Space, record: dict, yaml_path: str) -> list[str]:
    """Returns the `hwsim simulate` command per model that reproduces this point's numbers
    (empty when per-layer patterns are set: simulate takes one pattern for the model)."""
    default, overrides = layer_patterns(space, record["point"])
    if overrides:
        return []
    commands = []
    for spec in space.workload.models:
        parts = ["hwsim", "simulate", "--arch", yaml_path, "--model", spec.name]
        if spec.dataset:
            parts += ["--dataset", spec.dataset]
        parts += ["--batch", str(spec.batch), "--mode", space.workload.mode,
                  "--sparsity", default, "--format", "json"]
        commands.append(" ".join(parts))
    return commands


def front_yaml(space: Space, record: dict, name: str) -> str:
    """Returns the accelerator YAML of one front design, with the point and the command on top."""
    document = arch_document(space, record["point"])
    document["name"] = f"{document.get('name', 'accelerator')}-{name}"
    metrics = record["metrics"]
    header = [f"# Front design {name} of `hwsim explore` (space {space.source}).",
              f"# Point: {json.dumps(record['point'])}",
              f"# Workload: {space.workload.describe()} ({space.workload.mode}); "
              f"cycles {metrics['cycles']}, energy {metrics['energy_mj']:.6g} mJ"
              + (f", area {metrics['area_mm2']:.6g} mm2" if metrics.get("area_mm2") is not None else "")]
    if metrics.get("magnitude_kept") is not None:
        header.append(f"# Accuracy proxy: magnitude_kept {metrics['magnitude_kept']:.6g} (weight L2 "
                      f"share the patterns' masks keep, models.pruning_proxy; not a simulate output)")
    header += [f"# Reproduce (from the explore output folder): {command.replace(' --format json', '')}"
               for command in simulate_commands(space, record, f"front/{name}.yaml")]
    return "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False)


def _reference_summary(space: Space, front: Front, references: list[dict]) -> list[dict]:
    """Returns, per reference design (the base accelerator), where it stands against the front."""
    summary = []
    for record in references:
        if record.get("status") != "ok":
            continue
        metrics = record["metrics"]
        vector = objective_values(record, front.objectives)
        dominating = [r for r in front.records if dominates(objective_values(r, front.objectives), vector)]
        entry = {"point": record["point"], "metrics": metrics, "feasible": feasible(space, record),
                 "dominated_by": len(dominating)}
        area = metrics.get("area_mm2")
        if area is not None:
            within = [r for r in front.records if r["metrics"]["area_mm2"] <= area]
            if within:
                best = min(within, key=lambda r: r["metrics"]["cycles"])
                entry["best_front_at_its_area"] = {
                    "key": best["key"], "speedup": metrics["cycles"] / best["metrics"]["cycles"],
                    "energy_ratio": metrics["energy_mj"] / best["metrics"]["energy_mj"]}
        summary.append(entry)
    return summary


def front_document(space: Space, front: Front, outcome, references: list[dict],
                   out_dir: str) -> dict:
    """Returns front.json: settings, the front's designs (point, metrics, YAML, command)."""
    designs = []
    for index, record in enumerate(front.records):
        name = design_name(space, index, record)
        yaml_path = os.path.join(out_dir, "front", f"{name}.yaml")
        designs.append({"name": name, "key": record["key"], "point": record["point"],
                        "sparse": is_sparse(space, record["point"]), "metrics": record["metrics"],
                        "per_model": record.get("per_model", []), "yaml": yaml_path,
                        "simulate": simulate_commands(space, record, yaml_path),
                        "knee": index == front.knee})
    return {"tool": "hwsim explore", "space": space.source, "arch": space.base_source,
            "workload": [{"model": m.name, "weight": m.weight, "dataset": m.dataset,
                          "batch": m.batch} for m in space.workload.models],
            "mode": space.workload.mode, "objectives": list(front.objectives),
            "maximised": [o for o in front.objectives if OBJECTIVE_METRICS[o] in MAXIMISED_METRICS],
            "constraints": [c.describe() for c in space.constraints],
            "method": outcome.method, "search": outcome.extra, "space_size": space.size,
            "points_visited": len(outcome.records), "evaluated_now": outcome.evaluated,
            "reused_from_store": outcome.reused,
            "front": designs, "knee": designs[front.knee]["name"] if designs else None,
            "reference": _reference_summary(space, front, references)}


def reason(space: Space, record: dict) -> str:
    """Returns why a record is off the front's candidates: the schema's error for an invalid
    point, the constraints it breaks (with its value) for an infeasible one, else ''."""
    if record.get("status") != "ok":
        return record.get("reason", "")
    return "; ".join(f"breaks {c.describe()} ({record['metrics'][c.metric]:.6g})"
                     for c, v in zip(space.constraints, violations(space, record)) if v > 0)


def _csv_text(space: Space, records: list[dict], front_keys: set[str]) -> str:
    metrics = list(METRICS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "status", *(axis.path for axis in space.axes), *metrics, "sparse",
                     "feasible", "on_front", "reason"])
    for record in records:
        values = record.get("metrics") or {}
        writer.writerow([record["key"], record["status"],
                         *(json.dumps(record["point"][axis.path]) if isinstance(
                             record["point"][axis.path], list) else record["point"][axis.path]
                           for axis in space.axes),
                         *("" if values.get(m) is None else values[m] for m in metrics),
                         int(is_sparse(space, record["point"])), int(feasible(space, record)),
                         int(record["key"] in front_keys), reason(space, record)])
    return buffer.getvalue()


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def plot_pair(space: Space, records: list[dict], front: Front, references: list[dict],
              x_metric: str, y_metric: str) -> bytes:
    """Returns a PNG: every feasible point, the front (dense and sparse marked), the knee, SAT."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    ok = [r for r in records if feasible(space, r)]
    axes.scatter([r["metrics"][x_metric] for r in ok], [r["metrics"][y_metric] for r in ok],
                 s=8, color="#cccccc", label="feasible points")
    for sparse, color, marker, label in ((False, "#1f77b4", "o", "front, dense"),
                                         (True, "#d62728", "^", "front, sparse")):
        chosen = [r for r in front.records if is_sparse(space, r["point"]) == sparse]
        if chosen:
            axes.scatter([r["metrics"][x_metric] for r in chosen],
                         [r["metrics"][y_metric] for r in chosen],
                         s=30, color=color, marker=marker, label=label, zorder=3)
    if front.knee is not None:
        knee = front.records[front.knee]
        position = (knee["metrics"][x_metric], knee["metrics"][y_metric])
        axes.annotate(f"knee {design_name(space, front.knee, knee)}", position,
                      xytext=(12, 12), textcoords="offset points",
                      arrowprops={"arrowstyle": "->"}, fontsize=8)
    for record in references:
        if record.get("status") == "ok":
            axes.scatter([record["metrics"][x_metric]], [record["metrics"][y_metric]], marker="*",
                         s=140, color="#2ca02c", zorder=4,
                         label=f"base arch ({layer_patterns(space, record['point'])[0]})")
    axes.set_xlabel(METRIC_LABELS[x_metric])
    axes.set_ylabel(METRIC_LABELS[y_metric])
    axes.set_xscale("linear" if x_metric in LINEAR_METRICS else "log")
    axes.set_yscale("linear" if y_metric in LINEAR_METRICS else "log")
    axes.set_title(f"{space.workload.describe()}: {y_metric} vs {x_metric}")
    axes.legend(fontsize=7)
    return _png(figure)


def plot_parallel(space: Space, records: list[dict], front: Front) -> bytes:
    """Returns a PNG: every axis and objective scaled to [0, 1], one line per front design."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.4, 1.2 * (len(space.axes) + len(front.objectives))), 4.2))
    columns = [axis.path for axis in space.axes] + [OBJECTIVE_METRICS[o] for o in front.objectives]

    def coordinate(record, column):
        if column in record["point"]:
            axis = next(a for a in space.axes if a.path == column)
            values = [json.dumps(v) for v in axis.values]
            position = values.index(json.dumps(record["point"][column]))
            return position / max(len(values) - 1, 1)
        values = [r["metrics"][column] for r in front.records]
        low, high = min(values), max(values)
        if high <= low:
            return 0.5
        scaled = (record["metrics"][column] - low) / (high - low)
        return 1.0 - scaled if column in MAXIMISED_METRICS else scaled     # 0 = best

    for index, record in enumerate(front.records):
        sparse = is_sparse(space, record["point"])
        axes.plot(range(len(columns)), [coordinate(record, c) for c in columns],
                  color="#d62728" if sparse else "#1f77b4", alpha=0.9 if index == front.knee else 0.45,
                  linewidth=2.5 if index == front.knee else 1.0)
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels(columns, rotation=30, ha="right", fontsize=8)
    axes.set_yticks([0, 1])
    axes.set_yticklabels(["first value / best", "last value / worst"], fontsize=7)
    axes.set_title("front designs (red: sparse, blue: dense, thick: knee)")
    return _png(figure)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(document: dict, plots: dict[str, bytes]) -> str:
    """Returns index.html: settings, the front table, the plots embedded (self-contained)."""
    rows = [[d["name"] + (" (knee)" if d["knee"] else ""), "sparse" if d["sparse"] else "dense",
             json.dumps(d["point"]), f"{d['metrics']['cycles']:,}",
             f"{d['metrics']['energy_mj']:.4g}",
             "-" if d["metrics"].get("area_mm2") is None else f"{d['metrics']['area_mm2']:.4g}",
             f"{d['metrics']['edp_mj_s']:.4g}",
             "-" if d["metrics"].get("magnitude_kept") is None
             else f"{d['metrics']['magnitude_kept']:.4g}"] for d in document["front"]]
    images = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(data).decode()}'/><figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in plots.items())
    references = [[json.dumps(r["point"]), f"{r['metrics']['cycles']:,}", f"{r['metrics']['energy_mj']:.4g}",
                   r["dominated_by"], json.dumps(r.get("best_front_at_its_area", "-"))]
                  for r in document["reference"]]
    title = f"hwsim explore: {' + '.join(w['model'] for w in document['workload'])} ({document['mode']})"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>space {html.escape(document['space'])} ({document['space_size']:,} points) over {html.escape(document['arch'])};
search {html.escape(document['method'])}, {document['points_visited']:,} points visited
({document['evaluated_now']:,} costed in this run, {document['reused_from_store']:,} from the store);
objectives {html.escape(', '.join(document['objectives']))}; constraints
{html.escape(', '.join(document['constraints']) or 'none')}.</p>
<h2>Front ({len(document['front'])} designs)</h2>
{_table(['design', 'kind', 'point', 'cycles', 'energy mJ', 'area mm2', 'EDP mJ s',
          'magnitude kept'], rows)}
<h2>Base accelerator against the front</h2>
{_table(['point', 'cycles', 'energy mJ', 'front designs dominating it', 'best front design at its area'], references)}
<h2>Plots</h2>{images}
</body></html>
"""


def write_outputs(space: Space, outcome, front: Front, references: list[dict], out_dir: str) -> list[str]:
    """Writes every output file; returns their paths."""
    os.makedirs(os.path.join(out_dir, "front"), exist_ok=True)
    document = front_document(space, front, outcome, references, out_dir)
    written = {}
    written["front.json"] = json.dumps(document, indent=1)
    front_keys = {record["key"] for record in front.records}
    written["front.csv"] = _csv_text(space, list(front.records), front_keys)
    written["all.csv"] = _csv_text(space, outcome.records, front_keys)
    for design, record in zip(document["front"], front.records):
        written[os.path.join("front", f"{design['name']}.yaml")] = front_yaml(space, record, design["name"])
    plots: dict[str, bytes] = {}
    if front.records:
        metrics = [OBJECTIVE_METRICS[o] for o in front.objectives]
        x_metric = "area_mm2" if "area_mm2" in metrics else metrics[-1]
        for y_metric in metrics:
            if y_metric != x_metric:
                plots[f"front_{y_metric}_vs_{x_metric}.png"] = plot_pair(
                    space, outcome.records, front, references, x_metric, y_metric)
        if "cycles" in metrics and "energy_mj" in metrics and x_metric != "energy_mj":
            plots["front_energy_mj_vs_cycles.png"] = plot_pair(
                space, outcome.records, front, references, "cycles", "energy_mj")
        plots["parallel_coordinates.png"] = plot_parallel(space, outcome.records, front)
    written.update(plots)
    written["index.html"] = render_html(document, plots)
    paths = []
    for name, content in written.items():
        path = os.path.join(out_dir, name)
        write_atomic(path, content)
        paths.append(path)
    return paths


def infeasibility(space: Space, records: list[dict]) -> tuple[str, dict] | None:
    """Returns (the constraint the closest point misses, that point) when no point is feasible."""
    ok = [record for record in records if record.get("status") == "ok"]
    if not ok or any(feasible(space, record) for record in ok):
        return None
    closest = min(ok, key=lambda record: sum(violations(space, record)))
    missed = [c for c, v in zip(space.constraints, violations(space, closest)) if v > 0]
    return missed[0].describe(), closest
