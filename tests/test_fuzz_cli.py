"""Fuzz the real CLI (issue 16) over every kind of file it reads: accelerator YAML, CPU
target YAML, explore space YAML, IR JSON, SCALE-Sim CSV, ONNX, tuning logs, summary.json.

Each hypothesis example writes one hostile-but-ordinary file and runs ``cli.main`` on it
in-process; tests/fuzz_support.py states the contract (exit 0, or exit 2 with one line
naming the file; never a traceback, never past the time limit). Examples are derandomized
(the same every run) and bounded. Build folders and the subprocess hang checks are in
tests/test_fuzz_hangs.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_support import (HOSTILE_VALUES, Outcomes, check_contract, fuzz_settings, mutated,
                                text_damage)

ROOT = Path(__file__).resolve().parents[1]
SAT = ROOT / "targets" / "accelerators" / "sat.yaml"
PHONE = ROOT / "targets" / "cpus" / "snapdragon855.yaml"
TOPOLOGY = "Layer, M, N, K,\ng1, 16, 16, 16,\n"


@pytest.fixture(scope="module")
def outcomes():
    counts = Outcomes()
    yield counts
    print("\nfuzz outcomes (tests/test_fuzz_cli.py):\n" + counts.report())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The small valid inputs the mutations start from."""
    folder = tmp_path_factory.mktemp("fuzz-base")
    (folder / "tiny.csv").write_text(TOPOLOGY)
    from models.ir import (Conv2d, Dense, Elementwise, GraphBuilder, Reshape, model_to_dict,
                           save_model)
    builder = GraphBuilder("tiny")
    x = builder.input("x", (1, 8, 8, 8))
    x = builder.add(Conv2d("c1", 8, 16, (1, 1)), x)
    x = builder.add(Elementwise("r", "relu"), x)
    x = builder.add(Reshape("f", (-1,)), x)
    builder.add(Dense("d", 1024, 8), x)
    model = builder.build()
    save_model(model, str(folder / "tiny.json"))
    return {"folder": folder, "csv": folder / "tiny.csv", "ir": folder / "tiny.json",
            "ir_document": model_to_dict(model)}


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    return path


def _yaml_text(document) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10 ** 6)


# ---------------------------------------------------------------- accelerator YAML


def _simulate_on(arch: Path, files) -> list[str]:
    return ["simulate", "--arch", str(arch), "--model", str(files["csv"]), "--mode", "infer",
            "--sparsity", "dense", "--format", "json"]


@fuzz_settings(60)
@given(data=st.data())
def test_accelerator_yaml(data, files, capsys, outcomes, tmp_path):
    base = yaml.safe_load(SAT.read_text())
    if data.draw(st.booleans()):
        content = _yaml_text(data.draw(mutated(base)))
    else:
        content = data.draw(text_damage(SAT.read_text()))
    arch = _write(tmp_path, "arch.yaml", content)
    check_contract(_simulate_on(arch, files), capsys, names=str(arch), outcomes=outcomes,
                   kind="arch yaml")


HOSTILE_YAML = {
    "alias bomb": "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
    "recursive alias": "a: &a [*a]\n",
    "deep nesting": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "huge int": "kind: accelerator\nclock_mhz: 1" + "0" * 400 + "\n",
    "duplicate key": SAT.read_text() + "\nclock_mhz: 300\n",
    "python tag": "kind: !!python/object/apply:os.system ['echo owned']\n",
    "two documents": "kind: accelerator\n---\nkind: cpu\n",
    "nul bytes": "kind: accelerator\x00\n",
    "escape in key": SAT.read_text().replace("clock_mhz:", "\x1b[2Jclock_mhz:"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_accelerator_yaml_classics(case, files, capsys, outcomes, tmp_path):
    arch = _write(tmp_path, "arch.yaml", HOSTILE_YAML[case])
    assert check_contract(_simulate_on(arch, files), capsys, names=str(arch), outcomes=outcomes,
                          kind="arch yaml") == "refused"


# ---------------------------------------------------------------- CPU target YAML


@fuzz_settings(60)
@given(data=st.data())
def test_cpu_target_yaml(data, capsys, outcomes, tmp_path):
    base = yaml.safe_load(PHONE.read_text())
    if data.draw(st.booleans()):
        document = data.draw(mutated(base))
        content = _yaml_text(document)
    else:
        content = data.draw(text_damage(PHONE.read_text()))
    target = _write(tmp_path, "phone.yaml", content)
    check_contract(["targets", "show", str(target), "--format", "json"], capsys,
                   names=str(target), outcomes=outcomes, kind="cpu yaml")


# ---------------------------------------------------------------- explore space YAML


SPACE = {"workload": {"mode": "infer", "batch": 1, "models": [{"name": "MODEL"}]},
         "axes": {"array.rows": [16, 32], "model.sparsity": ["dense", "2:8"],
                  "technology": ["28nm"]},
         "constraints": {"energy_mj": {"max": 5000}}}


@fuzz_settings(40)
@given(data=st.data())
def test_space_yaml(data, files, capsys, outcomes, tmp_path):
    base = json.loads(json.dumps(SPACE).replace("MODEL", str(files["csv"])))
    if data.draw(st.booleans()):
        content = _yaml_text(data.draw(mutated(base)))
    else:
        content = data.draw(text_damage(_yaml_text(base)))
    space = _write(tmp_path, "space.yaml", content)
    # a space is one of two files the command reads, so refusals must name one of them
    outcome = check_contract(["explore", "--arch", "sat", "--space", str(space), "--out",
                              str(tmp_path / "out"), "--budget", "4", "--search", "exhaustive",
                              "--no-progress"], capsys, names=None, outcomes=outcomes,
                             kind="space yaml")
    assert outcome in ("ok", "refused")


# ---------------------------------------------------------------- IR JSON


@fuzz_settings(80)
@given(data=st.data())
def test_ir_json(data, files, capsys, outcomes, tmp_path):
    if data.draw(st.integers(0, 3)):
        document = data.draw(mutated(files["ir_document"]))
        content = json.dumps(document, allow_nan=True)
    else:
        content = data.draw(text_damage(files["ir"].read_text()))
    model = _write(tmp_path, "model.json", content)
    check_contract(["simulate", "--arch", "sat", "--model", str(model), "--mode", "infer",
                    "--sparsity", "dense", "--format", "json"], capsys, names=str(model),
                   outcomes=outcomes, kind="ir json")


# ---------------------------------------------------------------- SCALE-Sim CSV


CSV_CELLS = st.one_of(st.sampled_from(["16", "0", "-3", "1e3", "10" * 15, str(2 ** 63), "",
                                       "2:4", "1:1", "9:4", "\x1b[2J", "DP", '"a,b"', "x" * 300]),
                      st.integers(-5, 2 ** 64).map(str), st.text(max_size=6))


VALID_ROWS = {"conv": st.tuples(st.sampled_from(["conv", "DP1", "c\x1b[2J"]),
                               *[st.sampled_from(["8", "16", "3"])] * 2,
                               *[st.sampled_from(["1", "3"])] * 2,
                               *[st.sampled_from(["4", "8", "16"])] * 2,
                               st.sampled_from(["1", "2"]), st.sampled_from(["", "2:4", "1:1"])),
              "gemm": st.tuples(st.sampled_from(["g", "g"]),
                                *[st.sampled_from(["1", "16", "100"])] * 3,
                                st.sampled_from(["", "2:4", "4:4"]))}


@st.composite
def _csv_row(draw, kind: str) -> list[str]:
    """A valid row, a valid row with one cell made hostile, or a row of hostile cells."""
    how = draw(st.integers(0, 2))
    if how == 2:
        return draw(st.lists(CSV_CELLS, min_size=0, max_size=10))
    row = list(draw(VALID_ROWS[kind]))
    if how == 1:
        row[draw(st.integers(0, len(row) - 1))] = draw(CSV_CELLS)
    return row


@fuzz_settings(60)
@given(data=st.data(), kind=st.sampled_from(["conv", "gemm"]), trailing=st.booleans())
def test_scalesim_csv(data, kind, trailing, capsys, outcomes, tmp_path):
    rows = data.draw(st.lists(_csv_row(kind), min_size=0, max_size=4))
    header = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
              "Num Filter, Strides," if kind == "conv" else "Layer, M, N, K,")
    text = header + "\n" + "".join(", ".join(row) + ("," if trailing else "") + "\n"
                                   for row in rows)
    topology = _write(tmp_path, "topology.csv", text)
    check_contract(["simulate", "--arch", "sat", "--model", str(topology), "--mode", "infer",
                    "--sparsity", "dense", "--format", "json"], capsys, names=str(topology),
                   outcomes=outcomes, kind="scalesim csv")


def test_scalesim_huge_field(capsys, outcomes, tmp_path):
    topology = _write(tmp_path, "topology.csv", 'Layer, M, N, K,\n"' + "x" * 200_000 + '", 4, 4, 4,\n')
    assert check_contract(["models", "show", str(topology)], capsys, names=str(topology),
                          outcomes=outcomes, kind="scalesim csv") == "refused"


# ---------------------------------------------------------------- ONNX


def _small_onnx() -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.ones((4, 10), np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [weight, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    pytest.importorskip("onnx")
    return _small_onnx()


def test_small_onnx_loads(small_onnx, capsys, outcomes, tmp_path):
    model = _write(tmp_path, "small.onnx", small_onnx)
    assert check_contract(["models", "show", str(model), "--format", "json"], capsys,
                          names=str(model), outcomes=outcomes, kind="onnx") == "ok"


@fuzz_settings(60)
@given(data=st.data())
def test_onnx_damaged_bytes(data, small_onnx, capsys, outcomes, tmp_path):
    how = data.draw(st.sampled_from(["truncate", "flip", "flip"]))
    if how == "truncate":
        content = small_onnx[:data.draw(st.integers(0, len(small_onnx) - 1))]
    else:
        spots = set(data.draw(st.lists(st.integers(0, len(small_onnx) - 1), min_size=1,
                                       max_size=4)))
        bits = data.draw(st.integers(0, 7))
        content = bytes(byte ^ (1 << bits) if index in spots else byte
                        for index, byte in enumerate(small_onnx))
    model = _write(tmp_path, "damaged.onnx", content)
    check_contract(["models", "show", str(model), "--format", "json"], capsys, names=str(model),
                   outcomes=outcomes, kind="onnx")


# ---------------------------------------------------------------- tuning logs


def _log_entries(draw_value) -> list:
    key_base = "snapdragon855|nmgemm:16x8x64:2:8"
    params = {"n": 2, "m": 8, "isa": "neon", "mr": 4, "nr": 8, "unroll": 1, "shared": False,
              "kc": 0, "prefetch": 0, "threads": 1, "act": "none", "conv": False}
    return [{"key": f"{key_base}|a", "op_key": "nmgemm:16x8x64:2:8", "target": "snapdragon855",
             "op": "nmgemm", "method": "predicted", "predicted_cycles": 1000.0, "ok": True,
             "params": params, "kernel": "k"}]


@pytest.mark.slow      # each new schedule in a log is costed by llvm-mca (~1 s)
@fuzz_settings(25)
@given(data=st.data(), newline=st.booleans())
def test_tuning_log(data, newline, files, capsys, outcomes, tmp_path):
    entries = data.draw(st.lists(mutated(_log_entries(None)[0]), min_size=0, max_size=3))
    lines = [json.dumps(entry, allow_nan=True) for entry in entries]
    if data.draw(st.booleans()):
        lines.append(data.draw(st.sampled_from(["not json", "[1, 2]", '{"key": "torn', "{}", "null"])))
    content = "\n".join(lines) + ("\n" if newline else "")
    log = _write(tmp_path, "tuning.jsonl", content)
    check_contract(["simulate", "--arch", "snapdragon855", "--model", str(files["ir"]),
                    "--sparsity", "2:8", "--tuning-log", str(log), "--format", "json"],
                   capsys, names=None, outcomes=outcomes, kind="tuning log")


# ---------------------------------------------------------------- summary.json (hwsim report)


@fuzz_settings(40)
@given(data=st.data())
def test_report_summary(data, files, capsys, outcomes, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir(exist_ok=True)
    base = {"model": "m", "arch": "a", "sparsity": "dense", "total_cycles": 10, "seconds": 1e-6,
            "energy_j": 1e-6, "layers": [{"name": "l", "phase": "FF", "M": 1, "N": 1, "K": 1,
                                          "utilization": 0.5}]}
    if data.draw(st.booleans()):
        content = json.dumps(data.draw(mutated(base)), allow_nan=True)
    else:
        content = data.draw(text_damage(json.dumps(base)))
    _write(folder, "summary.json", content)
    check_contract(["report", str(folder)], capsys, names=str(folder), outcomes=outcomes,
                   kind="summary json")


# ---------------------------------------------------------------- flags and output paths


@pytest.mark.parametrize("argv, names", [
    (["simulate", "--arch", "sat", "--batch", "1000000000"], "--batch"),
    (["simulate", "--arch", "sat", "--batch", "1e9"], "--batch"),
    (["simulate", "--arch", "sat", "--compare", ","], "--compare"),
    (["sweep", "--arch", "sat", "--set", "array.rows=" + ",".join(map(str, range(1, 201))),
      "--set", "array.cols=" + ",".join(map(str, range(1, 101)))], "--set"),
    (["sweep", "--arch", "sat", "--out", "/proc/self/fuzz"], "/proc/self/fuzz"),
    (["report", "/proc/self"], None),
    (["models", "show", "resnet18", "--sparsity", "2:99999999999999999999"], None),
    (["codegen", "--target", "host", "--model", "resnet18", "--sparsity",
      "2:99999999999999999999", "--out", "/tmp/never"], None),
])
def test_hostile_flags(argv, names, capsys, outcomes):
    assert check_contract(argv, capsys, names=names, outcomes=outcomes, kind="flags") == "refused"


def _refused_output(command: str, where: str) -> bool:
    """True where ``command`` must refuse an --out (or --log) at ``where``. Not refused: a
    folder is a fine --out for a folder of outputs (all but report and --log); an existing
    report.html is overwritten atomically; without --tune a log is only read when it exists."""
    if where == "a directory":
        return command in ("report", "codegen --log")
    if command == "report":
        return where != "a file"
    return command != "codegen --log"


@pytest.mark.parametrize("command, where", [
    (command, where)
    for command in ("simulate", "sweep", "codegen", "explore", "report", "codegen --log")
    for where in ("a file", "/proc", "a directory") if _refused_output(command, where)])
def test_output_paths_refused_before_work(command, where, files, capsys, outcomes, tmp_path):
    existing = _write(tmp_path, "existing", "x")
    out = {"a file": str(existing), "/proc": "/proc/self/hwsim-out",
           "a directory": str(tmp_path)}[where]
    argv = {"simulate": ["simulate", "--arch", "sat", "--model", str(files["csv"]), "--out", out],
            "sweep": ["sweep", "--arch", "sat", "--model", str(files["csv"]), "--out", out],
            "codegen": ["codegen", "--target", "host", "--model", str(files["ir"]), "--out", out],
            "codegen --log": ["codegen", "--target", "host", "--model", str(files["ir"]),
                              "--out", str(tmp_path / "build"), "--log", out],
            "explore": ["explore", "--arch", "sat", "--space", "sat_small", "--out", out],
            "report": ["report", str(tmp_path), "--out", out]}[command]
    if command == "report":
        (tmp_path / "summary.json").write_text(json.dumps({"layers": [], "total_cycles": 1}))
    assert check_contract(argv, capsys, names=out, outcomes=outcomes, kind="flags") == "refused"


def test_escapes_in_names_do_not_reach_the_terminal(files, capsys, outcomes, tmp_path):
    document = json.loads(files["ir"].read_text())
    document["nodes"][1]["name"] = "c\x1b[2J\x1b]0;title\x07"
    document["nodes"][2]["inputs"] = [document["nodes"][1]["name"]]
    model = _write(tmp_path, "escape.json", json.dumps(document))
    assert check_contract(["models", "show", str(model)], capsys, names=str(model),
                          outcomes=outcomes, kind="ir json") == "ok"
    capsys.readouterr()
    from cli import main
    assert main(["models", "show", str(model)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out


def test_two_d_matmul_of_activations_is_a_real_gemm(capsys, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 8]),
              helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 16])]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", inputs,
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 16])])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    from cli import main
    assert main(["simulate", "--arch", "sat", "--model", str(path), "--mode", "infer",
                 "--sparsity", "dense", "--batch", "4", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (layer,) = summary["layers"]
    assert (layer["M"], layer["N"], layer["K"]) == (4, 16, 8)
    assert summary["total_cycles"] > 0 and summary["macs"] == 4 * 16 * 8


# ---------------------------------------------------------------- ONNX graphs (onnx.helper)


# mostly plausible sizes (so graphs get past the input), sometimes hostile ones
ONNX_DIMS = st.sampled_from([1, 3, 8, 16, 1, 3, 8, 16, 4, 2, 0, -1, 2 ** 31, 2 ** 40, "N"])
ONNX_ATTRS = {
    "Conv": {"kernel_shape": [[3, 3], [1, 1], [3], [0, 0], [99, 99]],
             "strides": [[1, 1], [2, 2], [2], [0, 0]], "pads": [[1, 1, 1, 1], [1], [-1, -1, -1, -1]],
             "group": [1, 2, 0, 3], "dilations": [[1, 1], [2, 2]], "auto_pad": ["SAME_UPPER", "VALID"]},
    "MaxPool": {"kernel_shape": [[2, 2], [2], [0, 0]], "strides": [[2, 2], [1]],
                "pads": [[0, 0, 0, 0], [1]], "ceil_mode": [0, 1]},
    "AveragePool": {"kernel_shape": [[2, 2], [3, 3], [2]], "count_include_pad": [0, 1]},
    "Gemm": {"transB": [0, 1], "alpha": [1.0, 0.0, float("nan")], "beta": [1.0, 2.0]},
    "Softmax": {"axis": [-1, 1, 0, 7]}, "Flatten": {"axis": [1, 0, 5]},
    "Concat": {"axis": [1, 0, -1, 9]}, "Transpose": {"perm": [[0, 1, 3, 2], [1, 0], [0, 0, 0, 0]]},
    "LeakyRelu": {"alpha": [0.1]}, "Clip": {}, "Relu": {}, "Add": {}, "Mul": {}, "MatMul": {},
    "GlobalAveragePool": {}, "BatchNormalization": {"epsilon": [1e-5, -1.0]},
    "Loop": {}, "NonZero": {}, "Resize": {}, "Sigmoid": {}, "Reshape": {}, "Squeeze": {},
}


@st.composite
def onnx_graphs(draw) -> bytes:
    """A small graph: input x (N, C, H, W) through 1-3 nodes of random op types with random,
    missing or out-of-range attributes; weights for Conv/Gemm/MatMul/Add as initializers."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shape = [draw(ONNX_DIMS) for _ in range(draw(st.sampled_from([4, 4, 4, 2, 1, 3])))]
    initializers, nodes, current = [], [], "x"
    for index in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(sorted(ONNX_ATTRS)))
        attrs = {name: draw(st.sampled_from(values)) for name, values in ONNX_ATTRS[op].items()
                 if draw(st.booleans())}
        inputs = [current]
        if op in ("Conv", "Gemm", "MatMul", "Add", "Mul", "Clip", "Reshape", "BatchNormalization"):
            weight_shape = draw(st.sampled_from([[4, 3, 3, 3], [4, 4, 1, 1], [16, 10], [10], [3],
                                                 [1], [2], [], [4, 3, 3]]))
            name = f"w{index}"
            initializers.append(numpy_helper.from_array(
                np.ones(weight_shape, np.float32 if op != "Reshape" else np.int64), name))
            inputs.append(name)
            if op == "BatchNormalization":
                for extra in "bmv":
                    initializers.append(numpy_helper.from_array(np.ones(weight_shape, np.float32),
                                                                f"{extra}{index}"))
                    inputs.append(f"{extra}{index}")
        if op in ("Add", "Mul", "MatMul", "Concat") and draw(st.booleans()):
            inputs = [current, current if draw(st.booleans()) else "x"]     # two activations
        output = f"t{index}"
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        current = output
    graph = helper.make_graph(nodes, "fuzz",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)],
                              initializers)
    opset = draw(st.sampled_from([7, 11, 13, 17, 21]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString()


@fuzz_settings(50)
@given(content=onnx_graphs())
def test_onnx_hostile_graphs(content, small_onnx, capsys, outcomes, tmp_path):
    model = _write(tmp_path, "graph.onnx", content)
    check_contract(["simulate", "--arch", "sat", "--model", str(model), "--mode", "infer",
                    "--sparsity", "dense", "--format", "json"], capsys, names=str(model),
                   outcomes=outcomes, kind="onnx graph")


def test_onnx_loop_without_body_is_refused_by_name(small_onnx, capsys, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Loop", ["r"], ["y"])], "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = _write(tmp_path, "loop.onnx", helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert check_contract(["models", "show", str(model)], capsys, names=str(model)) == "refused"
    from cli import main
    from tests.fuzz_support import memory_limit
    with memory_limit():
        main(["models", "show", str(model)])
    assert "Loop" in capsys.readouterr().err
