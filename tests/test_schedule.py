"""The scheduler: TVM loop nests of the sparse ops, candidates, the cycle model, the tuning log
(durable, resumable after a SIGKILL), and the TVM dense baseline."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codegen import build as kernel_build
from codegen import dense_baseline
from codegen.isa import get_isa
from codegen.kernels.nmgemm import render as render_nmgemm
from codegen.schedule import (Candidate, SparseOp, candidates,
                              predict_cycles, to_params, tune, validate_with_tvm)
from codegen.tuning_log import TuningLog, read_entries
from targets.cpu import load_cpu_target

REPO = Path(__file__).resolve().parent.parent


def require(target: str) -> None:
    problems = kernel_build.target_problems(target)
    if problems:
        if os.environ.get("CI"):
            pytest.fail(f"{target}: {problems}")
        pytest.skip(f"{target}: {problems}")


@pytest.mark.parametrize("op,candidate", [
    (SparseOp(13, 40, 37, 2, 8), Candidate(4, 16, unroll=2)),
    (SparseOp(16, 64, 20, 1, 4, share=4), Candidate(4, 8, unroll=1, kc=4)),
    (SparseOp(7, 30, 9, 3, 5), Candidate(3, 8, unroll=2, threads=2)),
])
def test_tvm_sparse_schedule_matches_numpy_on_host(op, candidate):
    result = validate_with_tvm(op, candidate, load_cpu_target("host"), run_on_host=True)
    assert result["builds"], result["error"]
    assert result["max_abs_error"] < 1e-4


@pytest.mark.parametrize("target", ["snapdragon855", "wasm32-simd128"])
def test_tvm_sparse_schedule_builds_for_cross_targets(target):
    result = validate_with_tvm(SparseOp(16, 64, 24, 2, 8), Candidate(4, 8, unroll=2),
                               load_cpu_target(target), run_on_host=False)
    assert result["builds"], result["error"]


@pytest.mark.parametrize("flavour", ["avx2", "avx512", "neon", "wasmsimd"])
def test_candidates_fit_registers_and_render(flavour):
    op = SparseOp(64, 128, 100, 2, 8)
    found = candidates(op, flavour)
    assert found
    for candidate in found:
        params = to_params(op, candidate, flavour)
        vectors = params.nr // {"avx2": 8, "avx512": 16}.get(flavour, 4)
        assert params.mr * vectors + 2 <= get_isa(flavour).vector_registers
    assert render_nmgemm(to_params(op, found[0], flavour)).source


def test_cycle_model_orders_the_obvious():
    target = load_cpu_target("snapdragon855")
    tile = Candidate(4, 16, unroll=2)
    plain = predict_cycles(SparseOp(256, 256, 196, 2, 8), to_params(SparseOp(256, 256, 196, 2, 8), tile, "neon"), target)
    shared_op = SparseOp(256, 256, 196, 2, 8, share=4)
    shared = predict_cycles(shared_op, to_params(shared_op, tile, "neon"), target)
    sparser = predict_cycles(SparseOp(256, 256, 196, 1, 8), to_params(SparseOp(256, 256, 196, 1, 8), tile, "neon"), target)
    denser = predict_cycles(SparseOp(256, 256, 196, 4, 8), to_params(SparseOp(256, 256, 196, 4, 8), tile, "neon"), target)
    assert shared < plain
    assert sparser < plain < denser


# ---------------------------------------------------------------- the log


def test_torn_last_line_is_ignored_and_cut(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"key": "a", "op_key": "x", "method": "measured", "seconds": 2.0})
                    + "\n" + '{"key": "b", "op_key": "x", "meth')
    assert [entry["key"] for entry in read_entries(path)] == ["a"]
    log = TuningLog(path)
    log.append({"key": "c", "op_key": "x", "method": "measured", "seconds": 1.0})
    assert [entry["key"] for entry in read_entries(path)] == ["a", "c"]
    assert log.best("x")["key"] == "c"


def test_a_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(Exception, match="line 2"):
        read_entries(path)


def test_resume_skips_what_is_logged(tmp_path):
    log_path = tmp_path / "arm.jsonl"
    ops = [SparseOp(32, 64, 40, 2, 8)]
    tune(ops, "snapdragon855", log_path, budget=3, progress=False)
    first = read_entries(log_path)
    assert len(first) == 4 and {entry["method"] for entry in first} == {"predicted"}
    tune(ops, "snapdragon855", log_path, budget=3, progress=False)
    assert read_entries(log_path) == first


def test_a_given_predictor_orders_the_shortlist_and_is_logged(tmp_path):
    """The CLI hands tune() hwsim's llvm-mca model; tune() must rank with it (not the analytic
    model) and say in each entry which model predicted it."""
    op = SparseOp(32, 64, 40, 2, 8)
    flavour = kernel_build.runnable_flavours("snapdragon855")[-1]
    target = load_cpu_target("snapdragon855")
    analytic = sorted(candidates(op, flavour, 1),
                      key=lambda cand: predict_cycles(op, to_params(op, cand, flavour), target))
    shortlist = [to_params(op, cand, flavour).name for cand in analytic[:6]]
    reverse = {name: float(len(shortlist) - rank) for rank, name in enumerate(shortlist)}
    calls = []

    def predictor(op_, params, target_):
        calls.append(params.name)
        return reverse[params.name]

    log_path = tmp_path / "arm.jsonl"
    tune([op], target, log_path, budget=2, progress=False, predictor=predictor)
    sparse = [entry for entry in read_entries(log_path) if entry["op"] == "nmgemm"]
    assert [entry["kernel"] for entry in sparse] == shortlist[::-1][:2]
    assert {entry["cycle_model"] for entry in sparse} == {"llvm-mca"}
    assert [entry["predicted_cycles"] for entry in sparse] == [1.0, 2.0]
    assert sorted(calls) == sorted(shortlist)  # each shortlisted candidate predicted once


def test_a_killed_tuning_run_resumes(tmp_path):
    """SIGKILL a measuring tuning run after its second entry; the resumed run completes the
    plan with every candidate logged once."""
    require("host")
    log_path = tmp_path / "host.jsonl"
    command = [sys.executable, "-m", "codegen.schedule", "--target", "host", "--shape", "24x64x40",
               "--pattern", "2:8", "--log", str(log_path), "--budget", "6", "--repeats", "2",
               "--workdir", str(tmp_path / "work"), "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if log_path.exists() and log_path.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    killed = process.poll() is None
    if killed:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    partial = read_entries(log_path)
    assert killed and 2 <= len(partial) < 7, "the run finished before it could be killed"
    with open(log_path, "a") as stream:  # and a torn line, as a kill inside a write leaves
        stream.write('{"key": "torn')
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    entries = read_entries(log_path)
    keys = [entry["key"] for entry in entries]
    assert len(entries) == 7 and len(set(keys)) == 7
    assert entries[:len(partial)] == partial
    assert all(entry["method"] == "measured" for entry in entries)
    assert all(entry["ok"] and entry["tvm"]["builds"] for entry in entries if entry["op"] == "nmgemm")


# ---------------------------------------------------------------- the dense baseline


def test_tvm_dense_on_host_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 72)).astype(np.float32)
    x = rng.standard_normal((72, 50)).astype(np.float32)
    lib, _ = dense_baseline.build_dense(40, 72, 50, load_cpu_target("host"))
    seconds, y = dense_baseline.measure_host(lib, w, x, repeats=2)
    assert seconds > 0
    np.testing.assert_allclose(y, w @ x, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target", ["wasm32-simd128", "snapdragon855"])
def test_tvm_dense_through_the_harness(target, tmp_path):
    require(target)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((24, 40)).astype(np.float32)
    x = rng.standard_normal((40, 30)).astype(np.float32)
    executable, _ = dense_baseline.build_for_target(24, 40, 30, load_cpu_target(target), tmp_path)
    kernel_build.write_case(tmp_path, "c", {"w": w, "x": x}, (24, 40, 30))
    result = kernel_build.run(executable, target, tmp_path, repeats=2)
    assert len(result.times_s) == 2
    np.testing.assert_allclose(kernel_build.read_output(tmp_path, "c", "y", (24, 30)), w @ x,
                               atol=1e-4, rtol=1e-4)
