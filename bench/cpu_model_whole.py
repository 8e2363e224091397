"""Whole-model check of the CPU cost model: `hwsim simulate` per layer next to `hwsim run`.

    .venv/bin/python bench/cpu_model_whole.py [--model mobilenet_v1] [--sparsity 2:8]
                                              [--targets host,wasm32-simd128] [--batches 3]
                                              [--out reports/cpu_model_whole.json]

For each target the host can time for real (the host natively, wasm32 in the PyPI
wasmtime) this builds the model with codegen (``hwsim codegen``: a sparse and a dense
build, every layer's kernel with its fused epilogue), runs both builds (``hwsim run``'s
code: per-layer times, every layer checked against numpy) --batches times and keeps each
layer's lowest median, and predicts the same layers with hwsim.cpu exactly as
``hwsim simulate --arch`` does (codegen's kernels through
hwsim.cpu.codegen_source.kernel_source_for). wasm is costed on this x86 core (Cranelift's
code, the host's caches and its measured clock), as bench/cpu_model.py does.

Printed: per layer predicted and measured ms with the error, then per build the totals,
the error of the total, the median and maximum per-layer error, and the predicted and
measured sparse-vs-dense speedup side by side. Timing never gates CI.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from targets.features import measure_clock_mhz                # noqa: E402
from codegen.model_build import build_model, run_build         # noqa: E402
from hwsim.cpu.codegen_source import kernel_source_for     # noqa: E402
from hwsim.cpu.cpu_model import mca_core, simulate_cpu         # noqa: E402
from hwsim.cpu.model_sim import model_workloads                # noqa: E402
from models.fileio import write_atomic                         # noqa: E402
from models.lowering import GemmWorkload                       # noqa: E402
from models.patterns import parse_pattern                      # noqa: E402
from models.zoo import build as build_zoo_model                # noqa: E402
from targets.cpu import load_cpu_target                        # noqa: E402
from targets.features import detect_host_features              # noqa: E402


def cost_target_for(run_target, host):
    """Returns the target the model costs: the host itself, or wasm on this x86 core."""
    if run_target.isa != "wasm32":
        return host
    return dataclasses.replace(run_target, name="wasm32-host", core_isa="x86_64", core=mca_core(host),
                               clock_mhz=host.clock_mhz, caches_kb=host.caches_kb,
                               dram_gbps=host.dram_gbps, cores=1)


def predicted_ms(cost_target, run_target, model, pattern, cache_dir: Path) -> dict[str, float]:
    """Returns {first IR op of the layer: predicted ms}, as `hwsim simulate` predicts it."""
    works = model_workloads(model.with_sparsity(pattern) if pattern else model, "infer")
    source = kernel_source_for(run_target, {}, model)
    records = simulate_cpu(cost_target, works, cache_dir=cache_dir, kernel_source=source)
    names = [work.layer if isinstance(work, GemmWorkload) else work.name for work in works]
    return {name: record.ms for name, record in zip(names, records)}


def measured_ms(directory: Path, manifest: dict, label: str, target, repeats: int, batches: int) -> dict:
    """Returns {first IR op of the layer: (lowest median ms over batches, kernel, max rel error)}."""
    best: dict[str, list] = {}
    layers = manifest["builds"][label]["layers"]
    for _ in range(batches):
        runs = run_build(directory, manifest, label, target, None, repeats, 2, 600.0, progress=False)
        for case, run in zip(layers, runs):
            name = case["ops"][0]
            ms = run.median_s * 1e3
            if name not in best or ms < best[name][0]:
                best[name] = [ms, run.kernel, run.relative_error]
            best[name][2] = max(best[name][2], run.relative_error)
    return best


def compare(predicted: dict, measured: dict) -> list[dict]:
    rows = []
    for name, (ms, kernel, error) in measured.items():
        if name not in predicted:
            raise SystemExit(f"layer {name} ran but was not predicted: the layer lists disagree")
        rows.append({"layer": name, "kernel": kernel, "predicted_ms": predicted[name], "measured_ms": ms,
                     "error": predicted[name] / ms - 1, "max_relative_error_vs_numpy": error})
    missing = sorted(set(predicted) - set(measured))
    if missing:
        raise SystemExit(f"predicted layers that codegen does not run: {missing}")
    return rows


def summary(rows: list[dict]) -> dict:
    predicted = sum(row["predicted_ms"] for row in rows)
    measured = sum(row["measured_ms"] for row in rows)
    errors = [abs(row["error"]) for row in rows]
    return {"predicted_ms": predicted, "measured_ms": measured, "total_error": predicted / measured - 1,
            "median_abs_layer_error": statistics.median(errors), "max_abs_layer_error": max(errors),
            "layers": len(rows), "layers_within_25pct": sum(error <= 0.25 for error in errors)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v1")
    parser.add_argument("--sparsity", default="2:8")
    parser.add_argument("--targets", default="host,wasm32-simd128")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=3, help="runs of each build; lowest median kept")
    parser.add_argument("--cache-dir", default=str(ROOT / ".hwsim-cache" / "bench-cpu"))
    parser.add_argument("--out", default=str(ROOT / "reports" / "cpu_model_whole.json"))
    args = parser.parse_args(argv)
    started = time.time()
    model = build_zoo_model(args.model)
    pattern = parse_pattern(args.sparsity)
    host = load_cpu_target("host")
    clock_mhz = measure_clock_mhz(runs=15)
    host = dataclasses.replace(host, clock_mhz=clock_mhz)
    print(f"CPU: {detect_host_features().model_name}, clock {clock_mhz:.0f} MHz (measured); "
          f"{args.model} at {args.sparsity}, batch 1")
    results = []
    for name in args.targets.split(","):
        run_target = load_cpu_target(name)
        cost_target = cost_target_for(run_target, host)
        with tempfile.TemporaryDirectory() as work:
            manifest = build_model(model, run_target, pattern, Path(work), progress=False)
            builds = {}
            for label, build_pattern in (("sparse", pattern), ("dense", None)):
                rows = compare(predicted_ms(cost_target, run_target, model, build_pattern, Path(args.cache_dir)),
                               measured_ms(Path(work), manifest, label, run_target, args.repeats, args.batches))
                builds[label] = {"rows": rows, "summary": summary(rows)}
        print(f"\n== {name} (runner {run_target.runner}; costed as {cost_target.name}, "
              f"llvm-mca {mca_core(cost_target)})")
        print(f"{'layer':<14} {'kernel':<34} {'sparse pred':>11} {'meas':>8} {'err':>7}   "
              f"{'dense pred':>10} {'meas':>8} {'err':>7}")
        for sparse, dense in zip(builds["sparse"]["rows"], builds["dense"]["rows"]):
            print(f"{sparse['layer'][:14]:<14} {sparse['kernel'][:34]:<34} {sparse['predicted_ms']:>11.3f} "
                  f"{sparse['measured_ms']:>8.3f} {100 * sparse['error']:>+6.0f}%   {dense['predicted_ms']:>10.3f} "
                  f"{dense['measured_ms']:>8.3f} {100 * dense['error']:>+6.0f}%")
        for label in ("sparse", "dense"):
            s = builds[label]["summary"]
            print(f"{label:<6} total predicted {s['predicted_ms']:8.3f} ms, measured {s['measured_ms']:8.3f} ms "
                  f"(error {100 * s['total_error']:+.1f}%); per layer median |error| "
                  f"{100 * s['median_abs_layer_error']:.1f}%, max {100 * s['max_abs_layer_error']:.1f}%, "
                  f"{s['layers_within_25pct']}/{s['layers']} within 25%")
        dense_s, sparse_s = builds["dense"]["summary"], builds["sparse"]["summary"]
        speedups = {"predicted": dense_s["predicted_ms"] / sparse_s["predicted_ms"],
                    "measured": dense_s["measured_ms"] / sparse_s["measured_ms"]}
        print(f"{args.sparsity} vs dense: predicted {speedups['predicted']:.2f}x, "
              f"measured {speedups['measured']:.2f}x")
        results.append({"target": name, "costed_as": cost_target.name, "builds": builds, "speedup": speedups})
    write_atomic(args.out, json.dumps({"cpu": detect_host_features().model_name, "clock_mhz": clock_mhz,
                                       "command": " ".join(["bench/cpu_model_whole.py", *(argv or sys.argv[1:])]),
                                       "model": args.model, "sparsity": args.sparsity, "targets": results,
                                       "seconds": time.time() - started}, indent=1) + "\n")
    print(f"\nwrote {args.out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
