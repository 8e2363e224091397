"""Whole-model CPU simulation for `hwsim simulate --arch <cpu>`: layers, totals, summary.json.

    from hwsim.cpu.model_sim import simulate_model_on_cpu, summary_dict
    records = simulate_model_on_cpu(target, model, mode="infer", kernel_source=ks,
                                    schedules=from_tuning_log, cache_dir=".hwsim-cache")
    document = summary_dict(target, records, model="mobilenet_v1", sparsity="2:8")

GEMMs (convolutions, dense, batch matmuls) come from models.lowering; pooling,
elementwise and norm ops are costed as streams over their elements (ElementwiseWork),
so every layer that takes time is in the list. ``kernel_source`` (the CLI passes one
that renders codegen's kernels, see hwsim.cpu.codegen_source.from_rendered) may return
None for a family codegen does not ship: that layer is costed with the kernel of
hwsim.cpu.fallback_kernels and its record says kernel_origin "hwsim".
"""
from __future__ import annotations

from pathlib import Path

from models.errors import UserError
from models.fusion import fused_ops
from models.ir import Elementwise, Norm, Pool2d
from models.lowering import GemmWorkload, lower
from hwsim.cpu.cpu_model import ElementwiseWork, CpuLayerTime, simulate_cpu

STREAM_OPS = (Pool2d, Elementwise, Norm)
# Sparsity the CPU kernels run: N:M and BDWP (n of m along K) by nmgemm, block and
# unstructured by the XNNPACK-style spmm (any density).
RUNNABLE_PATTERNS = ("dense", "n:m (e.g. 2:8, nm:2:4)", "block:RxC:density", "unstructured:density")


def model_workloads(model, mode: str = "infer", batch: int | None = None) -> list:
    """Returns the model's work in order: its GEMMs (lowering) with a stream for each
    pooling / elementwise / norm op after the GEMMs of the op before it (forward pass);
    in training, the BP/WU GEMMs follow, and each stream op counts twice (FF + BP).

    Inference leaves out the stream ops codegen's kernels absorb (models.fusion: a batch
    norm folded into the bias, a relu in the epilogue): no pass of their own runs."""
    gemms = lower(model, mode=mode, batch=batch)
    absorbed = fused_ops(model) if mode == "infer" else frozenset()
    scale = (batch or model.batch) / model.batch
    forward: dict[str, list[GemmWorkload]] = {}
    for work in gemms:
        if work.phase == "FF":
            forward.setdefault(work.layer, []).append(work)
    ordered = []
    for op in model.ops():
        ordered.extend(forward.pop(op.name, []))
        if isinstance(op, STREAM_OPS) and op.name not in absorbed:
            inputs = model.input_specs(op.name)
            elements = max([spec.numel for spec in inputs] + [model.output_spec(op.name).numel])
            ordered.append(ElementwiseWork(op.name, round(elements * scale), inputs=max(1, len(inputs))))
    for rest in forward.values():
        ordered.extend(rest)
    backward = [work for work in gemms if work.phase != "FF"]
    if backward:
        ordered += backward + [ElementwiseWork(w.name, w.elements, w.inputs + 1, "BP")
                               for w in ordered if isinstance(w, ElementwiseWork)]
    return ordered


def check_runnable(workloads) -> None:
    """Raises UserError (listing what the kernels run) for a pattern no CPU kernel runs."""
    for work in workloads:
        if isinstance(work, GemmWorkload) and work.sparse and not 0 < work.density <= 1:
            raise UserError(f"layer {work.layer}: density {work.density} cannot be run",
                            field="sparsity", fix="the CPU kernels run " + ", ".join(RUNNABLE_PATTERNS))
        if isinstance(work, GemmWorkload) and work.nm is not None and not 1 <= work.nm[0] <= work.nm[1] <= 16:
            raise UserError(f"layer {work.layer}: pattern {work.nm[0]}:{work.nm[1]} is not runnable",
                            field="sparsity", fix="the CPU kernels run " + ", ".join(RUNNABLE_PATTERNS)
                            + " with 1 <= n <= m <= 16")


def simulate_model_on_cpu(target, model_or_workloads, *, mode: str = "infer", batch: int | None = None,
                          kernel_source=None, schedules=None, cache_dir: str | Path = ".hwsim-cache",
                          warm_weights: bool = False, cores: int | None = None,
                          bandwidths=None) -> list[CpuLayerTime]:
    """Returns one CpuLayerTime per layer (GEMMs and stream ops) of a Model or a workload list."""
    workloads = (model_workloads(model_or_workloads, mode, batch)
                 if hasattr(model_or_workloads, "ops") else list(model_or_workloads))
    check_runnable(workloads)
    return simulate_cpu(target, workloads, schedules, cache_dir, kernel_source=kernel_source,
                        warm_weights=warm_weights, cores=cores, bandwidths=bandwidths)


def layer_row(record: CpuLayerTime, work=None) -> dict:
    """Returns one layer in summary.json's shape (accelerator field names where they apply)."""
    gemm = work if isinstance(work, GemmWorkload) else None
    stall = max(0.0, record.cycles - record.compute_cycles)
    return {"name": record.name, "phase": record.phase,
            "M": gemm.M if gemm else None, "N": gemm.N if gemm else None, "K": gemm.K if gemm else None,
            "groups": gemm.groups if gemm else None, "sparse": bool(gemm and gemm.sparse),
            "pattern": gemm.pattern if gemm else None, "macs": record.macs,
            "compute_cycles": record.compute_cycles, "stall_cycles": stall,
            "total_cycles": record.cycles, "utilization": record.utilization,
            "dram_bytes": record.dram_bytes, "bound": record.bound, "memory_level": record.memory_level,
            "ms": record.ms, "kernel": record.kernel, "kernel_origin": record.kernel_origin,
            "mca_core": record.mca_core, "mca_model": record.mca_model}


def summary_dict(target, records: list[CpuLayerTime], *, model: str, sparsity: str = "dense",
                 mode: str = "infer", batch: int = 1, workloads=None) -> dict:
    """Returns the summary.json document of a CPU run (the accelerator's fields; energy null)."""
    from hwsim import __version__
    works = list(workloads) if workloads is not None else [None] * len(records)
    total = sum(record.cycles for record in records)
    compute = sum(record.compute_cycles for record in records)
    macs = sum(record.macs for record in records)
    peak = target.vector_lanes_f32 * target.fma_units * max(1, target.cores)
    return {"tool": "hwsim", "version": __version__, "arch": target.name, "model": model,
            "sparsity": sparsity, "mode": mode, "batch": batch, "total_cycles": total,
            "seconds": total / (target.clock_mhz * 1e6), "energy_j": None,
            "energy_note": "no energy model for CPU targets",
            "compute_cycles": compute, "stall_cycles": total - compute, "macs": macs,
            "dram_bytes": sum(record.dram_bytes for record in records),
            "utilization": macs / (total * peak) if total else 0.0,
            "clock_mhz": target.clock_mhz, "cores": target.cores, "core": target.core,
            "mca_core": records[0].mca_core if records else None,
            "mca_model": records[0].mca_model if records else None,
            "layers": [layer_row(record, work) for record, work in zip(records, works)]}


def bound_counts(records: list[CpuLayerTime]) -> dict:
    """Returns how many layers hit each bound ({'compute': n, 'memory': m})."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.bound] = counts.get(record.bound, 0) + 1
    return counts


def simulate_runs(target, base_model, specs: list[str], patterns: list, *, mode: str, batch: int,
                  kernel_source, cache_dir: str | Path, tuned_layers: int = 0,
                  progress: bool = False) -> tuple[dict, dict, dict]:
    """Returns (documents by spec, speedup by spec, the output document) of one CPU run per
    pattern: summary.json documents with the bounds and tuned-layer count; the output is the
    one document, or {"runs", "speedup", "baseline"} when several patterns run side by side
    (speedup = the first run's cycles / that run's cycles)."""
    import sys

    from tqdm import tqdm

    documents = {}
    for spec, pattern in tqdm(list(zip(specs, patterns)), desc=f"simulate {target.name}",
                              unit="run", file=sys.stderr, disable=not progress):
        workloads = model_workloads(base_model.with_sparsity(pattern), mode, batch)
        records = simulate_model_on_cpu(target, workloads, kernel_source=kernel_source,
                                        cache_dir=cache_dir)
        document = summary_dict(target, records, model=base_model.name, sparsity=spec, mode=mode,
                                batch=batch, workloads=workloads)
        document["bounds"] = bound_counts(records)
        document["tuned_layers"] = tuned_layers
        documents[spec] = document
    first = next(iter(documents.values()))
    speedups = {spec: first["total_cycles"] / doc["total_cycles"] for spec, doc in documents.items()}
    output = documents[specs[0]] if len(specs) == 1 else \
        {"runs": documents, "speedup": speedups, "baseline": specs[0]}
    return documents, speedups, output


__all__ = ["model_workloads", "simulate_model_on_cpu", "simulate_runs", "summary_dict", "layer_row", "bound_counts",
           "check_runnable", "RUNNABLE_PATTERNS"]
