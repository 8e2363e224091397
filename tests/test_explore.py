"""hwsim explore: space validation, store/resume, front reproduction, hypervolume, Ray equality."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cli import main
from explore.pareto import front_indices, hypervolume, dominates
from explore.space import read_space
from hwsim.arch import read_target

TINY = """
workload: {mode: train, batch: 2, dataset: cifar10, models: [{name: resnet9}]}
axes:
  array.rows: [16, 32]
  array.cols: [16, 32]
  model.sparsity: [dense, "2:8"]
"""
HWSIM = [sys.executable, "-m", "cli"]


def _space_file(tmp_path, text=TINY, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _explore(tmp_path, space, out, *extra):
    return main(["explore", "--arch", "sat", "--space", space, "--out", str(out),
                 "--objectives", "cycles,energy", "--no-progress", *extra])


def _front(out):
    with open(os.path.join(out, "front.json")) as handle:
        return sorted((d["key"], d["metrics"]["cycles"]) for d in json.load(handle)["front"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("axes, needle", [
    ("array.rowz: [16]", "did you mean 'array.rows'"),
    ("array.rows: []", "empty list"),
    ("array.rows: {from: 64, to: 16, step: 16}", "empty range"),
    ("array.rows: {from: -16, to: 16, step: 16}", "negative range"),
    ("memory.dram_gbps: [-1.0]", "negative value"),
    ("sparsity.modes: [[\"2:16\"]]", "needs groups of 16"),
    ("model.sparsity: [\"block:1x4:0.5\"]", "N:M sparsity only"),
    ("model.sparsity.nosuchlayer: [dense]", "no weight layer"),
])
def test_bad_space_is_one_line_exit_2(tmp_path, capsys, axes, needle):
    space = _space_file(tmp_path, f"axes:\n  {axes}\n")
    assert _explore(tmp_path, space, tmp_path / "out") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and needle in error and "space.yaml" in error


def test_constraint_no_point_meets_names_it_and_the_closest(tmp_path, capsys):
    space = _space_file(tmp_path, TINY + "constraints: {energy_mj: {max: 0.001}}\n")
    assert _explore(tmp_path, space, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "energy_mj <= 0.001" in error and "closest is" in error


def test_ray_address_that_does_not_answer(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray") if not os.environ.get("CI") else None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert _explore(tmp_path, _space_file(tmp_path), tmp_path / "out", "--ray", "auto") == 2
    assert "--ray" in capsys.readouterr().err


def test_ranges_expand(tmp_path):
    source, document = read_target("sat")
    space = read_space(_space_file(tmp_path, "axes:\n  memory.ifmap_sram_kb: {from: 128, to: 1024, times: 2}\n"
                                   "  memory.dram_gbps: {from: 9.6, to: 28.8, step: 9.6}\n"),
                       document, source)
    assert space.axes[0].values == (128, 256, 512, 1024)
    assert space.axes[1].values == (9.6, 19.2, 28.8)
    assert space.size == 12


# ---------------------------------------------------------------- pareto maths


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=12))
def test_hypervolume_equals_unit_cell_count(points):
    """On integer points in [0, 10)^3 with reference 10, the volume is the number of unit cells dominated."""
    grid = np.zeros((10, 10, 10), dtype=bool)
    for x, y, z in points:
        grid[x:, y:, z:] = True
    assert hypervolume(points, (10, 10, 10)) == pytest.approx(grid.sum())
    assert hypervolume([p[:2] for p in points], (10, 10)) == pytest.approx(grid[:, :, 9].sum())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=15))
def test_front_is_exactly_the_non_dominated(points):
    front = set(front_indices(points))
    for i, p in enumerate(points):
        assert (i in front) == (not any(dominates(q, p) for q in points))


# ---------------------------------------------------------------- runs


def test_front_yaml_reproduces_with_simulate(tmp_path, capsys):
    out = tmp_path / "out"
    assert _explore(tmp_path, _space_file(tmp_path), out) == 0
    capsys.readouterr()
    document = json.load(open(out / "front.json"))
    assert document["front"] and document["points_visited"] == 8
    for name in ("front.csv", "all.csv", "index.html", "parallel_coordinates.png"):
        assert (out / name).stat().st_size > 0
    design = document["front"][0]
    command = design["simulate"][0].split()[1:]
    assert main(command) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert simulated["total_cycles"] == design["metrics"]["cycles"]
    assert simulated["energy_j"] * 1e3 == pytest.approx(design["metrics"]["energy_mj"], rel=1e-12)
    # a second run reuses every point
    assert _explore(tmp_path, _space_file(tmp_path), out) == 0
    assert json.load(open(out / "front.json"))["evaluated_now"] == 0


def test_nsga2_is_deterministic_and_processes_agree(tmp_path):
    space = _space_file(tmp_path, TINY.replace("[16, 32]", "[8, 16, 32, 64]"))
    assert _explore(tmp_path, space, tmp_path / "a", "--search", "nsga2", "--budget", "12", "--seed", "3") == 0
    assert _explore(tmp_path, space, tmp_path / "b", "--search", "nsga2", "--budget", "12", "--seed", "3",
                    "--workers", "2") == 0
    a, b = json.load(open(tmp_path / "a/front.json")), json.load(open(tmp_path / "b/front.json"))
    assert a["points_visited"] == 12 and _front(tmp_path / "a") == _front(tmp_path / "b")


def test_killed_run_resumes_without_reevaluating(tmp_path):
    """A real subprocess killed mid-run; the rerun costs exactly the points not stored."""
    space = _space_file(tmp_path, TINY.replace("[16, 32]", "[8, 16, 32, 64]").replace("resnet9", "resnet18"))
    out = tmp_path / "out"
    command = HWSIM + ["explore", "--arch", "sat", "--space", space, "--out", str(out),
                       "--objectives", "cycles,energy", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = out / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not store.exists() or len(store.read_text().splitlines()) < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = len(store.read_bytes().split(b"\n")) - 1
    assert 5 <= stored < 32
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.load(open(out / "front.json"))
    assert document["reused_from_store"] >= stored - 1          # a torn last line is re-costed
    assert document["evaluated_now"] + document["reused_from_store"] == 32
    keys = [json.loads(line)["key"] for line in store.read_text().splitlines()]
    assert len(keys) == len(set(keys))


@pytest.mark.slow
def test_ray_head_front_equals_in_process(tmp_path):
    """A real Ray head on 127.0.0.1 (subprocess), joined with --ray auto: the same front."""
    if shutil.which("ray") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "ray")):
        if os.environ.get("CI"):
            pytest.fail("ray is not installed (CI must run the Ray test)")
        pytest.skip("ray is not installed")
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    space = _space_file(tmp_path)
    assert _explore(tmp_path, space, tmp_path / "inline") == 0
    # A loopback test cluster without token auth on both sides: Ray 2.60 turns token auth
    # on for `ray start` once any local ray.init() has left ~/.ray/auth_token, and then the
    # subprocess driver's connection was refused (InvalidAuthToken).
    ray_env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=120, env=ray_env)
    try:
        env = {**ray_env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        done = subprocess.run(HWSIM + ["explore", "--arch", "sat", "--space", space, "--out",
                                       str(tmp_path / "ray"), "--objectives", "cycles,energy",
                                       "--no-progress", "--ray", "auto", "--workers", "2"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=ray_env)
    assert _front(tmp_path / "ray") == _front(tmp_path / "inline")


# ---------------------------------------------------------------- the mapper and area in explore

MAPPED = """
workload: {mode: train, batch: 2, dataset: cifar10, models: [{name: resnet9}]}
axes:
  array.rows: [16, 32]
  dataflow: [os, [os, ws, is]]
  mapping: [fixed, cycles]
  model.sparsity: ["2:8"]
  technology: [28nm]
"""


def test_mapping_axis_front_yamls_reproduce_with_simulate_and_area(tmp_path, capsys):
    """A mapped design's YAML carries 'mapping:', so the printed command alone reproduces it."""
    out = tmp_path / "out"
    assert main(["explore", "--arch", "sat", "--space", _space_file(tmp_path, MAPPED), "--out", str(out),
                 "--objectives", "cycles,energy,area", "--no-progress"]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_point = {json.dumps(r["point"], sort_keys=True): r["metrics"] for r in records}
    for record in records:
        if record["point"]["mapping"] == "cycles":     # mapped is never slower than fixed
            fixed = by_point[json.dumps({**record["point"], "mapping": "fixed"}, sort_keys=True)]
            assert record["metrics"]["cycles"] <= fixed["cycles"]
    reconf = by_point[json.dumps({"array.rows": 16, "dataflow": ["os", "ws", "is"], "mapping": "cycles",
                                  "model.sparsity": "2:8", "technology": "28nm"}, sort_keys=True)]
    plain = by_point[json.dumps({"array.rows": 16, "dataflow": ["os", "ws", "is"], "mapping": "fixed",
                                 "model.sparsity": "2:8", "technology": "28nm"}, sort_keys=True)]
    assert reconf["cycles"] < plain["cycles"]
    document = json.load(open(out / "front.json"))
    assert any(d["point"]["mapping"] == "cycles" for d in document["front"])
    for design in document["front"]:
        text = open(design["yaml"]).read()
        assert ("mapping: cycles" in text) == (design["point"]["mapping"] == "cycles")
        assert main(design["simulate"][0].split()[1:]) == 0
        simulated = json.loads(capsys.readouterr().out)
        assert simulated["total_cycles"] == design["metrics"]["cycles"]
        assert simulated["energy_j"] * 1e3 == design["metrics"]["energy_mj"]
        assert simulated["area_mm2"] == design["metrics"]["area_mm2"]


def test_map_option_sets_the_base_yaml_and_area_without_a_node_is_refused(tmp_path, capsys):
    space = _space_file(tmp_path, TINY)
    assert main(["explore", "--arch", "sat", "--space", space, "--out", str(tmp_path / "a"),
                 "--objectives", "cycles,area", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "technology" in error
    assert _explore(tmp_path, space, tmp_path / "m", "--map", "edp") == 0
    capsys.readouterr()
    document = json.load(open(tmp_path / "m" / "front.json"))
    design = document["front"][0]
    assert "mapping: edp" in open(design["yaml"]).read()
    assert main(design["simulate"][0].split()[1:]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert simulated["mapping"] == "edp" and simulated["total_cycles"] == design["metrics"]["cycles"]
