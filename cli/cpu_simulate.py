"""`hwsim simulate --arch <cpu>`: the kernels `hwsim codegen` emits, costed by hwsim.cpu.

This is CLI glue because it is the one place allowed to see both packages: codegen
renders each layer's kernel (with the tuning log's schedule when it has the shape,
else the default), and hwsim.cpu compiles it for the target, runs llvm-mca on its
hot loops and adds the memory bound. Depthwise layers are codegen's dwconv (the model
gives their input plane); the ops a kernel's epilogue absorbs cost no pass of their own
(models.fusion). Layers codegen has no kernel for (pooling and adds as streams, attention
products, training's BP/WU of depthwise layers) are costed with hwsim.cpu's own kernels,
which the records say.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from pathlib import Path

from models.errors import UserError


def cache_dir() -> Path:
    """Returns the per-user cache of compiled assembly and llvm-mca results."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "hwsim"


def kernel_source_for(target, schedules: dict, model=None):
    """Returns the kernel_source callable that renders codegen's kernel for a workload
    (depthwise layers need ``model`` for their input plane, stride and epilogue)."""
    from codegen.build import runnable_flavours
    from codegen.layer import default_nmgemm, default_spmm
    from codegen.render import render_nmgemm, render_spmm
    from hwsim.cpu.codegen_kernels import from_rendered

    flavour = runnable_flavours(target)[-1]

    def kernel_source(workload, schedule, _target):
        if workload.op_kind == "depthwise" and model is not None and workload.phase == "FF":
            return _depthwise_source(model, workload, flavour)
        if workload.op_kind not in ("conv2d", "dense") or workload.groups != 1:
            return None                       # grouped, attention, training BP/WU: hwsim.cpu's kernels
        kxk = _is_kxk_conv(model, workload)
        act = _activation(model, workload)     # the fused epilogue codegen renders in
        if workload.sparse and workload.nm is None and not kxk:
            nr, kb = _block_of(workload.pattern)
            params = dataclasses.replace(default_spmm(target, nr=nr, kb=kb, flavour=flavour), act=act)
            return from_rendered(render_spmm(params), workload)
        # N:M layers run the N:M kernel; a KxK convolution under a block / unstructured
        # pattern runs codegen's dense KxK kernel on the masked weights (no sparse KxK kernel)
        n, m = workload.nm if workload.sparse and workload.nm else (1, 1)
        key = f"{workload.N}x{workload.K}x{workload.M}:{n}:{m}"
        params = schedules.get(key) or default_nmgemm(n, m, target, flavour=flavour)
        # a KxK convolution is codegen's KxK kernel, which gathers its own im2col panel
        params = dataclasses.replace(params, act=act, conv=kxk)
        return from_rendered(render_nmgemm(params), workload)

    return kernel_source


def _activation(model, workload) -> str:
    """Returns the activation codegen fuses into a forward layer's kernel ("none" otherwise)."""
    from models.fusion import epilogue_of

    if model is None or workload.phase != "FF":
        return "none"
    return epilogue_of(model, workload.layer).activation


def _is_kxk_conv(model, workload) -> bool:
    """True for a forward convolution codegen runs as its KxK kernel (not a 1x1 GEMM)."""
    from models.ir import Conv2d

    if model is None or workload.phase != "FF" or workload.op_kind != "conv2d":
        return False
    op = model.op(workload.layer)
    return isinstance(op, Conv2d) and not op.is_pointwise


def _depthwise_source(model, workload, flavour: str):
    """Returns codegen's dwconv kernel for one depthwise layer (None where codegen has none:
    non-square kernels or strides, or a layer batch > 1 codegen does not build)."""
    from codegen.render import DwconvParams, render_dwconv
    from hwsim.cpu.codegen_kernels import DepthwiseGeometry, from_rendered

    op = model.op(workload.layer)
    (spec,) = model.input_specs(op.name)
    if op.kernel[0] != op.kernel[1] or op.stride[0] != op.stride[1] or len(spec.shape) != 4 \
            or spec.shape[0] != 1 or op.padding[0] != op.padding[1]:
        return None
    params = DwconvParams(flavour, op.kernel[0], op.stride[0], _activation(model, workload))
    geometry = DepthwiseGeometry(spec.shape[1], spec.shape[2], spec.shape[3], op.padding[0])
    return from_rendered(render_dwconv(params), workload, geometry)


def _block_of(spec: str | None) -> tuple[int, int]:
    from models.patterns import Block, Group, parse_pattern

    pattern = parse_pattern(spec) if spec else None
    if isinstance(pattern, Block):
        return pattern.rows, pattern.cols
    if isinstance(pattern, Group):
        return pattern.group_size, 1
    return 1, 1


def _schedules(log_path: str | None, model, patterns) -> dict:
    """Returns {shape key: NmGemmParams} for the layers the tuning log has."""
    if not log_path:
        return {}
    if not Path(log_path).is_file():
        raise UserError("no such tuning log", source=log_path,
                        fix="run `hwsim codegen ... --tune --log FILE` first")
    from codegen.schedule import SparseOp, best_params
    from codegen.tuning_log import TuningLog
    from models.lowering import lower
    from models.patterns import nm_of

    log = TuningLog(log_path)
    schedules = {}
    for pattern in patterns:
        nm = nm_of(pattern)
        if nm is None:
            continue
        for workload in lower(model.with_sparsity(pattern), "infer"):
            if workload.sparse and workload.nm and workload.groups == 1:
                op = SparseOp(workload.N, workload.K, workload.M, *nm)
                params = best_params(log, op)
                if params is not None:
                    schedules[f"{op.cout}x{op.k}x{op.p}:{op.n}:{op.m}"] = params
    return schedules


def simulate_cpu_command(args, source: str, specs: list[str]) -> int:
    from tqdm import tqdm

    from hwsim.cpu.model_sim import (bound_counts, model_workloads, simulate_model_on_cpu,
                                     summary_dict)
    from models.loading import load
    from models.patterns import parse_pattern
    from targets.cpu import load_cpu_target

    target = load_cpu_target(source)
    if args.batch < 1:
        raise UserError(f"batch {args.batch} must be >= 1", field="--batch", fix="use e.g. --batch 1")
    patterns = [parse_pattern(spec, field="--sparsity") for spec in specs]
    base = load(args.model, dataset=args.dataset, input_size=args.input_size, batch=1)
    schedules = _schedules(getattr(args, "tuning_log", None), base, patterns)
    kernel_source = kernel_source_for(target, schedules, base if args.batch == 1 else None)
    documents = {}
    for spec, pattern in tqdm(list(zip(specs, patterns)), desc=f"simulate {target.name}",
                              unit="run", file=sys.stderr, disable=not sys.stderr.isatty()):
        workloads = model_workloads(base.with_sparsity(pattern), args.mode, args.batch)
        records = simulate_model_on_cpu(target, workloads, kernel_source=kernel_source,
                                        cache_dir=cache_dir())
        document = summary_dict(target, records, model=base.name, sparsity=spec, mode=args.mode,
                                batch=args.batch, workloads=workloads)
        document["bounds"] = bound_counts(records)
        document["tuned_layers"] = len(schedules)
        documents[spec] = document
    first = next(iter(documents.values()))
    speedups = {spec: first["total_cycles"] / doc["total_cycles"] for spec, doc in documents.items()}
    output = documents[specs[0]] if len(specs) == 1 else \
        {"runs": documents, "speedup": speedups, "baseline": specs[0]}
    if args.out:
        written = write_cpu_outputs(documents, speedups, args.out, output)
    if args.format == "json":
        print(json.dumps(output, indent=1))
    else:
        print(text_report(documents, speedups, target))
        if args.out:
            print(f"wrote {', '.join(written)}")
    return 0


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
    lines.append(f"{'sparsity':<10} {'ms':>10} {'Mcycles':>10} {'util':>6} {'bounds':<28} speedup")
    for spec, doc in documents.items():
        bounds = ", ".join(f"{k} {v}" for k, v in sorted(doc["bounds"].items()))
        lines.append(f"{spec:<10} {doc['seconds'] * 1e3:>10.3f} {doc['total_cycles'] / 1e6:>10.2f} "
                     f"{doc['utilization']:>6.0%} {bounds:<28} {speedups[spec]:.2f}x")
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


def mca_predictor(target):
    """Returns predictor(op, params, target) -> cycles: the llvm-mca model of the candidate's
    rendered kernel, for the codegen scheduler on targets whose timing is not real (qemu)."""
    from codegen.render import render_nmgemm
    from hwsim.cpu.codegen_kernels import from_rendered
    from hwsim.cpu.cpu_model import simulate_cpu
    from models.lowering import GemmWorkload

    def predict(op, params, _target) -> float:
        workload = GemmWorkload(layer=f"{op.cout}x{op.k}x{op.p}", phase="FF", M=op.p, N=op.cout,
                                K=op.k, sparse=op.n < op.m, density=op.n / op.m,
                                nm=(op.n, op.m) if op.n < op.m else None,
                                pattern=f"{op.n}:{op.m}")
        (record,) = simulate_cpu(target, [workload], None, cache_dir(),
                                 kernel_source=lambda w, s, t: from_rendered(render_nmgemm(params), w))
        return float(record.cycles)

    return predict
