"""Which way a GEMM meets the array, and where its special operands sit then.

A lowered GEMM C = A.B (``models.lowering``: A is M x K, B is K x N) can also run as
C^T = B^T.A^T: M and N swap and the weights feed the other side of the array. SAT's
interleave picks, phase by phase, whichever finishes sooner (FF, BP and WU of one
layer have very different M, N, K); the mapper tries both.

Two operands are special: the N:M sparse weights (compressed, with indices) and the
im2col matrix of a convolution, which the buffers hold as the raw feature map (the
array's feeders expand it, as SCALE-Sim's address traces do).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.lowering import GemmWorkload

# Which operand of each phase is an im2col matrix (FF and WU read Xcol, BP writes dXcol).
IM2COL_ROLE = {"FF": "A", "WU": "A", "BP": "C"}


@dataclass(frozen=True)
class Orientation:
    """Which way a GEMM meets the array: C = A.B as lowered, or C^T = B^T.A^T (M and N swap).

    ``sparse_role``: the operand holding N:M weights ('A' once transposed, else 'B').
    ``expanded_role``: the im2col operand (A or B) when the buffers hold the raw
    feature map instead (``reuse`` != 1); None otherwise."""
    transposed: bool
    M: int
    N: int
    sparse_role: str | None
    expanded_role: str | None

    @property
    def name(self) -> str:
        return "NxM" if self.transposed else "MxN"


def orient(workload: GemmWorkload, transposed: bool, reuse: float = 1.0) -> Orientation:
    """Returns the GEMM's orientation: its array-facing M, N and where the special operands sit.

    >>> fc = GemmWorkload("fc", "FF", M=4, N=10, K=64, sparse=True, nm=(2, 8))
    >>> orient(fc, transposed=True)
    Orientation(transposed=True, M=10, N=4, sparse_role='A', expanded_role=None)
    """
    sparse_role = ("A" if transposed else "B") if workload.sparse else None
    expanded_role = IM2COL_ROLE.get(workload.phase) if reuse != 1.0 else None
    if transposed and expanded_role in ("A", "B"):
        expanded_role = "B" if expanded_role == "A" else "A"
    M, N = (workload.N, workload.M) if transposed else (workload.M, workload.N)
    return Orientation(transposed, M, N, sparse_role, expanded_role)


def im2col_reuse(model) -> dict[str, float]:
    """Returns {conv layer: im2col elements per unique feature-map element}.

    An im2col matrix repeats each input pixel about R*S/stride^2 times; the buffers
    hold the feature map itself and the array's feeders expand it (as SCALE-Sim's
    address traces do), so DRAM moves the unique elements:
        reuse = (Ho * Wo * R * S) / (Hin * Win)
    (below 1 for strided 1x1 convolutions, which skip pixels)."""
    from models.ir import Conv2d
    reuse = {}
    for op in model.ops():
        if isinstance(op, Conv2d):
            _, _, height_in, width_in = model.input_specs(op.name)[0].shape
            _, _, height_out, width_out = model.output_spec(op.name).shape
            reuse[op.name] = (height_out * width_out * op.kernel[0] * op.kernel[1]) / (
                height_in * width_in)
    return reuse
