"""What the N:M sparse mode costs on the array, beside the dense schedule (SAT.md).

Three costs, each a switch of ``DataflowOptions.pregenerate_sparse_weights``:

- the compressed reduction: a group of m reduction steps costs n MAC cycles, so
  K_eff = ceil(K/m) * n (``hwsim.dataflow.sparse_reduction``), and a kept weight is
  stored with its index (``word_bytes + index_bits / 8`` bytes);
- on the fly (switch off): every dense weight fetched passes the top-n selector
  (``select_groups_per_cycle``) before its tile can be used;
- pre-generated (switch on): once per training step, after WU refreshes a layer's
  dense weights, its compressed FF and BP copies are rebuilt (dense read + compressed
  writes), off the critical path but on the DRAM link.
"""
from __future__ import annotations

import numpy as np

from hwsim.arch import Accelerator
from hwsim.dataflow import sparse_reduction
from models.lowering import GemmWorkload


def sparse_words(arch: Accelerator, workload: GemmWorkload) -> tuple[int, float]:
    """Returns (effective reduction K_eff, bytes per stored weight incl. its index).

    Dense: (K, word_bytes). 2:8 of K=64 on 2-byte words with 3-bit indices: (16, 2.375)."""
    if not workload.sparse:
        return workload.K, float(arch.word_bytes)
    n, m = workload.nm
    return sparse_reduction(workload.K, n, m), arch.word_bytes + arch.index_bits / 8


def selection_costs(arch: Accelerator, workload: GemmWorkload, traffic, sparse_role: str | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (top-n groups selected, selector cycles) per fold: the on-the-fly mode's cost.

    ``traffic`` is the GEMM's ``hwsim.memory`` fold traffic; pre-generated weights cost
    nothing here (they are charged once per step to WU, ``pregeneration_bytes``)."""
    select_groups = np.zeros(len(traffic.weights))
    if sparse_role and not arch.options.pregenerate_sparse_weights:
        # Every dense weight fetched goes through the top-n selector on its way in.
        select_groups = traffic.loads_by_role[sparse_role] / (arch.word_bytes * workload.nm[1])
    select_cycles = (select_groups / arch.sparsity.select_groups_per_cycle if sparse_role
                     else select_groups)
    return select_groups, select_cycles


def index_bytes(arch: Accelerator, traffic, sparse_role: str | None, index_share: float) -> float:
    """Returns the DRAM bytes of N:M indices one group of the GEMM moves (0 when dense or
    when weights are selected on the fly: then DRAM holds dense weights, no indices)."""
    if not sparse_role or not arch.options.pregenerate_sparse_weights:
        return 0.0
    sparse_dram = float((traffic.loads_by_role[sparse_role] * traffic.weights).sum())
    return sparse_dram * index_share


def pregeneration_bytes(arch: Accelerator, workloads: list[GemmWorkload]
                        ) -> dict[int, tuple[float, float, float]]:
    """Returns {WU workload index: (load bytes, store bytes, selected groups)} of pre-generation
    ({} when weights are selected on the fly, or the array has no sparse mode).

    Once per training step, after WU refreshes a layer's dense weights, the FF and
    BP compressed copies are rebuilt: read the dense weights once, select top-n per
    group along each pruning axis, write each compressed copy (values + indices)."""
    if not (arch.options.pregenerate_sparse_weights and arch.sparsity):
        return {}
    by_layer: dict[str, list[int]] = {}
    for index, workload in enumerate(workloads):
        by_layer.setdefault(workload.layer, []).append(index)
    extra = {}
    for layer, indices in by_layer.items():
        sparse = [workloads[i] for i in indices if workloads[i].sparse and workloads[i].phase in ("FF", "BP")]
        updates = [i for i in indices if workloads[i].phase == "WU"]
        if not sparse or not updates:
            continue
        update = workloads[updates[0]]
        dense_weights = update.M * update.N * update.groups
        load = dense_weights * arch.word_bytes
        store = sum(dense_weights * w.nm[0] / w.nm[1] * (arch.word_bytes + arch.index_bits / 8)
                    for w in sparse)
        selected = sum(dense_weights / w.nm[1] for w in sparse)
        extra[updates[0]] = (float(load), float(store), float(selected))
    return extra
