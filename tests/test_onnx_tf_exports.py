"""The importer on files tf2onnx writes from Keras models (issue 14 item 1).

The files are made once per test session by tests/onnx_tf_exports.py in the CPU
TensorFlow environment (`make .venv-tf/.installed`) and kept in pytest's cache folder
under a key of the script and the interpreter; Keras counts its own parameters,
forward MACs and weight layers, and the imported IR must give the same numbers and
layer list. The Keras CNNs pad asymmetrically ('same' at stride 2 pads 0 before and 1
after): the IR takes the symmetric pad of the same output size, so shapes and MACs are
exact, and codegen refuses the file (its kernels pad symmetrically) in one line.

Without .venv-tf the tests skip, saying how to build it; with CI set they fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_onnx_torch_exports import _batch_norms, _cache_root, _layers, _locked

ROOT = Path(__file__).resolve().parent.parent
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
EXPORT_SCRIPT = ROOT / "tests" / "onnx_tf_exports.py"
STEMS = ["small_cnn.tf2onnx13", "small_cnn.tf2onnx17", "keras_mobilenet.tf2onnx17",
         "keras_mobilenet_v2.tf2onnx17"]


def _key() -> str:
    import hashlib

    digest = hashlib.sha256(EXPORT_SCRIPT.read_bytes())
    digest.update(str(TF_PYTHON.resolve()).encode())
    return "tf-" + digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tf_exports(request, tmp_path_factory) -> tuple[Path, dict]:
    if not TF_PYTHON.exists():
        message = (f"{TF_PYTHON.relative_to(ROOT)} is missing: build the CPU TensorFlow "
                   f"environment with `make .venv-tf/.installed`")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = _cache_root(request, tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / _key()
    with _locked(root / ".lock"):
        if not (folder / "manifest.json").exists():
            scratch = root / f"{folder.name}.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            result = subprocess.run([str(TF_PYTHON), str(EXPORT_SCRIPT), str(scratch)],
                                    capture_output=True, text=True, timeout=1200, cwd=ROOT)
            assert result.returncode == 0, \
                f"tf2onnx export failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(scratch, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest) == sorted(STEMS)
    return folder, manifest


@pytest.mark.parametrize("stem", STEMS)
def test_tf2onnx_export_imports_with_keras_counts(tf_exports, stem):
    from models.loading import load

    folder, manifest = tf_exports
    entry = manifest[stem]
    model = load(str(folder / entry["file"]))
    assert _layers(model) == entry["layers"], f"{stem}: layer list differs from Keras's"
    assert model.macs() == entry["macs"], \
        f"{stem}: {model.macs()} MACs, Keras counts {entry['macs']}"
    # tf2onnx folds every batch norm (after a depthwise conv as Mul + Add, merged back)
    assert _batch_norms(model) == 0
    assert model.params() == entry["params_bn_folded"], stem


def test_tf2onnx_mobilenet_simulates_and_codegen_refuses_in_one_line(tf_exports, tmp_path,
                                                                    capsys):
    from cli import main

    folder, manifest = tf_exports
    path = folder / manifest["keras_mobilenet.tf2onnx17"]["file"]
    assert main(["simulate", "--arch", str(ROOT / "targets" / "accelerators" / "sat.yaml"),
                 "--model", str(path), "--mode", "train", "--sparsity", "2:8",
                 "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    forward = [layer for layer in document["layers"] if layer["phase"] == "FF"]
    assert sum(layer["dense_macs"] for layer in forward) == \
        manifest["keras_mobilenet.tf2onnx17"]["macs"]
    code = main(["codegen", "--target", "host", "--model", str(path), "--out",
                 str(tmp_path / "build")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "pad asymmetrically" in lines[0], lines


def test_tf2onnx_pruning_costs_run_on_keras_weights(tf_exports, capsys):
    """`hwsim models show` on a tf2onnx file: the asymmetric pads and the merged
    Mul + Add batch norms reach the per-layer output error (computed on ONNX Runtime's
    real layer inputs) as ONNX Runtime computes them."""
    from cli import main

    folder, manifest = tf_exports
    path = folder / manifest["small_cnn.tf2onnx17"]["file"]
    assert main(["models", "show", str(path), "--sparsity", "2:8", "--format", "json"]) == 0
    pruning = json.loads(capsys.readouterr().out)["pruning"]
    assert pruning["layers"] and all(0 < e["output_error"] < 2 for e in pruning["layers"])
