"""The DRAM timeline: every fold's transfers against its compute, and the stalls they cause.

A scheduled GEMM (``hwsim.engine.GemmSchedule``) lists, per representative fold, its
compute cycles, the bytes it loads and stores, and the selector cycles of on-the-fly
N:M weights (a tile is usable when both its load and its selection are done). With
``offline_schedule`` transfers are double-buffered: fold i+1's tile loads while fold i
computes, and the next GEMM's first tile loads during the previous GEMM's last fold,
so a whole step is one timeline (``step_timeline``); without it every transfer
serialises with compute (``hwsim.memory.stall_cycles`` has the recurrence).
"""
from __future__ import annotations

import numpy as np

from hwsim.arch import Accelerator
from hwsim.memory import stall_cycles, transfer_cycles


def fold_transfer_cycles(arch: Accelerator, schedule, extra_load_bytes: float = 0.0,
                         extra_store_bytes: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (load cycles, store cycles) per fold on the arch's DRAM link.

    A load lasts until the tile is selected too (on-the-fly N:M weights); extra bytes
    (pre-generation of compressed weights) are spread over the GEMM's folds: it shares
    the link but not the array."""
    load_bytes, store_bytes = schedule.load_bytes, schedule.store_bytes
    if extra_load_bytes or extra_store_bytes:
        load_bytes = load_bytes + extra_load_bytes / schedule.folds
        store_bytes = store_bytes + extra_store_bytes / schedule.folds
    loads, stores = transfer_cycles(load_bytes, store_bytes, arch.dram_bytes_per_cycle)
    return np.maximum(loads, schedule.select_cycles), stores


def local_cycles(arch: Accelerator, schedule) -> float:
    """Returns the GEMM's cycles when run alone (what its orientation and mapping are chosen by)."""
    loads, stores = fold_transfer_cycles(arch, schedule)
    stalls = stall_cycles(loads, stores, schedule.compute_cycles, arch.options.offline_schedule)
    weights = np.append(schedule.weights, 1)
    return float((schedule.compute_cycles * schedule.weights).sum() + (stalls * weights).sum())


def step_timeline(arch: Accelerator, schedules: list,
                  pregenerated: dict[int, tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (compute cycles, stall cycles) per GEMM of the step's one DRAM timeline.

    ``pregenerated``: {GEMM index: (load, store, selected groups)} of weight pre-generation
    (``hwsim.sparse_mode.pregeneration_bytes``). Each wait is charged to the GEMM whose
    fold waited; the final drain to the last GEMM."""
    loads, stores, computes, owners, weights = [], [], [], [], []
    for index, schedule in enumerate(schedules):
        extra_load, extra_store, _ = pregenerated.get(index, (0.0, 0.0, 0.0))
        load_cycles, store_cycles = fold_transfer_cycles(arch, schedule, extra_load, extra_store)
        loads.append(load_cycles)
        stores.append(store_cycles)
        computes.append(schedule.compute_cycles)
        owners.append(np.full(len(schedule.weights), index))
        weights.append(schedule.weights)
    compute_all = np.concatenate(computes)
    stalls = stall_cycles(np.concatenate(loads), np.concatenate(stores), compute_all,
                          arch.options.offline_schedule)
    owner_all = np.concatenate(owners)
    weight_all = np.concatenate(weights)
    stall_per_gemm = np.bincount(owner_all, weights=stalls[:-1] * weight_all, minlength=len(schedules))
    stall_per_gemm[-1] += stalls[-1]
    compute_per_gemm = np.bincount(owner_all, weights=compute_all * weight_all,
                                   minlength=len(schedules))
    return compute_per_gemm, stall_per_gemm


def rounded_total(compute_per_gemm: np.ndarray, stall_per_gemm: np.ndarray) -> int:
    """Returns the step's cycles as the layer records will add them up (each rounded)."""
    return int(np.round(compute_per_gemm).sum() + np.round(stall_per_gemm).sum())
