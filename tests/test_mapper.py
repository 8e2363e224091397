"""hwsim.mapper: never worse than any fixed mapping; off, today's engine unchanged."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import load_arch, with_overrides
from hwsim.engine import result_of, schedule_gemm, simulate
from hwsim.sparse_mode import pregeneration_bytes
from hwsim.timeline import local_cycles, step_timeline
from hwsim.mapper import candidates, simulate_mapped
from models.errors import UserError
from models.lowering import GemmWorkload


def gemm(M, N, K, phase="FF", nm=None):
    sparse = nm is not None
    return GemmWorkload(layer="g", phase=phase, M=M, N=N, K=K, groups=1, op_kind="conv2d",
                        sparse=sparse, pattern=f"{nm[0]}:{nm[1]}" if sparse else None,
                        density=nm[0] / nm[1] if sparse else 1.0, nm=nm)


@pytest.fixture(scope="module")
def reconfigurable():
    return with_overrides(load_arch("sat"), {"dataflow": ["os", "ws", "is"]})


def fixed(arch, workloads, mapping):
    transposed, dataflow, outer = mapping
    schedules = [schedule_gemm(arch, w, transposed=transposed, outer=outer, dataflow=dataflow)
                 for w in workloads]
    pre = pregeneration_bytes(arch, workloads)
    compute, stall = step_timeline(arch, schedules, pre)
    return result_of(arch, workloads, schedules, pre, compute, stall, model_name="m",
                     sparsity="s", mode="train", batch=1)


def energy(result):
    return sum(layer.energy_pj for layer in result.layers)


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 600), N=st.integers(1, 300), K=st.integers(1, 64).map(lambda g: 8 * g),
       nm=st.sampled_from([None, (2, 8), (1, 8)]), gbps=st.sampled_from([2.0, 19.2]),
       objective=st.sampled_from(["cycles", "energy", "edp"]))
def test_never_worse_than_any_fixed_mapping(reconfigurable, M, N, K, nm, gbps, objective):
    arch = dataclasses.replace(reconfigurable, memory=dataclasses.replace(
        reconfigurable.memory, dram_gbps=gbps))
    workloads = [gemm(M, N, K, nm=nm), gemm(N, K, M, phase="WU")]
    mapped = simulate_mapped(arch, workloads, objective=objective)
    score = {"cycles": lambda r: r.total_cycles, "energy": energy,
             "edp": lambda r: r.total_cycles * energy(r)}[objective]
    for mapping in candidates(arch):
        assert score(mapped) <= score(fixed(arch, workloads, mapping)) * (1 + 1e-12), mapping
    assert score(mapped) <= score(simulate(arch, workloads)) * (1 + 1e-12)
    assert mapped.macs == sum(w.macs for w in workloads)


def test_single_dataflow_mapping_fixed_is_todays_engine():
    """The default mapping through the split schedule_gemm equals simulate (SCALE-Sim order)."""
    arch = load_arch("systolic-32x32-ws")
    workloads = [gemm(300, 70, 144), gemm(70, 144, 300, phase="WU")]
    today = simulate(arch, workloads)
    again = fixed(arch, workloads, (False, "ws", "col"))
    assert [l.total_cycles for l in again.layers] == [l.total_cycles for l in today.layers]
    assert energy(again) == energy(today)


def test_reconfigurable_array_can_beat_its_default(reconfigurable):
    """A depthwise-like GEMM (tiny K) is far faster off OS: the mapper finds it."""
    workloads = [gemm(4096, 1, 9)]
    assert simulate_mapped(reconfigurable, workloads).total_cycles < \
        simulate(reconfigurable, workloads).total_cycles


@pytest.mark.parametrize("value, words", [(["os", "xs"], ["dataflow", "xs"]), ([], ["empty"]),
                                          ([3], ["dataflow"])])
def test_bad_dataflow_lists(value, words):
    with pytest.raises(UserError) as error:
        with_overrides(load_arch("sat"), {"dataflow": value})
    for word in words:
        assert word in str(error.value.message) + str(error.value.field)


# ---------------------------------------------------------------- `hwsim simulate --map`


def _simulate(capsys, *argv):
    from cli import main
    code = main(["simulate", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def reconfigurable_yaml(tmp_path):
    from hwsim.arch import accelerator_to_yaml
    path = tmp_path / "reconf.yaml"
    path.write_text(accelerator_to_yaml(with_overrides(load_arch("sat"), {"dataflow": ["os", "ws", "is"]})))
    return path


RUN = ["--model", "resnet9", "--dataset", "cifar10", "--batch", "2", "--sparsity", "2:8"]


def test_simulate_map_never_worse_and_reports_each_gemms_mapping(capsys, reconfigurable_yaml):
    import json
    results = {}
    for choice in (None, "cycles", "energy", "edp"):
        extra = ["--map", choice] if choice else []
        code, out, _ = _simulate(capsys, "--arch", str(reconfigurable_yaml), *RUN, "--format", "json", *extra)
        assert code == 0
        results[choice] = json.loads(out)
    assert results[None]["mapping"] is None
    assert results["cycles"]["mapping"] == "cycles"
    assert results["cycles"]["total_cycles"] <= results[None]["total_cycles"]
    assert results["energy"]["energy_j"] <= results[None]["energy_j"] * (1 + 1e-12)
    edp = {k: v["total_cycles"] * v["energy_j"] for k, v in results.items()}
    assert edp["edp"] <= edp[None] * (1 + 1e-12)
    used = {layer["dataflow"] for layer in results["cycles"]["layers"]}
    assert used <= {"os", "ws", "is"} and used - {"os"}      # the mapper used the other dataflows
    code, out, _ = _simulate(capsys, "--arch", str(reconfigurable_yaml), *RUN, "--map", "cycles")
    assert code == 0 and "mapper: minimise cycles over os, ws, is" in out
    layer = results["cycles"]["layers"][0]
    first = next(line for line in out.splitlines() if line.startswith(layer["name"] + " "))
    assert f"{layer['dataflow']}/{layer['orientation']}/{layer['loop_order'].split('-')[0]}" in first


def test_yaml_mapping_equals_the_flag_and_fixed_is_todays_result(capsys, tmp_path, reconfigurable_yaml):
    mapped_yaml = tmp_path / "mapped.yaml"
    mapped_yaml.write_text(reconfigurable_yaml.read_text() + "mapping: edp\n")
    outputs = {}
    for name, argv in {"flag": ["--arch", str(reconfigurable_yaml), "--map", "edp"],
                       "yaml": ["--arch", str(mapped_yaml)],
                       "fixed": ["--arch", str(mapped_yaml), "--map", "fixed"],
                       "plain": ["--arch", str(reconfigurable_yaml)]}.items():
        code, out, _ = _simulate(capsys, *argv, *RUN)
        assert code == 0
        outputs[name] = out.replace(str(mapped_yaml), "X").replace(str(reconfigurable_yaml), "X")
    assert outputs["flag"] == outputs["yaml"]
    assert outputs["fixed"] == outputs["plain"] and "mapping" not in outputs["plain"]
    assert load_arch(str(mapped_yaml)).mapping == "edp"


def test_bad_mapping_value_is_one_line(capsys, tmp_path, reconfigurable_yaml):
    bad = tmp_path / "bad.yaml"
    bad.write_text(reconfigurable_yaml.read_text() + "mapping: edpp\n")
    code, _, err = _simulate(capsys, "--arch", str(bad), *RUN)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "mapping" in err and "did you mean 'edp'" in err and "bad.yaml" in err


@settings(max_examples=15, deadline=None)
@given(M=st.integers(1, 400), N=st.integers(1, 200), K=st.integers(1, 32).map(lambda g: 8 * g),
       nm=st.sampled_from([None, (2, 8)]), phase=st.sampled_from(["FF", "BP", "WU"]),
       reuse=st.sampled_from([1.0, 3.5]))
def test_shape_key_captures_everything_a_schedule_depends_on(reconfigurable, M, N, K, nm, phase, reuse):
    """Steps schedule each shape once (engine.shape_key): a renamed GEMM schedules identically."""
    import numpy as np
    from hwsim.engine import shape_key
    a = dataclasses.replace(gemm(M, N, K, phase=phase, nm=nm), layer="a")
    b = dataclasses.replace(a, layer="b")
    assert shape_key(a) == shape_key(b)
    for transposed, dataflow, outer in candidates(reconfigurable):
        one, two = (schedule_gemm(reconfigurable, w, transposed=transposed, outer=outer, reuse=reuse,
                                  dataflow=dataflow) for w in (a, b))
        for field in dataclasses.fields(one):
            x, y = getattr(one, field.name), getattr(two, field.name)
            assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, field.name
    # a step of repeated shapes is no slower than its per-GEMM choice scheduled without sharing
    steps = [a, b, dataclasses.replace(a, layer="c", phase="WU", sparse=False, pattern=None,
                                       density=1.0, nm=None)]
    shared = simulate_mapped(reconfigurable, steps, objective="cycles")
    schedules = [min((schedule_gemm(reconfigurable, w, transposed=t, outer=o, dataflow=d)
                      for t, d, o in candidates(reconfigurable)),
                     key=lambda s: round(local_cycles(reconfigurable, s))) for w in steps]
    assert shared.total_cycles <= fixed_plan_cycles(reconfigurable, steps, schedules)


def fixed_plan_cycles(arch, workloads, schedules):
    pre = pregeneration_bytes(arch, workloads)
    compute, stall = step_timeline(arch, schedules, pre)
    return result_of(arch, workloads, schedules, pre, compute, stall, model_name="m", sparsity="s",
                     mode="train", batch=1).total_cycles


def test_map_on_a_cpu_target_is_refused(capsys):
    code, _, err = _simulate(capsys, "--arch", "host", "--map", "edp")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--map" in err
