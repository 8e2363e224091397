"""Pack masked dense weights into each kernel's layout, and decode them back.

The pattern (which weights survive) is chosen elsewhere (models/patterns.py, or
``mask_nm_shared`` below for the row-block variant); here a masked dense matrix
``w`` (cout x k; zeros are pruned weights) becomes exactly what a kernel reads.

N:M (templates/nmgemm.c.j2):
    values  float32 [cout_pad, groups, n]   cout_pad = cout rounded up to mr; pad rows 0
    indices uint8   [cout_pad (or cout_pad/mr when shared), groups, n], position inside the group
A group with fewer than n nonzeros is filled with zero-valued weights at unused positions.
``pack_index_bits`` stores indices in ceil(log2 m) bits each (the compact storage form).

Block sparse, XNNPACK-style (templates/spmm.c.j2): see ``pack_block_sparse``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.errors import UserError


@dataclass(frozen=True)
class NmPacked:
    """N:M weights in the nmgemm layout (see the module docstring)."""
    n: int
    m: int
    mr: int
    shared: bool
    cout: int
    k: int
    values: np.ndarray
    indices: np.ndarray

    @property
    def groups(self) -> int:
        return self.values.shape[1]


def _grouped(w: np.ndarray, m: int, mr: int) -> np.ndarray:
    """Returns w zero-padded to (cout_pad, groups, m)."""
    cout, k = w.shape
    groups = -(-k // m)
    cout_pad = -(-cout // mr) * mr
    padded = np.zeros((cout_pad, groups * m), dtype=np.float32)
    padded[:cout, :k] = w
    return padded.reshape(cout_pad, groups, m)


def _positions(keep: np.ndarray, n: int, what: str) -> np.ndarray:
    """Returns, for each group in ``keep`` (..., m) bool, n positions: kept ones first (ascending)."""
    counts = keep.sum(axis=-1)
    if counts.size and counts.max() > n:
        raise UserError(f"{what}: a group keeps {int(counts.max())} weights, more than n={n}",
                        field="sparsity", fix="mask the weights with the same n:m before packing")
    if n == keep.shape[-1]:  # dense (n == m): kernels read position j at slot j, no indices
        return np.broadcast_to(np.arange(n, dtype=np.uint8), keep.shape).copy()
    order = np.argsort(~keep, axis=-1, kind="stable")
    return order[..., :n].astype(np.uint8)


def pack_nm(w: np.ndarray, n: int, m: int, mr: int = 1, shared: bool = False) -> NmPacked:
    """Returns the nmgemm layout of the masked matrix ``w`` (cout x k).

    >>> packed = pack_nm(np.array([[0, 3, 0, 0, 5, 0, 0, 0]], np.float32), 1, 4)
    >>> packed.values.ravel().tolist(), packed.indices.ravel().tolist()
    ([3.0, 5.0], [1, 0])
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise UserError(f"weights must be 2-D (cout x k), got shape {w.shape}", field="weights",
                        fix="reshape conv weights to (cout, cin*r*s)")
    grouped = _grouped(w, m, mr)
    cout_pad, groups, _ = grouped.shape
    if shared:
        block_keep = (grouped.reshape(cout_pad // mr, mr, groups, m) != 0).any(axis=1)
        indices = _positions(block_keep, n, f"{n}:{m} shared by {mr} rows")
        per_row = np.repeat(indices, mr, axis=0)
    else:
        indices = _positions(grouped != 0, n, f"{n}:{m}")
        per_row = indices
    values = np.take_along_axis(grouped, per_row.astype(np.intp), axis=-1)
    return NmPacked(n, m, mr, shared, w.shape[0], w.shape[1],
                    np.ascontiguousarray(values), np.ascontiguousarray(indices))


def unpack_nm(packed: NmPacked) -> np.ndarray:
    """Returns the dense (cout x k) matrix the packed weights encode."""
    cout_pad, groups, n = packed.values.shape
    per_row = np.repeat(packed.indices, packed.mr, axis=0) if packed.shared else packed.indices
    dense = np.zeros((cout_pad, groups, packed.m), dtype=np.float32)
    # np.add.at, not assignment: a zero-valued filler may repeat a position
    rows, grps, _ = np.indices(per_row.shape)
    np.add.at(dense, (rows, grps, per_row.astype(np.intp)), packed.values)
    return dense.reshape(cout_pad, groups * packed.m)[:packed.cout, :packed.k]


def index_bits(m: int) -> int:
    """Bits per N:M index: ceil(log2 m), at least 1."""
    return max(1, math.ceil(math.log2(m)))


def pack_index_bits(indices: np.ndarray, m: int) -> np.ndarray:
    """Returns the indices packed little-endian in ``index_bits(m)`` bits each (uint8 bytes)."""
    bits = index_bits(m)
    flat = indices.astype(np.uint8).ravel()
    bit_planes = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(bit_planes.ravel(), bitorder="little")


def unpack_index_bits(packed: np.ndarray, m: int, count: int) -> np.ndarray:
    """Inverse of ``pack_index_bits`` for ``count`` indices."""
    bits = index_bits(m)
    planes = np.unpackbits(packed, bitorder="little")[:count * bits].reshape(count, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)


def mask_nm_shared(w: np.ndarray, n: int, m: int, rows: int) -> np.ndarray:
    """Returns w with, in every block of ``rows`` output rows and group of ``m`` along k,
    only the ``n`` positions of largest L2 norm over the block kept (the same for all rows).

    This is N:M applied to ``rows`` x 1 blocks: a block pattern inside the N:M bound, which
    lets a kernel load each activation row once for ``rows`` outputs."""
    w = np.asarray(w, dtype=np.float32)
    cout, k = w.shape
    grouped = _grouped(w, m, rows)
    cout_pad, groups, _ = grouped.shape
    norms = np.sqrt((grouped.reshape(cout_pad // rows, rows, groups, m) ** 2).sum(axis=1))
    if k % m:  # positions past k do not exist: never keep them
        norms[:, -1, k % m:] = -1.0
    keep_pos = np.argsort(-norms, axis=-1, kind="stable")[..., :n]
    keep = np.zeros_like(norms, dtype=bool)
    np.put_along_axis(keep, keep_pos, True, axis=-1)
    mask = np.repeat(keep, rows, axis=0).reshape(cout_pad, groups * m)[:cout, :k]
    return np.where(mask, w, 0.0).astype(np.float32)


def mask_nm(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Returns w with the n largest-magnitude weights of every group of m along k kept."""
    return mask_nm_shared(w, n, m, rows=1)


# ---------------------------------------------------------------- XNNPACK-style block sparse


@dataclass(frozen=True)
class BlockSparsePacked:
    """Block-sparse weights for the spmm kernel (NR output channels per block).

    values  float32: per block, NR biases, then NR values per nonzero input channel
    nnz     int32 [blocks]: nonzero input channels of each block
    diffs   int32 [total nnz]: byte increment of the input pointer after each nonzero,
            the last one of a block leading to the first of the next (XNNPACK's "dmap")
    first_offset_bytes: offset of the very first nonzero's input row
    """
    nr: int
    cout: int
    cin: int
    pixels: int
    values: np.ndarray
    nnz: np.ndarray
    diffs: np.ndarray
    first_offset_bytes: int


def pack_block_sparse(w: np.ndarray, nr: int, pixels: int, bias: np.ndarray | None = None
                      ) -> BlockSparsePacked:
    """Returns the block-sparse layout of ``w`` (cout x cin); an input channel is kept in a
    block when any of its ``nr`` weights is nonzero. ``pixels`` (the CHW row length) sets the
    byte stride the diffs encode."""
    w = np.asarray(w, dtype=np.float32)
    cout, cin = w.shape
    blocks = -(-cout // nr)
    padded = np.zeros((blocks * nr, cin), dtype=np.float32)
    padded[:cout] = w
    bias_pad = np.zeros(blocks * nr, dtype=np.float32)
    if bias is not None:
        bias_pad[:cout] = bias
    values, nnz, offsets = [], [], []
    for block in range(blocks):
        rows = padded[block * nr:(block + 1) * nr]
        channels = np.flatnonzero((rows != 0).any(axis=0))
        values.append(bias_pad[block * nr:(block + 1) * nr])
        values.append(rows[:, channels].T.ravel())
        nnz.append(len(channels))
        offsets.extend(int(c) * pixels * 4 for c in channels)
    offsets_arr = np.array(offsets, dtype=np.int64)
    diffs = np.zeros(len(offsets_arr), dtype=np.int32)
    if len(offsets_arr):
        diffs[:-1] = np.diff(offsets_arr)
    return BlockSparsePacked(nr, cout, cin, pixels, np.concatenate(values).astype(np.float32),
                             np.array(nnz, dtype=np.int32), diffs,
                             int(offsets_arr[0]) if len(offsets_arr) else 0)


def unpack_block_sparse(packed: BlockSparsePacked) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dense weights cout x cin, bias) decoded by walking the diffs like the kernel."""
    nr, pixels = packed.nr, packed.pixels
    blocks = len(packed.nnz)
    dense = np.zeros((blocks * nr, packed.cin), dtype=np.float32)
    bias = np.zeros(blocks * nr, dtype=np.float32)
    offset, cursor, position = packed.first_offset_bytes, 0, 0
    for block in range(blocks):
        bias[block * nr:(block + 1) * nr] = packed.values[cursor:cursor + nr]
        cursor += nr
        for _ in range(packed.nnz[block]):
            channel = offset // (pixels * 4)
            dense[block * nr:(block + 1) * nr, channel] = packed.values[cursor:cursor + nr]
            cursor += nr
            offset += int(packed.diffs[position])
            position += 1
    return dense[:packed.cout], bias[:packed.cout]
