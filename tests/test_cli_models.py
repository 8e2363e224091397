"""`hwsim models`: the zoo listing, lowered workloads, and one-line errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli import main

PUBLISHED_GMACS = {"resnet18": 1.8, "resnet50": 4.1, "vgg16": 15.5, "mobilenet_v1": 0.57}


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_zoo_json_lists_published_macs(capsys):
    code, out, _ = run_cli(capsys, "models", "--format", "json")
    assert code == 0
    zoo = {row["name"]: row for row in json.loads(out)}
    assert set(row_keys for row in zoo.values() for row_keys in row) == {"name", "params", "macs"}
    for name, gmacs in PUBLISHED_GMACS.items():
        assert zoo[name]["macs"] == pytest.approx(gmacs * 1e9, rel=0.02)


def test_resnet50_training_at_2_8_quarters_ff_and_bp(capsys):
    code, out, _ = run_cli(capsys, "models", "show", "resnet50", "--sparsity", "2:8",
                           "--mode", "train", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["model"] == "resnet50"
    for w in document["workloads"]:
        assert {"layer", "phase", "M", "N", "K", "macs", "sparse", "pattern"} <= set(w)
    for phase in ("FF", "BP"):
        rows = [w for w in document["workloads"] if w["phase"] == phase]
        sparse = [w for w in rows if w["sparse"]]
        assert sum(w["macs"] for w in sparse) * 4 == sum(w["dense_macs"] for w in sparse)
        dense_left = {w["layer"] for w in rows if not w["sparse"]}
        assert dense_left <= {"conv1"}, dense_left   # 3 input channels: not a multiple of 8
    wu = [w for w in document["workloads"] if w["phase"] == "WU"]
    assert all(not w["sparse"] and w["macs"] == w["dense_macs"] for w in wu)


def test_show_table_prints_every_phase(capsys):
    code, out, _ = run_cli(capsys, "models", "show", "resnet18", "--sparsity", "2:8", "--mode", "train")
    assert code == 0
    assert "FF" in out and "BP" in out and "WU" in out and "kept dense" in out


@pytest.mark.parametrize("argv, expected", [
    (["models", "show", "resnet81"], "resnet18"),
    (["models", "show", "resnet18", "--sparsity", "9:8"], "--sparsity"),
    (["models", "show", "resnet18", "--sparsity", "2:0"], "--sparsity"),
    (["models", "show", "resnet18", "--sparsity", "unstructured:1.5"], "--sparsity"),
    (["models", "show", "resnet18", "--sparsity", "block:1x4:0"], "--sparsity"),
    (["models", "show", "resnet18", "--batch", "0"], "--batch"),
    (["models", "show", "missing/model.json"], "missing/model.json"),
    (["models", "show", "resnet18", "--mode", "fly"], "--mode"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, expected):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_malformed_files_exit_2_without_traceback(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    csv = tmp_path / "topo.csv"
    csv.write_text("Layer name, IFMAP Height\nconv1, x\n")
    onnx_file = tmp_path / "bad.onnx"
    onnx_file.write_bytes(b"\x00not an onnx file")
    for path in (broken, csv, onnx_file):
        result = subprocess.run([sys.executable, "-m", "cli", "models", "show", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert str(path.name) in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_every_subcommand_has_help_with_an_example(capsys):
    from cli import build_parser

    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert "models" in subcommands
    for name, subparser in subcommands.items():
        assert "example" in (subparser.epilog or ""), name
