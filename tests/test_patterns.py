"""Sparsity patterns as specifications: masks fit their pattern and keep the largest
magnitudes, checks reject what does not fit, compression round-trips bit for bit.

Masked weights are compared with ``apply_mask(w, mask)`` (= ``np.where(mask, w, 0)``)
through their bit patterns (``view(np.uint32)``), so a kept -0.0 must stay -0.0 and a
pruned weight must be +0.0; against ``w * mask`` (which gives -0.0 for pruned negative
weights and NaN for pruned infinities) they are compared with ``np.array_equal``, where
-0.0 == 0.0, on the finite weights.

The references here are plain loops over groups, independent of the vectorised code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from models.errors import UserError
from models.patterns import (BDWP, NM, Block, CompressedWeights, Group, Unstructured,
                             apply_mask, parse_pattern)

EXAMPLES = settings(max_examples=60, deadline=None)

# Small exact values make ties (and -0.0 against 0.0) common; arbitrary floats cover the rest.
TIE_VALUES = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0]
ELEMENTS = st.one_of(st.sampled_from(TIE_VALUES),
                     st.floats(width=32, allow_nan=False, allow_infinity=True))
DENSITIES = st.integers(1, 100).map(lambda percent: percent / 100)


def weight_arrays(min_dims: int = 1, max_dims: int = 4, max_side: int = 9, elements=ELEMENTS):
    return arrays(np.float32, array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                           max_side=max_side), elements=elements)


@st.composite
def nm_cases(draw, divisible: bool = False):
    """Returns (weights, NM pattern) with any axis (negative too) and, unless divisible, tails."""
    m = draw(st.integers(1, 10))
    n = draw(st.integers(1, m))
    weights = draw(weight_arrays())
    axis = draw(st.integers(-weights.ndim, weights.ndim - 1))
    if divisible:
        shape = list(weights.shape)
        shape[axis] = m * draw(st.integers(1, 3))
        weights = draw(arrays(np.float32, tuple(shape), elements=ELEMENTS))
    return weights, NM(n, m, axis)


def assert_equals_product(restored: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> None:
    """``w * mask`` agrees up to the sign of zero, where it is defined (inf * 0 is NaN)."""
    finite = np.isfinite(weights)
    with np.errstate(invalid="ignore"):
        product = weights * mask
    assert np.array_equal(restored[finite], product[finite])


def bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def budget(density: float, count: int) -> int:
    """The documented keep count: round half up, clamped to 1..count (0 when empty)."""
    return 0 if count == 0 else min(count, max(1, math.floor(density * count + 0.5)))


# ---------------------------------------------------------------- N:M references


def nm_groups(array: np.ndarray, m: int, axis: int):
    """Yields (mask-independent) 1-D views of every group of m along ``axis``, tails included."""
    moved = np.moveaxis(array, axis, -1)
    rows = moved.reshape(math.prod(moved.shape[:-1]), moved.shape[-1])
    for row in rows:
        for start in range(0, row.size, m):
            yield row[start:start + m]


def reference_nm_mask(weights: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    """The n largest |w| of each group, ties to the lower position, by sorting in Python."""
    moved = np.moveaxis(weights, axis, -1)
    mask = np.zeros(moved.shape, dtype=bool)
    rows = (math.prod(moved.shape[:-1]), moved.shape[-1])
    flat_w, flat_mask = moved.reshape(rows), mask.reshape(rows)
    for row in range(flat_w.shape[0]):
        for start in range(0, flat_w.shape[1], m):
            group = [(-abs(float(flat_w[row, start + k])), k)
                     for k in range(min(m, flat_w.shape[1] - start))]
            for _, k in sorted(group)[:n]:
                flat_mask[row, start + k] = True
    return np.moveaxis(flat_mask.reshape(moved.shape), -1, axis)


def assert_keeps_largest(kept: np.ndarray, dropped: np.ndarray) -> None:
    if kept.size and dropped.size:
        assert np.abs(kept).min() >= np.abs(dropped).max()


# ---------------------------------------------------------------- N:M properties


@EXAMPLES
@given(nm_cases())
def test_nm_mask_keeps_the_n_largest_of_every_group(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    assert mask.dtype == bool and mask.shape == weights.shape
    masked = apply_mask(weights, mask)
    for w_group, mask_group, masked_group in zip(nm_groups(weights, pattern.m, pattern.axis),
                                                 nm_groups(mask, pattern.m, pattern.axis),
                                                 nm_groups(masked, pattern.m, pattern.axis)):
        # a partial tail of r elements counts as zero-padded: it keeps min(n, r)
        assert mask_group.sum() == min(pattern.n, w_group.size)
        assert np.count_nonzero(masked_group) <= pattern.n
        assert_keeps_largest(w_group[mask_group], w_group[~mask_group])
    assert pattern.check(mask)
    assert np.array_equal(mask, reference_nm_mask(weights, pattern.n, pattern.m, pattern.axis))


@EXAMPLES
@given(nm_cases(), st.data())
def test_nm_check_rejects_one_nonzero_too_many(case, data):
    weights, pattern = case
    mask = pattern.mask(weights)
    moved = np.moveaxis(mask, pattern.axis, -1).copy()
    length = moved.shape[-1]
    starts = [start for start in range(0, length, pattern.m)
              if min(pattern.m, length - start) > pattern.n]
    assume(moved.size and starts)
    row = data.draw(st.integers(0, moved.size // length - 1))
    start = data.draw(st.sampled_from(starts))
    group = moved.reshape(moved.size // length, length)[row, start:start + pattern.m]
    group[np.flatnonzero(~group)[0]] = True  # now n + 1 in this group
    assert not pattern.check(np.moveaxis(moved, -1, pattern.axis))
    assert pattern.check(mask)


@EXAMPLES
@given(nm_cases())
def test_nm_round_trip_is_bit_exact(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    packed = pattern.compress(weights)
    restored = pattern.decompress(packed)
    assert restored.dtype == np.float32 and restored.shape == weights.shape
    assert np.array_equal(bits(restored), bits(apply_mask(weights, mask)))
    assert_equals_product(restored, weights, mask)


@EXAMPLES
@given(nm_cases())
def test_nm_compressed_layout(case):
    weights, pattern = case
    n, m, axis = pattern.n, pattern.m, pattern.axis % weights.ndim
    packed = pattern.compress(weights)
    length = weights.shape[axis]
    groups = -(-length // m)
    lead = tuple(np.delete(np.array(weights.shape), axis).tolist())
    assert packed.values.shape == packed.indices.shape == lead + (groups, n)
    assert packed.indices.dtype == np.uint8 and packed.shape == weights.shape
    assert packed.pattern == pattern.spec
    if packed.indices.size:
        assert (packed.indices < m).all()
        assert (np.diff(packed.indices.astype(int), axis=-1) > 0).all()  # ascending, distinct
    # slots of the partial tail beyond its r real elements: value +0.0, index r, r+1, ...
    tail = length % m
    if tail and tail < n and packed.values.size:
        assert (bits(packed.values[..., -1, tail:]) == 0).all()
        assert (packed.indices[..., -1, tail:] == np.arange(tail, n)).all()
    # the values are the weights at the stored positions
    moved = np.moveaxis(weights, axis, -1)
    padded = np.zeros(moved.shape[:-1] + (groups * m,), np.float32)
    padded[..., :length] = moved
    gathered = np.take_along_axis(padded.reshape(lead + (groups, m)),
                                  packed.indices.astype(np.intp), axis=-1)
    assert np.array_equal(bits(gathered), bits(packed.values))


@EXAMPLES
@given(nm_cases(divisible=True))
def test_nm_density_is_exact_when_the_axis_divides(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    assert mask.sum() * pattern.m == weights.size * pattern.n
    assert pattern.density == pattern.n / pattern.m


def test_nm_tie_rule_and_tail_by_hand():
    weights = np.array([[2.0, -2.0, 2.0, 1.0, -0.0, 0.0, 5.0]], np.float32)
    pattern = NM(2, 4)
    # ties go to the lower position (-0.0 and 0.0 tie); the 3-wide tail keeps 2
    assert pattern.mask(weights).tolist() == [[True, True, False, False, True, False, True]]
    packed = pattern.compress(weights)
    assert packed.indices.tolist() == [[[0, 1], [0, 2]]]
    assert bits(packed.values).tolist() == bits(np.array([[[2, -2], [-0.0, 5]]], np.float32)).tolist()
    assert NM(3, 4).compress(weights).indices.tolist() == [[[0, 1, 2], [0, 1, 2]]]
    short_tail = NM(3, 4, axis=0).compress(np.array([1, 2, 3, 4, 7], np.float32))  # tail r=1 < n=3
    assert short_tail.indices.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert short_tail.values.tolist() == [[2, 3, 4], [7, 0, 0]]


def test_nm_bad_axis_and_nan_are_user_errors():
    with pytest.raises(UserError, match="axis"):
        NM(2, 4, axis=2).mask(np.ones((4, 4), np.float32))
    with pytest.raises(UserError, match="NaN") as error:
        NM(2, 4).mask(np.array([[np.nan, 1.0]], np.float32))
    assert error.value.fix
    packed = NM(2, 4).compress(np.ones((2, 8), np.float32))
    with pytest.raises(UserError, match="nm:2:4"):
        NM(1, 4).decompress(packed)


# ---------------------------------------------------------------- BDWP


@st.composite
def bdwp_cases(draw):
    m = draw(st.integers(1, 8))
    n = draw(st.integers(1, m))
    conv = draw(st.booleans())
    shape = draw(array_shapes(min_dims=4 if conv else 2, max_dims=4 if conv else 2,
                              min_side=1, max_side=10 if not conv else 6))
    return draw(arrays(np.float32, shape, elements=ELEMENTS)), BDWP(n, m)


@EXAMPLES
@given(bdwp_cases())
def test_bdwp_masks_run_along_input_then_output_channels(case):
    weights, pattern = case
    forward, backward = pattern.masks(weights)
    assert np.array_equal(forward, reference_nm_mask(weights, pattern.n, pattern.m, axis=1))
    assert np.array_equal(backward, reference_nm_mask(weights, pattern.n, pattern.m, axis=0))
    assert NM(pattern.n, pattern.m, 1).check(forward) and NM(pattern.n, pattern.m, 0).check(backward)
    assert np.array_equal(pattern.mask(weights), forward) and pattern.check(forward)
    restored = pattern.decompress(pattern.compress(weights))
    assert np.array_equal(bits(restored), bits(apply_mask(weights, forward)))
    if weights.shape[1] % pattern.m == 0:
        assert forward.sum() * pattern.m == weights.size * pattern.n
    if weights.shape[0] % pattern.m == 0:
        assert backward.sum() * pattern.m == weights.size * pattern.n


# ---------------------------------------------------------------- Block and Group


def matrix(array: np.ndarray) -> np.ndarray:
    return array.reshape(array.shape[0], math.prod(array.shape[1:])) if array.ndim \
        else array.reshape(1, 1)


def tiles(array: np.ndarray, rows: int, cols: int):
    """Yields ((block row, block col), tile) over the 2-D view, edge tiles partial, row-major."""
    view = matrix(array)
    for top in range(0, view.shape[0], rows):
        for left in range(0, view.shape[1], cols):
            yield (top // rows, left // cols), view[top:top + rows, left:left + cols]


def assert_block_mask(weights: np.ndarray, mask: np.ndarray, rows: int, cols: int,
                      density: float) -> None:
    """Blocks are all kept or all dropped, the budget is met, and kept blocks' L1 >= dropped."""
    kept_norms, dropped_norms = [], []
    for (_, w_tile), (_, mask_tile) in zip(tiles(weights, rows, cols), tiles(mask, rows, cols)):
        assert mask_tile.all() or not mask_tile.any()
        norm = math.fsum(abs(float(v)) for v in w_tile.ravel())
        (kept_norms if mask_tile.all() else dropped_norms).append(norm)
    assert len(kept_norms) == budget(density, len(kept_norms) + len(dropped_norms))
    if kept_norms and dropped_norms:
        # float64 sums of nonnegative terms are within a relative 1e-12 of the exact sum
        assert min(kept_norms) >= max(dropped_norms) * (1 - 1e-12)


@st.composite
def block_cases(draw, elements=ELEMENTS):
    weights = draw(weight_arrays(min_dims=1, max_dims=4, max_side=7, elements=elements))
    return weights, Block(draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(DENSITIES))


@EXAMPLES
@given(block_cases())
def test_block_mask_keeps_the_strongest_whole_blocks(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    assert mask.dtype == bool and mask.shape == weights.shape
    assert_block_mask(weights, mask, pattern.rows, pattern.cols, pattern.density)
    assert pattern.check(mask)


@EXAMPLES
@given(block_cases(elements=st.sampled_from([0.0, -0.0, 1.0, -1.0])))
def test_block_ties_go_to_the_lower_block_index(case):
    weights, pattern = case  # small integers: the L1 norms are exact, ties are real
    mask = pattern.mask(weights)
    norms = {index: np.abs(tile).sum() for index, tile in tiles(weights, pattern.rows, pattern.cols)}
    kept = {index for index, tile in tiles(mask, pattern.rows, pattern.cols) if tile.all()}
    for dropped in set(norms) - kept:
        assert all(index < dropped for index in kept if norms[index] == norms[dropped])


@EXAMPLES
@given(block_cases(), st.data())
def test_block_check_rejects_one_block_too_many(case, data):
    weights, pattern = case
    mask = pattern.mask(weights)
    dropped = [index for index, tile in tiles(mask, pattern.rows, pattern.cols) if not tile.any()]
    assume(dropped)
    block_row, block_col = data.draw(st.sampled_from(dropped))
    touched = matrix(mask).copy()
    touched[block_row * pattern.rows, block_col * pattern.cols] = True
    assert not pattern.check(touched.reshape(mask.shape))


@EXAMPLES
@given(block_cases())
def test_block_bsr_round_trip_is_bit_exact(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    packed = pattern.compress(weights)
    view = matrix(weights)
    block_rows = -(-view.shape[0] // pattern.rows)
    kept = sum(1 for _, tile in tiles(mask, pattern.rows, pattern.cols) if tile.all())
    assert packed.values.shape == (kept, pattern.rows, pattern.cols)
    assert packed.indices.shape == (kept,) and packed.row_pointers.shape == (block_rows + 1,)
    assert packed.row_pointers[0] == 0 and packed.row_pointers[-1] == kept
    for row in range(block_rows):
        columns = packed.indices[packed.row_pointers[row]:packed.row_pointers[row + 1]]
        assert (np.diff(columns) > 0).all()
    restored = pattern.decompress(packed)
    assert restored.shape == weights.shape
    assert np.array_equal(bits(restored), bits(apply_mask(weights, mask)))
    assert_equals_product(restored, weights, mask)


def groups_as_tiles(array: np.ndarray, group_size: int):
    """Group(G) groups are G x 1 tiles: G consecutive output channels at one input position."""
    return tiles(array, group_size, 1)


@st.composite
def group_cases(draw):
    weights = draw(weight_arrays(min_dims=1, max_dims=4, max_side=7))
    return weights, Group(draw(st.integers(1, 8)), draw(DENSITIES))


@EXAMPLES
@given(group_cases(), st.data())
def test_group_mask_check_and_round_trip(case, data):
    weights, pattern = case
    size = pattern.group_size
    mask = pattern.mask(weights)
    assert mask.dtype == bool and mask.shape == weights.shape
    assert_block_mask(weights, mask, size, 1, pattern.density)
    assert pattern.check(mask)
    dropped = [index for index, tile in groups_as_tiles(mask, size) if not tile.any()]
    if dropped:
        block_row, column = data.draw(st.sampled_from(dropped))
        touched = matrix(mask).copy()
        touched[block_row * size, column] = True
        assert not pattern.check(touched.reshape(mask.shape))
    packed = pattern.compress(weights)
    kept = len(list(groups_as_tiles(mask, size))) - len(dropped)
    assert packed.values.shape == (kept, size) and packed.indices.shape == (kept,)
    assert packed.row_pointers.shape == (-(-matrix(weights).shape[0] // size) + 1,)
    restored = pattern.decompress(packed)
    assert np.array_equal(bits(restored), bits(apply_mask(weights, mask)))


def test_group_is_output_channels_at_one_input_position():
    weights = np.zeros((4, 2, 1, 1), np.float32)
    weights[0:2, 1] = 5.0  # output channels 0-1 at input channel 1
    weights[3, 0] = 9.0
    pattern = Group(2, 0.5)  # 4 groups, keep 2
    kept = pattern.mask(weights)[:, :, 0, 0]
    assert kept.tolist() == [[False, True], [False, True], [True, False], [True, False]]
    packed = pattern.compress(weights)
    assert packed.indices.tolist() == [1, 0] and packed.row_pointers.tolist() == [0, 1, 2]
    assert packed.values.tolist() == [[5.0, 5.0], [0.0, 9.0]]


# ---------------------------------------------------------------- Unstructured


@st.composite
def unstructured_cases(draw):
    return draw(weight_arrays(min_dims=0, max_dims=4, max_side=8)), Unstructured(draw(DENSITIES))


@EXAMPLES
@given(unstructured_cases())
def test_unstructured_mask_keeps_the_largest_magnitudes(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    assert mask.dtype == bool and mask.shape == weights.shape
    assert mask.sum() == budget(pattern.density, weights.size)
    flat_w, flat_mask = weights.ravel(), mask.ravel()
    assert_keeps_largest(flat_w[flat_mask], flat_w[~flat_mask])
    magnitudes = np.abs(flat_w)
    for dropped in np.flatnonzero(~flat_mask):  # ties: lower flat index wins
        assert (np.flatnonzero(flat_mask & (magnitudes == magnitudes[dropped])) < dropped).all()
    assert pattern.check(mask)
    if not mask.all():
        extra = mask.copy().ravel()
        extra[np.flatnonzero(~extra)[0]] = True
        assert not pattern.check(extra.reshape(mask.shape))


@EXAMPLES
@given(unstructured_cases())
def test_unstructured_csr_round_trip_is_bit_exact(case):
    weights, pattern = case
    mask = pattern.mask(weights)
    packed = pattern.compress(weights)
    view = matrix(mask)
    assert packed.values.shape == packed.indices.shape == (int(mask.sum()),)
    assert np.array_equal(np.diff(packed.row_pointers), view.sum(axis=1))
    assert np.array_equal(packed.indices, np.nonzero(view)[1])
    restored = pattern.decompress(packed)
    assert restored.shape == weights.shape
    assert np.array_equal(bits(restored), bits(apply_mask(weights, mask)))


# ---------------------------------------------------------------- parse_pattern


@pytest.mark.parametrize("spec", [
    "9:8", "0:8", "2:0", "nm:5:4", "nm:0:4", "nm:2:0", "bdwp:3:2",
    "block:1x4:0", "block:1x4:1.5", "block:0x4:0.2", "group:4:-0.1", "group:0:0.5",
    "unstructured:0", "unstructured:2", "unstructured:nan", "unstructured:inf",
    "2:8:1", "nm:2", "block:4:0.2", "block:axb:0.2", "group:4", "sparse", "1:x", "unstructured:",
    "nm:2:8:axis",
])
def test_parse_pattern_rejects_bad_specs_with_a_fix(spec):
    with pytest.raises(UserError) as error:
        parse_pattern(spec)
    assert error.value.fix and error.value.field == "sparsity"
    assert spec in error.value.message


def specs():
    pairs = st.integers(1, 32).flatmap(lambda m: st.tuples(st.integers(1, m), st.just(m)))
    return st.one_of(
        pairs.map(lambda pair: BDWP(*pair)),
        st.tuples(pairs, st.integers(-4, 3)).map(lambda c: NM(c[0][0], c[0][1], c[1])),
        st.tuples(st.integers(1, 8), st.integers(1, 8), DENSITIES).map(lambda c: Block(*c)),
        st.tuples(st.integers(1, 16), DENSITIES).map(lambda c: Group(*c)),
        DENSITIES.map(Unstructured),
    )


@EXAMPLES
@given(specs())
def test_valid_specs_round_trip(pattern):
    assert parse_pattern(pattern.spec) == pattern
    assert parse_pattern(pattern.spec.upper()) == pattern


def test_parse_pattern_known_forms():
    assert parse_pattern("2:8") == BDWP(2, 8)
    assert parse_pattern(" dense ") is None and parse_pattern("none") is None
    assert parse_pattern("nm:2:8") == NM(2, 8, 1)
    assert parse_pattern("nm:1:4:0") == NM(1, 4, 0)
    assert parse_pattern("bdwp:4:8") == BDWP(4, 8)
    assert parse_pattern("block:1x4:0.2") == Block(1, 4, 0.2)
    assert parse_pattern("group:4:0.7") == Group(4, 0.7)
    assert parse_pattern("unstructured:0.1") == Unstructured(0.1)


def test_compressed_weights_keep_their_public_fields():
    packed = Unstructured(0.5).compress(np.array([[1.0, -2.0]], np.float32))
    assert isinstance(packed, CompressedWeights)
    assert (packed.pattern, packed.shape) == ("unstructured:0.5", (1, 2))
    assert packed.values.tolist() == [-2.0] and packed.indices.tolist() == [1]
    assert packed.row_pointers.tolist() == [0, 1]


@pytest.mark.parametrize("pattern, shape, kept", [
    (Unstructured(0.5), (5,), 3),         # 2.5 rounds half up, not to even
    (Unstructured(0.5), (1, 3), 2),
    (Unstructured(0.01), (3, 3), 1),      # at least one weight
    (Unstructured(1.0), (0, 4), 0),       # nothing to keep in an empty tensor
    (Block(1, 2, 0.5), (5, 4), 10),       # 10 blocks of 2 -> 5 blocks
    (Block(2, 2, 0.5), (5, 4), 10),       # 6 blocks, 3 kept: 2x2, 2x2 and a partial 1x2 edge
    (Group(2, 0.5), (5, 1), 3),           # groups of 2,2,1 -> keeps 2 (round half up of 1.5)
])
def test_budgets_round_half_up(pattern, shape, kept):
    weights = np.arange(1, math.prod(shape) + 1, dtype=np.float32).reshape(shape)
    assert int(pattern.mask(weights).sum()) == kept


@pytest.mark.parametrize("pattern", [NM(2, 4, axis=0), BDWP(1, 2), Block(2, 2, 0.5), Group(2, 0.5),
                                     Unstructured(0.3)])
@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes_round_trip_in_their_own_dtype(pattern, dtype):
    weights = np.random.default_rng(7).standard_normal((6, 5, 3)).astype(dtype)
    restored = pattern.decompress(pattern.compress(weights))
    assert restored.dtype == dtype
    assert np.array_equal(restored, apply_mask(weights, pattern.mask(weights)))


def test_wide_groups_get_wider_indices():
    weights = np.random.default_rng(3).standard_normal(700).astype(np.float32)
    pattern = NM(3, 300, axis=0)
    packed = pattern.compress(weights)
    assert packed.indices.dtype == np.uint16 and packed.indices.max() < 300
    assert np.array_equal(pattern.decompress(packed), apply_mask(weights, pattern.mask(weights)))
    assert pattern.mask(weights).sum() == 3 + 3 + 3


def test_corrupted_compressed_weights_are_rejected():
    weights = np.ones((4, 4), np.float32)
    for pattern in (Block(2, 2, 0.5), Unstructured(0.5)):
        packed = pattern.compress(weights)
        broken = CompressedWeights(packed.pattern, packed.shape, packed.values, packed.indices,
                                   packed.row_pointers[:-1])
        with pytest.raises(ValueError):
            pattern.decompress(broken)
    packed = NM(2, 4).compress(weights)
    with pytest.raises(ValueError):
        NM(2, 4).decompress(CompressedWeights(packed.pattern, (4, 5), packed.values, packed.indices))


def test_docstring_examples_hold():
    import doctest

    import models.patterns
    failures, tried = doctest.testmod(models.patterns)
    assert tried >= 6 and failures == 0
