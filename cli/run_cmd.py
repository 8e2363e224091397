"""`hwsim run`: run a codegen build on a runner, check every layer against numpy, time it."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from models.errors import UserError

TOLERANCE = 1e-3   # max |error| / max |reference| per layer (float32 with long reductions)


def register(subparsers, formatter_class) -> None:
    parser = subparsers.add_parser(
        "run", formatter_class=formatter_class,
        help="run a `hwsim codegen` build, check it against numpy and time it",
        description="Run every layer of the sparse and the dense build on the runner, compare "
                    "each layer's output with numpy's (the layer's input is numpy's, so errors "
                    "do not carry over), and print per-layer and total times side by side. "
                    "Timing under qemu-user is emulated and only checks correctness.",
        epilog="examples:\n"
               "  hwsim run build/mnv1 --runner qemu\n"
               "  hwsim run build/mnv1-wasm --runner wasmtime\n"
               "  hwsim run build/mnv1-wasm --runner node --repeats 5 --format json\n"
               "  hwsim run build/mnv1 --runner adb        # a phone with USB debugging\n")
    parser.add_argument("directory", help="the --out folder of `hwsim codegen`")
    parser.add_argument("--runner", default=None,
                        help="local | qemu | wasmtime | node | adb (default: the target's runner)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per kernel variant")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds: each runs the sparse build, the dense build and "
                             "every baseline --repeats times, so machine load hits all alike")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the kernels (OMP_NUM_THREADS, at most what they were "
                             "built for), numpy's BLAS and ONNX Runtime (default: the target's cores)")
    parser.add_argument("--baselines", default="codegen,blas",
                        help="dense baselines per layer, the fastest wins: codegen (the dense "
                             "build), blas (numpy, host), tvm (TVM hand schedule, host; slower "
                             "to build)")
    parser.add_argument("--no-engines", action="store_true",
                        help="skip the whole-model ONNX Runtime comparison")
    parser.set_defaults(handler=run_command)


def run_command(args) -> int:
    from codegen.model_build import read_manifest, run_build
    from targets.cpu import load_cpu_target

    if args.repeats < 1 or args.warmup < 0:
        raise UserError("--repeats must be >= 1 and --warmup >= 0", field="--repeats",
                        fix="e.g. --repeats 3 --warmup 1")
    if args.runner and args.runner.startswith("rpc://"):
        raise UserError("a whole-model build is C executables; TVM RPC runs TVM modules",
                        field="--runner", fix="use qemu, wasmtime, node, local or adb for `hwsim run`")
    from codegen.dense_baseline import BASELINES, measure_build

    baselines = tuple(name for name in args.baselines.split(",") if name)
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown or "codegen" not in baselines:
        raise UserError(f"--baselines {args.baselines!r}: unknown {unknown}" if unknown else
                        "--baselines must include codegen (the dense build)", field="--baselines",
                        fix=f"name some of {', '.join(BASELINES)}, e.g. codegen,blas")
    if args.rounds < 1 or (args.threads is not None and args.threads < 1):
        raise UserError("--rounds and --threads must be >= 1", field="--rounds",
                        fix="e.g. --rounds 5 --threads 2")
    directory = Path(args.directory)
    manifest = read_manifest(directory)
    target = load_cpu_target(manifest["target"])
    runner = args.runner or target.runner
    threads = args.threads or (target.cores if target.isa == "x86_64" else 1)
    runs, measured = measure_build(directory, manifest, target, args.runner, rounds=args.rounds,
                                   repeats=args.repeats, warmup=args.warmup,
                                   timeout_s=args.timeout, threads=threads, baselines=baselines,
                                   engines=not args.no_engines, progress=sys.stderr.isatty())
    failures = [(label, record) for label, records in runs.items() for record in records
                if not record.relative_error <= TOLERANCE]
    from targets.runners import runner_spec
    spec = runner_spec(runner)
    emulated = spec is not None and not spec.timing_real      # qemu: emulated times
    # a build from an .onnx file: the whole build, chained, against ONNX Runtime on the file
    from targets.engines.ort_compare import compare_build, describe
    whole = compare_build(directory, manifest, target, args.runner, timeout_s=args.timeout)
    if args.format == "json":
        document = _document(manifest, runner, runs, emulated)
        document.update(_baseline_document(measured))
        if whole is not None:
            document["onnxruntime"] = [check.as_dict() for check in whole]
        print(json.dumps(document, indent=1))
    else:
        _print_table(manifest, runner, runs, emulated, measured)
        if whole is not None:
            print(describe(whole))
    if whole is not None and not all(check.ok for check in whole):
        raise UserError("the whole build differs from ONNX Runtime on the model file",
                        source=str(directory), fix="a codegen bug: report it with the build")
    if failures:
        label, record = failures[0]
        raise UserError(f"{len(failures)} layer(s) differ from numpy, first: {label} {record.layer} "
                        f"({record.kernel}) relative error {record.relative_error:.2e}",
                        source=str(directory), fix="this is a kernel bug: report it with the manifest")
    return 0


def _document(manifest: dict, runner: str, runs: dict, emulated: bool) -> dict:
    dense_by_layer = {record.layer: record for record in runs["dense"]}
    kernels = []
    for record in runs["sparse"]:
        dense = dense_by_layer.get(record.layer)
        kernels.append({"layer": record.layer, "target": manifest["target"], "runner": runner,
                        "kernel": record.kernel, "kind": record.kind, "shape": list(record.shape),
                        "pattern": record.pattern, "macs": record.macs,
                        "median_s": record.median_s, "times_s": list(record.times_s),
                        "max_abs_error": record.max_abs_error,
                        "relative_error": record.relative_error,
                        "dense_kernel": dense.kernel if dense else None,
                        "dense_median_s": dense.median_s if dense else None,
                        "dense_max_abs_error": dense.max_abs_error if dense else None})
    sparse_total = sum(r.median_s for r in runs["sparse"])
    dense_total = sum(r.median_s for r in runs["dense"])
    return {"tool": "hwsim", "model": manifest["model"], "target": manifest["target"],
            "runner": runner, "sparsity": manifest["sparsity"], "timing_meaningful": not emulated,
            "total_s": sparse_total, "dense_total_s": dense_total,
            "speedup": dense_total / sparse_total if sparse_total else None, "kernels": kernels}


def _baseline_document(measured) -> dict:
    """The baseline part of `hwsim run --format json`: per layer every dense baseline's
    median and spread, the fastest one's name and the speedup against it."""
    from codegen.dense_baseline import best_dense

    layers = []
    for entry in measured.layers:
        row = {"layer": entry["layer"], "sparse": entry["sparse"].as_dict(),
               "dense": {name: spread.as_dict() for name, spread in entry["dense"].items()}}
        if entry["dense"]:
            name, spread = best_dense(entry["dense"])
            row.update(best_dense=name, speedup_vs_best_dense=spread.median_s / entry["sparse"].median_s)
        layers.append(row)
    totals = _totals(measured)
    return {"threads": measured.threads, "rounds": measured.rounds, "blas": measured.blas_info,
            "baseline_layers": layers, "totals_s": totals,
            "engines": {label: spread.as_dict() for label, spread in measured.engines.items()},
            "notes": list(measured.notes), "load_average": _load()}


def _totals(measured) -> dict:
    """Sums of per-layer medians: the sparse build, each dense baseline where it covers the
    layer (codegen's dense time elsewhere), and the per-layer fastest dense."""
    from codegen.dense_baseline import best_dense

    totals = {"sparse": 0.0, "best_dense": 0.0}
    names = sorted({name for entry in measured.layers for name in entry["dense"]})
    for name in names:
        totals[name] = 0.0
    for entry in measured.layers:
        totals["sparse"] += entry["sparse"].median_s
        dense = entry["dense"]
        if not dense:
            continue
        totals["best_dense"] += best_dense(dense)[1].median_s
        for name in names:
            totals[name] += (dense.get(name) or dense["codegen"]).median_s
    return totals


def _busy(threads: int) -> bool:
    """True when other processes want more of the CPUs than the threads leave free."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1) - threads + 0.5
    except OSError:
        return False


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _print_table(manifest: dict, runner: str, runs: dict, emulated: bool, measured) -> None:
    from codegen.dense_baseline import best_dense

    dense_by_layer = {record.layer: record for record in runs["dense"]}
    print(f"{manifest['model']} on {manifest['target']} via {runner}, sparsity {manifest['sparsity']}"
          f", {measured.threads} thread(s), {measured.rounds} interleaved rounds, load {_load()}"
          + ("  (qemu-user: emulated, times check nothing but progress)" if emulated else ""))
    names = sorted({name for entry in measured.layers for name in entry["dense"]},
                   key=lambda name: (name != "codegen", name))
    header = (f"{'layer':<20} {'kernel':<30} {'sparse ms':>15} "
              + " ".join(f"{name + ' ms':>15}" for name in names)
              + f" {'speedup':>8} {'vs':<8} {'rel err':>8}")
    print(header)
    print("-" * len(header))
    records = {record.layer: record for record in runs["sparse"]}
    for entry in measured.layers:
        record = records[entry["layer"]]
        dense = dense_by_layer.get(record.layer)
        cells = " ".join(_cell(entry["dense"].get(name)) for name in names)
        if entry["dense"]:
            best, spread = best_dense(entry["dense"])
            speedup = f"{spread.median_s / entry['sparse'].median_s:>7.2f}x"
        else:
            best, speedup = "-", f"{'-':>8}"
        error = max(record.relative_error, dense.relative_error if dense else 0)
        print(f"{record.layer[:20]:<20} {record.kernel[:30]:<30} {_cell(entry['sparse'])} {cells} "
              f"{speedup} {best:<8} {error:>8.1e}")
    totals = _totals(measured)
    print("-" * len(header))
    cells = " ".join(f"{totals[name] * 1e3:>15.3f}" for name in names)
    print(f"{'total (sum of medians)':<51} {totals['sparse'] * 1e3:>15.3f} {cells}")
    print(f"whole model: sparse {totals['sparse'] * 1e3:.3f} ms vs the per-layer fastest dense "
          f"{totals['best_dense'] * 1e3:.3f} ms: {totals['best_dense'] / totals['sparse']:.2f}x; "
          f"vs codegen's dense build {totals['codegen'] / totals['sparse']:.2f}x")
    for label, spread in measured.engines.items():
        print(f"whole model vs {label}, same architecture: {spread.median_s * 1e3:.3f} ms "
              f"(IQR {spread.iqr_s * 1e3:.3f}); it / sparse build = "
              f"{spread.median_s / totals['sparse']:.2f}x, it / dense build = "
              f"{spread.median_s / totals['codegen']:.2f}x (> 1: codegen faster; codegen's are "
              f"kernel sums, the engine's whole inferences)")
    if _busy(measured.threads):
        print(f"warning: load average {_load()} on {os.cpu_count()} CPUs: with {measured.threads} "
              f"thread(s) the kernels wait for CPU time, so medians move from run to run; "
              f"compare ratios measured in one run only"
              + (", or use --threads 1" if measured.threads > 1 else ""))
    if measured.blas_info:
        print(f"blas = numpy's {measured.blas_info}; timed on the layer's GEMM alone (a KxK "
              f"convolution's im2col not counted)")
    for note in measured.notes:
        print(f"note: {note}")
    print("speedup = the fastest dense baseline's median / the sparse kernel's median ('vs' names "
          "it); ms cells are median±IQR/2")
    worst = max(r.relative_error for records in runs.values() for r in records)
    print(f"every layer checked against numpy: worst relative error {worst:.1e} "
          f"(tolerance {TOLERANCE:.0e})")


def _cell(spread) -> str:
    if spread is None:
        return f"{'-':>15}"
    text = f"{spread.median_s * 1e3:.3f}±{spread.iqr_s * 1e3 / 2:.3f}"
    return f"{text:>15}"
