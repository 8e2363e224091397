"""models.pruning_proxy: the weight-count-weighted L2 share of magnitude a pattern keeps."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from models import zoo
from models.patterns import NM, BDWP, Block, Group, Unstructured, parse_pattern
from models.pruning_proxy import (LayerKept, MagnitudeKept, combine, layer_l2_kept,
                                  magnitude_kept, pruned_patterns, seeded_weight)
from models.weights import retained_shares


def _weight(seed: int, out: int, inner: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((out, inner)).astype(np.float32)


shapes = st.tuples(st.integers(0, 10_000), st.integers(1, 8), st.integers(1, 32))
m_values = st.sampled_from([2, 4, 8, 16])


@settings(max_examples=60, deadline=None)
@given(shapes, m_values, st.data())
def test_nm_share_in_range_and_monotone_in_n(shape, m, data):
    weight = _weight(*shape)
    n_low = data.draw(st.integers(1, m))
    n_high = data.draw(st.integers(n_low, m))
    for axis in (0, 1):
        low = layer_l2_kept(weight, NM(n_low, m, axis))
        high = layer_l2_kept(weight, NM(n_high, m, axis))
        assert 0 < low <= high <= 1
    assert layer_l2_kept(weight, NM(m, m)) == 1.0
    assert layer_l2_kept(weight, BDWP(n_low, m)) == layer_l2_kept(weight, NM(n_low, m, 1))


@settings(max_examples=60, deadline=None)
@given(shapes, st.floats(0.01, 1.0), st.floats(0.01, 1.0),
       st.sampled_from(["unstructured", "block1x4", "block4x1", "group4"]))
def test_density_patterns_never_keep_less_with_more_density(shape, a, b, kind):
    weight = _weight(*shape)
    low, high = sorted((a, b))
    make = {"unstructured": Unstructured, "block1x4": lambda d: Block(1, 4, d),
            "block4x1": lambda d: Block(4, 1, d), "group4": lambda d: Group(4, d)}[kind]
    kept_low = layer_l2_kept(weight, make(low))
    kept_high = layer_l2_kept(weight, make(high))
    assert 0 < kept_low <= kept_high <= 1


def test_share_is_the_l2_column_by_hand():
    # one group of 4, 2:4 keeps |4| and |3| of (1, 4, 3, 2): sqrt(25 / 30)
    weight = np.array([[1.0, -4.0, 3.0, 2.0]], np.float32)
    assert layer_l2_kept(weight, NM(2, 4)) == pytest.approx(math.sqrt(25 / 30))
    kept = np.array([[False, True, True, False]])
    assert layer_l2_kept(weight, NM(2, 4)) == retained_shares(weight, kept)[1]


def test_combine_weights_layers_by_their_weight_count():
    parts = (LayerKept("a", 300, "2:8", 0.5), LayerKept("b", 100, None, 1.0))
    assert combine(parts) == pytest.approx((300 * 0.5 + 100 * 1.0) / 400)
    assert combine(()) == 1.0


@pytest.fixture(scope="module")
def resnet9():
    return zoo.build("resnet9", dataset="cifar10")


def test_dense_model_is_exactly_one(resnet9):
    assert magnitude_kept(resnet9) == 1.0
    assert magnitude_kept(resnet9, mode="train") == 1.0
    assert all(part.l2_kept == 1.0 and part.pattern is None
               for part in MagnitudeKept(resnet9).layers(resnet9))


def test_more_kept_weights_never_lower_the_model_proxy(resnet9):
    proxy = MagnitudeKept(resnet9)
    values = [proxy.of(resnet9.with_sparsity(parse_pattern(spec)))
              for spec in ("1:8", "2:8", "4:8", "8:8")]
    assert 0 < values[0] <= values[1] <= values[2] <= values[3] == 1.0
    assert values[0] < values[1] < values[2]            # strictly, on random weights
    dens = [proxy.of(resnet9.with_sparsity(parse_pattern(f"unstructured:{d}")))
            for d in (0.2, 0.5, 0.9)]
    assert dens[0] < dens[1] < dens[2] < 1.0


def test_layers_the_lowering_runs_dense_count_as_one(resnet9):
    patterned = resnet9.with_sparsity(parse_pattern("2:8"))
    parts = {p.layer: p for p in MagnitudeKept(resnet9).layers(patterned)}
    pruned = pruned_patterns(patterned)
    first = next(op.name for op in resnet9.weight_ops())      # 3 input channels: no 2:8 group
    assert first not in pruned and parts[first].l2_kept == 1.0
    assert all((p.pattern is None) == (p.layer not in pruned) for p in parts.values())
    assert sum(p.weights for p in parts.values()) == sum(
        math.prod(op.weight_shape) for op in resnet9.weight_ops())


def test_deterministic_across_instances_and_independent_of_layer_order(resnet9):
    patterned = resnet9.with_sparsity(parse_pattern("1:8"))
    assert MagnitudeKept(resnet9).of(patterned) == MagnitudeKept(resnet9).of(patterned)
    assert magnitude_kept(patterned, seed=1) != magnitude_kept(patterned, seed=0)
    a = seeded_weight("conv1", (8, 4, 3, 3))
    np.testing.assert_array_equal(a, seeded_weight("conv1", (8, 4, 3, 3)))
    assert not np.array_equal(a, seeded_weight("conv2", (8, 4, 3, 3)))


def test_a_file_uses_its_own_weights_as_models_show_does(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from models.loading import load
    from models.weights import pruning_costs

    rng = np.random.default_rng(5)
    w1 = rng.standard_normal((16, 16, 1, 1)).astype(np.float32)
    w2 = (rng.standard_normal((10, 16)) * np.linspace(0.1, 3, 16)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "net.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = load(str(path))
    proxy = MagnitudeKept(model)
    assert proxy.source == "own"
    pattern = parse_pattern("2:8")
    patterned = model.with_sparsity(pattern)
    parts = proxy.layers(patterned)
    costs = {c.layer: c.l2_kept for c in pruning_costs(str(path), model, pattern,
                                                       [p.layer for p in parts])}
    for part in parts:
        assert part.l2_kept == pytest.approx(costs[part.layer], rel=1e-12)
    expected = sum(p.weights * costs[p.layer] for p in parts) / sum(p.weights for p in parts)
    assert proxy.of(patterned) == pytest.approx(expected, rel=1e-12)
    # the file's weights, not seeded ones: the scaled columns of w2 change its share
    assert parts[1].l2_kept != pytest.approx(layer_l2_kept(seeded_weight("fc", (10, 16)), pattern))
