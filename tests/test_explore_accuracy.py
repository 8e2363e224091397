"""hwsim explore's accuracy proxy: magnitude_kept as a floor and as a maximised objective."""
from __future__ import annotations

import csv
import json

import pytest
from hypothesis import given, settings, strategies as st

from cli import main
from explore.accuracy_proxy import AccuracyProxy
from explore.evaluate import with_layer_patterns
from explore.outputs import pareto_front
from explore.pareto import knee_index
from explore.search import metric_values, objective_values
from explore.space import read_space
from hwsim.arch import read_target
from models.loading import load
from models.pruning_proxy import magnitude_kept

TINY = """
workload: {mode: train, batch: 2, dataset: cifar10, models: [{name: resnet9}]}
axes:
  array.rows: [16, 32]
  array.cols: [16, 32]
  model.sparsity: [dense, "2:8", "1:8"]
"""
FLOOR = "constraints: {magnitude_kept: {min: 0.7}}\n"


def _space_file(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _explore(space, out, objectives="cycles,energy", *extra):
    return main(["explore", "--arch", "sat", "--space", space, "--out", str(out),
                 "--objectives", objectives, "--no-progress", *extra])


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _expected(spec, layers=None, model="resnet9", mode="train"):
    base = load(model, dataset="cifar10", batch=1)
    return magnitude_kept(with_layer_patterns(base, spec, layers or {}), mode=mode)


def test_floor_marks_points_infeasible_with_the_reason(tmp_path, capsys):
    out = tmp_path / "out"
    assert _explore(_space_file(tmp_path, TINY + FLOOR), out) == 0
    printed = capsys.readouterr().out
    assert "infeasible: 4 break magnitude_kept >= 0.7" in printed
    rows = _rows(out / "all.csv")
    assert len(rows) == 12
    kept = {spec: _expected(spec) for spec in ("dense", "2:8", "1:8")}
    assert kept["dense"] == 1.0 and kept["1:8"] < 0.7 < kept["2:8"] < 1.0
    for row in rows:
        spec = row["model.sparsity"]
        assert float(row["magnitude_kept"]) == kept[spec]          # exact: repr round-trips
        assert row["feasible"] == ("0" if spec == "1:8" else "1")
        if spec == "1:8":
            assert row["reason"] == f"breaks magnitude_kept >= 0.7 ({kept['1:8']:.6g})"
            assert row["on_front"] == "0"
    document = json.load(open(out / "front.json"))
    assert document["constraints"] == ["magnitude_kept >= 0.7"]
    assert all(d["point"]["model.sparsity"] != "1:8" for d in document["front"])
    for design in document["front"]:
        value = kept[design["point"]["model.sparsity"]]
        assert design["metrics"]["magnitude_kept"] == value
        assert design["per_model"][0]["magnitude_kept"] == value
        yaml_text = open(design["yaml"]).read()
        assert f"magnitude_kept {value:.6g}" in yaml_text


def test_maximised_objective_keeps_the_most_magnitude_on_the_front(tmp_path, capsys):
    out = tmp_path / "out"
    assert _explore(_space_file(tmp_path, TINY), out, "cycles,magnitude_kept") == 0
    capsys.readouterr()
    rows = [r for r in _rows(out / "all.csv") if r["status"] == "ok"]
    points = [(int(r["cycles"]), float(r["magnitude_kept"]), r["key"]) for r in rows]
    # by hand: no other point has cycles <= and kept >= with one strictly better
    expected = {key for cycles, kept, key in points
                if not any(c <= cycles and k >= kept and (c < cycles or k > kept)
                           for c, k, _ in points)}
    document = json.load(open(out / "front.json"))
    assert {d["key"] for d in document["front"]} == expected
    assert document["maximised"] == ["magnitude_kept"]
    # the dense design with the fewest cycles keeps everything: it must be on the front
    dense = min((p for p in points if p[1] == 1.0), key=lambda p: p[0])
    assert dense[2] in expected
    assert (out / "front_cycles_vs_magnitude_kept.png").stat().st_size > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.sampled_from([0.25, 0.5, 0.75, 1.0])),
                min_size=1, max_size=14))
def test_front_and_knee_read_a_maximised_metric_the_right_way_round(tmp_path_factory, pairs):
    source, document = read_target("sat")
    path = tmp_path_factory.mktemp("s") / "space.yaml"
    path.write_text("axes: {array.rows: [16]}\n")
    space = read_space(str(path), document, source)
    records = [{"key": f"{i:04d}", "point": {"array.rows": 16}, "status": "ok",
                "metrics": {"cycles": c, "magnitude_kept": k}} for i, (c, k) in enumerate(pairs)]
    objectives = ("cycles", "magnitude_kept")
    front = pareto_front(space, records, objectives)
    on_front = {r["key"] for r in front.records}
    for record in records:
        c, k = record["metrics"]["cycles"], record["metrics"]["magnitude_kept"]
        beaten = any(o["metrics"]["cycles"] <= c and o["metrics"]["magnitude_kept"] >= k
                     and (o["metrics"]["cycles"], o["metrics"]["magnitude_kept"]) != (c, k)
                     for o in records)
        assert (record["key"] in on_front) == (not beaten)
    assert all(objective_values(r, objectives) == [metric_values(r, objectives)[0],
                                                  -metric_values(r, objectives)[1]]
               for r in records)
    # the knee is the front design nearest (fewest cycles, most kept) after scaling
    values = [metric_values(r, objectives) for r in front.records]
    low_c, high_c = min(v[0] for v in values), max(v[0] for v in values)
    low_k, high_k = min(v[1] for v in values), max(v[1] for v in values)
    distance = [((c - low_c) / ((high_c - low_c) or 1)) ** 2
                + ((high_k - k) / ((high_k - low_k) or 1)) ** 2 for c, k in values]
    assert distance[front.knee] == min(distance)
    assert knee_index([objective_values(r, objectives) for r in front.records]) == front.knee


def test_computed_once_per_pattern_choice_not_per_point(tmp_path, monkeypatch):
    import models.pruning_proxy as proxy_module

    calls = []
    original = proxy_module.layer_l2_kept
    monkeypatch.setattr(proxy_module, "layer_l2_kept",
                        lambda weight, pattern: calls.append(pattern.spec) or original(weight, pattern))
    space_text = TINY.replace("[16, 32]", "[8, 16, 32]")          # 27 points, 2 sparse patterns
    assert _explore(_space_file(tmp_path, space_text), tmp_path / "out") == 0
    base = load("resnet9", dataset="cifar10", batch=1)
    pruned = {spec: len(proxy_module.pruned_patterns(
        with_layer_patterns(base, spec, {}), mode="train")) for spec in ("2:8", "1:8")}
    assert sorted(calls) == sorted(["2:8"] * pruned["2:8"] + ["1:8"] * pruned["1:8"])


def test_old_store_without_the_metric_resumes_and_is_completed(tmp_path, capsys):
    out = tmp_path / "out"
    space = _space_file(tmp_path, TINY + FLOOR)
    assert _explore(space, out) == 0
    before = json.load(open(out / "front.json"))["front"]
    store = out / "results.jsonl"
    lines = []
    for line in store.read_text().splitlines():
        record = json.loads(line)
        record.get("metrics", {}).pop("magnitude_kept", None)
        for entry in record.get("per_model", []):
            entry.pop("magnitude_kept", None)
        lines.append(json.dumps(record))
    store.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert _explore(space, out) == 0
    after = json.load(open(out / "front.json"))
    assert after["evaluated_now"] == 0 and after["reused_from_store"] == 12
    assert [(d["key"], d["metrics"]) for d in after["front"]] == \
        [(d["key"], d["metrics"]) for d in before]
    assert "infeasible: 4 break magnitude_kept >= 0.7" in capsys.readouterr().out


def test_per_layer_patterns_and_several_models(tmp_path):
    text = """
workload: {mode: train, batch: 2, dataset: cifar10, models: [{name: resnet9, weight: 2}, {name: resnet18}]}
axes:
  array.rows: [16]
  model.sparsity: ["2:8"]
  model.sparsity.fc: [dense, "1:8"]
"""
    source, document = read_target("sat")
    space = read_space(_space_file(tmp_path, text), document, source)
    proxy = AccuracyProxy(space)
    for choice in ("dense", "1:8"):
        point = {"array.rows": 16, "model.sparsity": "2:8", "model.sparsity.fc": choice}
        lowest, per_model = proxy.of_point(point)
        expected = tuple(_expected("2:8", {"fc": choice}, model) for model in ("resnet9", "resnet18"))
        assert per_model == expected and lowest == min(expected)
    dense_fc = proxy.of_point({"array.rows": 16, "model.sparsity": "2:8", "model.sparsity.fc": "dense"})
    pruned_fc = proxy.of_point({"array.rows": 16, "model.sparsity": "2:8", "model.sparsity.fc": "1:8"})
    assert pruned_fc[0] < dense_fc[0]


def test_nsga2_maximises_the_proxy(tmp_path):
    space = _space_file(tmp_path, TINY.replace("[16, 32]", "[8, 16, 32, 64]"))
    out = tmp_path / "out"
    assert _explore(space, out, "cycles,magnitude_kept", "--search", "nsga2", "--budget", "10") == 0
    document = json.load(open(out / "front.json"))
    kept = [d["metrics"]["magnitude_kept"] for d in document["front"]]
    assert 1.0 in kept                 # a dense design is never dominated on kept magnitude
    visited = [r for r in _rows(out / "all.csv") if r["status"] == "ok"]
    assert max(float(r["magnitude_kept"]) for r in visited) == max(kept)


@pytest.mark.parametrize("constraint, needle", [
    ("magnitude_kept: {min: 1.5}", "can never be met"),
    ("magnitude_kep: {min: 0.5}", "magnitude_kept"),
])
def test_bad_floor_is_one_line_exit_2(tmp_path, capsys, constraint, needle):
    space = _space_file(tmp_path, TINY + f"constraints: {{{constraint}}}\n")
    assert _explore(space, tmp_path / "out") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and needle in error and "space.yaml" in error


def test_floor_no_point_meets_names_it(tmp_path, capsys):
    space = _space_file(tmp_path, TINY.replace('dense, "2:8", ', "") + FLOOR)
    assert _explore(space, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "no point meets 'magnitude_kept >= 0.7'" in error


def test_help_names_the_metric(capsys):
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    text = capsys.readouterr().out
    assert "magnitude_kept" in text and "maximised" in text


def test_bundled_pruning_space_front_reproduces_with_simulate(tmp_path, capsys):
    """The bundled example as its comment runs it: the floor removes every 1:8 point, and a
    sparse and a dense front YAML reproduce cycles, energy and area with hwsim simulate."""
    out = tmp_path / "out"
    assert main(["explore", "--arch", "sat", "--space", "sat_pruning", "--model", "resnet18",
                 "--objectives", "cycles,area,magnitude_kept", "--out", str(out),
                 "--no-progress"]) == 0
    assert "infeasible: 18 break magnitude_kept >= 0.7" in capsys.readouterr().out
    document = json.load(open(out / "front.json"))
    designs = {d["point"]["model.sparsity"]: d for d in document["front"]}
    assert "1:8" not in designs and {"dense", "2:8"} <= set(designs)
    for spec in ("dense", "2:8"):
        design = designs[spec]
        assert design["metrics"]["magnitude_kept"] == _expected(spec, model="resnet18")
        assert main(design["simulate"][0].split()[1:]) == 0
        simulated = json.loads(capsys.readouterr().out)
        assert simulated["total_cycles"] == design["metrics"]["cycles"]
        assert simulated["energy_j"] * 1e3 == design["metrics"]["energy_mj"]
        assert simulated["area_mm2"] == design["metrics"]["area_mm2"]


def test_worker_processes_give_the_same_records(tmp_path, capsys):
    space = _space_file(tmp_path, TINY + FLOOR)
    assert _explore(space, tmp_path / "a") == 0
    assert _explore(space, tmp_path / "b", "cycles,energy", "--workers", "2") == 0
    capsys.readouterr()

    def records(out):
        lines = (out / "results.jsonl").read_text().splitlines()
        return sorted((r["key"], r["metrics"]["cycles"], r["metrics"]["magnitude_kept"],
                       [e["magnitude_kept"] for e in r["per_model"]])
                      for r in map(json.loads, lines))
    assert records(tmp_path / "a") == records(tmp_path / "b")
