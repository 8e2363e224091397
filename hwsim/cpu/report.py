"""The text table, report.md and plots of a CPU run (`hwsim simulate --arch <cpu>`)."""
from __future__ import annotations

import io
import json
import os


def text_report(documents: dict, speedups: dict, target) -> str:
    specs = list(documents)
    first = documents[specs[0]]
    lines = [f"{first['model']} on {target.name} ({target.core}, {target.simd}, {target.clock_mhz:.0f} MHz, "
             f"{target.cores} core{'s' if target.cores > 1 else ''}), {first['mode']}, batch {first['batch']}; "
             f"llvm-mca model {first['mca_model']} ({first['mca_core']})",
             f"{'layer':<24} {'ph':<3} " + "".join(f"{spec + ' ms':>12} {'bound':>7}" for spec in specs)]
    rows = zip(*(doc["layers"] for doc in documents.values()))
    for row in rows:
        lines.append(f"{row[0]['name'][:24]:<24} {row[0]['phase']:<3} "
                     + "".join(f"{layer['ms']:>12.3f} {layer['bound'][:7]:>7}" for layer in row))
    lines.append("")
    lines.append(f"{'sparsity':<10} {'ms':>10} {'Mcycles':>10} {'util':>6} {'bounds':<28} speedup vs {specs[0]}")
    for spec, doc in documents.items():
        bounds = ", ".join(f"{k} {v}" for k, v in sorted(doc["bounds"].items()))
        lines.append(f"{spec:<10} {doc['seconds'] * 1e3:>10.3f} {doc['total_cycles'] / 1e6:>10.2f} "
                     f"{doc['utilization']:>6.0%} {bounds:<28} {speedups[spec]:.2f}x")
    lines.append(f"speedup = predicted time of the {specs[0]} run (codegen's own kernels, costed by the "
                 f"model) / each run's; no BLAS or ONNX Runtime baseline is modelled (`hwsim run` "
                 f"measures those and names the fastest)")
    origins = {layer["kernel_origin"] for doc in documents.values() for layer in doc["layers"]}
    lines.append("kernels costed: " + ", ".join(sorted(origins)) + " (codegen = what `hwsim codegen` "
                 "emits; hwsim = hwsim.cpu's own kernels for layers codegen has none for)")
    if target.isa == "wasm32" and target.core_isa != "x86_64":
        lines.append("wasm on an ARM phone is predicted through a proxy: the SIMD128 kernel compiled "
                     "for aarch64 (see hwsim.cpu.wasm_native); no engine code is in it")
    return "\n".join(lines)


def write_cpu_outputs(documents: dict, speedups: dict, directory: str, output: dict) -> list[str]:
    """Writes summary.json, report.md and two plots (atomically); returns the file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from models.fileio import write_atomic

    os.makedirs(directory, exist_ok=True)
    write_atomic(os.path.join(directory, "summary.json"), json.dumps(output, indent=1) + "\n")
    specs = list(documents)
    first = documents[specs[0]]
    names = [layer["name"] for layer in first["layers"]]
    figure, axes = plt.subplots(figsize=(max(8, len(names) * 0.28), 4.5))
    width = 0.8 / len(specs)
    for index, spec in enumerate(specs):
        values = [layer["ms"] for layer in documents[spec]["layers"]]
        axes.bar(np.arange(len(names)) + index * width, values, width, label=spec)
    axes.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=90, fontsize=6)
    axes.set_ylabel("predicted ms")
    axes.set_title(f"{first['model']} on {first['arch']}: predicted time per layer")
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_atomic(os.path.join(directory, "ms_by_layer.png"), buffer.getvalue())
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for spec in specs:
        compute = sum(layer["compute_cycles"] for layer in documents[spec]["layers"])
        stall = sum(layer["stall_cycles"] for layer in documents[spec]["layers"])
        axes.barh(spec, compute, color="tab:blue")
        axes.barh(spec, stall, left=compute, color="tab:red")
    axes.set_xlabel("cycles (blue: compute bound, red: memory time beyond compute)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_atomic(os.path.join(directory, "bounds.png"), buffer.getvalue())
    rows = [f"| {spec} | {doc['seconds'] * 1e3:.3f} | {doc['utilization']:.0%} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(doc['bounds'].items()))} | {speedups[spec]:.2f}x |"
            for spec, doc in documents.items()]
    layer_rows = [f"| {layer['name']} | {layer['phase']} | {layer['kernel']} | {layer['kernel_origin']} "
                  f"| {layer['ms']:.4f} | {layer['bound']} ({layer['memory_level']}) |"
                  for layer in documents[specs[-1]]["layers"]]
    markdown = "\n".join([
        f"# hwsim simulate: {first['model']} on {first['arch']}", "",
        f"Predicted from the machine code of the kernels `hwsim codegen` emits: llvm-mca "
        f"({first['mca_model']} scheduling model) on each kernel's hot loops times their trip "
        f"counts, combined with a cache/DRAM traffic bound as max(compute, memory) per layer.", "",
        "| sparsity | ms | utilisation | layers by bound | speedup |", "|---|---|---|---|---|", *rows, "",
        "![time per layer](ms_by_layer.png)", "![bounds](bounds.png)", "",
        f"## Per layer ({specs[-1]})", "", "| layer | phase | kernel | origin | ms | bound |",
        "|---|---|---|---|---|---|", *layer_rows, ""])
    write_atomic(os.path.join(directory, "report.md"), markdown)
    return ["summary.json", "report.md", "ms_by_layer.png", "bounds.png"]
