"""Accelerator descriptions: bundled files load; every bad input is one line and exit 2."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hwsim.arch import load_arch
from cli import main
from models.errors import UserError

VALID = """\
kind: accelerator
name: test-array
clock_mhz: 200
word_bytes: 2
array: {rows: 8, cols: 8}
dataflow: os
sparsity: {group_size: 8, modes: ["2:8"]}
memory: {ifmap_sram_kb: 64, filter_sram_kb: 64, ofmap_sram_kb: 64, dram_gbps: 10}
energy_pj: {mac: 1.0, sram_byte: 5.0, dram_byte: 100.0}
"""


def write(tmp_path, text: str, name: str = "arch.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def simulate_error(capsys, *argv) -> str:
    """Runs `hwsim simulate`, asserts exit 2 with one line and no traceback; returns the line."""
    code = main(["simulate", *argv])
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hwsim: error:")
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("name", ["sat", "systolic-32x32-os", "systolic-32x32-ws", "systolic-32x32-is"])
def test_bundled_files_load(name):
    arch = load_arch(name)
    assert arch.array.pes == 1024
    assert arch.dataflow in ("os", "ws", "is")
    import dataclasses
    by_path = load_arch(f"targets/accelerators/{name}.yaml")
    assert dataclasses.replace(by_path, source=arch.source) == arch


def test_sat_modes_and_2_4_as_4_8():
    arch = load_arch("sat")
    assert arch.runs_nm(2, 8) and arch.runs_nm(1, 8) and arch.runs_nm(4, 8)
    assert arch.runs_nm(2, 4)          # 2:4 data satisfies 4:8
    assert not arch.runs_nm(3, 8)
    assert not arch.runs_nm(2, 16)
    assert arch.index_bits == 3
    assert not load_arch("systolic-32x32-os").runs_nm(2, 8)


def test_valid_file_round_trip(tmp_path):
    arch = load_arch(write(tmp_path, VALID))
    assert arch.name == "test-array" and arch.memory.dram_gbps == 10
    assert arch.options.interleave and arch.options.offline_schedule
    assert arch.dram_bytes_per_cycle == pytest.approx(50.0)


@pytest.mark.parametrize("replace, expected", [
    (("dram_gbps: 10", "dram_gpbs: 10"), ["memory.dram_gpbs", "unknown key", "dram_gbps"]),
    (("clock_mhz: 200", "clock_mz: 200"), ["clock_mz", "clock_mhz"]),
    (("rows: 8", "rows: 0"), ["array.rows", "positive"]),
    (("dram_gbps: 10", "dram_gbps: -3"), ["memory.dram_gbps", "positive"]),
    (("ifmap_sram_kb: 64", "ifmap_sram_kb: 0"), ["memory.ifmap_sram_kb"]),
    (("rows: 8", "rows: big"), ["array.rows", "whole number"]),
    (("word_bytes: 2", "word_bytes: 2.5"), ["word_bytes", "whole number"]),
    (("modes: [\"2:8\"]", "modes: [\"2:16\"]"), ["sparsity.modes", "group_size"]),
    (("modes: [\"2:8\"]", "modes: [\"9:8\"]"), ["sparsity.modes", "N <= M"]),
    (("modes: [\"2:8\"]", "modes: [\"two\"]"), ["sparsity.modes", "cannot read"]),
    (("modes: [\"2:8\"]", "modes: []"), ["sparsity.modes", "non-empty"]),
    (("dataflow: os", "dataflow: rs"), ["dataflow", "unknown dataflow"]),
    (("kind: accelerator", "kind: gpu"), ["kind", "unknown kind"]),
    (("mac: 1.0", "mac: -1.0"), ["energy_pj.mac"]),
    (("ofmap_sram_kb: 64", "ofmap_sram_kb: 0.1"), ["memory.ofmap_sram_kb", "cannot hold"]),
])
def test_bad_fields_name_file_field_and_fix(tmp_path, capsys, replace, expected):
    path = write(tmp_path, VALID.replace(*replace))
    line = simulate_error(capsys, "--arch", path)
    assert path in line
    for fragment in expected:
        assert fragment in line


def test_unknown_key_suggests_closest(tmp_path):
    path = write(tmp_path, VALID.replace("ifmap_sram_kb", "ifmap_sram_kbytes"))
    with pytest.raises(UserError) as raised:
        load_arch(path)
    assert raised.value.field == "memory.ifmap_sram_kbytes"
    assert "did you mean 'ifmap_sram_kb'" in raised.value.fix


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    path = write(tmp_path, VALID.replace("array: {rows: 8, cols: 8}", "array: {rows: 8, cols: 8\n  x"))
    line = simulate_error(capsys, "--arch", path)
    assert "malformed YAML" in line and "line " in line


def test_missing_section(tmp_path, capsys):
    path = write(tmp_path, "\n".join(l for l in VALID.splitlines() if not l.startswith("memory")))
    assert "memory" in simulate_error(capsys, "--arch", path)


def test_unknown_bundled_name_suggests(capsys):
    line = simulate_error(capsys, "--arch", "sta")
    assert "sat" in line


@pytest.mark.parametrize("sparsity, expected", [
    ("3:8", ["cannot run 3:8", "1:8, 2:8, 4:8"]),
    ("2:16", ["cannot run 2:16"]),
    ("block:1x4:0.25", ["supports only N:M"]),
    ("unstructured:0.1", ["supports only N:M"]),
])
def test_unsupported_sparsity_lists_what_the_array_runs(capsys, sparsity, expected):
    line = simulate_error(capsys, "--arch", "sat", "--sparsity", sparsity)
    for fragment in expected:
        assert fragment in line


def test_dense_array_rejects_sparse_request(capsys):
    line = simulate_error(capsys, "--arch", "systolic-32x32-ws", "--compare", "dense,2:8")
    assert "no sparse modes" in line or "dense only" in line


def test_bad_flags(capsys):
    assert "--batch" in simulate_error(capsys, "--arch", "sat", "--batch", "0")
    assert "--dram-gbps" in simulate_error(capsys, "--arch", "sat", "--dram-gbps", "0")
    assert "--compare" in simulate_error(capsys, "--arch", "sat", "--sparsity", "2:8",
                                         "--compare", "dense,2:8")


def test_cpu_target_is_dispatched_to_the_cpu_model(capsys):
    """A kind: cpu file goes to the CPU model (inference by default), not the array engine."""
    from cli import main

    assert main(["simulate", "--arch", "cortex-a55", "--model", "resnet9", "--dataset", "cifar10",
                 "--sparsity", "dense", "--format", "json"]) == 0
    import json
    document = json.loads(capsys.readouterr().out)
    assert document["arch"] == "cortex-a55" and document["mode"] == "infer"
    assert document["mca_core"] == "cortex-a55"


def test_subprocess_exit_code_and_one_line(tmp_path):
    path = write(tmp_path, VALID.replace("rows: 8", "rows: -8"))
    process = subprocess.run([sys.executable, "-m", "cli", "simulate", "--arch", path],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert len(process.stderr.strip().splitlines()) == 1
    assert "array.rows" in process.stderr and "Traceback" not in process.stderr


def test_every_option_comes_from_its_field(tmp_path):
    """A DataflowOptions field is all an option needs: its YAML key loads and is written
    back, `hwsim simulate` has its flag, the report header and summary.json show it."""
    import argparse
    from dataclasses import fields

    from cli.simulate_cmd import register
    from hwsim.arch import DataflowOptions, accelerator_document
    from hwsim.engine import simulate

    subparsers = argparse.ArgumentParser().add_subparsers()
    register(subparsers, argparse.HelpFormatter)
    flags = set(subparsers.choices["simulate"]._option_string_actions)
    for option in fields(DataflowOptions):
        arch = load_arch(write(tmp_path, VALID + f"dataflow_options: {{{option.name}: false}}\n"))
        assert getattr(arch.options, option.name) is False
        assert accelerator_document(arch)["dataflow_options"][option.name] is False
        assert option.metadata["flag"] in flags
        assert option.metadata["off"] in arch.options.describe()
        summary = simulate(arch, [], model_name="none").summary_dict()
        assert summary["dataflow_options"][option.name] is False
