"""`hwsim report`: a self-contained HTML page from a results folder (summary.json + plots)."""
from __future__ import annotations

import base64
import html
import json
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
    """Returns {sparsity: summary} for a single-run or a --compare document."""
    if "runs" in document:
        return document["runs"]
    if "layers" in document:
        return {document.get("sparsity", "run"): document}
    raise UserError("neither a summary nor a comparison document", field="summary.json",
                    fix="point at a folder written by `hwsim simulate --out`")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(document: dict, plots: dict[str, bytes]) -> str:
    """Returns the page: totals per run, per-layer rows of the first run, embedded plots."""
    runs = _runs(document)
    first = next(iter(runs.values()))
    baseline_cycles = first.get("total_cycles") or 1
    totals = [[name, f"{run.get('total_cycles', 0):,}", f"{run.get('seconds', 0) * 1e3:.3f}",
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

    path = os.path.join(args.directory, "summary.json")
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError:
        raise UserError("no summary.json here", source=path,
                        fix="run `hwsim simulate ... --out DIR` first") from None
    except json.JSONDecodeError as error:
        raise UserError(f"malformed JSON: {error}", source=path,
                        fix="write it again with `hwsim simulate --out`") from None
    if not isinstance(document, dict):
        raise UserError("not a summary document", source=path, fix="write it again with --out")
    try:
        page_plots = {name: open(os.path.join(args.directory, name), "rb").read()
                      for name in os.listdir(args.directory) if name.endswith(".png")}
        page = render_html(document, page_plots)
    except UserError as error:
        raise error.located(path) from None
    out = args.out or os.path.join(args.directory, "report.html")
    write_atomic(out, page)
    print(f"wrote {out}")
    return 0
