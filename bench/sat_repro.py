"""SAT + BDWP reproduction: dense vs N:M training-step speedups on targets/accelerators/sat.yaml.

Prints, for the models and data sets SAT's paper evaluates (SAT.md), the simulated
speedup of one training step at 2:8 (and 2:4, 1:8) over dense training on the same
array, next to the paper's 1.75x average at 2:8 and BDWP's ideal 2x; then where the
gap to 2x goes, and how the average moves with each assumed parameter.

    .venv/bin/python bench/sat_repro.py [--batch 32] [--quick]

Batch: the public material here does not state SAT's training batch; 32 is assumed
(the sensitivity block shows 1 to 128). Every figure is computed in this run.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwsim.arch import DataflowOptions, load_arch  # noqa: E402
from hwsim.dataflow import DATAFLOWS  # noqa: E402
from hwsim.engine import im2col_reuse, simulate  # noqa: E402
from models.loading import load  # noqa: E402
from models.lowering import lower  # noqa: E402
from models.patterns import parse_pattern  # noqa: E402

PAPER_AVERAGE_2_8 = 1.75
IDEAL_2_8 = 2.0
MODELS = ("resnet9", "vit", "vgg19", "resnet18", "resnet50")
DATASETS = ("cifar10", "cifar100", "tinyimagenet", "imagenet")
PATTERNS = ("2:8", "2:4", "1:8")


class Runner:
    """Simulates (model, data set, batch, pattern) on an arch; keeps lowered models for this run."""

    def __init__(self):
        self._models: dict = {}

    def model(self, name: str, dataset: str):
        key = (name, dataset)
        if key not in self._models:
            self._models[key] = load(name, dataset=dataset)
        return self._models[key]

    def run(self, arch, name: str, dataset: str, batch: int, spec: str):
        base = self.model(name, dataset)
        model = base.with_sparsity(parse_pattern(spec))
        return simulate(arch, lower(model, "train", batch=batch), model_name=name, sparsity=spec,
                        mode="train", batch=batch, input_reuse=im2col_reuse(base))

    def speedup(self, arch, name, dataset, batch, spec="2:8") -> float:
        return (self.run(arch, name, dataset, batch, "dense").total_cycles
                / self.run(arch, name, dataset, batch, spec).total_cycles)


def with_memory(arch, **fields):
    return dataclasses.replace(arch, memory=dataclasses.replace(arch.memory, **fields))


def with_options(arch, **fields):
    return dataclasses.replace(arch, options=dataclasses.replace(arch.options, **fields))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="CIFAR-10 and ImageNet only")
    args = parser.parse_args()
    datasets = ("cifar10", "imagenet") if args.quick else DATASETS
    arch = load_arch("sat")
    runner = Runner()
    started = time.perf_counter()

    print(f"SAT reproduction on {arch.name}: {arch.array.rows}x{arch.array.cols} "
          f"{arch.dataflow.upper()}, {arch.clock_mhz:g} MHz, {arch.memory.dram_gbps:g} GB/s, "
          f"batch {args.batch} (assumed), one training step (FF + BP + WU)")
    header = (f"{'model':<9} {'dataset':<13} {'dense ms':>9} " + " ".join(f"{p:>6}" for p in PATTERNS)
              + f" {'MACideal':>8} {'compute':>7} {'WU%':>5} {'stall%':>6} {'idx%':>5}"
              f" {'util d/s':>9}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in MODELS:
        for dataset in datasets:
            dense = runner.run(arch, name, dataset, args.batch, "dense")
            sparse = {spec: runner.run(arch, name, dataset, args.batch, spec) for spec in PATTERNS}
            s28 = sparse["2:8"]
            gains = {spec: dense.total_cycles / result.total_cycles for spec, result in sparse.items()}
            mac_ideal = dense.macs / s28.macs
            compute_only = dense.compute_cycles / s28.compute_cycles
            wu_share = s28.phase_cycles().get("WU", 0) / s28.total_cycles
            stall_share = s28.stall_cycles / s28.total_cycles
            index_share = sum(l.index_bytes for l in s28.layers) / max(s28.dram_bytes, 1)
            rows.append(dict(name=name, dataset=dataset, gains=gains, mac_ideal=mac_ideal,
                             compute_only=compute_only, wu=wu_share, stall=stall_share,
                             dense_stall=dense.stall_cycles / dense.total_cycles))
            print(f"{name:<9} {dataset:<13} {dense.seconds * 1e3:>9.2f} "
                  + " ".join(f"{gains[p]:>5.2f}x" for p in PATTERNS)
                  + f" {mac_ideal:>7.2f}x {compute_only:>6.2f}x {wu_share:>5.0%} {stall_share:>6.1%}"
                  f" {index_share:>5.1%} {dense.utilization:>4.0%}/{s28.utilization:<4.0%}")
    average = {spec: statistics.mean(row["gains"][spec] for row in rows) for spec in PATTERNS}
    print("-" * len(header))
    print("average speedup: " + ", ".join(f"{spec} {average[spec]:.3f}x" for spec in PATTERNS))
    deviation = average["2:8"] / PAPER_AVERAGE_2_8 - 1
    print(f"2:8 average {average['2:8']:.3f}x vs paper {PAPER_AVERAGE_2_8}x ({deviation:+.1%}); "
          f"ideal BDWP {IDEAL_2_8}x; MAC-count ideal (layers kept dense included) "
          f"{statistics.mean(row['mac_ideal'] for row in rows):.3f}x")

    print("\nwhere the gap from 2x goes (averages over the rows above, 2:8):")
    mean = lambda key: statistics.mean(row[key] for row in rows)  # noqa: E731
    print(f"  layers kept dense (first conv, non-multiple-of-8 channels, attention matmuls): "
          f"2x -> {mean('mac_ideal'):.3f}x MAC ratio")
    print(f"  array under-utilisation (fill/drain, partial folds, short sparse folds): "
          f"compute-only speedup {mean('compute_only'):.3f}x")
    print(f"  DRAM stalls: {mean('dense_stall'):.1%} of dense cycles, {mean('stall'):.1%} of 2:8 cycles "
          f"-> simulated {average['2:8']:.3f}x")
    print(f"  dense WU is {mean('wu'):.0%} of the 2:8 step's cycles (it is 1/1.5 = 67% in the ideal)")

    print("\nsensitivity of the 2:8 average (CIFAR-10 and ImageNet, all five models):")
    subset = [(name, dataset) for name in MODELS for dataset in ("cifar10", "imagenet")]

    def average_2_8(variant, batch=args.batch) -> float:
        return statistics.mean(runner.speedup(variant, name, dataset, batch) for name, dataset in subset)

    print(f"  {'baseline (sat.yaml)':<38} {average_2_8(arch):.3f}x")
    for gbps in (4.8, 9.6, 38.4, 76.8):
        print(f"  {f'dram_gbps {gbps} (assumed 19.2)':<38} {average_2_8(with_memory(arch, dram_gbps=gbps)):.3f}x")
    for scale in (0.25, 4.0):
        variant = with_memory(arch, ifmap_sram_kb=arch.memory.ifmap_sram_kb * scale,
                              filter_sram_kb=arch.memory.filter_sram_kb * scale,
                              ofmap_sram_kb=arch.memory.ofmap_sram_kb * scale)
        print(f"  {f'SRAM x{scale} (assumed 512/512/256 KB)':<38} {average_2_8(variant):.3f}x")
    for batch in (1, 8, 128):
        print(f"  {f'batch {batch} (assumed {args.batch})':<38} {average_2_8(arch, batch):.3f}x")
    for size in (16, 64):
        variant = dataclasses.replace(arch, array=dataclasses.replace(arch.array, rows=size, cols=size))
        print(f"  {f'array {size}x{size} (assumed 32x32)':<38} {average_2_8(variant):.3f}x")
    for dataflow in (name for name in DATAFLOWS if name != arch.dataflow):
        variant = dataclasses.replace(arch, dataflow=dataflow)
        print(f"  {f'dataflow {dataflow} (assumed {arch.dataflow})':<38} {average_2_8(variant):.3f}x")
    print(f"  {'word_bytes 4 (assumed 2)':<38} "
          f"{average_2_8(dataclasses.replace(arch, word_bytes=4)):.3f}x")
    for switch in (option.name for option in dataclasses.fields(DataflowOptions)):
        print(f"  {f'{switch} off':<38} {average_2_8(with_options(arch, **{switch: False})):.3f}x")
    print(f"\n(simulated in {time.perf_counter() - started:.1f} s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
