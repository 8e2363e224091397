"""Tile-granular simulation of lowered GEMMs on an N:M sparse training accelerator.

For every GEMM of ``models.lowering.lower`` (FF, BP, WU per layer):

1. Compute. The fold grid and per-fold cycles come from ``hwsim.dataflow.plan_folds``
   (SCALE-Sim's closed forms). In sparse mode the reduction is compressed first,
   K_eff = sparse_reduction(K, n, m) = ceil(K/m) * n, because a group of m reduction
   steps costs n MAC cycles (SAT.md); for OS that shortens every fold, for WS/IS the
   compressed weights fill fewer array rows, so there are fewer folds.
   With ``interleave`` the folds run back to back with fill and drain overlapped
   (steady state: ``temporal`` cycles per fold, one fill per GEMM), and each phase
   takes whichever orientation (C = A.B, or C^T = B^T.A^T) finishes sooner: FF, BP
   and WU of one layer have very different M, N, K. Without it every fold pays its
   own fill and drain and every phase uses the FF orientation.
2. Memory. ``hwsim.memory`` gives the bytes each fold loads and stores given the
   buffer sizes; compressed N:M weights carry ``index_bits`` per kept weight.
   With ``offline_schedule`` the loop order is the one that moves fewer DRAM bytes
   and transfers are double-buffered across folds and across consecutive GEMMs;
   without it they serialise with compute.
3. N:M weights. Pre-generated: the compressed FF and BP weights are made once per
   step when WU produces new weights (dense read + two compressed writes, off the
   critical path but on the DRAM link). On the fly: every tile load reads dense
   weights from DRAM and the top-n selector (``select_groups_per_cycle``) must
   finish before the tile can be used.
4. Energy from event counts (``hwsim.energy``).

Everything is numpy over folds; one ResNet-50 training step takes well under a second.

Where each part lives: the orientation (C = A.B or C^T = B^T.A^T) in
``hwsim.orientation``, the fold plan of each dataflow in ``hwsim.dataflow``, bytes per
fold in ``hwsim.memory``, what the N:M sparse mode costs in ``hwsim.sparse_mode``, the
step's DRAM timeline in ``hwsim.timeline``; this module puts one GEMM's schedule
together from them (``schedule_gemm``) and runs the step (``simulate``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwsim import __version__
from hwsim.arch import Accelerator
from hwsim.dataflow import dataflow_spec, plan_folds
from hwsim.energy import gemm_energy_pj
from hwsim.memory import Operand, default_outer, fold_axis, fold_traffic
from hwsim.orientation import IM2COL_ROLE, Orientation, im2col_reuse, orient  # noqa: F401 (re-exported)
from hwsim.sparse_mode import index_bytes, pregeneration_bytes, selection_costs, sparse_words
from hwsim.timeline import local_cycles, rounded_total, step_timeline
from models.errors import UserError
from models.lowering import GemmWorkload


def area_of(arch: Accelerator):
    """Returns the arch's AreaBreakdown (hwsim.area) when it names a technology, else None."""
    if getattr(arch, "technology", None) is None:
        return None
    from hwsim.area import accelerator_area
    return accelerator_area(arch)


@dataclass(frozen=True)
class LayerResult:
    """One GEMM of the step: its shape, cycles, traffic and energy."""
    name: str
    phase: str
    M: int
    N: int
    K: int
    groups: int
    op_kind: str
    sparse: bool
    pattern: str | None
    macs: int
    dense_macs: int
    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    utilization: float
    sram_bytes: int
    dram_bytes: int
    index_bytes: int
    select_groups: int
    energy_pj: float
    orientation: str
    loop_order: str
    folds: int
    dataflow: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimResult:
    """A whole simulated step (or inference pass): per-GEMM records and totals."""
    arch: Accelerator
    model: str
    sparsity: str
    mode: str
    batch: int
    layers: tuple[LayerResult, ...]
    area: Any = None          # hwsim.area.AreaBreakdown when the arch has a technology
    mapping: str | None = None  # the mapper's objective, None = the engine's own choices

    @property
    def area_mm2(self) -> float | None:
        return None if self.area is None else self.area.total_mm2

    @property
    def total_cycles(self) -> int:
        return sum(layer.total_cycles for layer in self.layers)

    @property
    def compute_cycles(self) -> int:
        return sum(layer.compute_cycles for layer in self.layers)

    @property
    def stall_cycles(self) -> int:
        return sum(layer.stall_cycles for layer in self.layers)

    @property
    def seconds(self) -> float:
        return self.total_cycles / (self.arch.clock_mhz * 1e6)

    @property
    def energy_j(self) -> float:
        return sum(layer.energy_pj for layer in self.layers) * 1e-12

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def dram_bytes(self) -> int:
        return sum(layer.dram_bytes for layer in self.layers)

    @property
    def utilization(self) -> float:
        cycles = self.total_cycles
        return self.macs / (cycles * self.arch.array.pes) if cycles else 0.0

    def phase_cycles(self) -> dict[str, int]:
        """Returns {phase: total cycles}."""
        totals: dict[str, int] = {}
        for layer in self.layers:
            totals[layer.phase] = totals.get(layer.phase, 0) + layer.total_cycles
        return totals

    def cost_figures(self) -> dict:
        """Returns area, EDP, perf/mm2 and power: the cost axes beside cycles and energy.

        perf_per_mm2 is effective GOPS/mm2 (2 ops per dense MAC per second)."""
        seconds, energy_j = self.seconds, self.energy_j
        area_mm2 = self.area_mm2
        dense_macs = sum(layer.dense_macs for layer in self.layers)
        figures = {"mapping": self.mapping, "area_mm2": area_mm2,
                   "edp_j_s": energy_j * seconds,
                   "perf_per_mm2": (2 * dense_macs / seconds / 1e9 / area_mm2
                                    if area_mm2 and seconds > 0 else None),
                   "power_w": energy_j / seconds if seconds > 0 else 0.0}
        if self.area is not None:
            figures["area"] = self.area.as_dict()
        if getattr(self.arch, "fpga", None) is not None:
            from hwsim.fpga import fpga_estimate
            figures["fpga"] = fpga_estimate(self.arch).as_dict()
        return figures

    def summary_dict(self) -> dict:
        """Returns the summary.json document (ARCHITECTURE.md, 'Results')."""
        options = self.arch.options
        return {
            "tool": "hwsim", "version": __version__, "arch": self.arch.name,
            "model": self.model, "sparsity": self.sparsity, "mode": self.mode,
            "batch": self.batch, "total_cycles": self.total_cycles,
            "seconds": self.seconds, "energy_j": self.energy_j,
            "compute_cycles": self.compute_cycles, "stall_cycles": self.stall_cycles,
            "macs": self.macs, "dram_bytes": self.dram_bytes,
            "utilization": self.utilization, "phase_cycles": self.phase_cycles(),
            "dataflow": self.arch.dataflow, "clock_mhz": self.arch.clock_mhz,
            "array": {"rows": self.arch.array.rows, "cols": self.arch.array.cols},
            "dataflow_options": asdict(options),
            **self.cost_figures(),
            "layers": [layer.as_dict() for layer in self.layers],
        }


# ---------------------------------------------------------------- validation


def check_supported(arch: Accelerator, workloads: list[GemmWorkload], sparsity: str = "") -> None:
    """Raises UserError when a workload asks for sparsity the array cannot run."""
    modes = arch.sparse_mode_names()
    can = f"it runs {', '.join(modes)} (and dense)" if modes else "it has no sparse modes"
    for workload in workloads:
        if not workload.sparse:
            continue
        if workload.nm is None:
            raise UserError(
                f"'{arch.name}' supports only N:M sparsity; pattern '{workload.pattern}' "
                f"({workload.layer} {workload.phase}) cannot run on its array ({can})",
                source=arch.source, field="--sparsity",
                fix=f"use {' or '.join(modes) if modes else 'dense'}")
        n, m = workload.nm
        if not arch.runs_nm(n, m):
            raise UserError(f"'{arch.name}' cannot run {n}:{m} sparsity; {can}",
                            source=arch.source, field="--sparsity",
                            fix=f"use {', '.join(modes) if modes else 'dense'}, or an arch "
                                f"whose sparsity.modes lists {n}:{m}")


# ---------------------------------------------------------------- one GEMM


@dataclass(frozen=True)
class GemmSchedule:
    """How one GEMM runs: fold plan, per-fold arrays (all groups), byte totals.

    The per-fold arrays hold representative folds; ``weights`` says how many
    identical folds each stands for (``hwsim.memory.FoldAxis``)."""
    orientation: str
    loop_order: str
    folds: int
    weights: np.ndarray
    compute_cycles: np.ndarray
    load_bytes: np.ndarray
    store_bytes: np.ndarray
    select_cycles: np.ndarray
    sram_bytes: float
    dram_bytes: float
    index_bytes: float
    select_groups: float
    dataflow: str = ""


def _operands(arch: Accelerator, workload: GemmWorkload, orientation: Orientation, dataflow: str,
              K_eff: int, weight_bytes: float, reuse: float) -> tuple[list[Operand], float]:
    """Returns the three operands as the memory system sees them, and the index share of a
    compressed weight byte (0 when dense)."""
    word = arch.word_bytes
    memory = arch.memory
    M_o, N_o = orientation.M, orientation.N
    shapes = {"A": M_o * workload.K, "B": workload.K * N_o, "C": M_o * N_o}
    buffers = {"A": memory.ifmap_bytes, "B": memory.filter_bytes, "C": memory.ofmap_bytes}
    cuts = dataflow_spec(dataflow).cuts
    operands = []
    index_share = 0.0
    for role in ("A", "B", "C"):
        footprint = dram = float(shapes[role] * word)
        array_bytes = None
        if role == orientation.expanded_role:
            array_bytes = footprint
            footprint = dram = footprint / reuse
        if role == orientation.sparse_role:
            kept = shapes[role] / workload.K * K_eff
            footprint = kept * weight_bytes
            index_share = (weight_bytes - word) / weight_bytes
            dram = footprint if arch.options.pregenerate_sparse_weights else float(shapes[role] * word)
        operands.append(Operand(role, cuts[role], footprint, dram, buffers[role],
                                is_output=role == "C",
                                accumulates=role == "C" and cuts[role] != "tile",
                                array_bytes=array_bytes))
    return operands, index_share


def _fold_cycles(plan, interleave: bool, reps: int, groups: int) -> np.ndarray:
    """Returns the compute cycles of each representative fold, all groups in a row.

    With ``interleave`` folds run back to back: one fill/drain per GEMM, steady state
    ``temporal`` cycles per fold; without it each fold pays its own."""
    folds = plan.row_folds * plan.col_folds
    per_fold = np.full(reps, float(plan.cycles_per_fold))
    if interleave:
        per_fold[:] = plan.temporal
        per_fold[0] += plan.cycles_per_fold - plan.temporal
    # SCALE-Sim reports the last busy cycle's index (folds x per-fold - 1): keep its total.
    per_fold[-1] -= folds * plan.cycles_per_fold - plan.compute_cycles
    compute = np.tile(per_fold, groups)
    if interleave and groups > 1:
        # One fill for the whole GEMM: the later groups start at steady state.
        compute[reps::reps] -= plan.cycles_per_fold - plan.temporal
    return compute


def _loop_order(arch: Accelerator, dataflow: str, row_axis, col_axis, operands, outer: str | None):
    """Returns the fold traffic in the given loop order, or (None) the engine's choice:
    SCALE-Sim's order, or with offline scheduling whichever moves fewer DRAM bytes."""
    if outer is not None:
        return fold_traffic(row_axis, col_axis, operands, outer)
    candidates = [default_outer(dataflow)]
    if arch.options.offline_schedule:
        candidates.append("col" if candidates[0] == "row" else "row")
    # Ties (to the byte) keep SCALE-Sim's order, whatever the float summation order.
    return min((fold_traffic(row_axis, col_axis, operands, order) for order in candidates),
               key=lambda t: round(t.dram_bytes))


def schedule_gemm(arch: Accelerator, workload: GemmWorkload, transposed: bool,
                  outer: str | None = None, reuse: float = 1.0,
                  dataflow: str | None = None) -> GemmSchedule:
    """Returns the schedule of ``workload`` in one orientation, dataflow and loop order.

    ``transposed`` runs C^T = B^T . A^T (M and N swap, the weights feed the other
    side). ``outer`` None picks the loop order (``_loop_order``). ``reuse``: im2col
    elements per unique feature-map element of this GEMM's im2col operand.
    ``dataflow`` None is the arch's default one."""
    dataflow = dataflow or arch.dataflow
    # 1. orientation and sparse mode: the array-facing M, N and the reduction it costs
    orientation = orient(workload, transposed, reuse)
    K_eff, weight_bytes = sparse_words(arch, workload)
    # 2. the fold plan and the bytes each fold moves, in the cheaper (or given) loop order
    plan = plan_folds(orientation.M, orientation.N, K_eff, arch.array.rows, arch.array.cols,
                      dataflow)
    operands, index_share = _operands(arch, workload, orientation, dataflow, K_eff, weight_bytes,
                                      reuse)
    row_axis = fold_axis(plan.spatial_rows, arch.array.rows, plan.row_folds)
    col_axis = fold_axis(plan.spatial_cols, arch.array.cols, plan.col_folds)
    traffic = _loop_order(arch, dataflow, row_axis, col_axis, operands, outer)
    # 3. per-fold compute and the sparse mode's selector; the DRAM timeline (hwsim.timeline)
    # sets these against the transfers. The traffic arrays run in the chosen (outer, inner)
    # order; fold cycles are equal across the grid except the first fold's fill, so they
    # need no reordering.
    reps = len(traffic.weights)
    groups = workload.groups
    compute = _fold_cycles(plan, arch.options.interleave, reps, groups)
    sparse_role = orientation.sparse_role
    select_groups, select_cycles = selection_costs(arch, workload, traffic, sparse_role)
    index_bytes_per_group = index_bytes(arch, traffic, sparse_role, index_share)
    return GemmSchedule(
        orientation=orientation.name, loop_order=f"{traffic.outer}-outer",
        folds=plan.row_folds * plan.col_folds * groups, weights=np.tile(traffic.weights, groups),
        compute_cycles=compute,
        load_bytes=np.tile(traffic.load_bytes, groups), store_bytes=np.tile(traffic.store_bytes, groups),
        select_cycles=np.tile(select_cycles, groups),
        sram_bytes=traffic.sram_bytes * groups, dram_bytes=traffic.dram_bytes * groups,
        index_bytes=index_bytes_per_group * groups,
        select_groups=float((select_groups * traffic.weights).sum()) * groups,
        dataflow=dataflow)


def shape_key(workload: GemmWorkload) -> GemmWorkload:
    """Returns the workload without its layer name: what ``schedule_gemm`` depends on
    (with the arch, the orientation, loop order, reuse and dataflow), so equal keys
    schedule to equal (immutable, shareable) GemmSchedules."""
    return dataclasses.replace(workload, layer="")


def best_schedule(arch: Accelerator, workload: GemmWorkload, reuse: float = 1.0) -> GemmSchedule:
    """Returns the FF orientation, or with ``interleave`` the faster of both orientations."""
    upright = schedule_gemm(arch, workload, transposed=False, reuse=reuse)
    if not arch.options.interleave:
        return upright
    flipped = schedule_gemm(arch, workload, transposed=True, reuse=reuse)
    # Ties (to the cycle) keep the FF orientation.
    return min((upright, flipped), key=lambda s: round(local_cycles(arch, s)))


# ---------------------------------------------------------------- a whole step


def simulate(arch: Accelerator, workloads: list[GemmWorkload], *, model_name: str = "model",
             sparsity: str = "dense", mode: str = "train", batch: int = 1,
             input_reuse: dict[str, float] | None = None) -> SimResult:
    """Returns the simulated step: every GEMM scheduled, one DRAM timeline for all.

    ``input_reuse`` ({layer: im2col reuse}, from ``im2col_reuse(model)``) lets DRAM
    move feature maps instead of im2col matrices; without it every im2col element
    is moved (an upper bound on traffic).

    With offline scheduling the next GEMM's first tile is prefetched during the
    previous GEMM's last fold, so the whole step is one double-buffered timeline;
    each wait is charged to the GEMM whose fold waited."""
    check_supported(arch, workloads, sparsity)
    input_reuse = input_reuse or {}
    # GEMMs of one shape (repeated blocks) schedule alike: each shape is scheduled once.
    memo: dict = {}

    def once(function, workload, **kwargs):
        reuse = input_reuse.get(workload.layer, 1.0)
        key = (function.__name__, shape_key(workload), reuse)
        if key not in memo:
            memo[key] = function(arch, workload, reuse=reuse, **kwargs)
        return memo[key]

    schedules = [once(best_schedule, workload) for workload in workloads]
    pregenerated = pregeneration_bytes(arch, workloads)

    if not schedules:
        return SimResult(arch, model_name, sparsity, mode, batch, (), area=area_of(arch))
    compute_per_gemm, stall_per_gemm = step_timeline(arch, schedules, pregenerated)
    if arch.options.interleave:
        # Orientations are chosen GEMM by GEMM, but the step is one timeline in which
        # a GEMM's first load overlaps its predecessor's last fold: the offline
        # scheduler also evaluates the all-FF-orientation plan and keeps the faster.
        upright = [once(schedule_gemm, workload, transposed=False) for workload in workloads]
        upright_compute, upright_stall = step_timeline(arch, upright, pregenerated)
        if rounded_total(upright_compute, upright_stall) < rounded_total(compute_per_gemm,
                                                                         stall_per_gemm):
            schedules, compute_per_gemm, stall_per_gemm = upright, upright_compute, upright_stall

    return result_of(arch, workloads, schedules, pregenerated, compute_per_gemm, stall_per_gemm,
                     model_name=model_name, sparsity=sparsity, mode=mode, batch=batch)


def result_of(arch: Accelerator, workloads: list[GemmWorkload], schedules: list[GemmSchedule],
              pregenerated: dict, compute_per_gemm: np.ndarray, stall_per_gemm: np.ndarray, *,
              model_name: str, sparsity: str, mode: str, batch: int,
              mapping: str | None = None) -> SimResult:
    """Returns the SimResult of scheduled GEMMs on their timeline (energy by event counts)."""
    layers = []
    for index, (workload, schedule) in enumerate(zip(workloads, schedules)):
        compute_cycles = int(round(compute_per_gemm[index]))
        stall = int(round(stall_per_gemm[index]))
        total = compute_cycles + stall
        extra_load, extra_store, extra_select = pregenerated.get(index, (0.0, 0.0, 0.0))
        dram_bytes = schedule.dram_bytes + extra_load + extra_store
        sram_bytes = schedule.sram_bytes + extra_load + extra_store
        select_groups = schedule.select_groups + extra_select
        energy = gemm_energy_pj(arch.energy, macs=workload.macs, sram_bytes=sram_bytes,
                                dram_bytes=dram_bytes, select_groups=select_groups)
        layers.append(LayerResult(
            name=workload.layer, phase=workload.phase, M=workload.M, N=workload.N, K=workload.K,
            groups=workload.groups, op_kind=workload.op_kind, sparse=workload.sparse,
            pattern=workload.pattern, macs=workload.macs, dense_macs=workload.dense_macs,
            compute_cycles=compute_cycles, stall_cycles=stall, total_cycles=total,
            utilization=workload.macs / (total * arch.array.pes) if total else 0.0,
            sram_bytes=int(round(sram_bytes)), dram_bytes=int(round(dram_bytes)),
            index_bytes=int(round(schedule.index_bytes)), select_groups=int(round(select_groups)),
            energy_pj=float(energy), orientation=schedule.orientation,
            loop_order=schedule.loop_order, folds=schedule.folds,
            dataflow=schedule.dataflow or arch.dataflow))
    return SimResult(arch, model_name, sparsity, mode, batch, tuple(layers),
                     area=area_of(arch), mapping=mapping)
