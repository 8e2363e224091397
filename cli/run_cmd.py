"""`hwsim run`: run a codegen build on a runner, check every layer against numpy, time it."""
from __future__ import annotations

import json
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
    directory = Path(args.directory)
    manifest = read_manifest(directory)
    target = load_cpu_target(manifest["target"])
    runner = args.runner or target.runner
    runs = {label: run_build(directory, manifest, label, target, args.runner, args.repeats,
                             args.warmup, args.timeout, progress=sys.stderr.isatty())
            for label in ("sparse", "dense")}
    failures = [(label, record) for label, records in runs.items() for record in records
                if not record.relative_error <= TOLERANCE]
    emulated = runner == "qemu"
    if args.format == "json":
        print(json.dumps(_document(manifest, runner, runs, emulated), indent=1))
    else:
        _print_table(manifest, runner, runs, emulated)
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


def _print_table(manifest: dict, runner: str, runs: dict, emulated: bool) -> None:
    dense_by_layer = {record.layer: record for record in runs["dense"]}
    print(f"{manifest['model']} on {manifest['target']} via {runner}, sparsity {manifest['sparsity']}"
          + ("  (qemu-user: emulated, times check nothing but progress)" if emulated else ""))
    header = f"{'layer':<26} {'kernel':<34} {'sparse ms':>10} {'dense ms':>10} {'speedup':>8} " \
             f"{'rel err':>9}"
    print(header)
    print("-" * len(header))
    for record in runs["sparse"]:
        dense = dense_by_layer.get(record.layer)
        dense_ms = dense.median_s * 1e3 if dense else float("nan")
        print(f"{record.layer:<26} {record.kernel[:34]:<34} {record.median_s * 1e3:>10.3f} "
              f"{dense_ms:>10.3f} {dense_ms / (record.median_s * 1e3):>7.2f}x "
              f"{max(record.relative_error, dense.relative_error if dense else 0):>9.1e}")
    sparse_total = sum(r.median_s for r in runs["sparse"]) * 1e3
    dense_total = sum(r.median_s for r in runs["dense"]) * 1e3
    print("-" * len(header))
    print(f"{'total':<26} {'':<34} {sparse_total:>10.3f} {dense_total:>10.3f} "
          f"{dense_total / sparse_total:>7.2f}x")
    worst = max(r.relative_error for records in runs.values() for r in records)
    print(f"every layer checked against numpy: worst relative error {worst:.1e} "
          f"(tolerance {TOLERANCE:.0e})")
