"""The importer on files written by PyTorch's own exporters (TorchScript and dynamo).

The files are made once per test session by tests/onnx_exports.py, run in the CPU
torch environment (`make .venv-torch/.installed`), and kept in pytest's cache folder
under a key of the export script, the matrix and torch's interpreter (so an edit of
either re-exports; `pytest --cache-clear` forgets them). The torch side counts its
own parameters, forward MACs (forward hooks) and weight layers; the imported IR must
give the same numbers exactly and the same layer list in the same order.

Without .venv-torch the tests skip, saying how to build it; with CI set they fail.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.onnx_export_matrix import CODEGEN_STEMS, STEMS

ROOT = Path(__file__).resolve().parent.parent
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"
EXPORT_SCRIPT = ROOT / "tests" / "onnx_exports.py"
MATRIX = ROOT / "tests" / "onnx_export_matrix.py"
EXPORT_TIMEOUT_S = 1200
WEIGHT_KINDS = ("conv2d", "dense", "batch_matmul")


def _export_key() -> str:
    digest = hashlib.sha256()
    for path in (EXPORT_SCRIPT, MATRIX):
        digest.update(path.read_bytes())
    digest.update(str(TORCH_PYTHON.resolve()).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path):
    """Holds an exclusive lock on ``path``: pytest-xdist workers export once, not twice."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_root(request, tmp_path_factory) -> Path:
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("onnx_torch_exports"))
    return tmp_path_factory.getbasetemp().parent / "onnx_torch_exports"


@pytest.fixture(scope="session")
def exports(request, tmp_path_factory) -> tuple[Path, dict]:
    """Returns (folder of the exported files, their manifest), exporting on first use."""
    if not TORCH_PYTHON.exists():
        message = (f"{TORCH_PYTHON.relative_to(ROOT)} is missing: build the CPU torch "
                   f"environment with `make .venv-torch/.installed`")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = _cache_root(request, tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / _export_key()
    with _locked(root / ".lock"):
        if not (folder / "manifest.json").exists():
            scratch = root / f"{folder.name}.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            result = subprocess.run([str(TORCH_PYTHON), str(EXPORT_SCRIPT), str(scratch)],
                                    capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S,
                                    cwd=ROOT)
            assert result.returncode == 0, \
                f"export script failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(scratch, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest) == sorted(STEMS), "the manifest lacks exports of the matrix"
    return folder, manifest


def _layers(model) -> list[list]:
    return [[op.kind, list(getattr(op, "weight_shape", []))] for op in model.ops()
            if op.kind in WEIGHT_KINDS]


def _batch_norms(model) -> int:
    return sum(op.kind == "norm" and op.norm == "batch" for op in model.ops())


@pytest.mark.parametrize("stem", STEMS)
def test_export_imports_with_torch_counts(exports, stem):
    from models.loading import load

    folder, manifest = exports
    entry = manifest[stem]
    model = load(str(folder / entry["file"]))
    assert _layers(model) == entry["layers"], f"{stem}: layer list differs from torch's"
    assert model.macs() == entry["macs"], \
        f"{stem}: {model.macs()} MACs, torch's hooks count {entry['macs']}"
    # each exporter may fold batch norms into the conv before (in eval mode); then the
    # BN's scale and shift are gone and the conv gained a bias: torch's folded count
    norms = _batch_norms(model)
    if norms == 0:
        assert model.params() == entry["params_bn_folded"], stem
    else:
        assert norms == entry["batch_norms"], f"{stem}: some but not all batch norms folded"
        assert model.params() == entry["params"], stem


def test_matrix_covers_the_exporters_options(exports):
    """The bounded matrix still holds what the issue asks the importer to take."""
    _, manifest = exports
    ts = [e["options"] for e in manifest.values() if e["exporter"] == "torchscript"]
    assert {o["opset_version"] for o in ts} >= {13, 14, 16, 17, 18, 20}
    assert {o.get("do_constant_folding", True) for o in ts} == {True, False}
    assert {o.get("keep_initializers_as_inputs", False) for o in ts} == {True, False}
    dynamo = [stem for stem, e in manifest.items() if e["exporter"] == "dynamo"]
    assert {manifest[s]["model"] for s in dynamo} >= {"mobilenet_v1", "resnet18",
                                                       "mobilenet_v2", "vit_small"}
    assert all(manifest[s]["options"]["opset_version"] >= 18 for s in dynamo)


def test_dynamo_external_data_is_read(exports):
    """The dynamo exports keep weights in a .data file beside the graph; the params
    above only match when the importer read them from it."""
    folder, manifest = exports
    for stem, entry in manifest.items():
        if entry["options"].get("external_data"):
            graph = folder / entry["file"]
            data = folder / (entry["file"] + ".data")
            assert data.exists(), f"{stem}: no external data written"
            assert graph.stat().st_size < data.stat().st_size / 10, \
                f"{stem}: weights are inside the graph file"


def test_issue_mobilenet_v1_case_loads_in_the_cli(exports, capsys):
    """The issue's file: `hwsim models show m.onnx` refused it (Identity_0)."""
    from cli import main

    folder, manifest = exports
    path = folder / manifest["mobilenet_v1.ts17"]["file"]
    assert main(["models", "show", str(path), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sum(w["macs"] for w in document["workloads"]) == \
        manifest["mobilenet_v1.ts17"]["macs"]


@pytest.mark.parametrize("stem", ["mobilenet_v1.ts17", "resnet18.dynamo18",
                                  "mobilenet_v2.dynamo18"])
def test_export_simulates_on_sat_train_2_8(exports, stem, tmp_path):
    """`hwsim simulate --arch sat.yaml --model FILE --mode train --sparsity 2:8` runs,
    once per network, as a subprocess (the installed CLI, as a user runs it)."""
    folder, manifest = exports
    path = folder / manifest[stem]["file"]
    result = subprocess.run(
        [sys.executable, "-m", "cli", "simulate", "--arch",
         str(ROOT / "targets" / "accelerators" / "sat.yaml"), "--model", str(path),
         "--mode", "train", "--sparsity", "2:8", "--format", "json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert document["mode"] == "train" and document["sparsity"] == "2:8"
    assert set(document["phase_cycles"]) == {"FF", "BP", "WU"} and document["total_cycles"] > 0
    forward = [layer for layer in document["layers"] if layer["phase"] == "FF"]
    assert sum(layer["dense_macs"] for layer in forward) == manifest[stem]["macs"]
    assert len(forward) == len(manifest[stem]["layers"])
    assert any(layer["sparse"] and layer["pattern"] == "2:8" for layer in forward)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=900, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("stem", CODEGEN_STEMS)
def test_codegen_on_own_weights_matches_onnx_runtime(exports, stem, tmp_path):
    """`hwsim codegen --target host --model FILE --sparsity 2:8` builds on the file's own
    weights; `hwsim run` runs each build as a whole model and matches ONNX Runtime on
    the original file (dense build) and on the masked file written beside it (sparse)."""
    from targets.engines.ort_compare import pruning_agreement

    require_tools("gcc")
    folder, manifest = exports
    path = folder / manifest[stem]["file"]
    out = tmp_path / "build"
    built = _cli("codegen", "--target", "host", "--model", str(path), "--sparsity", "2:8",
                 "--out", str(out), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "the file's own weights" in built.stdout
    ran = _cli("run", str(out), "--format", "json", "--rounds", "1", "--repeats", "1",
               "--warmup", "0", "--baselines", "codegen", "--no-engines", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    checks = {check["build"]: check for check in json.loads(ran.stdout)["onnxruntime"]}
    assert checks["dense"]["reference"] == "model.onnx"
    assert checks["sparse"]["reference"] == "model.masked.onnx"
    for check in checks.values():
        assert check["max_relative_error"] < 1e-4, check
        assert check["top1_agreement"] == check["inputs"] >= 4, check
    # the sparse check is not the dense one again: the mask moves ONNX Runtime's output
    change, _ = pruning_agreement(out)
    assert change > 1e-2, f"masking 2:8 changed the output by only {change:.1e}"
