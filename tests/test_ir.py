"""Graph IR: shape inference, checks at the edge, exact JSON round trip."""
from __future__ import annotations

import json

import pytest

from models.errors import UserError
from models.ir import (BatchMatmul, Conv2d, Dense, GraphBuilder, load_model, model_from_dict,
                       model_to_dict, save_model)
from models.patterns import BDWP
from tests.conftest import small_cnn


def test_shapes_params_and_macs(cnn):
    assert cnn.output_spec("conv2").shape == (1, 32, 8, 8)
    assert cnn.output_spec("fc").shape == (1, 10)
    assert cnn.params() == 3 * 16 * 9 + 16 * 32 * 9 + 32 * 32 + 32 * 10 + 10
    assert cnn.macs() == 16 * 16 * 16 * 27 + 64 * 32 * 144 + 64 * 32 * 32 + 32 * 10


def test_json_round_trip_is_exact(tmp_path):
    model = small_cnn().with_sparsity(BDWP(2, 8))
    path = tmp_path / "m.json"
    save_model(model, str(path))
    again = load_model(str(path))
    assert model_to_dict(again) == model_to_dict(model)
    assert again.op("conv2").sparsity == BDWP(2, 8)
    assert [op.name for op in again.ops()] == [op.name for op in model.ops()]


def test_shape_mismatch_names_the_op():
    builder = GraphBuilder("bad")
    x = builder.input("x", (1, 3, 8, 8))
    builder.add(Conv2d("conv", 4, 8, 3), x)
    with pytest.raises(UserError, match="conv"):
        builder.build()


def test_batch_matmul_checks_shapes():
    builder = GraphBuilder("bmm")
    a = builder.input("a", (1, 4, 8, 16))
    b = builder.input("b", (1, 4, 8, 16))
    builder.add(BatchMatmul("scores", transpose_b=True), a, b)
    assert builder.build().output_spec("scores").shape == (1, 4, 8, 8)
    builder = GraphBuilder("bmm")
    a = builder.input("a", (1, 4, 8, 16))
    b = builder.input("b", (1, 4, 8, 16))
    builder.add(BatchMatmul("scores"), a, b)
    with pytest.raises(UserError, match="scores"):
        builder.build()


@pytest.mark.parametrize("document, field", [
    ({"format": "other"}, "format"),
    ({"format": "sparse-ir", "version": 99, "nodes": []}, "version"),
    ({"format": "sparse-ir", "version": 1, "nodes": [{"name": "x", "kind": "warp"}]}, "kind"),
    ({"format": "sparse-ir", "version": 1,
      "nodes": [{"name": "x", "kind": "input", "shape": [1, 4], "colour": 1}]}, "nodes.x"),
    ({"format": "sparse-ir", "version": 1,
      "nodes": [{"name": "x", "kind": "input", "shape": [1, 4]},
                {"name": "fc", "kind": "dense", "in_features": 5, "out_features": 2,
                 "inputs": ["x"]}]}, "fc"),
    ({"format": "sparse-ir", "version": 1,
      "nodes": [{"name": "x", "kind": "input", "shape": [1, 4]},
                {"name": "fc", "kind": "dense", "in_features": 4, "out_features": 2,
                 "sparsity": "9:4", "inputs": ["x"]}]}, "sparsity"),
])
def test_bad_documents_raise_user_errors(document, field):
    with pytest.raises(UserError) as error:
        model_from_dict(document, source="m.json")
    assert "m.json" in error.value.one_line() and field in error.value.one_line()


def test_malformed_json_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="broken.json"):
        load_model(str(path))


def test_dense_features_must_be_positive():
    with pytest.raises(UserError):
        Dense("fc", 0, 3)
