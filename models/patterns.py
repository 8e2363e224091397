"""Sparsity patterns: magnitude masks, mask checks, compressed formats.

Weights follow the IR's layout: (out_channels, in_channels, R, S) for
convolutions and (out_features, in_features) for dense layers. Axis 1 is
therefore the input-channel (reduction) axis and axis 0 the output-channel axis.

Spec strings (what the CLI and JSON take):
    dense                  no pattern
    N:M                    BDWP(N, M): N:M along input channels for the forward
                           pass and along output channels for the backward pass
                           (SAT's method; inference uses the forward mask)
    nm:N:M[:AXIS]          plain N:M along AXIS (default 1, the reduction axis)
    block:RxC:DENSITY      R x C blocks kept or pruned together (XNNPACK's 1x4)
    group:G:DENSITY        SparseByteNN-style fine-grained groups of G weights
    unstructured:DENSITY   any mask with that fraction of weights kept
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from models.errors import UserError


# ---------------------------------------------------------------- validation at the edge


def _check_nm(n: int, m: int, field: str) -> None:
    if m < 1:
        raise UserError(f"group size m={m} must be >= 1", field=field, fix="use e.g. 2:8")
    if not 1 <= n <= m:
        raise UserError(f"n={n} must satisfy 1 <= n <= m={m}", field=field,
                        fix=f"keep at most {m} of every {m}, e.g. {max(1, m // 4)}:{m}")


def _check_density(density: float, field: str) -> None:
    if not (0.0 < density <= 1.0) or math.isnan(density):
        raise UserError(f"density {density} is outside (0, 1]", field=field,
                        fix="give the fraction of weights kept, e.g. 0.2 for 80% sparsity")


# ---------------------------------------------------------------- compressed form


@dataclass(frozen=True)
class CompressedWeights:
    """Values + indices of the kept weights, enough to rebuild the masked tensor.

    ``values`` and ``indices`` are laid out as each pattern documents; ``shape`` is
    the dense shape and ``pattern`` the spec that produced them."""
    pattern: str
    shape: tuple[int, ...]
    values: np.ndarray
    indices: np.ndarray


# ---------------------------------------------------------------- patterns


@dataclass(frozen=True)
class NM:
    """At most ``n`` nonzeros in every group of ``m`` consecutive weights along ``axis``."""
    n: int
    m: int
    axis: int = 1

    def __post_init__(self):
        _check_nm(self.n, self.m, "sparsity")

    @property
    def spec(self) -> str:
        return f"nm:{self.n}:{self.m}" + ("" if self.axis == 1 else f":{self.axis}")

    @property
    def density(self) -> float:
        return self.n / self.m

    def mask(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check(self, mask: np.ndarray) -> bool:
        raise NotImplementedError

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        raise NotImplementedError

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class BDWP:
    """SAT's bidirectional pruning: N:M along input channels (forward) and along
    output channels (backward), both from the dense weights' magnitudes."""
    n: int
    m: int

    def __post_init__(self):
        _check_nm(self.n, self.m, "sparsity")

    @property
    def spec(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def forward(self) -> NM:
        return NM(self.n, self.m, axis=1)

    @property
    def backward(self) -> NM:
        return NM(self.n, self.m, axis=0)

    def masks(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (forward mask, backward mask)."""
        return self.forward.mask(weights), self.backward.mask(weights)

    # Inference and kernels see the forward mask.
    def mask(self, weights: np.ndarray) -> np.ndarray:
        return self.forward.mask(weights)

    def check(self, mask: np.ndarray) -> bool:
        return self.forward.check(mask)

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        return self.forward.compress(weights)

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        return self.forward.decompress(compressed)


@dataclass(frozen=True)
class Block:
    """``rows`` x ``cols`` blocks of the (out, in*R*S) weight matrix kept or pruned together."""
    rows: int
    cols: int
    density: float

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise UserError(f"block {self.rows}x{self.cols} must be at least 1x1",
                            field="sparsity", fix="use e.g. block:1x4:0.2")
        _check_density(self.density, "sparsity")

    @property
    def spec(self) -> str:
        return f"block:{self.rows}x{self.cols}:{self.density:g}"

    def mask(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check(self, mask: np.ndarray) -> bool:
        raise NotImplementedError

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        raise NotImplementedError

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Group:
    """SparseByteNN's fine-grained group sparsity: ``group_size`` weights that share one
    keep/prune decision."""
    group_size: int
    density: float

    def __post_init__(self):
        if self.group_size < 1:
            raise UserError(f"group size {self.group_size} must be >= 1", field="sparsity",
                            fix="use e.g. group:4:0.7")
        _check_density(self.density, "sparsity")

    @property
    def spec(self) -> str:
        return f"group:{self.group_size}:{self.density:g}"

    def mask(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check(self, mask: np.ndarray) -> bool:
        raise NotImplementedError

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        raise NotImplementedError

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Unstructured:
    """Any mask keeping ``density`` of the weights (the largest magnitudes)."""
    density: float

    def __post_init__(self):
        _check_density(self.density, "sparsity")

    @property
    def spec(self) -> str:
        return f"unstructured:{self.density:g}"

    def mask(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check(self, mask: np.ndarray) -> bool:
        raise NotImplementedError

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        raise NotImplementedError

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        raise NotImplementedError


SparsityPattern = NM | BDWP | Block | Group | Unstructured

PATTERN_HELP = ("dense, N:M (BDWP), nm:N:M[:AXIS], block:RxC:DENSITY, group:G:DENSITY, "
                "unstructured:DENSITY")


def parse_pattern(text: str, field: str = "sparsity") -> SparsityPattern | None:
    """Returns the pattern a spec string names (None for 'dense')."""
    spec = str(text).strip().lower()
    try:
        if spec in ("dense", "none", ""):
            return None
        if re.fullmatch(r"-?\d+:-?\d+", spec):
            n, m = (int(v) for v in spec.split(":"))
            return BDWP(n, m)
        parts = spec.split(":")
        if parts[0] == "nm" and len(parts) in (3, 4):
            return NM(int(parts[1]), int(parts[2]), int(parts[3]) if len(parts) == 4 else 1)
        if parts[0] == "bdwp" and len(parts) == 3:
            return BDWP(int(parts[1]), int(parts[2]))
        if parts[0] == "block" and len(parts) == 3 and "x" in parts[1]:
            rows, cols = (int(v) for v in parts[1].split("x"))
            return Block(rows, cols, float(parts[2]))
        if parts[0] == "group" and len(parts) == 3:
            return Group(int(parts[1]), float(parts[2]))
        if parts[0] == "unstructured" and len(parts) == 2:
            return Unstructured(float(parts[1]))
    except ValueError:
        pass
    except UserError as error:
        raise UserError(f"'{text}': {error.message}", field=field, fix=error.fix) from None
    raise UserError(f"cannot read sparsity '{text}'", field=field, fix=f"use {PATTERN_HELP}")


def nm_of(pattern: SparsityPattern | None) -> tuple[int, int] | None:
    """Returns (n, m) for N:M-structured patterns, None otherwise."""
    if isinstance(pattern, (NM, BDWP)):
        return (pattern.n, pattern.m)
    return None
