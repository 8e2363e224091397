"""Fuzz the CLI where in-process checks are not enough (issue 16): inputs that used to hang
or eat memory run as subprocesses under a timeout; build folders whose manifest.json tries
to run something else; kills during `hwsim simulate --out`; memory against --batch.

The contract is tests/fuzz_support.py's: exit 0 or exit 2 with one line, never exit 1,
never a traceback, never past the timeout.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import require_tools
from tests.fuzz_support import HOSTILE_VALUES, Outcomes, check_contract, fuzz_settings, mutated

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def outcomes():
    counts = Outcomes()
    yield counts
    print("\nfuzz outcomes (tests/test_fuzz_hangs.py):\n" + counts.report())


MEMORY_CAP_BYTES = 8 * 1024 ** 3     # a run that allocates past this fails, not the machine


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, resource.RLIM_INFINITY))


def _hwsim(*argv: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=_capped)


def _assert_contract(result: subprocess.CompletedProcess, names: str | None) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode == 0:
        return "ok"
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("hwsim: error:"), lines
    if names:
        assert names in lines[0], lines[0]
    return "refused"


# ---------------------------------------------------------------- hangs (subprocess)


def _bomb(levels: int = 9) -> str:
    text = "a: &a [x,x,x,x,x,x,x,x,x]\n"
    for index in range(1, levels):
        name, previous = chr(97 + index), chr(96 + index)
        text += f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n"
    return text


HANGERS = {
    "arch alias bomb": ("arch.yaml", _bomb(), ["simulate", "--arch", "{path}"]),
    "arch deep nesting": ("arch.yaml", "a: " + "[" * 100_000 + "]" * 100_000, ["simulate", "--arch", "{path}"]),
    "cpu alias bomb": ("cpu.yaml", _bomb().replace("a: &a", "kind: cpu\na: &a"),
                       ["targets", "show", "{path}"]),
    "space alias bomb": ("space.yaml", _bomb(), ["explore", "--arch", "sat", "--space", "{path}",
                                                 "--out", "{dir}/out"]),
    "ir deep nesting": ("m.json", "[" * 200_000 + "]" * 200_000, ["models", "show", "{path}"]),
    "ir huge int": ("m.json", '{"format": "sparse-ir", "version": 1, "nodes": [{"name": "x", '
                              '"kind": "input", "shape": [1' + "0" * 5000 + "]}]}",
                    ["models", "show", "{path}"]),
    "ir 2^62 dims": ("m.json", json.dumps({"format": "sparse-ir", "version": 1, "nodes": [
        {"name": "x", "kind": "input", "shape": [1, 2 ** 62]},
        {"name": "d", "kind": "dense", "in_features": 2 ** 62, "out_features": 8,
         "inputs": ["x"]}]}), ["simulate", "--arch", "sat", "--model", "{path}"]),
    "ir 2^40 channels": ("m.json", json.dumps({"format": "sparse-ir", "version": 1, "nodes": [
        {"name": "x", "kind": "input", "shape": [1, 1 << 20, 64, 64]},
        {"name": "c", "kind": "conv2d", "in_channels": 1 << 20, "out_channels": 1 << 20,
         "kernel": [3, 3], "inputs": ["x"]}]}), ["simulate", "--arch", "sat", "--model", "{path}"]),
    "csv 10^30": ("t.csv", "Layer, M, N, K,\ng, " + "1" + "0" * 30 + ", 4, 4,\n",
                  ["simulate", "--arch", "sat", "--model", "{path}"]),
    "csv 2^63": ("t.csv", f"Layer, M, N, K,\ng, {2 ** 63}, 4, 4,\n",
                 ["simulate", "--arch", "sat", "--model", "{path}"]),
    "csv 8 MiB": ("t.csv", "Layer, M, N, K,\n" + "g, 4, 4, 4,\n" * 900_000,
                  ["models", "show", "{path}"]),
    "batch 10^9": ("none", "", ["simulate", "--arch", "sat", "--batch", "1000000000"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HANGERS))
def test_no_hang(case, tmp_path, outcomes):
    name, content, argv = HANGERS[case]
    path = tmp_path / name
    path.write_text(content)
    argv = [part.format(path=path, dir=tmp_path) for part in argv]
    started = time.monotonic()
    result = _hwsim(*argv)
    outcomes.add("hang check", _assert_contract(result, None))
    assert time.monotonic() - started < TIMEOUT_S
    if name != "none":
        assert str(path) in result.stderr or result.returncode == 0, result.stderr


def test_batch_does_not_grow_memory():
    """The simulator's memory is flat in --batch (the fold axes were per fold before)."""
    peaks = []
    for batch in ("1", "65536"):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result = _hwsim("simulate", "--arch", "sat", "--model", "resnet18", "--sparsity", "dense",
                        "--batch", batch)
        assert result.returncode == 0, result.stderr
        peaks.append(max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before))
    # RUSAGE_CHILDREN is the largest child so far: equal peaks mean the second was no larger
    assert peaks[1] < 1.5 * peaks[0], peaks


# ---------------------------------------------------------------- build folders


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A real host build of a tiny model, built twice into one folder (a rebuild must
    replace the case lists, not append to them)."""
    require_tools("gcc")
    from models.ir import Conv2d, Dense, Elementwise, GraphBuilder, Reshape, save_model

    folder = tmp_path_factory.mktemp("fuzz-build")
    builder = GraphBuilder("tiny")
    x = builder.input("x", (1, 8, 8, 8))
    x = builder.add(Conv2d("c1", 8, 16, (1, 1)), x)
    x = builder.add(Elementwise("r", "relu"), x)
    x = builder.add(Reshape("f", (-1,)), x)
    builder.add(Dense("d", 1024, 8), x)
    save_model(builder.build(), str(folder / "tiny.json"))
    out = folder / "build"
    for _ in range(2):
        result = _hwsim("codegen", "--target", "host", "--model", str(folder / "tiny.json"),
                        "--sparsity", "2:8", "--out", str(out), timeout=300)
        assert result.returncode == 0, result.stderr
    return out


def test_rebuilt_folder_runs(build, capsys, outcomes):
    for cases in (build / "sparse" / "data").glob("cases-*.txt"):
        names = [line.split()[0] for line in cases.read_text().splitlines()]
        assert len(names) == len(set(names)), f"duplicate case lines in {cases}"
    assert check_contract(["run", str(build), "--repeats", "1", "--warmup", "0"], capsys,
                          names=None, outcomes=outcomes, kind="build folder") == "ok"


def _copy_build(build: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(build, copy, symlinks=True)
    return copy


def _refused_without_running(argv, capsys, outcomes, marker: Path, names: str) -> None:
    assert check_contract(argv, capsys, names=names, outcomes=outcomes,
                          kind="build folder") == "refused"
    assert not marker.exists(), "a program the build did not make was run"


def _evil_script(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return script, marker


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "replaced binary",
                                 "case name", "target path"])
def test_manifest_cannot_run_other_programs(how, build, capsys, outcomes, tmp_path):
    copy = _copy_build(build, tmp_path)
    script, marker = _evil_script(tmp_path)
    manifest_path = copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    executables = manifest["builds"]["sparse"]["executables"]
    kernel = next(iter(executables))
    if how == "absolute":
        executables[kernel] = str(script)
    elif how == "dotdot":
        executables[kernel] = "../evil.sh"
    elif how == "symlink":
        link = copy / "sparse" / "bin" / "link"
        os.symlink(script, link)
        executables[kernel] = "sparse/bin/link"
    elif how == "replaced binary":
        shutil.copy(script, copy / executables[kernel])
    elif how == "case name":
        manifest["builds"]["sparse"]["layers"][0]["case"] = "../../../pwned"
    else:
        manifest["target"] = str(tmp_path / "evil.yaml")
    manifest_path.write_text(json.dumps(manifest))
    _refused_without_running(["run", str(copy), "--repeats", "1", "--warmup", "0"], capsys,
                             outcomes, marker, names=str(copy))


@pytest.mark.slow
@fuzz_settings(30)
@given(data=st.data())
def test_manifest_fuzz(data, build, capsys, outcomes, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("manifest")
    copy = _copy_build(build, tmp_path)
    script, marker = _evil_script(tmp_path)
    manifest_path = copy / "manifest.json"
    base = json.loads(manifest_path.read_text())
    if data.draw(st.integers(0, 4)):
        manifest_path.write_text(json.dumps(data.draw(mutated(base)), allow_nan=True))
    else:
        manifest_path.write_bytes(data.draw(st.binary(max_size=200)))
    outcome = check_contract(["run", str(copy), "--repeats", "1", "--warmup", "0"], capsys,
                             names=None, outcomes=outcomes, kind="build folder")
    assert outcome in ("ok", "refused") and not marker.exists()


def test_missing_or_odd_build_folders(capsys, outcomes, tmp_path):
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "nothing", tmp_path / "file", tmp_path):
        assert check_contract(["run", str(folder)], capsys, names=None, outcomes=outcomes,
                              kind="build folder") == "refused"


# ---------------------------------------------------------------- kills during --out


@pytest.mark.slow
def test_kill_during_simulate_out_leaves_a_whole_set(tmp_path, outcomes):
    """kill -9 at several moments of `hwsim simulate --out`: the folder holds the old set
    or the new one (summary.json, report.md and both plots, from one run), never a mix."""
    out = tmp_path / "report"
    argv = [sys.executable, "-m", "cli", "simulate", "--arch", "sat", "--model", "resnet18",
            "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    assert subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, timeout=120).returncode == 0
    run_s = time.monotonic() - started
    expected = {"summary.json", "report.md", "cycles_by_layer.png", "utilization.png"}
    for index, share in enumerate((0.3, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05, 1.2)):
        delay_s = share * run_s
        before = (out / "summary.json").read_bytes()
        process = subprocess.Popen(argv + ["--sparsity", "2:8"] if index % 2 else argv,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=ROOT, env=env)
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert set(os.listdir(out)) == expected
        summary = json.loads((out / "summary.json").read_text())
        report = (out / "report.md").read_text()
        sparsities = [summary["sparsity"]] if "sparsity" in summary else list(summary["runs"])
        assert all(spec in report for spec in sparsities)
        outcomes.add("kill --out", "old set" if (out / "summary.json").read_bytes() == before
                     else "new set")
    # the next run removes the staging folder a killed run left beside the output
    assert subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, timeout=120).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["report"]
