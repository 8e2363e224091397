"""Whole models against the engines users run (issue 15): codegen's builds vs ONNX Runtime, MNN,
onnxruntime-web and TensorFlow.js's wasm backend.

Host: codegen's dense and sparse builds (`hwsim codegen --target host`; kernels on
OMP_NUM_THREADS = threads) against ONNX Runtime and MNN (its dense CPU backend) on the same
architecture, written as ONNX by targets/engines/onnx_file.py. Wasm (single-threaded):
codegen's wasm32-simd128 build under node, wasmtime and headless chromium against
onnxruntime-web (wasm SIMD, same ONNX file) and tfjs-backend-wasm (XNNPACK inside; the same
layers through tfjs ops, NHWC) in node. Everything is measured in rounds, each round running
every engine and build once (its repeats inside; the order rotates by one each round, so
none always runs first), so load bursts hit all alike; a figure is the
median over all repeats with its interquartile range. Codegen's whole-model time per repeat is
the sum of its layers' times in that repeat (the harness times kernel calls only; the engines'
are whole inferences). Ratios are against the FASTEST dense engine of the block, named in
its header. LiteRT/XNNPACK (host) runs the same ONNX file as a .tflite made in .venv-tf
(targets/engines/litert.py). MNN's sparse convolution runs each pattern's masked ONNX file
(the pattern's own mask, converted with --detectSparseSpeedUp): rows "mnn ... sparse <pattern>",
beside codegen's build of that pattern; they are not dense engines, so never the baseline.

    .venv/bin/python bench/e2e.py --quick      # MobileNet-v1, 2 patterns, few repeats
    .venv/bin/python bench/e2e.py              # MobileNet-v1/v2, ResNet-18, all patterns
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codegen import build as kernel_build  # noqa: E402
from codegen.model_build import build_model, run_build  # noqa: E402
from models.fileio import write_atomic  # noqa: E402
from targets.engines.blas import time_calls  # noqa: E402
from models.ir import Conv2d, Dense, Elementwise, Input, Norm, Pool2d, Reshape  # noqa: E402
from models.loading import load  # noqa: E402
from models.patterns import parse_pattern  # noqa: E402
from targets.cpu import load_cpu_target  # noqa: E402
from targets.engines import litert, mnn_host, onnxruntime_host  # noqa: E402
from targets.engines.onnx_file import write_onnx  # noqa: E402
from targets.engines.timing import Timing, let_pools_sleep  # noqa: E402

SPARSITIES_FULL = ("2:8", "block:1x4:0.2", "unstructured:0.3", "unstructured:0.2",
                   "unstructured:0.1")
SPARSITIES_QUICK = ("2:8", "block:1x4:0.2")
TARGET_DENSE_RATIO = 1.25     # codegen dense within 1.25x of the fastest dense engine
TARGET_SPARSE_SPEEDUP = 1.3   # 2:8 and block 1x4 80% >= 1.3x faster than it (MobileNet-v1)
WEB_DIR = ROOT / "targets" / "web"
LABELS = {"block:1x4:0.2": "block 1x4 @80%", "unstructured:0.3": "unstructured 70%",
          "unstructured:0.2": "unstructured 80%", "unstructured:0.1": "unstructured 90%"}


def machine() -> dict:
    from targets.features import detect_host_features
    features = detect_host_features()
    simd = sorted(flag for flag in features.flags if flag.startswith(("avx", "fma", "sse4")))
    return {"cpu": features.model_name, "vendor": features.vendor, "family": features.family,
            "model": features.model, "logical_cpus": features.logical_cpus,
            "simd_flags": simd, "python": platform.python_version()}


# ---------------------------------------------------------------- the tfjs layer list


def tfjs_layers(model) -> dict:
    """Returns the network as the layer list targets/web/engines_bench.mjs runs through tfjs
    ops (NHWC; batch norm as a per-channel bias, as an inference engine folds it)."""
    layers, input_name, input_shape = [], None, None
    for op in model.ops():
        inputs = list(model.input_names(op.name))
        entry = {"name": op.name, "inputs": inputs}
        if isinstance(op, Input):
            input_name = op.name
            n, c, h, w = op.shape
            input_shape = [n, h, w, c]
            continue
        if isinstance(op, Conv2d):
            kh, kw = op.kernel
            pad = op.padding[0]
            if op.is_depthwise:
                entry.update(op="dwconv", weight=[kh, kw, op.in_channels, 1])
            elif op.groups == 1:
                entry.update(op="conv", weight=[kh, kw, op.in_channels, op.out_channels])
            else:
                raise ValueError(f"grouped convolution {op.name}: no tfjs rule here")
            entry.update(stride=list(op.stride), pad=pad if pad else "valid")
            if op.bias:
                entry["bias"] = op.out_channels
        elif isinstance(op, Dense):
            entry.update(op="dense", weight=[op.in_features, op.out_features])
            if op.bias:
                entry["bias"] = op.out_features
        elif isinstance(op, Norm) and op.norm == "batch":
            entry.update(op="identity", bias=model.output_spec(op.name).shape[1])
        elif isinstance(op, Pool2d):
            if op.global_pool:
                entry.update(op="gavg")
            else:
                pad = op.padding[0]
                entry.update(op="maxpool" if op.mode == "max" else "avgpool",
                             kernel=list(op.kernel), stride=list(op.stride),
                             pad=pad if pad else "valid")
        elif isinstance(op, Elementwise) and op.function in ("relu", "relu6", "add"):
            entry.update(op=op.function)
        elif isinstance(op, Reshape):
            entry.update(op="identity")
        else:
            raise ValueError(f"{op.kind} {op.name}: no tfjs rule here")
        layers.append(entry)
    return {"input_name": input_name, "input": input_shape, "layers": layers,
            "output": layers[-1]["name"]}


# ---------------------------------------------------------------- timing pieces


def codegen_times(directory: Path, label: str, target, runner: str | None, threads: int,
                  repeats: int) -> list[float]:
    """Returns whole-model seconds of one build, one per repeat (the layers' times in that
    repeat summed); every layer is checked against numpy on the way (run_build)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.update(omp_wait_environment())
    runs = run_build(directory, manifest, label, target, runner, repeats, 1, 1800.0, progress=False)
    worst = max(run.relative_error for run in runs)
    if not worst <= 1e-3:
        raise RuntimeError(f"{directory} {label}: a layer differs from numpy ({worst:.1e})")
    return list(map(float, np.sum([run.times_s for run in runs], axis=0)))


def omp_wait_environment() -> dict[str, str]:
    """Returns the OpenMP wait settings the kernels run with (codegen.build's rule)."""
    return kernel_build.omp_wait_environment(os.environ)


def idle_fraction(seconds: float = 0.5) -> float:
    """Returns the fraction of CPU time all CPUs were idle over ``seconds`` (/proc/stat)."""
    def sample():
        with open("/proc/stat", encoding="ascii") as stream:
            fields = [int(value) for value in stream.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(limit_s: float, log=print) -> float:
    """Waits up to ``limit_s`` for a moment when the CPUs are >= 90% idle (a shared machine:
    other people's tests come and go); returns the idle fraction it started at."""
    deadline = time.monotonic() + limit_s
    idle = idle_fraction()
    while idle < 0.9 and time.monotonic() < deadline:
        idle = idle_fraction()
    if idle < 0.9 and limit_s > 0:
        log(f"  no quiet moment within {limit_s:.0f} s (CPUs {idle:.0%} idle): timing anyway")
    return idle


def wasm_engines(onnx_path: Path, layers_path: Path, shape: list[int], repeats: int) -> dict:
    """Returns {label: seconds[]} of onnxruntime-web and tfjs-wasm in node (one process)."""
    script = WEB_DIR / "engines_bench.mjs"
    if not (WEB_DIR / "node_modules" / "onnxruntime-web").is_dir():
        return {}
    completed = subprocess.run(["node", str(script), "--onnx", str(onnx_path), "--layers",
                                str(layers_path), "--shape", json.dumps(shape), "--repeats",
                                str(repeats), "--warmup", "2"], capture_output=True, text=True,
                               timeout=1800, cwd=WEB_DIR)
    if completed.returncode != 0:
        raise RuntimeError(f"engines_bench.mjs failed: {completed.stderr[-2000:]}")
    document = json.loads(completed.stdout.strip().splitlines()[-1])
    return {f"{name} {entry['version']} (node)": [t / 1e3 for t in entry["times_ms"]]
            for name, entry in document.items()}


def rotated(items: list, round_number: int) -> list:
    """Returns ``items`` starting at round_number mod len: each round starts with a different
    engine or build, so no one always runs first (after the quiet wait) or last."""
    start = round_number % len(items) if items else 0
    return items[start:] + items[:start]


# ---------------------------------------------------------------- one model


def bench_model(name: str, sparsities: tuple[str, ...], threads_list: tuple[int, ...],
                rounds: int, repeats: int, work: Path, wasm_runners: tuple[str, ...],
                log=print, quiet_s: float = 0.0) -> dict:
    model = load(name)
    onnx_path = write_onnx(model, work / f"{name}.onnx")
    layers_path = work / f"{name}.layers.json"
    layers_path.write_text(json.dumps(tfjs_layers(model)))
    shape = list(model.output_spec(next(iter(model.ops())).name).shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    host = load_cpu_target("host")
    builds, masked_onnx = {}, {}
    for spec in sparsities:
        out = work / f"{name}-host-{spec.replace(':', '_')}"
        build_model(model, host, parse_pattern(spec), out, progress=False)
        builds[spec] = out
        masked_onnx[spec] = write_onnx(model, work / f"{name}-{spec.replace(':', '_')}.onnx",
                                       pattern=parse_pattern(spec))
    result = {"model": name, "host": {}, "wasm": {}, "notes": [], "idle_at_round_start": {}}
    for threads in threads_list:
        engines = {}
        if not onnxruntime_host.problems():
            engines[f"onnxruntime {onnxruntime_host.version()}"] = \
                onnxruntime_host.prepare(onnx_path, x, threads)
        else:
            result["notes"].append("; ".join(onnxruntime_host.problems()))
        if not mnn_host.problems():
            engines[f"mnn {mnn_host.version()}"] = mnn_host.prepare(onnx_path, x, threads)
            for spec, path in masked_onnx.items():
                engines[f"mnn {mnn_host.version()} sparse {LABELS.get(spec, spec)}"] = \
                    mnn_host.prepare(path, x, threads, sparse=True)
        else:
            result["notes"].append("; ".join(mnn_host.problems()))
        if not litert.problems():
            engines[f"{litert.version()} xnnpack"] = litert.prepare(onnx_path, x, threads)
        else:
            result["notes"].append("; ".join(litert.problems()))
        times: dict[str, list[float]] = {}
        for call in engines.values():
            call(); call()                      # warm-up
        first = next(iter(builds.values()))
        entries = [(label, True, (lambda call=call: time_calls(call, repeats, warmup=0)))
                   for label, call in engines.items()]
        entries.append(("codegen dense", False, lambda: codegen_times(first, "dense", host, "local",
                                                                      threads, repeats)))
        entries += [(f"codegen {LABELS.get(spec, spec)}", False,
                     (lambda directory=directory: codegen_times(directory, "sparse", host, "local",
                                                                threads, repeats)))
                    for spec, directory in builds.items()]
        idles = result["idle_at_round_start"].setdefault(f"host {threads}t", [])
        for round_number in range(rounds):
            idles.append(round(wait_for_quiet(quiet_s, log), 2))
            after_engine = False
            for label, is_engine, measure in rotated(entries, round_number):
                if after_engine and not is_engine:
                    # the engines' thread pools spin a while after their last run (ORT, MNN,
                    # XNNPACK): let them go idle, so codegen's kernels do not share the CPUs
                    let_pools_sleep()
                times.setdefault(label, []).extend(measure())
                after_engine = is_engine
            log(f"  {name} host {threads}t round {round_number + 1}/{rounds} done "
                f"(CPUs {idles[-1]:.0%} idle at its start, load {os.getloadavg()[0]:.2f})")
        result["host"][str(threads)] = summarise(times)
    if wasm_runners:
        wasm = load_cpu_target("wasm32-simd128")
        wasm_builds = {}
        for spec in sparsities[:2]:
            out = work / f"{name}-wasm-{spec.replace(':', '_')}"
            build_model(model, wasm, parse_pattern(spec), out, progress=False)
            wasm_builds[spec] = out
        times = {}
        first = next(iter(wasm_builds.values()))
        idles = result["idle_at_round_start"].setdefault("wasm", [])
        def engines_round(round_number):
            try:
                for label, values in wasm_engines(onnx_path, layers_path, shape, repeats).items():
                    times.setdefault(label, []).extend(values)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                if round_number == 0:
                    result["notes"].append(f"wasm engines: {error}")

        def runner_round(runner, round_number):
            try:
                times.setdefault(f"codegen dense ({runner})", []).extend(
                    codegen_times(first, "dense", wasm, runner, 1, repeats))
                for spec, directory in wasm_builds.items():
                    times.setdefault(f"codegen {LABELS.get(spec, spec)} ({runner})", []).extend(
                        codegen_times(directory, "sparse", wasm, runner, 1, repeats))
            except Exception as error:  # noqa: BLE001 - a runner missing here: say so, go on
                if round_number == 0:
                    result["notes"].append(f"wasm runner {runner}: {str(error)[:300]}")

        steps = [engines_round] + [(lambda number, runner=runner: runner_round(runner, number))
                                   for runner in wasm_runners]
        for round_number in range(rounds):
            idles.append(round(wait_for_quiet(quiet_s, log), 2))
            for step in rotated(steps, round_number):
                step(round_number)
            log(f"  {name} wasm round {round_number + 1}/{rounds} done (load {os.getloadavg()[0]:.2f})")
        times = {label: values for label, values in times.items() if values}
        if times:
            result["wasm"]["1"] = summarise(times)
    return result


def summarise(times: dict[str, list[float]]) -> dict:
    rows = {label: Timing(tuple(values)).as_dict() for label, values in times.items()}
    engines = [label for label in rows if not label.startswith("codegen") and " sparse " not in label]
    dense_labels = engines or [label for label in rows if "dense" in label]
    fastest = min(dense_labels, key=lambda label: rows[label]["median_s"])
    for label, row in rows.items():
        row["speedup_vs_fastest_dense"] = rows[fastest]["median_s"] / row["median_s"]
    return {"fastest_dense": fastest, "rows": rows}


def verdicts(result: dict) -> list[str]:
    lines = []
    for where, by_threads in (("host", result["host"]), ("wasm", result["wasm"])):
        for threads, block in by_threads.items():
            rows = block["rows"]
            fastest = rows[block["fastest_dense"]]["median_s"]
            for label, row in rows.items():
                if label.startswith("codegen dense"):
                    ratio = row["median_s"] / fastest
                    lines.append(f"{result['model']} {where} {threads}t {label}: {ratio:.2f}x the "
                                 f"time of the fastest dense engine ({block['fastest_dense']}) -> "
                                 f"{'met' if ratio <= TARGET_DENSE_RATIO else 'NOT met'} (<= 1.25x)")
                if result["model"] == "mobilenet_v1" and label.startswith("codegen") and \
                        ("2:8" in label or "block 1x4" in label):
                    speedup = row["speedup_vs_fastest_dense"]
                    lines.append(f"{result['model']} {where} {threads}t {label}: {speedup:.2f}x "
                                 f"faster than the fastest dense engine -> "
                                 f"{'met' if speedup >= TARGET_SPARSE_SPEEDUP else 'NOT met'} (>= 1.3x)")
    return lines


def format_result(result: dict) -> str:
    lines = []
    for where in ("host", "wasm"):
        for threads, block in result[where].items():
            lines.append(f"\n{result['model']}  {where}, {threads} thread(s); ratios vs the fastest "
                         f"dense engine: {block['fastest_dense']}")
            lines.append(f"  {'engine':<44} {'median ms':>10} {'IQR':>7} {'min':>8} {'max':>8} "
                         f"{'n':>4} {'speedup':>8}")
            for label, row in sorted(block["rows"].items(), key=lambda item: item[1]["median_s"]):
                lines.append(f"  {label:<44} {row['median_s'] * 1e3:>10.2f} {row['iqr_s'] * 1e3:>7.2f} "
                             f"{row['min_s'] * 1e3:>8.2f} {row['max_s'] * 1e3:>8.2f} {row['repeats']:>4} "
                             f"{row['speedup_vs_fastest_dense']:>7.2f}x")
    for line in verdicts(result):
        lines.append("  " + line)
    for where, idles in result.get("idle_at_round_start", {}).items():
        lines.append(f"  CPUs idle at the start of each {where} round: "
                     f"{', '.join(f'{idle:.0%}' for idle in idles)}")
    for note in result["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="example: .venv/bin/python bench/e2e.py --quick")
    parser.add_argument("--quick", action="store_true",
                        help="MobileNet-v1, 2:8 and block 1x4 only, 2 rounds of 3")
    parser.add_argument("--models", default=None, help="comma list (default: all three)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", default=str(ROOT / "reports" / "e2e.json"))
    parser.add_argument("--wasm-runners", default="node,wasmtime,chromium",
                        help="codegen's wasm build under these runners ('' to skip wasm)")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                        help="before each round wait up to S seconds for the CPUs to be >= 90%% "
                             "idle (a shared machine); each round's idle fraction is reported")
    args = parser.parse_args(argv)
    models = ("mobilenet_v1",) if args.quick else ("mobilenet_v1", "mobilenet_v2", "resnet18")
    if args.models:
        models = tuple(args.models.split(","))
    sparsities = SPARSITIES_QUICK if args.quick else SPARSITIES_FULL
    rounds = args.rounds or (2 if args.quick else 4)
    repeats = args.repeats or (3 if args.quick else 5)
    threads = tuple(int(t) for t in args.threads.split(",") if t)
    runners = tuple(r for r in args.wasm_runners.split(",") if r)
    host = machine()
    from targets.features import detect_host_features, preferred_llvm_cores
    generation = preferred_llvm_cores(detect_host_features())[0]   # e.g. znver3 (llvm's name)
    print(f"machine: {host['cpu']} (family {host['family']:#x} model {host['model']:#x}"
          f", llvm core {generation}), {host['logical_cpus']} logical CPUs, "
          f"{', '.join(host['simd_flags'])}; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"rounds {rounds} x repeats {repeats}, interleaved; the machine is shared: medians with IQR; "
          f"kernels' OpenMP wait: {' '.join(f'{k}={v}' for k, v in omp_wait_environment().items())}")
    results = []
    with tempfile.TemporaryDirectory(prefix="hwsim-e2e-") as work:
        for name in models:
            result = bench_model(name, sparsities, threads, rounds, repeats, Path(work), runners,
                                 log=lambda line: print(line, file=sys.stderr, flush=True),
                                 quiet_s=args.quiet_wait)
            print(format_result(result), flush=True)
            results.append(result)
    print(f"\nload at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    document = {"bench": "e2e", "machine": host, "generation": generation, "quick": args.quick,
                "omp_wait": omp_wait_environment(),
                "rounds": rounds, "repeats_per_round": repeats, "results": results,
                "verdicts": [line for result in results for line in verdicts(result)]}
    write_atomic(args.out, json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
