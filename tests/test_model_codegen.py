"""Whole-model codegen and run: every layer of a CNN on host, wasm and aarch64 matches numpy."""
from __future__ import annotations

import json

import pytest

from cli import main
from tests.conftest import require_tools

TARGETS = {"host": ("local", ("cc",)), "wasm32-simd128": ("wasmtime", ("clang", "wasm-ld")),
           "snapdragon855": ("qemu", ("aarch64-linux-gnu-gcc", "qemu-aarch64-static"))}


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mobilenet_v1_runs_end_to_end_and_matches_numpy(target, tmp_path, capsys):
    runner, tools = TARGETS[target]
    require_tools(*tools)
    out = tmp_path / "mnv1"
    assert main(["codegen", "--target", target, "--model", "mobilenet_v1", "--dataset", "cifar10",
                 "--sparsity", "2:8", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--runner", runner, "--repeats", "1", "--warmup", "0",
                 "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    kernels = document["kernels"]
    assert len(kernels) == 29                        # 27 convolutions, pool, fc
    assert all(k["relative_error"] <= 1e-3 for k in kernels)
    sparse_layers = [k for k in kernels if k["pattern"] == "2:8"]
    assert {k["layer"].split(".")[0] for k in sparse_layers} >= {f"block{i}" for i in range(1, 14)}
    assert all(k["kind"] == "nmgemm" for k in sparse_layers if k["layer"].endswith("pw.relu"))


@pytest.mark.slow
def test_block_sparse_resnet_runs_on_host(tmp_path, capsys):
    out = tmp_path / "r9"
    assert main(["codegen", "--target", "host", "--model", "resnet9", "--dataset", "cifar10",
                 "--sparsity", "block:1x4:0.2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--format", "json", "--repeats", "1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert all(k["relative_error"] <= 1e-3 for k in document["kernels"])
    # ResNet-9 has 3x3 convolutions only: block patterns run there as masked dense convolutions
    assert {k["kind"] for k in document["kernels"]} >= {"nmconv", "eltwise", "pool"}


def test_models_without_cpu_kernels_are_one_line(tmp_path, capsys):
    assert main(["codegen", "--target", "host", "--model", "bert_base", "--out", str(tmp_path)]) == 2
    assert "codegen" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nothing")]) == 2
    assert "hwsim codegen" in capsys.readouterr().err
    assert main(["codegen", "--target", "pixel9", "--model", "mobilenet_v1", "--out", str(tmp_path)]) == 2
