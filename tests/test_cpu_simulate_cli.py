"""`hwsim simulate --arch <cpu>`: per-layer predictions of codegen's kernels, dense vs sparse."""
from __future__ import annotations

import json

import pytest

from cli import main
from tests.conftest import require_tools

TOOLS = {"snapdragon855": ("aarch64-linux-gnu-gcc", "llvm-mca"),
         "wasm32-simd128": ("clang", "llvm-mca", "llvm-objdump")}


@pytest.mark.parametrize("arch", sorted(TOOLS))
def test_mobilenet_v1_2_8_is_predicted_faster_than_dense(arch, tmp_path, capsys):
    require_tools(*TOOLS[arch])
    assert main(["simulate", "--arch", arch, "--model", "mobilenet_v1", "--compare", "dense,2:8",
                 "--format", "json", "--out", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    dense, sparse = document["runs"]["dense"], document["runs"]["2:8"]
    assert document["speedup"]["2:8"] > 1
    assert dense["mode"] == "infer" and dense["arch"] == arch
    pairs = list(zip(dense["layers"], sparse["layers"]))
    assert len(pairs) > 27
    sparse_layers = [(d, s) for d, s in pairs if s["sparse"]]
    assert len(sparse_layers) >= 13                   # every pointwise conv and the classifier
    for d, s in sparse_layers:
        assert s["total_cycles"] < d["total_cycles"], s["name"]
        assert s["kernel_origin"] == "codegen"
    for d, s in pairs:
        assert {"name", "compute_cycles", "stall_cycles", "total_cycles", "bound", "ms"} <= set(s)
    # the layers are the kernels codegen emits: epilogues fused (no bn/relu pass of their
    # own), the depthwise layers costed from codegen's dwconv
    names = [layer["name"] for layer in sparse["layers"]]
    assert not [name for name in names if name.endswith((".bn", ".relu"))]
    depthwise = [layer for layer in sparse["layers"] if layer["name"].endswith(".dw")]
    assert len(depthwise) == 13 and all(layer["kernel_origin"] == "codegen" and
                                        layer["kernel"].startswith("dwconv_3x3_s") for layer in depthwise)
    for name in ("summary.json", "report.md", "ms_by_layer.png", "bounds.png"):
        assert (tmp_path / name).is_file()


def test_cpu_bad_inputs_are_one_line(tmp_path, capsys):
    from targets.cpu import load_cpu_target

    bad_core = tmp_path / "phone.yaml"
    original = open(load_cpu_target("snapdragon855").source).read()
    bad_core.write_text(original.replace("core: cortex-a76", "core: cortex-a999"))
    assert main(["simulate", "--arch", str(bad_core), "--model", "mobilenet_v1"]) == 2
    err = capsys.readouterr().err
    assert "cortex-a999" in err and "cortex-a55" in err and err.count("\n") == 1
    assert main(["simulate", "--arch", "snapdragon855", "--model", "mobilenet_v1",
                 "--sparsity", "3:32"]) == 2
    err = capsys.readouterr().err
    assert "3:32" in err and err.count("\n") == 1


def test_the_tuner_predictor_ranks_register_blockings_by_their_llvm_mca_cycles():
    """codegen's tuner ranks qemu-target candidates with this predictor: it must see the
    rendered kernel (a wider register block reuses each loaded weight across more columns)."""
    require_tools(*TOOLS["snapdragon855"])
    from codegen.schedule import Candidate, SparseOp, to_params
    from hwsim.cpu.codegen_source import mca_predictor
    from targets.cpu import load_cpu_target

    target = load_cpu_target("snapdragon855")
    op = SparseOp(64, 256, 196, 2, 8)
    predict = mca_predictor(target)
    narrow = predict(op, to_params(op, Candidate(1, 4, unroll=1), "neon"), target)
    wide = predict(op, to_params(op, Candidate(4, 16, unroll=2), "neon"), target)
    assert 0 < wide < narrow
