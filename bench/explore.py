"""How fast and how good `hwsim explore` is: every figure measured side by side in one run.

(a) evaluation throughput: design points per second for one ResNet-50 training step
    (ImageNet, batch 32, 2:8 BDWP) on SAT-like arrays, without and with the mapper
    (dataflow [os, ws, is], objective cycles), in 1 process, 2 processes and Ray with
    2 workers (a local Ray instance on 127.0.0.1); plus one mapped step alone;
(b) search quality: a space (10,000 points; --quick: 216) enumerated exhaustively, then
    Optuna's NSGA-II with 10% of the evaluations (3 seeds), as hypervolume ratios of the
    fronts over (cycles, energy, area), normalised by the exhaustive front;
(c) mapper gain per zoo model (resnet18, resnet50, vgg16, mobilenet_v2, bert_base, vit),
    dense and 2:8: mapped cycles (energy) vs the best single fixed dataflow's;
(d) where SAT itself (sat.yaml's 32x32, 512/512 KB, 19.2 GB/s) stands against the
    front of (b) at its area;
and, for the scale-out estimate, the results store's append cost and the driver's
per-point overhead. The load average is printed at the start and the end: the host
is shared, so the wall-clock figures are only as quiet as it was. Targets (issue 13):
mapped ResNet-50 step < 1 s, 10,000-point exhaustive < 15 min on 2 cores, hypervolume
>= 0.95 at 10% of the evaluations. Nothing here gates CI on time.

    .venv/bin/python bench/explore.py --quick
    .venv/bin/python bench/explore.py --out /tmp/bench-explore
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from explore.backends import InlineBackend, ProcessBackend, RayBackend, ray_available  # noqa: E402
from explore.explorer import ExploreSettings, run_explore  # noqa: E402
from explore.pareto import front_indices, normalised_hypervolume_ratio  # noqa: E402
from explore.search import Driver, objective_values  # noqa: E402
from explore.space import parse_space  # noqa: E402
from explore.store import ResultsStore  # noqa: E402
from hwsim.arch import read_target  # noqa: E402

OBJECTIVES = ("cycles", "energy", "area")
RECONFIGURABLE = ["os", "ws", "is"]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


def base_document(**changes) -> tuple[str, dict]:
    source, document = read_target("sat")
    return source, {**document, **changes}


def make_space(text: str, **changes):
    source, document = base_document(**changes)
    return parse_space(yaml.safe_load(text), "<bench space>", document, source, {})


# ---------------------------------------------------------------- (a) throughput


def throughput_space(points: int, mapped: bool):
    sizes = [16, 32, 64, 128][:max(1, int(points ** 0.5))]
    text = f"""
workload: {{mode: train, batch: 32, dataset: imagenet, models: [{{name: resnet50}}]}}
axes:
  array.rows: {sizes}
  array.cols: {sizes}
  model.sparsity: ["2:8"]
"""
    changes = {"dataflow": RECONFIGURABLE}
    if mapped:
        changes["mapping"] = "cycles"
    return make_space(text, **changes)


def make_backend(kind: str, space):
    if kind == "1 process":
        return InlineBackend(space)
    if kind == "2 processes":
        return ProcessBackend(space, 2)
    return RayBackend(space, "local", 2)


def bench_throughput(points: int, use_ray: bool, rounds: int) -> dict:
    """Times every backend on the same points, interleaved over ``rounds`` (medians kept);
    each backend is started and warmed up (every worker has loaded and lowered the model)
    before the timed rounds, its start-up reported apart."""
    from hwsim.arch import load_arch, with_overrides
    from hwsim.evaluate import evaluate, lower_workload

    print(f"\n(a) evaluation throughput: ResNet-50 training step, ImageNet, batch 32, 2:8 BDWP "
          f"[{load()}]")
    arch = with_overrides(load_arch("sat"), {"dataflow": RECONFIGURABLE})
    workload = lower_workload("resnet50", "2:8", mode="train", batch=32, dataset="imagenet")
    single = {}
    for objective in (None, "cycles"):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            evaluate(arch, workload, objective=objective)
            times.append(time.perf_counter() - started)
        single[objective] = statistics.median(times)
    print(f"  one step on SAT 32x32 (dataflows os, ws, is; {len(workload.gemms)} GEMMs), median of 5: "
          f"fixed mapping {single[None]:.3f} s, mapper (cycles) {single['cycles']:.3f} s "
          f"-> target < 1 s: {'met' if single['cycles'] < 1 else 'MISSED'}")
    kinds = ["1 process", "2 processes"] + (["Ray, 2 workers"] if use_ray else [])
    rows = {}
    for mapped in (False, True):
        space = throughput_space(points, mapped)
        all_points = list(space.points())
        backends, startup = {}, {}
        for kind in kinds:
            started = time.perf_counter()
            backends[kind] = make_backend(kind, space)
            dict(backends[kind].run(all_points[:4]))          # warm-up: every worker loads the model
            startup[kind] = time.perf_counter() - started
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        cycles: dict[str, list] = {}
        try:
            for _ in range(rounds):
                for kind in kinds:
                    started = time.perf_counter()
                    bodies = dict(backends[kind].run(all_points))
                    rates[kind].append(len(all_points) / (time.perf_counter() - started))
                    cycles[kind] = [bodies[i]["metrics"]["cycles"] for i in range(len(all_points))]
        finally:
            for backend in backends.values():
                backend.close()
        for kind in kinds:
            rows[(mapped, kind)] = {"startup_s": startup[kind], "points": len(all_points),
                                    "points_per_s": statistics.median(rates[kind]),
                                    "spread": (min(rates[kind]), max(rates[kind])),
                                    "same_cycles": cycles[kind] == cycles["1 process"]}
    print(f"  {'':<10} {'backend':<15} {'points':>6} {'start+warm s':>12} {'points/s':>9} "
          f"{'(min..max of ' + str(rounds) + ')':>16} {'vs 1 process':>12} {'same cycles':>11}")
    for mapped in (False, True):
        base = rows[(mapped, "1 process")]["points_per_s"]
        for kind in kinds:
            row = rows[(mapped, kind)]
            low, high = row["spread"]
            print(f"  {'mapper' if mapped else 'no mapper':<10} {kind:<15} {row['points']:>6} "
                  f"{row['startup_s']:>12.2f} {row['points_per_s']:>9.2f} {f'{low:.2f}..{high:.2f}':>16} "
                  f"{row['points_per_s'] / base:>11.2f}x {str(row['same_cycles']):>11}")
    return {"single_step_s": single, "rows": {f"{m}|{k}": v for (m, k), v in rows.items()}}


# ---------------------------------------------------------------- (b) search quality


def quality_space_text(quick: bool) -> str:
    if quick:
        axes = """  array.rows: [16, 32, 64]
  array.cols: [16, 32, 64]
  memory.ifmap_sram_kb: [256, 512]
  memory.filter_sram_kb: [256, 512]
  memory.dram_gbps: [9.6, 19.2]
  model.sparsity: [dense, "2:8", "1:8"]"""
    else:
        axes = """  array.rows: [8, 16, 32, 64, 128]
  array.cols: [8, 16, 32, 64, 128]
  memory.ifmap_sram_kb: [64, 128, 256, 512, 1024]
  memory.filter_sram_kb: [64, 128, 512, 1024]
  memory.dram_gbps: [4.8, 9.6, 19.2, 38.4, 76.8]
  model.sparsity: [dense, "4:8", "2:8", "1:8"]"""
    return f"""
workload: {{mode: train, batch: 32, dataset: cifar10, models: [{{name: resnet18}}]}}
axes:
{axes}
  technology: [28nm]
"""


def vectors(records) -> list[list[float]]:
    return [objective_values(r, OBJECTIVES) for r in records]


def bench_quality(quick: bool, out_dir: str, workers: int) -> dict:
    space = make_space(quality_space_text(quick))
    print(f"\n(b) search quality: ResNet-18 training step (CIFAR-10, batch 32) over {space.size:,} "
          f"points, objectives {', '.join(OBJECTIVES)} [{load()}]")
    exhaustive_dir = os.path.join(out_dir, "exhaustive")
    shutil.rmtree(exhaustive_dir, ignore_errors=True)
    backend = ProcessBackend(space, workers) if workers > 1 else InlineBackend(space)
    started = time.perf_counter()
    try:
        outcome, front, _ = run_explore(space, ExploreSettings(OBJECTIVES, space.size, exhaustive_dir,
                                                               method="exhaustive", progress=False),
                                        backend)
    finally:
        backend.close()
    exhaustive_s = time.perf_counter() - started
    per_point_ms = exhaustive_s / space.size * 1e3
    print(f"  exhaustive, {workers} processes: {space.size:,} points in {exhaustive_s:.1f} s "
          f"({space.size / exhaustive_s:.1f} points/s, {per_point_ms:.1f} ms/point wall, "
          f"outputs included); front {len(front.records)} designs")
    if not quick:
        print(f"  -> target 10,000 points < 15 min: {'met' if exhaustive_s < 900 else 'MISSED'} "
              f"({exhaustive_s / 60:.1f} min)")
    exact = vectors(front.records)
    budget = max(1, space.size // 10)
    ratios = []
    for seed in (0, 1, 2):
        nsga_dir = os.path.join(out_dir, f"nsga2-seed{seed}")
        shutil.rmtree(nsga_dir, ignore_errors=True)
        os.makedirs(nsga_dir)
        # The exhaustive store answers every point NSGA-II asks (same context, same keys):
        # the costs are identical, only the sampler's choices are measured here.
        shutil.copy(os.path.join(exhaustive_dir, "results.jsonl"), os.path.join(nsga_dir, "results.jsonl"))
        started = time.perf_counter()
        found, found_front, _ = run_explore(space, ExploreSettings(OBJECTIVES, budget, nsga_dir, seed=seed,
                                                                   method="nsga2", progress=False),
                                            InlineBackend(space))
        ratio = normalised_hypervolume_ratio(vectors(found_front.records), exact)
        ratios.append(ratio)
        ok = [r for r in found.records if r["status"] == "ok"]
        print(f"  NSGA-II seed {seed}: {len(ok):,} distinct points evaluated ({len(ok) / space.size:.0%} "
              f"of the space, {found.extra['trials']:,} trials, population {found.extra['population']}), "
              f"front {len(found_front.records)} designs, hypervolume ratio {ratio:.4f} "
              f"({time.perf_counter() - started:.1f} s of sampler + outputs)")
    print(f"  hypervolume ratio at 10%: min {min(ratios):.4f}, mean {statistics.mean(ratios):.4f} "
          f"-> target >= 0.95: {'met' if min(ratios) >= 0.95 else 'MISSED'}")
    return {"size": space.size, "exhaustive_s": exhaustive_s, "front": len(front.records),
            "ratios": ratios, "exhaustive_dir": exhaustive_dir, "per_point_ms": per_point_ms}


# ---------------------------------------------------------------- (c) mapper gain


def bench_mapper_gain(quick: bool) -> dict:
    from hwsim.arch import load_arch, with_overrides
    from hwsim.evaluate import evaluate, lower_workload

    models = ["resnet18", "mobilenet_v2", "bert_base"] if quick else \
        ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "bert_base", "vit"]
    batch = 2 if quick else 32
    print(f"\n(c) mapper gain on SAT 32x32 with dataflows os, ws, is (training step, batch {batch}; "
          f"CNNs at {'CIFAR-10' if quick else 'ImageNet'}, transformers at their zoo defaults) [{load()}]")
    print(f"  {'model':<13} {'pattern':<7} {'best fixed cyc':>15} {'(df)':>5} {'mapped cyc':>13} {'gain':>6}"
          f" {'best fixed mJ':>14} {'(df)':>5} {'mapped mJ':>10} {'gain':>6} {'map s':>6}")
    base = load_arch("sat")
    fixed_archs = {df: with_overrides(base, {"dataflow": df}) for df in RECONFIGURABLE}
    reconf = with_overrides(base, {"dataflow": RECONFIGURABLE})
    rows = []
    for model in models:
        dataset = None if model in ("bert_base", "vit") else ("cifar10" if quick else "imagenet")
        for pattern in ("dense", "2:8"):
            workload = lower_workload(model, pattern, mode="train", batch=batch, dataset=dataset)
            fixed = {df: evaluate(arch, workload) for df, arch in fixed_archs.items()}
            started = time.perf_counter()
            by_cycles = evaluate(reconf, workload, objective="cycles")
            map_s = time.perf_counter() - started
            by_energy = evaluate(reconf, workload, objective="energy")
            best_c = min(fixed, key=lambda d: fixed[d].cycles)
            best_e = min(fixed, key=lambda d: fixed[d].energy_j)
            gain_c = fixed[best_c].cycles / by_cycles.cycles
            gain_e = fixed[best_e].energy_j / by_energy.energy_j
            rows.append({"model": model, "pattern": pattern, "gain_cycles": gain_c, "gain_energy": gain_e})
            print(f"  {model:<13} {pattern:<7} {fixed[best_c].cycles:>15,} {best_c:>5} {by_cycles.cycles:>13,}"
                  f" {gain_c:>5.3f}x {fixed[best_e].energy_j * 1e3:>14.2f} {best_e:>5}"
                  f" {by_energy.energy_j * 1e3:>10.2f} {gain_e:>5.3f}x {map_s:>6.2f}")
    print("  (gain = best single fixed dataflow / mapped; >= 1 by construction: the mapper keeps the "
          "better of its per-GEMM plan and every fixed mapping)")
    return {"rows": rows}


# ---------------------------------------------------------------- (d) SAT against the front


def bench_sat_position(exhaustive_dir: str) -> None:
    """Prints SAT's own points against the whole front and against the designs running its
    pattern (the front mixes patterns, and a sparser pattern wins on every objective here:
    the simulator has no accuracy axis)."""
    from explore.pareto import dominates

    document = json.load(open(os.path.join(exhaustive_dir, "front.json")))
    records = [json.loads(line) for line in open(os.path.join(exhaustive_dir, "results.jsonl"))]
    records = [r for r in records if r["status"] == "ok"]
    print(f"\n(d) SAT (sat.yaml's hardware, priced at 28 nm) against the front of (b), "
          f"{len(document['front'])} designs")
    for entry in document["reference"]:
        metrics = entry["metrics"]
        pattern = entry["point"]["model.sparsity"]
        best = entry.get("best_front_at_its_area")
        text = (f"fastest front design at <= its area: {best['speedup']:.2f}x fewer cycles, "
                f"{best['energy_ratio']:.2f}x less energy" if best else "no front design at or below its area")
        print(f"  SAT, {pattern:<5}: {metrics['cycles']:>12,} cycles, {metrics['energy_mj']:8.2f} mJ, "
              f"{metrics['area_mm2']:.2f} mm2; dominated by {entry['dominated_by']} front designs; {text}")
        mine = [r for r in records if r["point"]["model.sparsity"] == pattern]
        own = vectors([{"metrics": metrics}])[0]
        beating = [r for r in mine if dominates(objective_values(r, OBJECTIVES), own)]
        within = [r for r in mine if r["metrics"]["area_mm2"] <= metrics["area_mm2"]]
        fastest = min(within, key=lambda r: r["metrics"]["cycles"])
        leanest = min(within, key=lambda r: r["metrics"]["energy_mj"])
        print(f"    same pattern only: {len(beating)} of {len(mine):,} designs dominate it; at <= its area, "
              f"SAT / fastest cycles {metrics['cycles'] / fastest['metrics']['cycles']:.2f}x "
              f"({_short(fastest['point'])}), SAT / leanest energy "
              f"{metrics['energy_mj'] / leanest['metrics']['energy_mj']:.2f}x ({_short(leanest['point'])})")


def _short(point: dict) -> str:
    names = {"array.rows": "rows", "array.cols": "cols", "memory.ifmap_sram_kb": "ifmap KB",
             "memory.filter_sram_kb": "filter KB", "memory.dram_gbps": "GB/s"}
    return ", ".join(f"{label} {point[path]:g}" for path, label in names.items() if path in point)


# ---------------------------------------------------------------- store and driver costs


class _Replay:
    """A backend that answers from stored bodies: leaves only the driver's own work."""
    name, workers = "replay", 1

    def __init__(self, bodies):
        self.bodies = bodies

    def run(self, points):
        for index in range(len(points)):
            yield index, self.bodies[index]

    def close(self):
        pass


def bench_store_and_driver(exhaustive_dir: str, quick: bool) -> dict:
    records = [json.loads(line) for line in open(os.path.join(exhaustive_dir, "results.jsonl"))]
    count = min(len(records), 500 if quick else 2000)
    records = records[:count]
    space = make_space(quality_space_text(quick))
    with tempfile.TemporaryDirectory() as directory:
        store = ResultsStore(os.path.join(directory, "r.jsonl"), "bench")
        started = time.perf_counter()
        for record in records:
            store.add({k: v for k, v in record.items() if k != "context"})
        append_ms = (time.perf_counter() - started) / count * 1e3
        store = ResultsStore(os.path.join(directory, "d.jsonl"), space.context_key("x"))
        bodies = [{k: v for k, v in r.items() if k not in ("key", "point", "context")} for r in records]
        driver = Driver(space, OBJECTIVES, store, _Replay(bodies), None)
        started = time.perf_counter()
        driver.cost([r["point"] for r in records])
        driver_ms = (time.perf_counter() - started) / count * 1e3
        size = os.path.getsize(os.path.join(directory, "d.jsonl")) / count
        started = time.perf_counter()
        ResultsStore(os.path.join(directory, "d.jsonl"), space.context_key("x"))
        reload_ms = (time.perf_counter() - started) / count * 1e3
    print(f"\nresults store and driver ({count} records of (b)) [{load()}]")
    print(f"  fsynced append: {append_ms:.3f} ms/record ({size:.0f} bytes/record); driver per point "
          f"(key, store append, front tracker): {driver_ms:.3f} ms; reopening the store: "
          f"{reload_ms * 1e3:.1f} us/record")
    return {"append_ms": append_ms, "driver_ms": driver_ms, "bytes_per_record": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-size: 4 points in (a), 216 in (b), 3 models")
    parser.add_argument("--out", default=None, help="keep the explore outputs here (default: a temp dir)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the exhaustive run of (b)")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out of (a)")
    parser.add_argument("--only", default="abcd",
                        help="parts to run, e.g. 'ac' (d without b reads the front b left in --out)")
    args = parser.parse_args()
    # The Ray instance of (a) is private and on loopback: no token auth, so the run leaves
    # no ~/.ray/auth_token behind (Ray 2.60 creates one by default, and a later
    # `ray start --head` then refuses drivers that do not send it).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    out_dir = args.out or tempfile.mkdtemp(prefix="bench-explore-")
    os.makedirs(out_dir, exist_ok=True)
    print(f"bench/explore.py{' --quick' if args.quick else ''} on {platform.node()} "
          f"({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
          f"{load()}; outputs in {out_dir}")
    started = time.perf_counter()
    use_ray = ray_available() and not args.no_ray
    if "a" in args.only:
        bench_throughput(4 if args.quick else 16, use_ray, 1 if args.quick else 3)
    exhaustive_dir = os.path.join(out_dir, "exhaustive")
    if "b" in args.only:
        bench_quality(args.quick, out_dir, args.workers)
    if "d" in args.only and os.path.exists(os.path.join(exhaustive_dir, "front.json")):
        bench_sat_position(exhaustive_dir)           # without b: a previous run's front in --out
    if os.path.exists(os.path.join(exhaustive_dir, "results.jsonl")):
        bench_store_and_driver(exhaustive_dir, args.quick)
    if "c" in args.only:
        bench_mapper_gain(args.quick)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
