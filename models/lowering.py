"""Lowering a model to the GEMMs of one inference pass or one training step.

Convolutions lower the SCALE-Sim way (im2col): rows M = output pixels x batch,
columns N = filters, reduction K = Cin x R x S. A training step adds, per layer,
in reverse order:

    FF  Y  = X . W             M = B*Ho*Wo   N = Cout        K = Cin*R*S
    BP  dXcol = dY . W^T       M = B*Ho*Wo   N = Cin*R*S     K = Cout     (then col2im)
    WU  dW = Xcol^T . dY       M = Cin*R*S   N = Cout        K = B*Ho*Wo

(grouped and depthwise convolutions lower per group: ``groups`` GEMMs of the
per-group sizes). BP's reduction runs over output channels, which is why BDWP
prunes the weights a second time along that axis (SAT.md). A layer fed directly
by the model input needs no BP: nothing upstream wants that gradient.

Which GEMMs are sparse:
    BDWP n:m      FF sparse iff Cin/groups is a multiple of m (groups of m run along
                  input channels); BP sparse iff Cout/groups is a multiple of m; WU dense.
    nm:n:m:axis   axis 1: FF as above, BP dense; axis 0: BP as above, FF dense.
    block, group, unstructured
                  FF and BP sparse at the pattern's density (a sparse x dense kernel
                  reads the same mask either way round); WU dense.
Layers whose channels are not a multiple of m stay dense (e.g. a first
convolution with 3 input channels): the hardware cannot run a partial group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from models.errors import UserError
from models.inputs import check_range, limit
from models.ir import BatchMatmul, Conv2d, Dense, Embedding, Input, Model, Op
from models.patterns import BDWP, NM, SparsityPattern

PHASES = ("FF", "BP", "WU")
MODES = ("infer", "train")


@dataclass(frozen=True)
class GemmWorkload:
    """One GEMM (``groups`` independent copies of M x N x K) of a lowered model.

    ``macs`` counts the MACs actually performed: dense MACs x ``density`` when
    ``sparse``. ``nm`` is (n, m) for N:M-structured sparsity, which hardware can
    exploit group by group; ``pattern`` is the spec string of the mask used."""
    layer: str
    phase: str
    M: int
    N: int
    K: int
    groups: int = 1
    op_kind: str = "dense"
    sparse: bool = False
    pattern: str | None = None
    density: float = 1.0
    nm: tuple[int, int] | None = None
    operand: str = "W"

    @property
    def dense_macs(self) -> int:
        return self.groups * self.M * self.N * self.K

    @property
    def macs(self) -> int:
        if not self.sparse:
            return self.dense_macs
        if self.nm is not None:
            n, m = self.nm
            return self.groups * self.M * self.N * (self.K // m) * n
        return round(self.dense_macs * self.density)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "phase": self.phase, "M": self.M, "N": self.N,
                "K": self.K, "groups": self.groups, "op": self.op_kind,
                "macs": self.macs, "dense_macs": self.dense_macs, "sparse": self.sparse,
                "pattern": self.pattern, "density": self.density}


def _sparse_info(pattern: SparsityPattern | None, phase: str, reduction_channels: int
                 ) -> tuple[bool, str | None, float, tuple[int, int] | None]:
    """Returns (sparse, pattern spec, density, nm) of one phase's GEMM."""
    if pattern is None or phase == "WU":
        return False, None, 1.0, None
    if isinstance(pattern, (BDWP, NM)):
        if isinstance(pattern, NM) and pattern.axis != (1 if phase == "FF" else 0):
            return False, None, 1.0, None
        if reduction_channels % pattern.m:
            return False, None, 1.0, None
        return True, f"{pattern.n}:{pattern.m}", pattern.density, (pattern.n, pattern.m)
    return True, pattern.spec, pattern.density, None


def _lower_weighted(op: Conv2d | Dense, rows: int, mode: str, needs_input_grad: bool
                    ) -> tuple[list[GemmWorkload], list[GemmWorkload]]:
    """Returns (forward workloads, backward workloads) of a weight-bearing op."""
    if isinstance(op, Conv2d):
        groups = op.groups
        in_per_group = op.in_channels // groups
        out_per_group = op.out_channels // groups
        window = op.kernel[0] * op.kernel[1]
        kind = "depthwise" if op.is_depthwise else "conv2d"
    else:
        groups, in_per_group, out_per_group, window, kind = 1, op.in_features, op.out_features, 1, "dense"
    common = dict(layer=op.name, groups=groups, op_kind=kind)
    sparse, spec, density, nm = _sparse_info(op.sparsity, "FF", in_per_group)
    forward = [GemmWorkload(phase="FF", M=rows, N=out_per_group, K=in_per_group * window,
                            sparse=sparse, pattern=spec, density=density, nm=nm, **common)]
    if mode == "infer":
        return forward, []
    backward = []
    if needs_input_grad:
        sparse, spec, density, nm = _sparse_info(op.sparsity, "BP", out_per_group)
        backward.append(GemmWorkload(phase="BP", M=rows, N=in_per_group * window,
                                     K=out_per_group, sparse=sparse, pattern=spec,
                                     density=density, nm=nm, **common))
    backward.append(GemmWorkload(phase="WU", M=in_per_group * window, N=out_per_group,
                                 K=rows, **common))
    return forward, backward


def _lower_batch_matmul(op: BatchMatmul, model: Model, batch_scale: float, mode: str
                        ) -> tuple[list[GemmWorkload], list[GemmWorkload]]:
    out = model.output_spec(op.name)
    a = model.input_specs(op.name)[0]
    m, n, k = out.shape[-2], out.shape[-1], a.shape[-1]
    if len(out.shape) == 2:
        # (M, K) x (K, N): the leading axis is both the batch and M, so one real GEMM
        # whose rows scale with the batch (like a dense layer's), never 0 groups.
        groups, m = 1, max(1, round(m * batch_scale))
    else:
        groups = max(1, round(math.prod(out.shape[:-2]) * batch_scale))
    common = dict(layer=op.name, groups=groups, op_kind="batch_matmul")
    forward = [GemmWorkload(phase="FF", M=m, N=n, K=k, operand="A.B", **common)]
    if mode == "infer":
        return forward, []
    # dA = dC . B^T and dB = A^T . dC: both activation gradients, both BP.
    return forward, [GemmWorkload(phase="BP", M=m, N=k, K=n, operand="dA", **common),
                     GemmWorkload(phase="BP", M=k, N=n, K=m, operand="dB", **common)]


def lower(model: Model, mode: str = "infer", batch: int | None = None) -> list[GemmWorkload]:
    """Returns the ordered GEMMs of one inference pass or one training step.

    Inference: FF of every layer in topological order. Training: all FF, then per
    layer in reverse order its BP (when its input needs a gradient) and WU.
    Pooling, elementwise, norm and reshape ops lower to no GEMM.

    >>> [w.phase for w in lower(tiny_mlp, "train")]      # doctest: +SKIP
    ['FF', 'FF', 'BP', 'WU', 'WU']                        # fc1 fed by the input: no BP
    """
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}'", field="mode", fix="use 'infer' or 'train'")
    model_batch = model.batch
    batch = model_batch if batch is None else batch
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise UserError(f"batch {batch!r} is not a whole number", field="batch", fix="e.g. --batch 32")
    if batch < 1:
        raise UserError(f"batch {batch} must be >= 1", field="batch", fix="use a positive batch")
    # A batch beyond the sane range would make every figure (and the simulator's per-fold
    # work) huge: refused up front with the range, not by running out of memory.
    check_range(batch, limit("batch"), source=None, field="--batch")
    batch_scale = batch / model_batch
    input_names = {op.name for op in model.ops() if isinstance(op, Input)}
    needs_grad = _ops_needing_input_grad(model, input_names)
    forward_all: list[GemmWorkload] = []
    backward_per_layer: list[list[GemmWorkload]] = []
    for op in model.ops():
        if isinstance(op, (Conv2d, Dense)):
            out = model.output_spec(op.name)
            rows = round(math.prod(out.shape[:-1]) * batch_scale) if isinstance(op, Dense) \
                else round(out.shape[0] * batch_scale) * out.shape[2] * out.shape[3]
            forward, backward = _lower_weighted(op, rows, mode, op.name in needs_grad)
        elif isinstance(op, BatchMatmul):
            forward, backward = _lower_batch_matmul(op, model, batch_scale, mode)
        else:
            continue
        forward_all.extend(forward)
        backward_per_layer.append(backward)
    return forward_all + [w for layer in reversed(backward_per_layer) for w in layer]


def _ops_needing_input_grad(model: Model, input_names: set[str]) -> set[str]:
    """Returns the ops whose input has a trainable op upstream (so its gradient is used).

    Embedding tables train too: the first encoder layer after them needs its BP."""
    trainable_upstream: dict[str, bool] = {}
    for op in model.ops():
        sources = model.input_names(op.name)
        trainable_upstream[op.name] = any(
            trainable_upstream[s] or isinstance(model.op(s), (Conv2d, Dense, Embedding))
            for s in sources)
    return {name for name, upstream in trainable_upstream.items() if upstream}


def phase_totals(workloads: list[GemmWorkload]) -> dict[str, dict[str, int]]:
    """Returns {phase: {"macs": performed, "dense_macs": dense}} over ``workloads``."""
    totals = {phase: {"macs": 0, "dense_macs": 0} for phase in PHASES}
    for workload in workloads:
        totals[workload.phase]["macs"] += workload.macs
        totals[workload.phase]["dense_macs"] += workload.dense_macs
    return totals
