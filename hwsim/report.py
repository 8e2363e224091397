"""What `hwsim simulate` shows and writes: terminal tables, summary.json, report.md with plots.

Several runs of one model (e.g. dense, 2:8, 1:8) share their GEMM list, so they are
shown side by side; the first run (dense when present) is the speedup baseline.
"""
from __future__ import annotations

import json
import os

from hwsim import __version__
from hwsim.engine import SimResult
from models.fileio import atomic_folder, json_text, write_atomic


def speedups(results: list[SimResult]) -> dict[str, float]:
    """Returns {sparsity: baseline cycles / its cycles}; the baseline is the first run."""
    base = results[0].total_cycles
    return {result.sparsity: base / result.total_cycles if result.total_cycles else 0.0
            for result in results}


def compare_document(results: list[SimResult]) -> dict:
    """Returns the JSON document of several runs: summaries keyed by sparsity + speedups.

    {"tool", "version", "arch", "model", "mode", "batch", "baseline": "dense",
     "runs": {"dense": <summary>, "2:8": <summary>}, "speedup": {"dense": 1.0, "2:8": 1.7}}"""
    first = results[0]
    return {"tool": "hwsim", "version": __version__, "arch": first.arch.name,
            "model": first.model, "mode": first.mode, "batch": first.batch,
            "baseline": first.sparsity,
            "runs": {result.sparsity: result.summary_dict() for result in results},
            "speedup": speedups(results)}


def document_of(results: list[SimResult]) -> dict:
    """Returns the summary document of one run, or the compare document of several."""
    return results[0].summary_dict() if len(results) == 1 else compare_document(results)


def _cycles(value: float) -> str:
    return f"{value / 1e6:.3f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def mapping_label(layer) -> str:
    """Returns a GEMM's mapping as the table shows it: dataflow/orientation/loop order
    ("ws/NxM/row": weight stationary, C^T = B^T.A^T on the array, row folds outer)."""
    return f"{layer.dataflow}/{layer.orientation}/{layer.loop_order.split('-')[0]}"


def layer_table(results: list[SimResult]) -> str:
    """Returns the per-GEMM table: shape, then per run total cycles (stall share) and utilisation
    (and, for a run the mapper planned, each GEMM's chosen mapping)."""
    names = [result.sparsity for result in results]
    mapped = [result.mapping is not None for result in results]
    header = f"{'layer':<24} {'ph':<2} {'M':>7} {'N':>5} {'K':>6} " + " ".join(
        f"{name + ' cyc':>12} {'stall':>5} {'util':>5}" + (f" {'mapping':<14}" if on else "")
        for name, on in zip(names, mapped))
    if len(results) > 1:
        header += f" {'speedup':>7}"
    lines = [header, "-" * len(header)]
    for rows in zip(*(result.layers for result in results)):
        first = rows[0]
        line = f"{first.name[:24]:<24} {first.phase:<2} {first.M:>7} {first.N:>5} {first.K:>6} "
        line += " ".join(
            f"{_cycles(row.total_cycles) + ('*' if row.sparse else ' '):>12} "
            f"{(row.stall_cycles / row.total_cycles if row.total_cycles else 0):>5.0%} "
            f"{row.utilization:>5.0%}" + (f" {mapping_label(row):<14}" if on else "")
            for row, on in zip(rows, mapped))
        if len(results) > 1:
            line += f" {first.total_cycles / rows[-1].total_cycles if rows[-1].total_cycles else 0:>6.2f}x"
        lines.append(line)
    lines.append("(* = ran in N:M sparse mode; stall = share of the GEMM's cycles spent waiting on DRAM)")
    if any(mapped):
        lines.append("(mapping = dataflow/orientation/outer loop the mapper chose: MxN as lowered, "
                     "NxM transposed; col|row folds outer)")
    return "\n".join(lines)


def totals_table(results: list[SimResult]) -> str:
    """Returns per-run totals: cycles by phase, stalls, utilisation, time, energy, speedup."""
    gains = speedups(results)
    phases = ("FF", "BP", "WU")
    header = (f"{'sparsity':<10} " + " ".join(f"{phase + ' cyc':>10}" for phase in phases)
              + f" {'total cyc':>11} {'stall':>6} {'util':>5} {'ms':>9} {'energy mJ':>10}"
              f" {'DRAM MB':>9} {'speedup':>8}")
    lines = [header, "-" * len(header)]
    for result in results:
        by_phase = result.phase_cycles()
        lines.append(
            f"{result.sparsity:<10} " + " ".join(f"{_cycles(by_phase.get(p, 0)):>10}" for p in phases)
            + f" {_cycles(result.total_cycles):>11}"
            f" {result.stall_cycles / max(result.total_cycles, 1):>6.1%} {result.utilization:>5.0%}"
            f" {result.seconds * 1e3:>9.3f} {result.energy_j * 1e3:>10.3f}"
            f" {result.dram_bytes / 1e6:>9.2f} {gains[result.sparsity]:>7.2f}x")
    return "\n".join(lines)


def ideal_speedup(result: SimResult, baseline: SimResult) -> float:
    """Returns dense MACs / performed MACs: the speedup if cycles followed MACs exactly."""
    return baseline.macs / result.macs if result.macs else 0.0


def text_report(results: list[SimResult]) -> str:
    """Returns the whole terminal report."""
    first = results[0]
    arch = first.arch
    options = arch.options
    lines = [f"{first.model} on {arch.name} ({arch.array.rows}x{arch.array.cols} {arch.dataflow.upper()}, "
             f"{arch.clock_mhz:g} MHz, {arch.memory.dram_gbps:g} GB/s DRAM), {first.mode}, "
             f"batch {first.batch}; {options.describe()}"
             + (f"; mapper: minimise {first.mapping} over {', '.join(arch.supported_dataflows)}"
                if first.mapping else ""),
             "", layer_table(results), "", totals_table(results)]
    if first.area is not None:
        parts = first.area.as_dict()
        lines.append(f"area at {parts['technology']}: {parts['total_mm2']:.3g} mm2 (PE array "
                     f"{parts['pe_array_mm2']:.3g}, N:M select {parts['nm_select_mm2']:.3g}, SRAM "
                     f"{parts['sram_mm2']:.3g}, DRAM PHY {parts['dram_phy_mm2']:.3g})")
    if arch.fpga is not None:
        from hwsim.fpga import describe, fpga_estimate
        lines.append(describe(fpga_estimate(arch)))
    if len(results) > 1:
        for result in results[1:]:
            lines.append(f"{result.sparsity} vs {first.sparsity}: {first.total_cycles / result.total_cycles:.2f}x "
                         f"faster (MAC ratio, the ideal: {ideal_speedup(result, first):.2f}x), "
                         f"{first.energy_j / result.energy_j if result.energy_j else 0:.2f}x less energy")
    return "\n".join(lines)


# ---------------------------------------------------------------- files


def _plot_cycles(results: list[SimResult], path: str) -> None:
    """Writes a bar chart of cycles per layer, stacked by phase, one group of bars per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers = list(dict.fromkeys(layer.name for layer in results[0].layers))
    index = {name: i for i, name in enumerate(layers)}
    width = 0.8 / len(results)
    colours = {"FF": "#4c72b0", "BP": "#dd8452", "WU": "#55a868"}
    figure, axes = plt.subplots(figsize=(max(8, len(layers) * 0.25 * len(results)), 4.5))
    for run, result in enumerate(results):
        bottom = np.zeros(len(layers))
        for phase in ("FF", "BP", "WU"):
            heights = np.zeros(len(layers))
            for layer in result.layers:
                if layer.phase == phase:
                    heights[index[layer.name]] += layer.total_cycles
            axes.bar(np.arange(len(layers)) + run * width, heights, width, bottom=bottom,
                     color=colours[phase], alpha=1.0 - 0.35 * run,
                     label=f"{phase} ({result.sparsity})")
            bottom += heights
    axes.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
    axes.set_xticklabels(layers, rotation=90, fontsize=6)
    axes.set_ylabel("cycles")
    axes.set_title(f"{results[0].model} on {results[0].arch.name}: cycles per layer by phase")
    axes.legend(fontsize=7, ncol=len(results))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_utilization(results: list[SimResult], path: str) -> None:
    """Writes a line chart of PE utilisation per GEMM for each run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.5))
    for result in results:
        axes.plot([layer.utilization for layer in result.layers], marker=".", linewidth=0.8,
                  label=f"{result.sparsity} (step {result.utilization:.0%})")
    axes.set_xlabel("GEMM (FF..., then BP/WU per layer in reverse)")
    axes.set_ylabel("useful MACs / (cycles x PEs)")
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _png_bytes(plot, results: list[SimResult], directory: str, name: str) -> str:
    """Renders a plot to a temporary file in ``directory`` and moves it into place atomically."""
    temporary = os.path.join(directory, f".tmp-{name}")
    plot(results, temporary)
    with open(temporary, "rb") as stream:
        content = stream.read()
    os.unlink(temporary)
    write_atomic(os.path.join(directory, name), content)
    return name


def markdown_report(results: list[SimResult], plots: list[str]) -> str:
    """Returns report.md: settings, totals, speedups, plots, per-GEMM table."""
    text = text_report(results)
    header, _, rest = text.partition("\n")
    lines = [f"# hwsim simulate: {results[0].model} on {results[0].arch.name}", "", header, ""]
    lines += ["## Totals", "", "```", totals_table(results), "```", ""]
    if len(results) > 1:
        lines += ["## Speedup", ""]
        for result in results[1:]:
            lines.append(f"- {result.sparsity}: {results[0].total_cycles / result.total_cycles:.3f}x "
                         f"over {results[0].sparsity} (MAC-count ideal "
                         f"{ideal_speedup(result, results[0]):.3f}x)")
        lines.append("")
    lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    lines += ["## Per GEMM", "", "```", layer_table(results), "```", ""]
    return "\n".join(lines)


def write_outputs(results: list[SimResult], directory: str) -> list[str]:
    """Writes summary.json, report.md and the PNG plots into ``directory``; returns the paths."""
    # the set is staged beside ``directory`` and swapped in whole (models.fileio.atomic_folder):
    # a kill leaves the old summary, report and plots or the new ones, never a mix
    with atomic_folder(directory, replaces=("summary.json", "report.md", "report.html",
                                            "*.png")) as staging:
        write_atomic(os.path.join(staging, "summary.json"), json_text(document_of(results)) + "\n")
        plots = [_png_bytes(_plot_cycles, results, staging, "cycles_by_layer.png"),
                 _png_bytes(_plot_utilization, results, staging, "utilization.png")]
        write_atomic(os.path.join(staging, "report.md"), markdown_report(results, plots))
    return [os.path.join(directory, name) for name in ("summary.json", "report.md", *plots)]
