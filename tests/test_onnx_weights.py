"""models.weights: an imported file's own weights, batch norm folded, masked by magnitude
and written back as ONNX; checked against ONNX Runtime on small graphs made here."""
from __future__ import annotations

import numpy as np
import pytest

from models.errors import UserError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models.importers.onnx_import import model_from_onnx  # noqa: E402
from models.patterns import NM, parse_pattern  # noqa: E402
from models.weights import (ModelWeights, fold_batch_norm, layer_weights,  # noqa: E402
                            magnitude_mask, masked_proto, retained_shares)

CIN, COUT, CLASSES, SIZE = 16, 16, 10, 4


def _net(rng, gemm: bool = True):
    """conv1x1 (no bias) -> BN -> relu -> global pool -> flatten -> Gemm(transB) or
    MatMul + Add: the shapes a torch CNN exports, small enough to check by hand."""
    w = rng.standard_normal((COUT, CIN, 1, 1)).astype(np.float32)
    scale, shift = rng.uniform(0.5, 1.5, COUT), rng.uniform(-0.2, 0.2, COUT)
    mean, var = rng.uniform(-0.2, 0.2, COUT), rng.uniform(0.5, 1.5, COUT)
    fc = rng.standard_normal((CLASSES, COUT)).astype(np.float32)
    fc_bias = rng.standard_normal(CLASSES).astype(np.float32)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((w, "w"), (scale, "g"), (shift, "b"), (mean, "m"), (var, "v"), (fc_bias, "fb"))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn",
                              epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten")]
    if gemm:
        inits.append(numpy_helper.from_array(fc, "fw"))
        nodes.append(helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1))
    else:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(fc.T), "fw"))
        nodes += [helper.make_node("MatMul", ["f", "fw"], ["mm"], name="fc"),
                  helper.make_node("Add", ["mm", "fb"], ["y"], name="fc_bias")]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CIN, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CLASSES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ort(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0].ravel()


def _numpy_forward(conv_w, conv_b, fc_w, fc_b, x):
    """The net above with the batch norm already folded into the conv."""
    pixels = x.reshape(CIN, -1).astype(np.float64)
    hidden = np.maximum(conv_w.reshape(COUT, CIN) @ pixels + conv_b[:, None], 0).mean(axis=1)
    return fc_w @ hidden + fc_b


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm", "matmul_add"])
def test_folded_and_masked_weights_match_onnx_runtime(gemm):
    rng = np.random.default_rng(3)
    proto = _net(rng, gemm)
    model = model_from_onnx(proto)
    conv = layer_weights(model, "conv")
    assert conv.folded_norm == "bn" and conv.bias is not None
    fc = layer_weights(model, "fc")
    x = rng.standard_normal((1, CIN, SIZE, SIZE)).astype(np.float32)
    dense = _numpy_forward(conv.weight, conv.bias, fc.weight, fc.bias, x)
    np.testing.assert_allclose(_ort(proto, x), dense, rtol=1e-4, atol=1e-4)

    pattern = parse_pattern("2:8")
    kept = {name: own.weight * magnitude_mask(own.weight, pattern)
            for name, own in (("conv", conv), ("fc", fc))}
    masked = masked_proto(proto, model, kept)
    onnx.checker.check_model(masked)
    sparse = _numpy_forward(kept["conv"], conv.bias, kept["fc"], fc.bias, x)
    got = _ort(masked, x)
    np.testing.assert_allclose(got, sparse, rtol=1e-4, atol=1e-4)
    assert np.abs(got - dense).max() > 1e-2, "the mask changed nothing"
    # the file's own weights are masked in their own layout (Gemm B (out, in), MatMul (in, out))
    weights = {t.name: numpy_helper.to_array(t) for t in masked.graph.initializer}
    conv_w = weights[next(n for n in masked.graph.node if n.op_type == "Conv").input[1]]
    assert NM(2, 8, axis=1).check(conv_w.reshape(COUT, -1) != 0)
    fc_node = next(n for n in masked.graph.node if n.op_type in ("Gemm", "MatMul"))
    fc_w = weights[fc_node.input[1]]
    fc_w = fc_w if gemm else fc_w.T
    assert NM(2, 8, axis=1).check(fc_w != 0)
    assert {"w", "fw"}.isdisjoint(weights), "the replaced initializers are left in the file"


def test_fold_batch_norm_by_hand():
    w = np.array([[[[2.0]]], [[[-1.0]]]], np.float32)
    norm = {"scale": np.array([1.0, 2.0]), "shift": np.array([0.5, 0.0]),
            "mean": np.array([1.0, -1.0]), "var": np.array([3.0, 0.0]), "epsilon": 1.0}
    folded, bias = fold_batch_norm(w, np.array([1.0, 0.0]), norm)
    # s = [1/2, 2/1]: w' = [1, -2]; b' = (b - mean) * s + shift = [0 + 0.5, 2]
    np.testing.assert_allclose(folded.ravel(), [1.0, -2.0])
    np.testing.assert_allclose(bias, [0.5, 2.0])


def test_retained_shares_by_hand():
    w = np.array([[3.0, -4.0, 0.0, 1.0]])
    mask = np.array([[False, True, False, False]])
    l1, l2 = retained_shares(w, mask)
    assert l1 == pytest.approx(4 / 8)
    assert l2 == pytest.approx(4 / np.sqrt(26))


def test_magnitude_mask_groups_along_the_reduction():
    w = np.arange(1, 17, dtype=np.float32).reshape(2, 2, 2, 2)     # (out, in, R, S)
    mask = magnitude_mask(w, parse_pattern("2:8"))
    assert mask.shape == w.shape and mask.sum() == 4
    assert mask.reshape(2, 8)[:, -2:].all()


def test_zoo_model_has_no_weights_of_its_own():
    from models import zoo

    with pytest.raises(UserError, match="no weights of their own"):
        ModelWeights(zoo.build("mobilenet_v1"))


def _pad_group_conv(rng):
    """Pad (as exporters write it) -> Conv stride 2, groups 2, bias: the input a layer
    sees in the file is already padded."""
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"], name="pad"),
             helper.make_node("Conv", ["xp", "w", "cb"], ["y"], name="conv", strides=[2, 2],
                              group=2)]
    graph = helper.make_graph(
        nodes, "pc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "cb"), pads])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_layer_output_matches_onnx_runtime_through_pad_stride_groups():
    from models.weights import layer_inputs, layer_output

    rng = np.random.default_rng(5)
    proto = _pad_group_conv(rng)
    model = model_from_onnx(proto)
    assert model.op("conv").padding == (1, 1)       # the Pad went into the conv
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    seen = layer_inputs(proto, model, ["conv"], x)["conv"]
    assert seen.shape == (1, 8, 11, 11)             # ORT's tensor is the padded one
    own = layer_weights(model, "conv")
    got = layer_output(model, "conv", seen, own.weight, own.bias)
    np.testing.assert_allclose(got, _ort(proto, x).reshape(got.shape), rtol=1e-4, atol=1e-4)


def test_folded_layer_output_is_the_batch_norm_output():
    """pruning_costs compares outputs of the folded layer: that is the BN's output."""
    from models.weights import layer_inputs, layer_output

    rng = np.random.default_rng(6)
    proto = _net(rng)
    model = model_from_onnx(proto)
    x = rng.standard_normal((1, CIN, SIZE, SIZE)).astype(np.float32)
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.append(onnx.ValueInfoProto(name="n"))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(["n"], {"x": x})[0]
    own = layer_weights(model, "conv")
    got = layer_output(model, "conv", layer_inputs(proto, model, ["conv"], x)["conv"],
                       own.weight, own.bias)
    np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-4, atol=1e-4)


def test_models_show_prints_pruning_costs(tmp_path, capsys):
    import json

    from cli import main

    path = tmp_path / "net.onnx"
    onnx.save(_net(np.random.default_rng(7)), str(path))
    assert main(["models", "show", str(path), "--sparsity", "2:8", "--format", "json"]) == 0
    pruning = json.loads(capsys.readouterr().out)["pruning"]
    layers = {entry["layer"]: entry for entry in pruning["layers"]}
    assert set(layers) == {"conv", "fc"}
    for entry in layers.values():
        assert 0.25 < entry["l1_kept"] < entry["l2_kept"] < 1.0
        assert 0.0 < entry["output_error"] < 1.5
    assert pruning["whole_model"]["inputs"] == 4
    assert pruning["whole_model"]["max_output_change"] > 1e-3
    assert main(["models", "show", str(path), "--sparsity", "dense", "--format", "json"]) == 0
    assert "pruning" not in json.loads(capsys.readouterr().out)


def test_build_index_is_ignored_for_another_manifest(tmp_path):
    """A zoo build into a folder that held an ONNX build is not compared with the stale
    ONNX files; a damaged index is one UserError."""
    import hashlib
    import json

    from targets.engines.ort_compare import read_index

    (tmp_path / "manifest.json").write_text('{"format": "hwsim-codegen"}')
    for name in ("model.onnx", "model.masked.onnx"):
        (tmp_path / name).write_bytes(b"x")
    digest = hashlib.sha256((tmp_path / "manifest.json").read_bytes()).hexdigest()
    index = {"files": {"original": "model.onnx", "masked": "model.masked.onnx"},
             "manifest_sha256": digest}
    (tmp_path / "onnx.json").write_text(json.dumps(index))
    assert read_index(tmp_path)["files"]["masked"] == "model.masked.onnx"
    (tmp_path / "manifest.json").write_text('{"format": "hwsim-codegen", "model": "zoo"}')
    assert read_index(tmp_path) is None
    (tmp_path / "onnx.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable ONNX index"):
        read_index(tmp_path)


def test_per_channel_mul_add_after_a_conv_merge_into_its_weights():
    """tf2onnx writes a batch norm after a depthwise conv as Mul + Add by (1, C, 1, 1)
    constants: the importer folds both into the conv (weight scaled, bias added), so
    params count the bias and the layer's own output is the Add's."""
    from models.weights import layer_inputs, layer_output

    rng = np.random.default_rng(8)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, (1, 8, 1, 1)).astype(np.float32)
    shift = rng.uniform(-0.5, 0.5, (1, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=8, pads=[1] * 4),
             helper.make_node("Mul", ["c", "s"], ["m"], name="bn_mul"),
             helper.make_node("Add", ["m", "t"], ["a"], name="bn_add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (scale, "s"), (shift, "t"))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = model_from_onnx(proto)
    assert [op.kind for op in model.ops()] == ["input", "conv2d", "elementwise"]
    assert model.op("dw").bias and model.params() == 8 * 9 + 8
    own = layer_weights(model, "dw")
    np.testing.assert_allclose(own.weight, w * scale.reshape(8, 1, 1, 1), rtol=1e-6)
    np.testing.assert_allclose(own.bias, shift.ravel(), rtol=1e-6)
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    got = layer_output(model, "dw", layer_inputs(proto, model, ["dw"], x)["dw"],
                       own.weight, own.bias)
    np.testing.assert_allclose(np.maximum(got, 0), _ort(proto, x).reshape(got.shape),
                               rtol=1e-4, atol=1e-5)
    # a masked copy scales the file's own weight, not the merged one, by the mask
    kept = {"dw": np.where(np.abs(own.weight) > 0.5, own.weight, 0)}
    masked = {t.name: numpy_helper.to_array(t) for t in masked_proto(proto, model, kept)
              .graph.initializer}
    np.testing.assert_array_equal(masked["w.masked"], np.where(np.abs(own.weight) > 0.5, w, 0))
