"""How much faster hwsim simulates than SCALE-Sim 3.0.0, on the same topology and array.

For each model (ResNet-18 and ResNet-50 forward passes at ImageNet size by default)
the lowered GEMMs are written as a SCALE-Sim GEMM topology CSV and run by the real
SCALE-Sim (hwsim.scalesim_ref, its own .venv-scalesim) on the array of ``--arch``;
our side times hwsim.engine.simulate on the same GEMMs and array, and
hwsim.dataflow.plan_folds alone (the compute model). Both sides are timed in this run.
SCALE-Sim's cycle counts are checked against plan_folds on every layer it ran.

SCALE-Sim spends about 0.1 ms per simulated cycle (a Python loop over demand rows),
so a whole ResNet-50 takes tens of minutes. ``--quick`` runs SCALE-Sim on a few
layers spread over the model, one invocation per layer, and estimates the whole
model as (its seconds per simulated cycle on those layers) x (the model's cycles):
that estimate is labelled "extrapolated" wherever it appears. A run that passes
``--timeout`` is reported as a lower bound (">").

Finally it times one ResNet-50 training step (FF, BP, WU; dense and 2:8 BDWP) in
hwsim on the SAT description. Never gates CI on wall-clock time (STYLE.md habit 9).

    .venv/bin/python bench/sim_speed.py --quick
    .venv/bin/python bench/sim_speed.py --models resnet18 --timeout 1200
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwsim.dataflow import plan_folds  # noqa: E402
from hwsim.scalesim_ref import GemmLayer, run_scalesim  # noqa: E402
from models.ir import Conv2d, Dense, Elementwise, GraphBuilder, Model, Pool2d, Reshape  # noqa: E402
from models.lowering import GemmWorkload, lower  # noqa: E402
from targets.features import detect_host_features  # noqa: E402


def small_topology() -> Model:
    """Returns a 4-conv, 32x32-input CNN: the stand-in while models.zoo is missing."""
    builder = GraphBuilder("small_cnn")
    x = builder.input("image", (1, 3, 32, 32))
    x = builder.add(Conv2d("conv1", 3, 32, 3, padding=1), x)
    x = builder.add(Conv2d("conv2", 32, 64, 3, stride=2, padding=1), x)
    x = builder.add(Elementwise("relu", "relu"), x)
    x = builder.add(Conv2d("conv3", 64, 64, 3, padding=1), x)
    x = builder.add(Conv2d("conv4", 64, 128, 3, stride=2, padding=1), x)
    x = builder.add(Pool2d("pool", global_pool=True), x)
    x = builder.add(Reshape("flatten"), x)
    builder.add(Dense("fc", 128, 10), x)
    return builder.build()


def load_model(name: str, dataset: str) -> tuple[Model, str]:
    """Returns (model, where it came from): the zoo when it exists, else the stand-in."""
    try:
        from models.loading import load
        return load(name, dataset=dataset, input_size=None, batch=1), f"models.loading ({dataset})"
    except ImportError:
        pass
    try:
        from models.zoo import build
        return build(name, dataset=dataset, batch=1), f"models.zoo ({dataset})"
    except ImportError:
        return small_topology(), "STAND-IN small_cnn 32x32 (models.zoo not available yet)"


def gemm_layers(workloads: list[GemmWorkload]) -> list[GemmLayer]:
    """Returns the SCALE-Sim GEMM topology rows: one per GEMM copy (groups repeat)."""
    return [GemmLayer(f"{w.layer}.{w.phase}.{g}", w.M, w.N, w.K)
            for w in workloads for g in range(w.groups)]


def median_seconds(function, repeats: int) -> float:
    """Returns the median wall time of ``function()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plan_all(layers: list[GemmLayer], rows: int, cols: int, dataflow: str) -> int:
    return sum(plan_folds(l.M, l.N, l.K, rows, cols, dataflow).compute_cycles for l in layers)


@dataclass(frozen=True)
class ScaleSimTiming:
    seconds: float          # measured, or extrapolated when ``extrapolated``
    extrapolated: bool
    lower_bound: bool       # a run hit --timeout: the true time is larger
    layers_run: int
    cycles_checked: int     # layers whose SCALE-Sim cycles were compared with plan_folds
    cycles_matched: int


def time_scalesim(layers: list[GemmLayer], rows: int, cols: int, dataflow: str,
                  quick: int, timeout_s: float) -> tuple[ScaleSimTiming, list[tuple]]:
    """Returns SCALE-Sim's time on ``layers`` (whole, or ``quick`` sampled layers
    extrapolated by cycle count) and per-layer rows (layer, cycles, seconds)."""
    busy = [plan_folds(l.M, l.N, l.K, rows, cols, dataflow).compute_cycles + 1 for l in layers]
    if not quick or quick >= len(layers):
        try:
            run = run_scalesim(layers, rows, cols, dataflow, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            return ScaleSimTiming(timeout_s, False, True, len(layers), 0, 0), []
        matched = sum(ref.compute_cycles == plan_folds(l.M, l.N, l.K, rows, cols, dataflow)
                      .compute_cycles for l, ref in zip(layers, run.layers))
        return ScaleSimTiming(run.wall_s, False, False, len(layers), len(layers), matched), []
    step = (len(layers) - 1) / max(quick - 1, 1)
    picked = sorted({round(i * step) for i in range(quick)})
    spent, spent_cycles, matched, rows_out, timed_out = 0.0, 0, 0, [], False
    for index in picked:
        layer = layers[index]
        try:
            run = run_scalesim([layer], rows, cols, dataflow, timeout_s=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            spent += timeout_s
            spent_cycles += busy[index]
            rows_out.append((layer, busy[index] - 1, None, None))
            continue
        spent += run.wall_s
        spent_cycles += busy[index]
        ours = plan_folds(layer.M, layer.N, layer.K, rows, cols, dataflow).compute_cycles
        matched += run.layers[0].compute_cycles == ours
        rows_out.append((layer, run.layers[0].compute_cycles, run.wall_s, ours))
    estimate = spent / spent_cycles * sum(busy)
    checked = len(picked) - sum(1 for r in rows_out if r[2] is None)
    return ScaleSimTiming(estimate, True, timed_out, len(picked), checked, matched), rows_out


def bench_model(name: str, args, arch) -> dict:
    from hwsim.engine import simulate

    model, source = load_model(name, args.dataset)
    workloads = lower(model, mode="infer", batch=1)
    layers = gemm_layers(workloads)
    rows, cols, dataflow = arch.array.rows, arch.array.cols, arch.dataflow
    engine_s = median_seconds(lambda: simulate(arch, workloads, model_name=name, sparsity="dense",
                                               mode="infer"), args.repeats)
    plan_s = median_seconds(lambda: plan_all(layers, rows, cols, dataflow), args.repeats)
    scalesim, per_layer = time_scalesim(layers, rows, cols, dataflow, args.quick, args.timeout)
    if per_layer:
        print(f"\n{name}: SCALE-Sim on {len(per_layer)} sampled layers, one invocation each "
              f"({rows}x{cols} {dataflow})")
        print(f"  {'layer':<28} {'M':>6} {'N':>5} {'K':>6} {'SCALE-Sim cyc':>13} {'plan cyc':>10} "
              f"{'SCALE-Sim s':>11} {'engine s':>9} {'ratio':>8}")
        by_name = {f"{w.layer}.{w.phase}": w for w in workloads}
        for layer, cycles, seconds, ours in per_layer:
            workload = by_name[layer.name.rsplit(".", 1)[0]]
            one_s = median_seconds(lambda: simulate(arch, [workload], mode="infer"), args.repeats)
            text_s = f"{seconds:11.2f}" if seconds is not None else f">{args.timeout:10.0f}"
            ratio = (seconds if seconds is not None else args.timeout) / one_s
            print(f"  {layer.name:<28} {layer.M:>6} {layer.N:>5} {layer.K:>6} {cycles:>13} "
                  f"{ours if ours is not None else '-':>10} {text_s} {one_s:9.4f} "
                  f"{'>' if seconds is None else ' '}{ratio:7.0f}x")
    return dict(name=name, source=source, layers=len(layers), cycles=plan_all(layers, rows, cols, dataflow),
                engine_s=engine_s, plan_s=plan_s, scalesim=scalesim)


def train_step_seconds(name: str, args) -> list[tuple[str, float, int]]:
    """Returns (pattern, median seconds, total cycles) of one hwsim training step."""
    from hwsim.arch import load_arch
    from hwsim.engine import im2col_reuse, simulate
    from models.patterns import parse_pattern

    arch = load_arch(args.train_arch)
    model, _ = load_model(name, args.dataset)
    reuse = im2col_reuse(model)
    out = []
    for spec in ("dense", "2:8"):
        sparse_model = model.with_sparsity(None if spec == "dense" else parse_pattern(spec))
        def step():
            workloads = lower(sparse_model, mode="train", batch=args.train_batch)
            return simulate(arch, workloads, model_name=name, sparsity=spec, mode="train",
                            batch=args.train_batch, input_reuse=reuse)
        seconds = median_seconds(step, args.repeats)
        out.append((spec, seconds, step().total_cycles))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--dataset", default="imagenet")
    parser.add_argument("--arch", default="systolic-32x32-os",
                        help="accelerator (array and dataflow) both simulators run")
    parser.add_argument("--train-arch", default="sat", help="accelerator of the training-step timing")
    parser.add_argument("--train-model", default="resnet50")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--quick", type=int, nargs="?", const=3, default=0, metavar="LAYERS",
                        help="run SCALE-Sim on LAYERS sampled layers (default 3) and extrapolate")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds per SCALE-Sim invocation")
    parser.add_argument("--repeats", type=int, default=5, help="timings per hwsim measurement (median)")
    args = parser.parse_args(argv)

    from hwsim.arch import load_arch

    arch = load_arch(args.arch)
    print(f"CPU: {detect_host_features().model_name} ({platform.python_implementation()} {platform.python_version()})")
    print(f"array: {arch.array.rows}x{arch.array.cols} {arch.dataflow} ({args.arch}); "
          f"SCALE-Sim 3.0.0 with stall-free memories; hwsim medians of {args.repeats}")
    results = [bench_model(name.strip(), args, arch) for name in args.models.split(",") if name.strip()]

    print(f"\n{'model':<10} {'GEMMs':>5} {'cycles':>10} {'SCALE-Sim s':>14} {'engine s':>9} "
          f"{'plan_folds s':>12} {'vs engine':>10} {'vs plan':>9}  cycles equal")
    for r in results:
        s = r["scalesim"]
        mark = ">" if s.lower_bound else "~" if s.extrapolated else " "
        print(f"{r['name']:<10} {r['layers']:>5} {r['cycles']:>10} {mark}{s.seconds:13.1f} "
              f"{r['engine_s']:9.4f} {r['plan_s']:12.5f} {mark}{s.seconds / r['engine_s']:8.0f}x "
              f"{mark}{s.seconds / r['plan_s']:7.0f}x  {s.cycles_matched}/{s.cycles_checked}")
    for r in results:
        s = r["scalesim"]
        note = (f"EXTRAPOLATED from {s.layers_run} sampled layers by cycle count" if s.extrapolated
                else f"measured, one invocation of {s.layers_run} layers")
        if s.lower_bound:
            note += f"; a run hit the {args.timeout:.0f} s timeout (lower bound)"
        print(f"  {r['name']}: topology from {r['source']}; SCALE-Sim time {note}")

    print(f"\nhwsim training step ({args.train_model}, {args.dataset}, batch {args.train_batch}, "
          f"arch {args.train_arch}, lowering + simulation):")
    for spec, seconds, cycles in train_step_seconds(args.train_model, args):
        print(f"  {spec:<6} {seconds:8.3f} s   {cycles} cycles   target < 1 s: "
              f"{'met' if seconds < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
