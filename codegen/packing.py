"""Pack masked dense weights into each kernel's layout, and decode them back.

The pattern (which weights survive) is chosen elsewhere (models/patterns.py, or
``mask_nm_shared`` below for the row-block variant); here a masked dense matrix
``w`` (cout x k; zeros are pruned weights) becomes exactly what a kernel reads.

N:M (templates/nmgemm.c.j2), one stream per tile of mr output rows:
    values  float32 [cout_pad/mr, groups, mr, n]   cout_pad = cout rounded up to mr; pad rows 0
    indices uint8   [cout_pad/mr, groups, mr, n] (shared: [cout_pad/mr, groups, n]),
            the position inside the group
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
    """N:M weights in the nmgemm layout (see the module docstring); ``row_values`` and
    ``row_indices`` give the same data per output row ([cout_pad, groups, n])."""
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

    @property
    def row_values(self) -> np.ndarray:
        tiles, groups, mr, n = self.values.shape
        return self.values.transpose(0, 2, 1, 3).reshape(tiles * mr, groups, n)

    @property
    def row_indices(self) -> np.ndarray:
        """[cout_pad, groups, n] per-row indices (a shared set repeated for its rows)."""
        if self.shared:
            return np.repeat(self.indices, self.mr, axis=0)
        tiles, groups, mr, n = self.indices.shape
        return self.indices.transpose(0, 2, 1, 3).reshape(tiles * mr, groups, n)


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

    def tiled(per_row_array: np.ndarray) -> np.ndarray:  # [rows, g, n] -> [tiles, g, mr, n]
        return np.ascontiguousarray(
            per_row_array.reshape(cout_pad // mr, mr, groups, n).transpose(0, 2, 1, 3))

    return NmPacked(n, m, mr, shared, w.shape[0], w.shape[1], tiled(values),
                    np.ascontiguousarray(indices) if shared else tiled(indices))


def unpack_nm(packed: NmPacked) -> np.ndarray:
    """Returns the dense (cout x k) matrix the packed weights encode."""
    values, per_row = packed.row_values, packed.row_indices
    cout_pad, groups, n = values.shape
    dense = np.zeros((cout_pad, groups, packed.m), dtype=np.float32)
    # np.add.at, not assignment: a zero-valued filler may repeat a position
    rows, grps, _ = np.indices(per_row.shape)
    np.add.at(dense, (rows, grps, per_row.astype(np.intp)), values)
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
    """Block-sparse weights for the spmm kernel: blocks of ``nr`` output x ``kb`` input channels.

    values  float32: per block row (nr output channels): nr biases, then nr*kb values per kept
            block, ordered [input channel in block][output channel in block]
    nnz     int32 [block rows]: kept blocks of each block row
    diffs   int32 [1 + total kept]: diffs[0] = byte offset of the first kept block's first input
            row; then, after each kept block, the byte step to the next one's (XNNPACK's dmap;
            the last step of a block row leads to the first kept block of the next row)
    """
    nr: int
    kb: int
    cout: int
    cin: int
    pixels: int
    values: np.ndarray
    nnz: np.ndarray
    diffs: np.ndarray


def _block_starts(cin: int, kb: int) -> list[int]:
    """Input-channel blocks: 0, kb, 2kb, ...; a ragged last block is moved back to end at cin
    (the channels it shares with the previous block are zeroed in it, see pack_block_sparse)."""
    if cin < kb:
        raise UserError(f"{cin} input channels cannot hold blocks of {kb}", field="sparsity",
                        fix="use a block width at most the input channels")
    starts = list(range(0, cin - kb + 1, kb))
    if cin % kb:
        starts.append(cin - kb)
    return starts


def pack_block_sparse(w: np.ndarray, nr: int, pixels: int, bias: np.ndarray | None = None,
                      kb: int = 1) -> BlockSparsePacked:
    """Returns the block-sparse layout of ``w`` (cout x cin): a block of ``nr`` output x ``kb``
    input channels is kept when any of its weights is nonzero. ``pixels`` (the CHW row length)
    sets the byte stride the diffs encode."""
    w = np.asarray(w, dtype=np.float32)
    cout, cin = w.shape
    block_rows = -(-cout // nr)
    padded = np.zeros((block_rows * nr, cin), dtype=np.float32)
    padded[:cout] = w
    bias_pad = np.zeros(block_rows * nr, dtype=np.float32)
    if bias is not None:
        bias_pad[:cout] = bias
    starts = _block_starts(cin, kb)
    values, nnz, offsets = [], [], []
    for row in range(block_rows):
        rows = padded[row * nr:(row + 1) * nr]
        values.append(bias_pad[row * nr:(row + 1) * nr])
        kept = 0
        for number, start in enumerate(starts):
            block = rows[:, start:start + kb].copy()
            if number and start < starts[number - 1] + kb:  # ragged last block: no double count
                block[:, :starts[number - 1] + kb - start] = 0.0
            if not block.any():
                continue
            values.append(block.T.ravel())
            offsets.append(start * pixels * 4)
            kept += 1
        nnz.append(kept)
    offsets_arr = np.array(offsets, dtype=np.int64)
    diffs = np.zeros(1 + len(offsets_arr), dtype=np.int32)
    if len(offsets_arr):
        diffs[0] = offsets_arr[0]
        diffs[1:-1] = np.diff(offsets_arr)
    return BlockSparsePacked(nr, kb, cout, cin, pixels, np.concatenate(values).astype(np.float32),
                             np.array(nnz, dtype=np.int32), diffs)


def unpack_block_sparse(packed: BlockSparsePacked) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dense weights cout x cin, bias) decoded by walking the diffs like the kernel."""
    nr, kb, row_bytes = packed.nr, packed.kb, packed.pixels * 4
    block_rows = len(packed.nnz)
    dense = np.zeros((block_rows * nr, packed.cin), dtype=np.float32)
    bias = np.zeros(block_rows * nr, dtype=np.float32)
    offset, cursor, step = int(packed.diffs[0]) if len(packed.diffs) else 0, 0, 1
    for row in range(block_rows):
        bias[row * nr:(row + 1) * nr] = packed.values[cursor:cursor + nr]
        cursor += nr
        for _ in range(packed.nnz[row]):
            channel = offset // row_bytes
            block = packed.values[cursor:cursor + nr * kb].reshape(kb, nr).T
            dense[row * nr:(row + 1) * nr, channel:channel + kb] += block
            cursor += nr * kb
            offset += int(packed.diffs[step])
            step += 1
    return dense[:packed.cout], bias[:packed.cout]


def mask_blocks(w: np.ndarray, rows: int, cols: int, density: float) -> np.ndarray:
    """Returns w with only the ``density`` fraction of ``rows`` x ``cols`` blocks of largest L2
    norm kept (blocks of ``rows`` output x ``cols`` input channels; ragged edges form smaller
    blocks)."""
    w = np.asarray(w, dtype=np.float32)
    cout, cin = w.shape
    padded = np.zeros((-(-cout // rows) * rows, -(-cin // cols) * cols), dtype=np.float32)
    padded[:cout, :cin] = w
    norms = (padded.reshape(padded.shape[0] // rows, rows, padded.shape[1] // cols, cols) ** 2
             ).sum(axis=(1, 3))
    keep_count = max(1, round(density * norms.size))
    threshold_order = np.argsort(-norms, axis=None, kind="stable")[:keep_count]
    keep = np.zeros(norms.size, dtype=bool)
    keep[threshold_order] = True
    keep = np.repeat(np.repeat(keep.reshape(norms.shape), rows, axis=0), cols, axis=1)
    return np.where(keep[:cout, :cin], w, 0.0).astype(np.float32)
