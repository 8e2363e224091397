"""hwsim.evaluate: the library API equals `hwsim simulate`; accelerator YAML round-trips exactly."""
from __future__ import annotations

import json

import pytest

from cli import main
from hwsim.arch import accelerator_to_yaml, load_arch, with_overrides
from hwsim.engine import im2col_reuse, simulate
from hwsim.evaluate import DesignCost, evaluate, lower_workload
from models.errors import UserError
from models.lowering import lower
from models.patterns import BDWP
from tests.conftest import small_cnn

BUNDLED = ["sat", "systolic-32x32-os", "systolic-32x32-ws", "systolic-32x32-is"]


@pytest.mark.parametrize("name", BUNDLED)
def test_yaml_round_trip_is_exact(tmp_path, name):
    arch = load_arch(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(accelerator_to_yaml(arch, header="written by a test"))
    again = load_arch(str(path))
    assert again == type(arch)(**{**arch.__dict__, "source": again.source})


def test_overrides_are_validated():
    arch = with_overrides(load_arch("sat"), {"array.rows": 64, "memory.dram_gbps": 38.4})
    assert arch.array.rows == 64 and arch.memory.dram_gbps == 38.4
    with pytest.raises(UserError, match="array.rows"):
        with_overrides(arch, {"array.rows": -1})
    with pytest.raises(UserError, match="memory.dram_gpbs"):
        with_overrides(arch, {"memory.dram_gpbs": 1})


def test_evaluate_equals_engine():
    arch = load_arch("sat")
    model = small_cnn(16, size=8)
    workload = lower_workload("small", "2:8", mode="train", batch=2, base=model)
    cost = evaluate(arch, workload)
    direct = simulate(arch, lower(model.with_sparsity(BDWP(2, 8)), "train", batch=2),
                      input_reuse=im2col_reuse(model))
    assert isinstance(cost, DesignCost)
    assert cost.cycles == direct.total_cycles
    assert cost.energy_j == pytest.approx(direct.energy_j, rel=1e-12)
    assert cost.dram_bytes == direct.dram_bytes
    assert cost.edp_j_s == pytest.approx(cost.energy_j * cost.seconds)


def test_simulate_json_equals_evaluate(capsys, tmp_path):
    """The promise the explorer relies on: a written YAML re-simulates to evaluate's numbers."""
    arch = with_overrides(load_arch("sat"), {"array.cols": 16})
    path = tmp_path / "front.yaml"
    path.write_text(accelerator_to_yaml(arch))
    assert main(["simulate", "--arch", str(path), "--model", "resnet18", "--dataset", "cifar10",
                 "--sparsity", "2:8", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    cost = evaluate(load_arch(str(path)),
                    lower_workload("resnet18", "2:8", mode="train", batch=1, dataset="cifar10"))
    assert document["total_cycles"] == cost.cycles
    assert document["energy_j"] == cost.energy_j
    assert document["area_mm2"] == cost.area_mm2
