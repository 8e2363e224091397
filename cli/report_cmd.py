"""`hwsim report`: a self-contained HTML page from a results folder (summary.json + plots)."""
from __future__ import annotations

import base64
import html
import math
import os

from models.errors import UserError


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "report", formatter_class=formatter_class,
        help="turn a results folder into one self-contained HTML page",
        description="Read DIR/summary.json (written by `hwsim simulate --out DIR`) and the PNG "
                    "plots beside it, and write DIR/report.html with the totals, the per-layer "
                    "table and the plots embedded, so the page can be mailed or attached.",
        epilog="examples:\n"
               "  hwsim simulate --arch sat --out reports/r18 && hwsim report reports/r18\n"
               "  hwsim report reports/r18 --out /tmp/r18.html\n")
    parser.add_argument("directory", help="folder holding summary.json")
    parser.add_argument("--out", default=None, help="HTML file (default DIR/report.html)")
    parser.set_defaults(handler=report_command)


def _runs(document: dict) -> dict[str, dict]:
    """Returns {sparsity: summary} for a single-run or a --compare document, each summary
    checked for the fields the page reads (a hand-edited file fails in one line)."""
    if "runs" in document:
        runs = document["runs"]
    elif "layers" in document:
        runs = {str(document.get("sparsity", "run")): document}
    else:
        raise UserError("neither a summary nor a comparison document", field="summary.json",
                        fix="point at a folder written by `hwsim simulate --out`")
    if not isinstance(runs, dict) or not runs:
        raise UserError("'runs' is not a mapping of summaries", field="runs",
                        fix="write it again with `hwsim simulate --out`")
    for name, run in runs.items():
        if not isinstance(run, dict):
            raise UserError(f"run '{name}' is not a summary", field=f"runs.{name}",
                            fix="write it again with `hwsim simulate --out`")
        for key in ("total_cycles", "seconds", "energy_j"):
            value = run.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise UserError(f"{key} is not a non-negative number", field=f"runs.{name}.{key}",
                                fix="write it again with `hwsim simulate --out`")
        layers = run.get("layers", [])
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            raise UserError("layers is not a list of mappings", field=f"runs.{name}.layers",
                            fix="write it again with `hwsim simulate --out`")
    return runs


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    # every cell is text from the summary file: escaped, never markup
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(document: dict, plots: dict[str, bytes]) -> str:
    """Returns the page: totals per run, per-layer rows of the first run, embedded plots."""
    runs = _runs(document)
    first = next(iter(runs.values()))
    baseline_cycles = first.get("total_cycles") or 1
    totals = [[name, f"{run.get('total_cycles') or 0:,}", f"{(run.get('seconds') or 0) * 1e3:.3f}",
               f"{(run.get('energy_j') or 0) * 1e3:.3f}",
               f"{baseline_cycles / run['total_cycles']:.2f}x" if run.get("total_cycles") else "-"]
              for name, run in runs.items()]
    layer_keys = ["name", "phase", "M", "N", "K", "sparse", "compute_cycles", "stall_cycles",
                  "total_cycles", "utilization", "dram_bytes"]
    layer_rows = []
    for layer in first.get("layers", []):
        row = [layer.get(key, "") for key in layer_keys]
        if isinstance(row[9], float):
            row[9] = f"{row[9]:.0%}"
        layer_rows.append(row)
    images = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(data).decode()}'/><figcaption>{html.escape(name)}</figcaption></figure>"
        for name, data in sorted(plots.items()))
    title = f"{first.get('model', 'model')} on {first.get('arch', 'arch')} ({first.get('mode', '')}, " \
            f"batch {first.get('batch', '')})"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1><p>hwsim {html.escape(str(first.get('version', '')))}</p>
<h2>Totals</h2>{_table(['sparsity', 'cycles', 'ms', 'energy mJ', 'speedup vs first'], totals)}
<h2>Plots</h2>{images or '<p>no plots in the folder</p>'}
<h2>Per GEMM ({html.escape(next(iter(runs)))})</h2>{_table(layer_keys, layer_rows)}
</body></html>
"""


def report_command(args) -> int:
    from models.fileio import write_atomic

    from models.fileio import check_output_path
    from models.inputs import read_bytes, read_json

    path = os.path.join(args.directory, "summary.json")
    if not os.path.isdir(args.directory):
        raise UserError("not a folder" if os.path.exists(args.directory) else "no such folder",
                        source=args.directory, fix="give the --out folder of `hwsim simulate`")
    if not os.path.exists(path):
        raise UserError("no summary.json here", source=path,
                        fix="run `hwsim simulate ... --out DIR` first")
    out = args.out or os.path.join(args.directory, "report.html")
    check_output_path(out, what="HTML report")
    document = read_json(path, what="summary.json (from `hwsim simulate --out`)")
    if not isinstance(document, dict):
        raise UserError("not a summary document", source=path, fix="write it again with --out")
    try:
        page_plots = {name: read_bytes(os.path.join(args.directory, name), what="PNG plot",
                                       max_bytes=32 * 1024 * 1024)
                      for name in sorted(os.listdir(args.directory)) if name.endswith(".png")
                      and not name.startswith(".")}
        page = render_html(document, page_plots)
    except UserError as error:
        raise error.located(path) from None
    write_atomic(out, page)
    print(f"wrote {out}")
    return 0
