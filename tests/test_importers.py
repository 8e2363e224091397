"""Importers: SCALE-Sim topology CSVs and ONNX files into the IR."""
from __future__ import annotations

import pytest

from models.errors import UserError
from models.importers.scalesim import load_topology
from models.lowering import lower

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import numpy as np  # noqa: E402

CONV_CSV = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
conv1, 230, 230, 7, 7, 3, 64, 2,
conv2, 58, 58, 3, 3, 64, 64, 1, 2:4,
DPconv3, 16, 16, 3, 3, 8, 1, 1,
"""


def test_scalesim_conv_format(tmp_path):
    path = tmp_path / "topo.csv"
    path.write_text(CONV_CSV)
    workloads = {w.layer: w for w in lower(load_topology(str(path)), "infer")}
    assert (workloads["conv1"].M, workloads["conv1"].N, workloads["conv1"].K) == (112 * 112, 64, 147)
    assert workloads["conv2"].sparse and workloads["conv2"].nm == (2, 4)
    # scalesim runs a DP layer once per channel: 8 groups of (196 x 1 x 9)
    assert (workloads["DPconv3"].groups, workloads["DPconv3"].M, workloads["DPconv3"].K) == (8, 196, 9)


def test_scalesim_gemm_format_round_trips_mnk(tmp_path):
    path = tmp_path / "gemm.csv"
    path.write_text("Layer, M, N, K,\nqkv, 128, 2304, 768,\nffn, 128, 3072, 768\n")
    got = [(w.layer, w.M, w.N, w.K) for w in lower(load_topology(str(path)), "infer")]
    assert got == [("qkv", 128, 2304, 768), ("ffn", 128, 3072, 768)]


@pytest.mark.parametrize("text, field", [
    ("Layer, M, N, K,\nfc, 12, x, 4,\n", "line 2, column 'N'"),
    ("Layer, M, N, K,\nfc, 12, 0, 4,\n", "line 2, column 'N'"),
    ("Layer, M, N, K,\nfc, 12, 4,\n", "line 2"),
    (CONV_CSV.replace("58, 58, 3, 3", "2, 2, 3, 3"), "line 3"),
    ("Layer, M\nfc, 3\n", "line 1"),
    ("Layer, M, N, K,\n", ""),
])
def test_malformed_topologies_name_file_and_row(tmp_path, text, field):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_topology(str(path))
    assert "bad.csv" in error.value.one_line() and field in error.value.one_line()


def _tiny_onnx(extra_nodes=()):
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
                    numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
                    numpy_helper.from_array(rng.standard_normal((10, 8 * 4 * 4)).astype(np.float32), "w2"),
                    numpy_helper.from_array(rng.standard_normal((10, 6)).astype(np.float32), "w3")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2"], ["g"], name="fc", transB=1),
             helper.make_node("MatMul", ["g", "w3"], ["y"], name="proj"), *extra_nodes]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph)


def test_onnx_import_shapes_params_macs(tmp_path):
    from models.loading import load

    path = tmp_path / "tiny.onnx"
    onnx.save(_tiny_onnx(), str(path))
    model = load(str(path))
    assert model.output_spec("proj").shape == (1, 6)
    assert model.params() == 8 * 27 + 8 + 10 * 128 + 10 * 6
    assert model.macs() == 64 * 8 * 27 + 128 * 10 + 10 * 6


def test_onnx_unsupported_ops_are_listed_together(tmp_path):
    path = tmp_path / "odd.onnx"
    extra = [helper.make_node("Einsum", ["y"], ["e"], equation="ij->ij"),
             helper.make_node("Gather", ["e", "y"], ["z"])]
    onnx.save(_tiny_onnx(extra), str(path))
    from models.importers.onnx_import import load_onnx
    with pytest.raises(UserError, match="Einsum, Gather"):
        load_onnx(str(path))


def test_onnx_malformed_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\xff\xffjunk")
    from models.importers.onnx_import import load_onnx
    with pytest.raises(UserError, match="junk.onnx"):
        load_onnx(str(path))
