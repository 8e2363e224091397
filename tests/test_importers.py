"""Importers and the model loader: SCALE-Sim topology CSVs and ONNX files into the IR."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import UserError
from models.importers.scalesim import load_topology
from models.ir import BatchMatmul, Conv2d, Dense, model_to_dict, save_model
from models.loading import load
from models.lowering import lower
from tests.conftest import in_ci


def _onnx():
    """Returns the onnx module; skips without it locally, fails without it in CI."""
    if in_ci():
        import onnx
        return onnx
    return pytest.importorskip("onnx")


# ---------------------------------------------------------------- SCALE-Sim

CONV_CSV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
conv1, 230, 230, 7, 7, 3, 64, 2,
conv2, 58, 58, 3, 3, 64, 64, 1, 2:4,
DPconv3, 16, 16, 3, 3, 8, 1, 1,
"""


def _mnk(path: str) -> dict[str, tuple[int, int, int, int]]:
    return {w.layer: (w.M, w.N, w.K, w.groups) for w in lower(load_topology(path), "infer")}


def test_scalesim_conv_format(tmp_path):
    path = tmp_path / "topo.csv"
    path.write_text(CONV_CSV)
    got = _mnk(str(path))
    # scalesim: ceil((230 - 7 + 2) / 2) = 113 output rows (the last window reads zeros)
    assert got["conv1"] == (113 * 113, 64, 147, 1)
    assert got["conv2"] == (56 * 56, 64, 576, 1)
    # scalesim runs a DP layer once per channel, each with one channel: 8 groups of 196 x 1 x 9
    assert got["DPconv3"] == (196, 1, 9, 8)
    workloads = {w.layer: w for w in lower(load_topology(str(path)), "infer")}
    assert workloads["conv2"].sparse and workloads["conv2"].nm == (2, 4)
    assert not workloads["conv1"].sparse


def test_scalesim_gemm_format_gives_back_mnk(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("Layer, M, N, K,\nqkv, 128, 2304, 768,\nffn, 128, 3072, 768\n")
    got = [(w.layer, w.M, w.N, w.K) for w in lower(load_topology(str(path)), "infer")]
    assert got == [("qkv", 128, 2304, 768), ("ffn", 128, 3072, 768)]


def test_scalesim_layers_are_independent_and_batch_scales_rows(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("Layer, M, N, K,\nfc, 10, 20, 30,\nfc, 5, 6, 7,\n")
    model = load_topology(str(path), batch=4)
    assert len(model.inputs()) == 2
    assert [(w.layer, w.M) for w in lower(model, "infer")] == [("fc", 40), ("fc_2", 20)]
    # every layer is fed by a model input: training has no BP, only WU
    assert {w.phase for w in lower(model, "train")} == {"FF", "WU"}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 300))
def test_scalesim_gemm_rows_lower_to_their_own_mnk(tmp_path_factory, m, n, k):
    path = tmp_path_factory.mktemp("gemm") / "g.csv"
    path.write_text(f"Layer, M, N, K,\ng, {m}, {n}, {k},\n")
    assert _mnk(str(path)) == {"g": (m, n, k, 1)}


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 7), st.integers(1, 7),
       st.integers(1, 16), st.integers(1, 16), st.integers(1, 4))
def test_scalesim_conv_rows_match_scalesims_ofmap_formula(tmp_path_factory, height, width, r, s,
                                                          channels, filters, stride):
    if r > height or s > width:
        return
    path = tmp_path_factory.mktemp("conv") / "c.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                    f"Num Filter, Strides,\nc, {height}, {width}, {r}, {s}, {channels}, {filters}, "
                    f"{stride},\n")
    # scalesim 3.0.0 topology_utils.topo_calc_hyperparams: ceil((ifmap - filter + stride) / stride)
    ofmap_h = math.ceil((height - r + stride) / stride)
    ofmap_w = math.ceil((width - s + stride) / stride)
    assert _mnk(str(path)) == {"c": (ofmap_h * ofmap_w, filters, r * s * channels, 1)}


# Asks scalesim's own topology reader for every layer's (ofmap pixels, filters, window).
SCALESIM_DIMS = """
import json, sys
from scalesim.topology_utils import topologies
topo = topologies()
topo.load_arrays(sys.argv[1], mnk_inputs=sys.argv[2] == "gemm")
topo.topo_calc_hyperparams()
rows = []
for index, entry in enumerate(topo.topo_arrays):
    ofmap_h, ofmap_w = topo.get_layer_ofmap_dims(index)
    rows.append([entry[0], ofmap_h * ofmap_w, entry[6], entry[3] * entry[4] * entry[5]])
print(json.dumps(rows))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv", "gemm"])
def test_importer_agrees_with_scalesims_own_reader(tmp_path, kind):
    """Each layer's M, N, K (per channel for DP layers) equal what scalesim 3.0.0 reads."""
    import json
    import subprocess

    from hwsim.scalesim_ref import scalesim_python
    try:
        python = scalesim_python()
    except UserError as error:
        if in_ci():
            pytest.fail(str(error))
        pytest.skip(str(error))
    rng = np.random.default_rng(7)
    if kind == "gemm":
        lines = ["Layer, M, N, K,"] + [f"g{i}, {rng.integers(1, 500)}, {rng.integers(1, 500)}, "
                                       f"{rng.integers(1, 500)}," for i in range(30)]
    else:
        lines = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                 "Num Filter, Strides,"]
        for i in range(30):
            r, s = rng.integers(1, 8, size=2)
            name = f"DPc{i}" if i % 5 == 0 else f"c{i}"
            lines.append(f"{name}, {rng.integers(r, 40)}, {rng.integers(s, 40)}, {r}, {s}, "
                         f"{rng.integers(1, 5)}, {rng.integers(1, 9)}, {rng.integers(1, 5)},")
    path = tmp_path / f"{kind}.csv"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run([str(python), "-c", SCALESIM_DIMS, str(path), kind],
                            capture_output=True, text=True, check=True)
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    ours = []
    for w in lower(load_topology(str(path)), "infer"):
        # scalesim splits a DP layer into one single-channel layer per channel
        names = [f"{w.layer}Channel_{g}" for g in range(w.groups)] if "DP" in w.layer \
            else [w.layer]
        ours += [[name, w.M, w.N, w.K] for name in names]
    assert ours == theirs


@pytest.mark.parametrize("text, field", [
    ("Layer, M, N, K,\nfc, 12, x, 4,\n", "line 2, column 'N'"),
    ("Layer, M, N, K,\nfc, 12, 0, 4,\n", "line 2, column 'N'"),
    ("Layer, M, N, K,\nfc, 12, -3, 4,\n", "line 2, column 'N'"),
    ("Layer, M, N, K,\nfc, 12, 4,\n", "line 2"),
    ("Layer, M, N, K,\n\nfc, 12, 4, 4, 3:2,\n", "line 3"),
    (CONV_CSV.replace("58, 58, 3, 3", "2, 2, 3, 3"), "line 3"),
    (CONV_CSV.replace("230, 230, 7, 7, 3", "230, 230, 7, 7, 3.5"), "line 2, column 'Channels'"),
    ("Layer, M\nfc, 3\n", "line 1"),
    ("Layer, M, N, K,\n", "no layers"),
])
def test_malformed_topologies_name_file_and_row(tmp_path, text, field):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_topology(str(path))
    assert "bad.csv" in error.value.one_line() and field in error.value.one_line()
    assert error.value.fix


# ---------------------------------------------------------------- ONNX


def _tiny_onnx(extra_nodes=(), extra_initializers=(), batch="N"):
    """Conv+Relu+MaxPool+Flatten+Gemm and a MatMul with a weight, on a (N, 3, 8, 8) input."""
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def tensor(shape, name):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    initializers = [tensor((8, 3, 3, 3), "w1"), tensor((8,), "b1"), tensor((10, 8 * 4 * 4), "w2"),
                    tensor((10,), "b2"), tensor((10, 6), "w3"), *extra_initializers]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
             helper.make_node("MatMul", ["g", "w3"], ["y"], name="proj"), *extra_nodes]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph)


def _save(tmp_path, model, name="m.onnx") -> str:
    onnx = _onnx()
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def test_onnx_import_shapes_params_macs(tmp_path):
    proto = _tiny_onnx()
    model = load(_save(tmp_path, proto, "tiny.onnx"))
    assert model.inputs()[0].shape == (1, 3, 8, 8)        # symbolic batch -> 1
    assert model.output_spec("flatten").shape == (1, 128)
    assert model.output_spec("proj").shape == (1, 6)
    assert isinstance(model.op("conv"), Conv2d) and model.op("conv").bias
    assert isinstance(model.op("fc"), Dense) and isinstance(model.op("proj"), Dense)
    assert model.params() == (8 * 27 + 8) + (10 * 128 + 10) + 10 * 6
    assert model.macs() == 64 * 8 * 27 + 128 * 10 + 10 * 6
    assert sum(w.macs for w in lower(model, "infer")) == model.macs()


def test_onnx_mobile_and_attention_ops(tmp_path):
    """Depthwise conv, BN, relu6 as Clip, global pool, constant Reshape, Transpose,
    Dropout/Identity, a Constant node and MatMul of two activations."""
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

    def const(array, name):
        return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)

    initializers = [const(np.ones((4, 1, 3, 3)), "dw"), const(np.ones(4), "scale"),
                    const(np.zeros(4), "shift"), const(np.zeros(4), "mean"),
                    const(np.ones(4), "var"), const(0.0, "lo"), const(6.0, "hi"),
                    numpy_helper.from_array(np.array([0, 4, 16], dtype=np.int64), "heads_shape")]
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["d"], name="dw", group=4, pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("BatchNormalization", ["d", "scale", "shift", "mean", "var"], ["bn"],
                         name="bn"),
        helper.make_node("Clip", ["bn", "lo", "hi"], ["act"], name="relu6"),
        helper.make_node("Dropout", ["act"], ["drop"], name="drop"),
        helper.make_node("Reshape", ["drop", "heads_shape"], ["tokens"], name="tokens"),
        helper.make_node("Transpose", ["tokens"], ["tokens_t"], name="tokens_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tokens", "tokens_t"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1),
        helper.make_node("Constant", [], ["two"], name="two", value=const(2.0, "two_value")),
        helper.make_node("Mul", ["probs", "two"], ["scaled"], name="scale"),
        helper.make_node("Identity", ["act"], ["same"], name="identity"),
        helper.make_node("GlobalAveragePool", ["same"], ["gap"], name="gap"),
    ]
    graph = helper.make_graph(
        nodes, "mobile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("gap", TensorProto.FLOAT, None)], initializers)
    model = load(_save(tmp_path, helper.make_model(graph)))
    assert model.op("dw").is_depthwise and model.output_spec("dw").shape == (1, 4, 4, 4)
    assert model.op("relu6").function == "relu6"
    assert isinstance(model.op("scores"), BatchMatmul)
    assert model.output_spec("scores").shape == (1, 4, 4)
    assert model.output_spec("gap").shape == (1, 4, 1, 1)
    assert "drop" not in model.graph and "identity" not in model.graph and "scale" not in model.graph
    assert model.params() == 4 * 9 + 2 * 4
    assert model.macs() == 16 * 4 * 9 + 4 * 4 * 16


def test_onnx_auto_pad_same(tmp_path):
    _onnx()
    from onnx import helper
    proto = _tiny_onnx()
    proto.graph.node[0].ClearField("attribute")
    proto.graph.node[0].attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
    model = load(_save(tmp_path, proto))
    assert model.op("conv").padding == (1, 1)
    assert model.output_spec("conv").shape == (1, 8, 8, 8)


def test_onnx_unsupported_ops_are_listed_together(tmp_path):
    _onnx()
    from onnx import helper
    extra = [helper.make_node("Einsum", ["y"], ["e"], equation="ij->ij"),
             helper.make_node("Gather", ["e", "y"], ["z"]),
             helper.make_node("Einsum", ["z"], ["q"], equation="ij->ij")]
    proto = _tiny_onnx(extra)
    with pytest.raises(UserError) as error:
        load(_save(tmp_path, proto, "odd.onnx"))
    line = error.value.one_line()
    assert "odd.onnx" in line and "unsupported ONNX ops: Einsum (2), Gather (1)" in line


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p.graph.node[0].attribute.append(
        __import__("onnx").helper.make_attribute("dilations", [2, 2])), "dilations"),
    (lambda p: (p.graph.initializer.pop(0), p.graph.input.append(
        __import__("onnx").helper.make_tensor_value_info("w1", 1, [8, 3, 3, 3]))), "Conv weight"),
    (lambda p: p.graph.input[0].type.tensor_type.shape.dim[2].ClearField("dim_value"),
     "symbolic size"),
    (lambda p: p.graph.node[0].attribute[0].ints.__setitem__(2, 0), "asymmetric padding"),
])
def test_onnx_what_the_ir_cannot_say_is_a_user_error(tmp_path, mutate, expected):
    proto = _tiny_onnx()
    mutate(proto)
    with pytest.raises(UserError, match=expected) as error:
        load(_save(tmp_path, proto, "strange.onnx"))
    assert "strange.onnx" in error.value.one_line()


def test_onnx_malformed_file(tmp_path):
    _onnx()
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\xff\xffjunk")
    with pytest.raises(UserError, match="junk.onnx"):
        load(str(path))


def test_onnx_missing_package_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'sparse-codesign\[onnx\]'"):
        load(str(path))


# ---------------------------------------------------------------- the loader


def test_load_resolves_zoo_names_and_files(tmp_path, monkeypatch):
    zoo_model = load("resnet18", dataset="cifar10", batch=2)
    assert zoo_model.inputs()[0].shape == (2, 3, 32, 32)
    saved = tmp_path / "r18.json"
    save_model(zoo_model, str(saved))
    assert model_to_dict(load(str(saved))) == model_to_dict(zoo_model)
    topology = tmp_path / "t.csv"
    topology.write_text("Layer, M, N, K,\nfc, 8, 8, 8,\n")
    assert load(str(topology), batch=3).inputs()[0].shape == (3, 1, 8, 8)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet9").write_text("a file named like a zoo model")
    assert load("resnet9").name == "resnet9"


@pytest.mark.parametrize("spec, expected", [
    ("missing/model.json", "no such file"),
    ("model.onnx", "no such file"),
    ("notes.txt", "cannot tell the format"),
    ("folder", "is a folder"),
    ("resnet81", "did you mean 'resnet18'"),
])
def test_load_bad_specs_are_user_errors(tmp_path, monkeypatch, spec, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match=expected):
        load(spec)


def test_load_refuses_zoo_sizing_for_files(tmp_path):
    topology = tmp_path / "t.csv"
    topology.write_text("Layer, M, N, K,\nfc, 8, 8, 8,\n")
    with pytest.raises(UserError, match="--dataset"):
        load(str(topology), dataset="cifar10")


def _zoo_cnn_as_onnx(model):
    """Returns an ONNX ModelProto of a zoo CNN (Conv, BN, Relu, Clip, Add, pools, Flatten, Gemm),
    written op by op with onnx.helper, weights as zero initializers."""
    _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from models.ir import Elementwise, Norm, Pool2d, Reshape

    nodes, initializers = [], []

    def init(name, shape):
        initializers.append(numpy_helper.from_array(np.zeros(shape, np.float32), name))
        return name

    for op in model.ops():
        if op.kind == "input":
            continue
        inputs = model.input_names(op.name)
        if isinstance(op, Conv2d):
            args = [inputs[0], init(f"{op.name}.w", op.weight_shape)]
            if op.bias:
                args.append(init(f"{op.name}.b", (op.out_channels,)))
            nodes.append(helper.make_node("Conv", args, [op.name], name=op.name, group=op.groups,
                                          kernel_shape=list(op.kernel), strides=list(op.stride),
                                          pads=list(op.padding) * 2))
        elif isinstance(op, Dense):
            nodes.append(helper.make_node(
                "Gemm", [inputs[0], init(f"{op.name}.w", op.weight_shape),
                         init(f"{op.name}.b", (op.out_features,))], [op.name], name=op.name,
                transB=1))
        elif isinstance(op, Norm):
            stats = [init(f"{op.name}.{p}", (op.channels,)) for p in ("s", "b", "m", "v")]
            nodes.append(helper.make_node("BatchNormalization", [inputs[0], *stats], [op.name],
                                          name=op.name))
        elif isinstance(op, Elementwise) and op.function == "relu6":
            nodes.append(helper.make_node("Clip", [inputs[0], init(f"{op.name}.lo", ()),
                                                   f"{op.name}.hi"], [op.name], name=op.name))
            initializers.append(numpy_helper.from_array(np.array(6.0, np.float32), f"{op.name}.hi"))
        elif isinstance(op, Elementwise):
            nodes.append(helper.make_node(op.function.capitalize(), inputs, [op.name], name=op.name))
        elif isinstance(op, Pool2d) and op.global_pool:
            nodes.append(helper.make_node("GlobalAveragePool" if op.mode == "avg" else
                                          "GlobalMaxPool", inputs, [op.name], name=op.name))
        elif isinstance(op, Pool2d):
            nodes.append(helper.make_node("MaxPool" if op.mode == "max" else "AveragePool", inputs,
                                          [op.name], name=op.name, kernel_shape=list(op.kernel),
                                          strides=list(op.stride), pads=list(op.padding) * 2))
        else:
            assert isinstance(op, Reshape) and op.shape == (-1,), op
            nodes.append(helper.make_node("Flatten", inputs, [op.name], name=op.name))
    shape = list(model.inputs()[0].shape)
    graph = helper.make_graph(
        nodes, model.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in model.outputs()],
        initializers)
    return helper.make_model(graph)


@pytest.mark.parametrize("name", ["resnet9", "resnet18", "mobilenet_v2", "vgg16"])
def test_zoo_cnns_exported_to_onnx_import_back_identically(name):
    from models import zoo
    from models.importers.onnx_import import model_from_onnx

    model = zoo.build(name, dataset="cifar10")
    again = model_from_onnx(_zoo_cnn_as_onnx(model))
    assert again.params() == model.params() and again.macs() == model.macs()
    assert [(w.layer, w.M, w.N, w.K, w.groups) for w in lower(again, "train")] == \
        [(w.layer, w.M, w.N, w.K, w.groups) for w in lower(model, "train")]
