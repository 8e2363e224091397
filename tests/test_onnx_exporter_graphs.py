"""Graphs shaped like what the PyTorch exporters write (built with onnx.helper): shape
chains on initializers, ReduceMean pools, Clip bounds as inputs, HardSwish, SiLU gates,
BN after Conv, Gemm transB, MatMul + Add; MAC counts checked against hand counts."""
from __future__ import annotations

import numpy as np
import pytest

from models.errors import UserError
from models.importers.onnx_import import model_from_onnx
from models.ir import Conv2d, Dense, Elementwise, Norm, Pool2d
from models.lowering import lower

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _init(initializers, name, shape, dtype=np.float32, value=None):
    array = np.asarray(value, dtype) if value is not None else \
        RNG.standard_normal(shape).astype(dtype)
    initializers.append(numpy_helper.from_array(array, name))
    return name


def _mobile_like(opset: int, keep_initializers_as_inputs: bool = False):
    """Conv+BN+relu6 (Clip), 1x1 Conv+HardSwish, a squeeze-excite gate (ReduceMean,
    Conv, Relu, Conv, Sigmoid, Mul), ReduceMean over H,W as the global pool, a
    Shape/Gather/Unsqueeze/Concat/Reshape flatten, Gemm transB=1 whose weight goes
    through an Identity (TorchScript's shared initializer) and MatMul + Add."""
    inits: list = []
    n = helper.make_node
    nodes = [
        n("Conv", ["x", _init(inits, "c1.w", (8, 3, 3, 3)), _init(inits, "c1.b", (8,))], ["c1"],
          name="conv1", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", _init(inits, "bn.s", (8,)), _init(inits, "bn.b", (8,)),
                                 _init(inits, "bn.m", (8,)),
                                 _init(inits, "bn.v", (8,), value=np.ones(8))], ["bn"], name="bn1"),
        n("Clip", ["bn", _init(inits, "lo", (), value=0.0), _init(inits, "hi", (), value=6.0)],
          ["r6"], name="relu6"),
        n("Conv", ["r6", _init(inits, "c2.w", (16, 8, 1, 1))], ["c2"], name="conv2"),
        n("HardSwish", ["c2"], ["hs"], name="hswish"),
    ]

    def mean(source, output, name):
        if opset >= 18:
            axes = _init(inits, f"{name}.axes", (2,), np.int64, [2, 3])
            return n("ReduceMean", [source, axes], [output], name=name, keepdims=1)
        return n("ReduceMean", [source], [output], name=name, axes=[2, 3], keepdims=1)

    nodes += [
        mean("hs", "se_pool", "se_pool"),
        n("Conv", ["se_pool", _init(inits, "se1.w", (4, 16, 1, 1)), _init(inits, "se1.b", (4,))],
          ["se1"], name="se1"),
        n("Relu", ["se1"], ["se_r"], name="se_relu"),
        n("Conv", ["se_r", _init(inits, "se2.w", (16, 4, 1, 1)), _init(inits, "se2.b", (16,))],
          ["se2"], name="se2"),
        n("Sigmoid", ["se2"], ["gate"], name="gate"),
        n("Mul", ["hs", "gate"], ["scaled"], name="se_mul"),
        mean("scaled", "gap", "gap"),
        # torch.flatten as the TorchScript exporter writes it without folding
        n("Shape", ["gap"], ["shape"], name="shape"),
        n("Gather", ["shape", _init(inits, "zero", (), np.int64, 0)], ["batch"], name="gather",
          axis=0),
        n("Unsqueeze", ["batch", _init(inits, "ax0", (1,), np.int64, [0])], ["batch1"],
          name="unsqueeze"),
        n("Concat", ["batch1", _init(inits, "minus1", (1,), np.int64, [-1])], ["target"],
          name="concat", axis=0),
        n("Reshape", ["gap", "target"], ["flat"], name="flatten"),
        n("Identity", ["fc.w"], ["fc.w.shared"], name="Identity_0"),
        n("Gemm", ["flat", "fc.w.shared", _init(inits, "fc.b", (10,))], ["fc"], name="fc",
          transB=1),
        n("MatMul", ["fc", _init(inits, "proj.w", (10, 6))], ["proj_mm"], name="proj"),
        n("Add", ["proj_mm", _init(inits, "proj.b", (6,))], ["y"], name="proj_bias"),
    ]
    _init(inits, "fc.w", (10, 16))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    if keep_initializers_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                   for t in inits]
    graph = helper.make_graph(nodes, "mobile_like", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


# hand counts at 8x8, batch 1
CONV1_MACS = 64 * 8 * 27
CONV2_MACS = 64 * 16 * 8
SE_MACS = 16 * 4 + 4 * 16
FC_MACS = 16 * 10
PROJ_MACS = 10 * 6


@pytest.mark.parametrize("opset, as_inputs", [(14, False), (17, True), (18, False), (20, True)])
def test_exporter_like_cnn_maps_and_counts(opset, as_inputs):
    model = model_from_onnx(_mobile_like(opset, as_inputs))
    kinds = {op.name: op for op in model.ops()}
    assert isinstance(kinds["conv1"], Conv2d) and kinds["conv1"].padding == (1, 1)
    assert isinstance(kinds["bn1"], Norm) and kinds["bn1"].norm == "batch"
    assert kinds["relu6"].function == "relu6" and kinds["hswish"].function == "hardswish"
    assert isinstance(kinds["gap"], Pool2d) and kinds["gap"].global_pool
    assert kinds["se_mul"].function == "mul" and kinds["gate"].function == "sigmoid"
    assert model.output_spec("se_mul").shape == (1, 16, 8, 8)
    assert model.output_spec("flatten").shape == (1, 16)
    assert isinstance(kinds["fc"], Dense) and (kinds["fc"].in_features,
                                               kinds["fc"].out_features) == (16, 10)
    # MatMul + Add(bias) is one dense layer with a bias; the Add leaves no op
    assert isinstance(kinds["proj"], Dense) and kinds["proj"].bias
    assert "proj_bias" not in kinds
    # the shape chain and the Identity on an initializer were folded away
    assert not {"shape", "gather", "unsqueeze", "concat", "Identity_0"} & set(kinds)
    assert model.output_spec("proj").shape == (1, 6)
    workloads = lower(model, "infer")
    assert sum(w.dense_macs for w in workloads) == \
        CONV1_MACS + CONV2_MACS + SE_MACS + FC_MACS + PROJ_MACS
    by_layer = {w.layer: (w.M, w.N, w.K) for w in workloads}
    assert by_layer["conv1"] == (64, 8, 27) and by_layer["fc"] == (1, 10, 16)
    assert by_layer["proj"] == (1, 6, 10)
    # the file's own weights are kept: Gemm transB=1 keeps (out, in); MatMul is transposed
    assert model.weights["fc"]["weight"].shape == (10, 16)
    assert model.weights["proj"]["weight"].shape == (6, 10)
    assert model.weights["proj"]["bias"].shape == (6,)
    assert model.weights["bn1"]["var"].shape == (8,)


def test_gemm_without_trans_b_and_alpha_is_the_same_layer():
    inits: list = []
    w = RNG.standard_normal((12, 5)).astype(np.float32)      # (in, out): transB=0
    inits.append(numpy_helper.from_array(w, "w"))
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", alpha=2.0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = model_from_onnx(helper.make_model(graph))
    assert (model.op("fc").in_features, model.op("fc").out_features) == (12, 5)
    np.testing.assert_allclose(model.weights["fc"]["weight"], 2.0 * w.T)
    assert sum(wl.dense_macs for wl in lower(model, "infer")) == 12 * 5


def test_gelu_erf_pattern_and_decomposed_layer_norm_fuse():
    """The erf GELU and the opset-13 layer norm as PyTorch writes them, in a 2-layer MLP."""
    inits: list = []
    n = helper.make_node
    d, hidden, seq = 8, 16, 4
    nodes = [
        n("ReduceMean", ["x"], ["mu"], axes=[-1]),
        n("Sub", ["x", "mu"], ["xc"]),
        n("Pow", ["xc", _init(inits, "two", (), value=2.0)], ["sq"]),
        n("ReduceMean", ["sq"], ["var"], axes=[-1]),
        n("Add", ["var", _init(inits, "eps", (), value=1e-5)], ["var_eps"]),
        n("Sqrt", ["var_eps"], ["std"]),
        n("Div", ["xc", "std"], ["normed"]),
        n("Mul", ["normed", _init(inits, "gamma", (d,))], ["scaled"]),
        n("Add", ["scaled", _init(inits, "beta", (d,))], ["ln"], name="ln"),
        n("MatMul", ["ln", _init(inits, "w1", (d, hidden))], ["h"], name="fc1"),
        n("Add", ["h", _init(inits, "b1", (hidden,))], ["hb"]),
        n("Div", ["hb", _init(inits, "sqrt2", (), value=np.sqrt(2.0))], ["hd"]),
        n("Erf", ["hd"], ["he"]),
        n("Add", ["he", _init(inits, "one", (), value=1.0)], ["he1"]),
        n("Mul", ["hb", "he1"], ["hm"]),
        n("Mul", ["hm", _init(inits, "half", (), value=0.5)], ["g"], name="gelu"),
        n("MatMul", ["g", _init(inits, "w2", (hidden, d))], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = model_from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    functions = [op.function for op in model.ops() if isinstance(op, Elementwise)]
    assert functions == ["gelu"]
    norms = [op for op in model.ops() if isinstance(op, Norm)]
    assert len(norms) == 1 and norms[0].norm == "layer" and norms[0].channels == d
    assert model.op("fc1").bias and not model.op("fc2").bias
    assert sum(w.dense_macs for w in lower(model, "infer")) == seq * d * hidden * 2


def test_zero_pad_before_conv_becomes_its_padding():
    inits: list = []
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", _init(inits, "pads", (8,), np.int64,
                                             [0, 0, 1, 1, 0, 0, 1, 1])], ["p"]),
         helper.make_node("Conv", ["p", _init(inits, "w", (4, 3, 3, 3))], ["y"], name="conv")],
        "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = model_from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert model.op("conv").padding == (1, 1)
    assert model.output_spec("conv").shape == (1, 4, 6, 6)


def test_unsupported_ops_listed_once_with_counts():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Einsum", ["a"], ["b"],
                                                                   equation="ij->ij"),
         helper.make_node("Einsum", ["b"], ["c"], equation="ij->ij"),
         helper.make_node("NonZero", ["c"], ["y"])],
        "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    with pytest.raises(UserError) as error:
        model_from_onnx(helper.make_model(graph))
    line = error.value.one_line()
    assert "unsupported ONNX ops: Einsum (2), NonZero (1)" in line
    assert line.count("Einsum") == 1 + ("Einsum" in error.value.fix) and "\n" not in line


def test_symbolic_spatial_axes_take_input_size(tmp_path):
    """A dynamo export with dynamic H, W: refused with a fix naming --input-size, which
    then works through models.loading.load (the CLI's path)."""
    from models.loading import load

    inits: list = []
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", _init(inits, "w", (4, 3, 3, 3))], ["c"], name="conv",
                          pads=[1, 1, 1, 1]),
         helper.make_node("ReduceMean", ["c"], ["y"], name="gap", axes=[2, 3], keepdims=0)],
        "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UserError, match="--input-size") as error:
        load(str(path))
    assert "dyn.onnx" in error.value.one_line()
    model = load(str(path), input_size=16)
    assert model.output_spec("conv").shape == (1, 4, 16, 16)
    assert model.output_spec("gap").shape == (1, 4)
    assert model.macs() == 256 * 4 * 27


def test_opset_12_softmax_over_channels_is_reshaped_around_the_last_axis():
    """SqueezeNet's Softmax(axis=1) on (N, C, 1, 1) at opset < 13 runs over C*1*1."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], name="prob", axis=1)], "sm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 1, 1])])
    model = model_from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)]))
    assert model.output_spec("prob").shape == (1, 10)
    assert model.op("prob").function == "softmax"
    assert model.output_spec("prob.unflat").shape == (1, 10, 1, 1)
    with pytest.raises(UserError, match="Softmax over axis 1"):
        model_from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
