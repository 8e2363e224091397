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

Every pattern has ``mask(weights)`` (bool, same shape: which weights a magnitude
pruning keeps), ``check(mask)`` (does a mask fit the pattern), ``compress(weights)``
and ``decompress(compressed)``. The masked tensor is ``apply_mask(weights, mask)``
= ``np.where(mask, weights, 0)``: kept weights keep their exact bits (a kept -0.0
stays -0.0), pruned ones are +0.0; ``decompress(compress(w))`` equals it bit for bit.
(``w * mask`` differs: -0.0 for pruned negative weights, NaN for pruned infinities.)

Magnitude and ties: a pattern keeps the weights (or blocks, groups) of largest
magnitude; among equal magnitudes the lower index wins (row-major flat index for
unstructured, position in the group for N:M, row-major block index for blocks and
groups), so masks are deterministic. -0.0 and +0.0 count as equal magnitudes.
NaN weights are rejected (UserError): they have no magnitude order.

Budgets: Block, Group and Unstructured keep ``round(density * count)`` units
(rounding half up), at least 1 and at most ``count`` (0 when the tensor is empty).
``check`` accepts any mask that fits the pattern's format within its budget: at
most n nonzeros per N:M group, at most the budgeted number of blocks / groups /
weights touched. Masks made by ``mask`` keep exactly the budget.

N:M (NM, and BDWP through its forward and backward NM):
    Groups are m consecutive elements along ``axis`` (any ndarray, any axis,
    negative too). When the axis length L is not a multiple of m, the trailing
    partial group of r = L % m elements counts as padded with zeros to m: it keeps
    min(n, r) weights. Full groups keep exactly n, so the mask's density is
    exactly n/m when L is a multiple of m.
    Compressed (the layout kernels and hardware read): ``axis`` moved last, then
        values   (..., groups, n)   the weights' dtype
        indices  (..., groups, n)   position inside the group, 0..m-1, ascending
                                    within a group; uint8 (m <= 256; wider above)
    with groups = ceil(L / m) and always exactly n slots per group (a kept zero
    weight is stored as 0.0). The partial group's padding slots hold value +0.0
    and the padding positions r, r+1, ... (valid, distinct indices).

Block(rows, cols, density), on the 2-D view (out, prod(rest)) of the weights
(a 1-D tensor is an (out, 1) column, a scalar a 1 x 1 matrix; Group and
Unstructured use the same view):
    blocks of rows x cols tiled from the top-left; edge blocks may be partial.
    Blocks are ranked by L1 norm (sum of |w|, accumulated in float64); the kept
    blocks' every element is in the mask. Compressed, BSR-like:
        values        (kept_blocks, rows, cols)   edge blocks zero-padded
        indices       (kept_blocks,) int32        block-column index (int64 past 2**31)
        row_pointers  (block_rows + 1,) int64     kept blocks of block-row i are
                                                  values[row_pointers[i]:row_pointers[i+1]],
                                                  ascending block column
Group(group_size, density), SparseByteNN-style fine-grained groups:
    a group is ``group_size`` consecutive output channels at one input position
    (one column of the 2-D view: same input channel and kernel tap), sharing one
    keep/prune decision. It lines up with a SIMD register: one broadcast input
    value times one vector load of G weights updates G output accumulators
    (G = 4 float32 fills a 128-bit NEON / wasm SIMD register), and the G rows
    share one index set (KERNELS.md). The last group may be partial when out is
    not a multiple of G. Ranked by L1 norm like blocks (Group(G, d) has the mask
    of Block(G, 1, d)). Compressed:
        values        (kept_groups, group_size)   partial groups zero-padded
        indices       (kept_groups,) int32        input position (column of the 2-D view)
        row_pointers  (ceil(out / G) + 1,) int64  per group of output channels
Unstructured(density): the largest magnitudes over the whole tensor. Compressed
    as CSR on the 2-D view: values (kept,), indices (kept,) int32 column (int64
    past 2**31 columns), and row_pointers (out + 1,) int64; a kept zero weight is
    stored like any other, so there are always exactly ``kept_weights`` entries.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from models.errors import UserError


# ---------------------------------------------------------------- validation at the edge


MAX_GROUP = 1024     # models.inputs LIMITS['group_size']


def _check_nm(n: int, m: int, field: str) -> None:
    if m < 1:
        raise UserError(f"group size m={m} must be >= 1", field=field, fix="use e.g. 2:8")
    if m > MAX_GROUP:          # a group longer than any layer's reduction is a typo
        raise UserError(f"group size m={m if m < 10 ** 12 else 'a huge number'} is over {MAX_GROUP}",
                        field=field, fix="use e.g. 2:8 (m is at most 1024)")
    if not 1 <= n <= m:
        raise UserError(f"n={n} must satisfy 1 <= n <= m={m}", field=field,
                        fix=f"keep at most {m} of every {m}, e.g. {max(1, m // 4)}:{m}")


def _check_density(density: float, field: str) -> None:
    if not (0.0 < density <= 1.0) or math.isnan(density):
        raise UserError(f"density {density} is outside (0, 1]", field=field,
                        fix="give the fraction of weights kept, e.g. 0.2 for 80% sparsity")


def _as_weights(weights) -> np.ndarray:
    """Returns ``weights`` as a floating ndarray (integers become float32); rejects NaN."""
    array = np.asarray(weights)
    if array.dtype.kind in "biu":
        array = array.astype(np.float32)
    if array.dtype.kind != "f":
        raise UserError(f"weights of dtype {array.dtype} have no magnitude order", field="weights",
                        fix="pass real-valued (float) weights")
    if np.isnan(array).any():
        raise UserError("weights contain NaN, which has no magnitude order", field="weights",
                        fix="replace NaN weights (e.g. np.nan_to_num) before pruning")
    return array


def _normal_axis(axis: int, ndim: int) -> int:
    """Returns ``axis`` in 0..ndim-1; raises UserError when the tensor has no such axis."""
    if not -ndim <= axis < ndim:
        raise UserError(f"axis {axis} does not exist in a {ndim}-D tensor", field="sparsity",
                        fix=f"use an axis in {-ndim}..{ndim - 1} (nm:N:M:AXIS)" if ndim
                        else "N:M needs at least a 1-D tensor")
    return axis % ndim


def _keep_count(density: float, count: int) -> int:
    """Returns round-half-up(density * count), clamped to 1..count (0 when count is 0)."""
    if count == 0:
        return 0
    return min(count, max(1, math.floor(density * count + 0.5)))


def _descending_order(magnitudes: np.ndarray) -> np.ndarray:
    """Returns argsort along the last axis, largest first, ties to the lower index."""
    # Stable sort of the negated magnitude; +0.0 added so -0.0 and 0.0 compare as one key.
    return np.argsort(np.negative(magnitudes) + 0.0, axis=-1, kind="stable")


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """Returns (out, prod(rest)): the 2-D view Block, Group and Unstructured work on."""
    if not shape:
        return 1, 1
    return shape[0], math.prod(shape[1:])


def apply_mask(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Returns the masked weights: kept ones bit for bit, pruned ones +0.0.

    >>> apply_mask(np.array([-1.0, 2.0]), np.array([False, True])).tolist()
    [0.0, 2.0]
    """
    weights = np.asarray(weights)
    return np.where(mask, weights, np.zeros((), dtype=weights.dtype))


def _expect(compressed: "CompressedWeights", spec: str) -> None:
    if compressed.pattern != spec:
        raise UserError(f"weights compressed as '{compressed.pattern}' cannot be decompressed as '{spec}'",
                        field="sparsity", fix=f"decompress with parse_pattern('{compressed.pattern}')")


# ---------------------------------------------------------------- compressed form


@dataclass(frozen=True)
class CompressedWeights:
    """Values + indices of the kept weights, enough to rebuild the masked tensor.

    ``values`` and ``indices`` are laid out as each pattern documents; ``shape`` is
    the dense shape and ``pattern`` the spec that produced them. ``row_pointers`` is
    the CSR/BSR row-pointer array (None for N:M, whose groups are implicit)."""
    pattern: str
    shape: tuple[int, ...]
    values: np.ndarray
    indices: np.ndarray
    row_pointers: np.ndarray | None = None


# ---------------------------------------------------------------- N:M machinery


def _nm_groups(array: np.ndarray, m: int, axis: int, pad) -> np.ndarray:
    """Returns ``array`` with ``axis`` moved last, padded with ``pad`` to whole groups,
    reshaped to (..., groups, m)."""
    moved = np.moveaxis(array, axis, -1)
    length = moved.shape[-1]
    groups = -(-length // m)
    padded = np.full(moved.shape[:-1] + (groups * m,), pad, dtype=array.dtype)
    padded[..., :length] = moved
    return padded.reshape(moved.shape[:-1] + (groups, m))


def _nm_kept_positions(weights: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    """Returns (..., groups, n) ascending positions that N:M magnitude pruning keeps.

    Padding of a partial group ranks below every real weight, so it is picked only
    when the group has fewer than n real weights."""
    magnitudes = _nm_groups(np.abs(weights), m, axis, -np.inf)
    return np.sort(_descending_order(magnitudes)[..., :n], axis=-1)


def _nm_ungroup(grouped: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Inverse of ``_nm_groups``: drops the padding and moves the last axis back."""
    flat = grouped.reshape(grouped.shape[:-2] + (grouped.shape[-2] * grouped.shape[-1],))
    flat = flat[..., :length]
    return np.moveaxis(flat, -1, axis)


def _index_dtype(m: int) -> np.dtype:
    """Returns uint8 for positions 0..m-1 when m <= 256, the smallest wider type above."""
    return np.min_scalar_type(max(m - 1, 0))


# ---------------------------------------------------------------- block machinery


def _block_norms(weights: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Returns the L1 norm (float64) of each rows x cols block of the 2-D view."""
    out, inner = _matrix_shape(weights.shape)
    block_rows, block_cols = -(-out // rows), -(-inner // cols)
    padded = np.zeros((block_rows * rows, block_cols * cols))
    padded[:out, :inner] = np.abs(weights.reshape(out, inner))
    return padded.reshape(block_rows, rows, block_cols, cols).sum(axis=(1, 3))


def _keep_blocks(weights: np.ndarray, rows: int, cols: int, density: float) -> np.ndarray:
    """Returns the (block_rows, block_cols) bool grid of blocks magnitude pruning keeps."""
    norms = _block_norms(weights, rows, cols)
    keep = _keep_count(density, norms.size)
    kept = np.zeros(norms.size, dtype=bool)
    kept[_descending_order(norms.ravel())[:keep]] = True
    return kept.reshape(norms.shape)


def _expand_blocks(grid: np.ndarray, rows: int, cols: int, shape: tuple[int, ...]) -> np.ndarray:
    """Returns the element mask of ``shape`` covered by the kept blocks of ``grid``."""
    out, inner = _matrix_shape(shape)
    full = np.repeat(np.repeat(grid, rows, axis=0), cols, axis=1)
    return full[:out, :inner].reshape(shape)


def _touched_blocks(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Returns the (block_rows, block_cols) grid of blocks holding any True of ``mask``."""
    out, inner = _matrix_shape(np.shape(mask))
    block_rows, block_cols = -(-out // rows), -(-inner // cols)
    padded = np.zeros((block_rows * rows, block_cols * cols), dtype=bool)
    padded[:out, :inner] = np.asarray(mask, dtype=bool).reshape(out, inner)
    return padded.reshape(block_rows, rows, block_cols, cols).any(axis=(1, 3))


def _row_pointers(kept_per_row: np.ndarray) -> np.ndarray:
    """Returns the CSR row-pointer array (rows + 1,) int64 from per-row counts."""
    return np.concatenate([[0], np.cumsum(kept_per_row, dtype=np.int64)]).astype(np.int64)


def _check_pointers(row_pointers: np.ndarray | None, rows: int, values: int, indices: int) -> None:
    """Raises ValueError when CSR/BSR parts do not fit together (a corrupted CompressedWeights)."""
    if (row_pointers is None or np.shape(row_pointers) != (rows + 1,) or values != indices
            or row_pointers[0] != 0 or row_pointers[-1] != values
            or (np.diff(row_pointers) < 0).any()):
        raise ValueError(f"row pointers {row_pointers!r} do not fit {rows} rows and "
                         f"{values} values / {indices} indices")


def _column_dtype(columns: int) -> np.dtype:
    return np.dtype(np.int32 if columns < 2**31 else np.int64)


def _bsr_compress(weights: np.ndarray, grid: np.ndarray, rows: int, cols: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (block values, block-column indices, block-row pointers) of the kept blocks."""
    out, inner = _matrix_shape(weights.shape)
    block_rows, block_cols = grid.shape
    padded = np.zeros((block_rows * rows, block_cols * cols), dtype=weights.dtype)
    padded[:out, :inner] = weights.reshape(out, inner)
    tiles = padded.reshape(block_rows, rows, block_cols, cols).transpose(0, 2, 1, 3)
    _, block_columns = np.nonzero(grid)  # row-major: by block row, then ascending column
    return (tiles[grid], block_columns.astype(_column_dtype(block_cols)),
            _row_pointers(grid.sum(axis=1)))


def _bsr_decompress(values: np.ndarray, indices: np.ndarray, row_pointers: np.ndarray,
                    rows: int, cols: int, shape: tuple[int, ...]) -> np.ndarray:
    """Returns the dense tensor of ``shape`` from BSR parts (inverse of ``_bsr_compress``)."""
    out, inner = _matrix_shape(shape)
    block_rows, block_cols = -(-out // rows), -(-inner // cols)
    _check_pointers(row_pointers, block_rows, len(values), len(indices))
    tiles = np.zeros((block_rows, block_cols, rows, cols), dtype=values.dtype)
    block_of_value = np.repeat(np.arange(block_rows), np.diff(row_pointers))
    tiles[block_of_value, indices.astype(np.intp)] = values
    dense = tiles.transpose(0, 2, 1, 3).reshape(block_rows * rows, block_cols * cols)
    return dense[:out, :inner].reshape(shape)


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
        """Returns the bool mask keeping the n largest |w| of each group (ties: lower position).

        >>> NM(1, 2, axis=0).mask(np.array([1.0, -3.0, 2.0, 2.0, 5.0])).tolist()
        [False, True, True, False, True]
        """
        weights = _as_weights(weights)
        axis = _normal_axis(self.axis, weights.ndim)
        positions = _nm_kept_positions(weights, self.n, self.m, axis)
        grouped = np.zeros(positions.shape[:-1] + (self.m,), dtype=bool)
        np.put_along_axis(grouped, positions, True, axis=-1)
        return _nm_ungroup(grouped, weights.shape[axis], axis)

    def check(self, mask: np.ndarray) -> bool:
        """Returns whether no group of m along ``axis`` holds more than n True (nonzero) entries."""
        mask = np.asarray(mask, dtype=bool)
        axis = _normal_axis(self.axis, mask.ndim)
        counts = _nm_groups(mask, self.m, axis, False).sum(axis=-1)
        return bool((counts <= self.n).all())

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        """Returns values and uint8 positions (..., groups, n) with ``axis`` moved last.

        >>> packed = NM(1, 4, axis=0).compress(np.array([0, 3, 0, 0, 5, 0], np.float32))
        >>> packed.values.tolist(), packed.indices.tolist()
        ([[3.0], [5.0]], [[1], [0]])
        """
        weights = _as_weights(weights)
        axis = _normal_axis(self.axis, weights.ndim)
        positions = _nm_kept_positions(weights, self.n, self.m, axis)
        values = np.take_along_axis(_nm_groups(weights, self.m, axis, 0), positions, axis=-1)
        return CompressedWeights(self.spec, tuple(weights.shape), values,
                                 positions.astype(_index_dtype(self.m)))

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        """Returns the dense masked tensor that ``compress`` packed."""
        _expect(compressed, self.spec)
        shape = tuple(compressed.shape)
        axis = _normal_axis(self.axis, len(shape))
        length = shape[axis]
        moved = tuple(np.delete(np.array(shape, dtype=np.int64), axis)) + (-(-length // self.m),)
        expected = tuple(int(side) for side in moved) + (self.n,)
        if compressed.values.shape != expected or compressed.indices.shape != expected:
            raise ValueError(f"{self.spec}: values {compressed.values.shape} / indices "
                             f"{compressed.indices.shape} do not match {expected} for shape {shape}")
        grouped = np.zeros(expected[:-1] + (self.m,), dtype=compressed.values.dtype)
        np.put_along_axis(grouped, compressed.indices.astype(np.intp), compressed.values, axis=-1)
        return _nm_ungroup(grouped, length, axis)


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

    def kept_blocks(self, shape: tuple[int, ...]) -> int:
        """Returns how many blocks a mask of ``shape`` keeps (its budget)."""
        out, inner = _matrix_shape(tuple(shape))
        return _keep_count(self.density, -(-out // self.rows) * -(-inner // self.cols))

    def mask(self, weights: np.ndarray) -> np.ndarray:
        """Returns the mask keeping the blocks of largest L1 norm (ties: lower block index).

        >>> Block(1, 2, 0.5).mask(np.array([[1.0, 1.0, 0.0, 3.0]])).tolist()
        [[False, False, True, True]]
        """
        weights = _as_weights(weights)
        grid = _keep_blocks(weights, self.rows, self.cols, self.density)
        return _expand_blocks(grid, self.rows, self.cols, weights.shape)

    def check(self, mask: np.ndarray) -> bool:
        """Returns whether the mask's True entries lie in at most ``kept_blocks`` blocks."""
        touched = _touched_blocks(mask, self.rows, self.cols)
        return int(touched.sum()) <= self.kept_blocks(np.shape(mask))

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        """Returns BSR parts: values (blocks, rows, cols), block columns, block-row pointers."""
        weights = _as_weights(weights)
        grid = _keep_blocks(weights, self.rows, self.cols, self.density)
        values, indices, pointers = _bsr_compress(weights, grid, self.rows, self.cols)
        return CompressedWeights(self.spec, tuple(weights.shape), values, indices, pointers)

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        """Returns the dense masked tensor that ``compress`` packed."""
        _expect(compressed, self.spec)
        return _bsr_decompress(compressed.values, compressed.indices, compressed.row_pointers,
                               self.rows, self.cols, tuple(compressed.shape))


@dataclass(frozen=True)
class Group:
    """SparseByteNN's fine-grained group sparsity: ``group_size`` weights that share one
    keep/prune decision (consecutive output channels at one input position)."""
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

    @property
    def _blocks(self) -> Block:
        # A group is a group_size x 1 block of the 2-D view: same ranking, same budget.
        return Block(self.group_size, 1, self.density)

    def kept_groups(self, shape: tuple[int, ...]) -> int:
        """Returns how many groups a mask of ``shape`` keeps (its budget)."""
        return self._blocks.kept_blocks(shape)

    def mask(self, weights: np.ndarray) -> np.ndarray:
        """Returns the mask keeping the groups of largest L1 norm (ties: lower group index).

        >>> Group(2, 0.5).mask(np.array([[1.0, 4.0], [1.0, -4.0]])).tolist()
        [[False, True], [False, True]]
        """
        return self._blocks.mask(weights)

    def check(self, mask: np.ndarray) -> bool:
        """Returns whether the mask's True entries lie in at most ``kept_groups`` groups."""
        return self._blocks.check(mask)

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        """Returns values (groups, group_size), input positions, output-group pointers."""
        packed = self._blocks.compress(weights)
        return CompressedWeights(self.spec, packed.shape, packed.values[..., 0], packed.indices,
                                 packed.row_pointers)

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        """Returns the dense masked tensor that ``compress`` packed."""
        _expect(compressed, self.spec)
        return _bsr_decompress(compressed.values[..., None], compressed.indices,
                               compressed.row_pointers, self.group_size, 1,
                               tuple(compressed.shape))


@dataclass(frozen=True)
class Unstructured:
    """Any mask keeping ``density`` of the weights (the largest magnitudes)."""
    density: float

    def __post_init__(self):
        _check_density(self.density, "sparsity")

    @property
    def spec(self) -> str:
        return f"unstructured:{self.density:g}"

    def kept_weights(self, shape: tuple[int, ...]) -> int:
        """Returns how many weights a mask of ``shape`` keeps (its budget)."""
        return _keep_count(self.density, math.prod(shape))

    def mask(self, weights: np.ndarray) -> np.ndarray:
        """Returns the mask keeping the largest |w| overall (ties: lower flat index).

        >>> Unstructured(0.5).mask(np.array([2.0, -2.0, 1.0, 2.0])).tolist()
        [True, True, False, False]
        """
        weights = _as_weights(weights)
        keep = self.kept_weights(weights.shape)
        flat = np.zeros(weights.size, dtype=bool)
        flat[_descending_order(np.abs(weights).ravel())[:keep]] = True
        return flat.reshape(weights.shape)

    def check(self, mask: np.ndarray) -> bool:
        """Returns whether the mask keeps at most ``kept_weights`` entries."""
        return int(np.count_nonzero(mask)) <= self.kept_weights(np.shape(mask))

    def compress(self, weights: np.ndarray) -> CompressedWeights:
        """Returns CSR parts of the 2-D view: values, column indices, row pointers."""
        weights = _as_weights(weights)
        out, inner = _matrix_shape(weights.shape)
        kept = self.mask(weights).reshape(out, inner)
        _, columns = np.nonzero(kept)
        return CompressedWeights(self.spec, tuple(weights.shape), weights.reshape(out, inner)[kept],
                                 columns.astype(_column_dtype(inner)), _row_pointers(kept.sum(axis=1)))

    def decompress(self, compressed: CompressedWeights) -> np.ndarray:
        """Returns the dense masked tensor that ``compress`` packed."""
        _expect(compressed, self.spec)
        shape = tuple(compressed.shape)
        out, inner = _matrix_shape(shape)
        _check_pointers(compressed.row_pointers, out, len(compressed.values),
                        len(compressed.indices))
        dense = np.zeros((out, inner), dtype=compressed.values.dtype)
        rows = np.repeat(np.arange(out), np.diff(compressed.row_pointers))
        dense[rows, compressed.indices.astype(np.intp)] = compressed.values
        return dense.reshape(shape)

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
