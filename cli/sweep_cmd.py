"""`hwsim sweep`: a co-design grid of accelerator parameters x sparsity patterns."""
from __future__ import annotations

import copy
import itertools
import math
import os
import sys

from models.errors import UserError

MAX_POINTS = 10_000


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "sweep", formatter_class=formatter_class,
        help="sweep accelerator parameters and sparsity patterns, with plots",
        description="Run `hwsim simulate` over every combination of YAML field values "
                    "(--set FIELD=V1,V2,...) and sparsity patterns; print cycles, energy and the "
                    "speedup over dense at the same hardware point; --out writes sweep.json and "
                    "a plot per swept field.",
        epilog="examples:\n"
               "  hwsim sweep --arch sat --set memory.dram_gbps=4.8,9.6,19.2,38.4\n"
               "  hwsim sweep --arch sat --model resnet50 --dataset cifar10 --batch 32 \\\n"
               "      --set array.rows=16,32,64 --set array.cols=16,32,64 --sparsity dense,2:8,1:8 "
               "--out reports/sweep\n"
               "fields are dotted YAML paths (array.rows, memory.ifmap_sram_kb, dataflow, ...)")
    parser.add_argument("--arch", required=True, help="accelerator YAML file or bundled name")
    parser.add_argument("--model", default="resnet18", help="zoo name or model file")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--sparsity", default="dense,2:8",
                        help="comma-separated patterns; 'dense' is added as the baseline")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=V1,V2",
                        help="a YAML field and the values to sweep (repeatable)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--out", default=None, metavar="DIR", help="write sweep.json and PNG plots")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                        help="refuse a grid of more simulations than this (with the estimated "
                             "time) unless --yes")
    parser.add_argument("--yes", action="store_true",
                        help="run a grid larger than --max-points anyway (the warning is printed)")
    parser.set_defaults(handler=sweep_command)


def _parse_value(text: str):
    from models.inputs import parse_yaml
    return parse_yaml(text, source="--set", what="--set value")


def parse_settings(settings: list[str]) -> list[tuple[str, list]]:
    """Returns [(dotted field, values)] from FIELD=V1,V2 arguments."""
    parsed = []
    for setting in settings:
        field, _, values = setting.partition("=")
        if not field or not values:
            raise UserError(f"cannot read '{setting}'", field="--set",
                            fix="write FIELD=V1,V2, e.g. --set memory.dram_gbps=9.6,19.2")
        values = [_parse_value(v) for v in values.split(",") if v.strip()]
        if not values:
            raise UserError(f"no values in '{setting}'", field="--set",
                            fix="write FIELD=V1,V2, e.g. --set memory.dram_gbps=9.6,19.2")
        parsed.append((field.strip(), values))
    return parsed


def check_grid_size(settings: list[tuple[str, list]], patterns: int, max_points: int,
                    yes: bool, seconds_per_simulation) -> int:
    """Returns the number of simulations; refuses (or, with --yes, warns about) a grid of
    more than ``max_points`` before running it, with the time it would take
    (``seconds_per_simulation()`` times one simulation of the grid's first point)."""
    simulations = math.prod(len(values) for _, values in settings) * patterns
    if simulations <= max_points:
        return simulations
    each = seconds_per_simulation()
    estimate = f"{simulations:,} simulations, about {_duration(simulations * each)} " \
               f"at {each:.2g} s each (one timed here)"
    if not yes:
        raise UserError(f"the grid is {estimate}", field="--set",
                        fix=f"sweep fewer values, or pass --yes (or --max-points {simulations}) "
                            "to run it")
    print(f"hwsim: warning: the grid is {estimate}", file=sys.stderr)
    return simulations


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def with_field(document: dict, field: str, value, source: str) -> dict:
    """Returns a copy of the YAML mapping with the dotted ``field`` set to ``value``."""
    updated = copy.deepcopy(document)
    node = updated
    parts = field.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise UserError(f"'{part}' is not a section of the file", source=source,
                            field=f"--set {field}", fix="use a dotted path of the YAML, e.g. array.rows")
        node = node[part]
    node[parts[-1]] = value       # unknown keys are rejected by parse_accelerator
    return updated


def sweep_command(args) -> int:
    from tqdm import tqdm

    from hwsim.arch import parse_accelerator, read_target, target_kind
    from cli.simulate_cmd import _check_patterns
    from hwsim.engine import im2col_reuse, simulate
    from models.fileio import json_text
    from models.loading import load
    from models.lowering import lower

    source, document = read_target(args.arch)
    if target_kind(document) != "accelerator":
        raise UserError("sweeps run on accelerator descriptions", source=source, field="kind",
                        fix="give a kind: accelerator YAML, e.g. --arch sat")
    from models.fileio import check_output_dir
    from models.inputs import check_range, limit

    if args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    check_range(args.batch, limit("batch"), source=None, field="--batch")
    if args.max_points < 1:
        raise UserError(f"--max-points {args.max_points} must be >= 1", field="--max-points",
                        fix="e.g. --max-points 10000")
    if args.out:
        check_output_dir(args.out)     # before any work, not after an hour of it
    settings = parse_settings(args.settings)
    specs = list(dict.fromkeys(["dense"] + [s.strip() for s in args.sparsity.split(",") if s.strip()]))
    base = load(args.model, dataset=args.dataset, input_size=args.input_size, batch=1)
    reuse = im2col_reuse(base)

    def time_one_simulation() -> float:
        import time

        started = time.perf_counter()
        variant = document
        for field, values in settings:
            variant = with_field(variant, field, values[0], source)
        simulate(parse_accelerator(variant, source), lower(base, mode=args.mode, batch=args.batch),
                 model_name=base.name, sparsity="dense", mode=args.mode, batch=args.batch,
                 input_reuse=reuse)
        return time.perf_counter() - started

    check_grid_size(settings, len(specs), args.max_points, args.yes, time_one_simulation)
    lowered = {}
    points = itertools.product(*[values for _, values in settings]) if settings else [()]
    rows = []
    total = math.prod(len(values) for _, values in settings)
    for point in tqdm(points, desc="sweep", unit="point", file=sys.stderr, total=total,
                      disable=not sys.stderr.isatty()):
        variant = document
        for (field, _), value in zip(settings, point):
            variant = with_field(variant, field, value, source)
        arch = parse_accelerator(variant, source)
        patterns = _check_patterns(arch, specs)
        dense_cycles = None
        for spec, pattern in zip(specs, patterns):
            if spec not in lowered:
                lowered[spec] = lower(base.with_sparsity(pattern), mode=args.mode, batch=args.batch)
            result = simulate(arch, lowered[spec], model_name=base.name, sparsity=spec,
                              mode=args.mode, batch=args.batch, input_reuse=reuse)
            dense_cycles = dense_cycles or result.total_cycles
            rows.append({**{field: value for (field, _), value in zip(settings, point)},
                         "sparsity": spec, "total_cycles": result.total_cycles,
                         "seconds": result.seconds, "energy_j": result.energy_j,
                         "dram_bytes": result.dram_bytes, "utilization": result.utilization,
                         "speedup_vs_dense": dense_cycles / result.total_cycles
                         if result.total_cycles else None})
    fields = [field for field, _ in settings]
    document_out = {"tool": "hwsim", "arch": source, "model": base.name, "mode": args.mode,
                    "batch": args.batch, "swept": fields, "rows": rows}
    if args.out:
        _write(document_out, fields, specs, args.out)
    if args.format == "json":
        print(json_text(document_out))
        return 0
    header = "".join(f"{f:>22}" for f in fields) + f"{'sparsity':>10}{'cycles':>14}{'ms':>10}" \
             f"{'energy mJ':>11}{'DRAM MB':>10}{'util':>6}{'speedup':>9}"
    print(f"{base.name}, {args.mode}, batch {args.batch} on {source}")
    print(header)
    for row in rows:
        print("".join(f"{str(row[f]):>22}" for f in fields)
              + f"{row['sparsity']:>10}{row['total_cycles']:>14,}{row['seconds'] * 1e3:>10.3f}"
                f"{row['energy_j'] * 1e3:>11.3f}{row['dram_bytes'] / 1e6:>10.2f}"
                f"{row['utilization']:>6.0%}"
              + (f"{row['speedup_vs_dense']:>8.2f}x" if row["speedup_vs_dense"] is not None
                 else f"{'-':>9}"))
    if args.out:
        print(f"wrote {os.path.join(args.out, 'sweep.json')} and plots")
    return 0


def _write(document: dict, fields: list[str], specs: list[str], directory: str) -> None:
    """Writes sweep.json and, per swept field, speedup-vs-value plots: the set is staged and
    swapped in whole (models.fileio.atomic_folder), so a kill leaves the old set or the new."""
    from models.fileio import atomic_folder

    with atomic_folder(directory, replaces=("sweep.json", "sweep_*.png")) as staging:
        _write_set(document, fields, specs, staging)


def _write_set(document: dict, fields: list[str], specs: list[str], directory: str) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.fileio import json_text, write_atomic

    write_atomic(os.path.join(directory, "sweep.json"), json_text(document) + "\n")
    for field in fields:
        figure, axes = plt.subplots(figsize=(6, 4))
        for spec in specs[1:]:
            rows = [row for row in document["rows"] if row["sparsity"] == spec
                    and row["speedup_vs_dense"] is not None]
            values = sorted({row[field] for row in rows}, key=str)
            means = [sum(r["speedup_vs_dense"] for r in rows if r[field] == v)
                     / max(1, sum(1 for r in rows if r[field] == v)) for v in values]
            axes.plot([str(v) for v in values], means, marker="o", label=spec)
        axes.set_xlabel(field)
        axes.set_ylabel("speedup over dense (mean over other fields)")
        axes.set_title(f"{document['model']} {document['mode']}: speedup vs {field}")
        axes.legend()
        axes.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        write_atomic(os.path.join(directory, f"sweep_{field.replace('.', '_')}.png"), buffer.getvalue())
