"""`hwsim simulate` end to end: the default run, the JSON documents, the files --out writes."""
from __future__ import annotations

import json
import re

import pytest

from cli import main
from models.ir import save_model
from tests.conftest import small_cnn

LAYER_KEYS = {"name", "phase", "M", "N", "K", "sparse", "compute_cycles", "stall_cycles",
              "total_cycles", "utilization", "sram_bytes", "dram_bytes", "energy_pj"}
SUMMARY_KEYS = {"tool", "version", "arch", "model", "sparsity", "mode", "batch", "total_cycles",
                "seconds", "energy_j", "layers"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "small_cnn.json"
    save_model(small_cnn(32, size=16), str(path))
    return str(path)


def test_default_run_shows_a_2_8_speedup(capsys):
    code, out, err = run_cli(capsys, "simulate", "--arch", "targets/accelerators/sat.yaml")
    assert code == 0, err
    assert "resnet18" in out and "sat-vcu1525" in out
    match = re.search(r"2:8 vs dense: ([0-9.]+)x faster \(MAC ratio, the ideal: ([0-9.]+)x\)", out)
    assert match, out[-2000:]
    speedup, ideal = float(match.group(1)), float(match.group(2))
    assert 1.0 < speedup <= ideal <= 2.0


def test_json_single_run_schema(capsys, model_file):
    code, out, _ = run_cli(capsys, "simulate", "--arch", "sat", "--model", model_file,
                           "--sparsity", "2:8", "--batch", "2", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert SUMMARY_KEYS <= set(document)
    assert document["sparsity"] == "2:8" and document["batch"] == 2 and document["mode"] == "train"
    assert document["total_cycles"] == sum(layer["total_cycles"] for layer in document["layers"])
    for layer in document["layers"]:
        assert LAYER_KEYS <= set(layer)
    assert any(layer["sparse"] for layer in document["layers"])
    assert not any(layer["sparse"] for layer in document["layers"] if layer["phase"] == "WU")


def test_json_compare_is_keyed_by_sparsity(capsys, model_file):
    code, out, _ = run_cli(capsys, "simulate", "--arch", "sat", "--model", model_file,
                           "--compare", "dense,2:8,1:8", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert list(document["runs"]) == ["dense", "2:8", "1:8"]
    assert document["baseline"] == "dense" and document["speedup"]["dense"] == 1.0
    runs = document["runs"]
    for spec, run in runs.items():
        assert SUMMARY_KEYS <= set(run) and run["sparsity"] == spec
        assert document["speedup"][spec] == pytest.approx(
            runs["dense"]["total_cycles"] / run["total_cycles"])
    assert 1.0 < document["speedup"]["2:8"] <= document["speedup"]["1:8"]


def test_out_writes_summary_report_and_plots(capsys, model_file, tmp_path):
    out_dir = tmp_path / "report"
    code, out, _ = run_cli(capsys, "simulate", "--arch", "sat", "--model", model_file,
                           "--out", str(out_dir))
    assert code == 0
    assert "summary.json" in out
    document = json.loads((out_dir / "summary.json").read_text())
    assert set(document["runs"]) == {"dense", "2:8"}
    report = (out_dir / "report.md").read_text()
    for png in ("cycles_by_layer.png", "utilization.png"):
        assert f"]({png})" in report
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [path for path in out_dir.iterdir() if path.name.startswith(".tmp-")]


def test_switches_cost_cycles(capsys, model_file):
    def cycles(*flags):
        code, out, _ = run_cli(capsys, "simulate", "--arch", "sat", "--model", model_file,
                               "--sparsity", "2:8", "--format", "json", "--batch", "4", *flags)
        assert code == 0
        document = json.loads(out)
        return document["total_cycles"], document["dataflow_options"]

    base, options = cycles()
    assert options == {"interleave": True, "pregenerate_sparse_weights": True, "offline_schedule": True}
    slow, options = cycles("--no-overlap")
    assert slow > base and options["offline_schedule"] is False
    slow, options = cycles("--no-interleave")
    assert slow > base and options["interleave"] is False
    starved, _ = cycles("--dram-gbps", "1")
    assert starved > base


def test_inference_on_a_dense_baseline(capsys, model_file):
    code, out, _ = run_cli(capsys, "simulate", "--arch", "systolic-32x32-ws", "--model", model_file,
                           "--mode", "infer", "--sparsity", "dense", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert {layer["phase"] for layer in document["layers"]} == {"FF"}
    assert document["arch"] == "systolic-32x32-ws"
