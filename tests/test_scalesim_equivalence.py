"""hwsim.dataflow equals the real SCALE-Sim 3.0.0, layer by layer.

Hypothesis draws small conv layers (ifmap, filter, channels, filters, stride) and
arrays (square and not); each example runs SCALE-Sim once on a topology of several
layers (one start-up for many layers) and every layer's compute cycles, utilisation,
mapping efficiency and SRAM traffic must equal ``plan_folds``. Needs
``.venv-scalesim`` (``make .venv-scalesim/.installed``): skipped without it, failed in CI.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from hwsim.dataflow import DATAFLOWS, plan_folds
from hwsim.scalesim_ref import ConvLayer, GemmLayer, run_scalesim, scalesim_python
from models.errors import UserError
from tests.conftest import in_ci

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def scalesim_installed() -> None:
    try:
        scalesim_python()
    except UserError as error:
        if in_ci():
            pytest.fail(str(error))
        pytest.skip(str(error))


@st.composite
def conv_layers(draw, index: int) -> ConvLayer:
    filter_h = draw(st.integers(1, 4))
    filter_w = draw(st.integers(1, 4))
    return ConvLayer(name=f"conv{index}",
                     ifmap_h=draw(st.integers(filter_h, 11)),
                     ifmap_w=draw(st.integers(filter_w, 11)),
                     filter_h=filter_h, filter_w=filter_w,
                     channels=draw(st.integers(1, 6)),
                     num_filters=draw(st.integers(1, 24)),
                     stride=draw(st.integers(1, 3)))


@st.composite
def topologies(draw) -> list[ConvLayer]:
    count = draw(st.integers(1, 4))
    return [draw(conv_layers(index)) for index in range(count)]


arrays = st.tuples(st.integers(1, 16), st.integers(1, 16))


def scalesim_can_report(layers, rows: int, cols: int, dataflow: str) -> bool:
    """False when SCALE-Sim would crash: it divides by its cycle count, which is 0
    (ZeroDivisionError in single_layer_sim.calc_report_data) only for a 1x1x1 GEMM
    on a 1x1 os array."""
    return all(plan_folds(*layer.gemm(), rows, cols, dataflow).compute_cycles > 0
               for layer in layers)


def assert_matches(layers, rows: int, cols: int, dataflow: str) -> None:
    """Runs SCALE-Sim on ``layers`` and checks every layer against plan_folds."""
    run = run_scalesim(layers, rows, cols, dataflow, timeout_s=120)
    for layer, reference in zip(layers, run.layers):
        plan = plan_folds(*layer.gemm(), rows=rows, cols=cols, dataflow=dataflow)
        where = f"{layer} on {rows}x{cols} {dataflow}"
        assert reference.stall_cycles == 0, f"{where}: the reference stalled"
        assert plan.compute_cycles == reference.compute_cycles, where
        assert plan.utilization == pytest.approx(reference.utilization, rel=1e-9), where
        assert plan.mapping_efficiency == pytest.approx(reference.mapping_efficiency,
                                                        rel=1e-9), where
        assert plan.ifmap_reads == reference.ifmap_sram_reads, where
        assert plan.filter_reads == reference.filter_sram_reads, where
        assert plan.scalesim_ofmap_sram_writes == reference.ofmap_sram_writes, where


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=topologies(), array=arrays)
def test_conv_layers_match_scalesim(dataflow, layers, array):
    assume(scalesim_can_report(layers, *array, dataflow))
    assert_matches(layers, *array, dataflow)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40)),
                       min_size=1, max_size=4),
       array=arrays)
def test_gemm_topology_matches_scalesim(dataflow, shapes, array):
    layers = [GemmLayer(f"gemm{index}", M, N, K) for index, (M, N, K) in enumerate(shapes)]
    assume(scalesim_can_report(layers, *array, dataflow))
    assert_matches(layers, *array, dataflow)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_resnet_like_layer_on_32x32(dataflow):
    """A 3x3 conv with 32 channels (CIFAR ResNet stage shapes, 8x8 map) on the default array."""
    layers = [ConvLayer("res3x3", 10, 10, 3, 3, 32, 64, 1), ConvLayer("down1x1", 16, 16, 1, 1, 32, 64, 2)]
    assert_matches(layers, 32, 32, dataflow)


TOPOLOGY_LAYERS = [ConvLayer("conv_a", 18, 18, 3, 3, 16, 40, 1), ConvLayer("conv_b", 34, 34, 3, 3, 8, 64, 2),
                   ConvLayer("conv_c", 9, 9, 1, 1, 70, 33, 1), ConvLayer("conv_d", 12, 20, 5, 3, 3, 24, 1)]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_hwsim_simulate_cli_equals_scalesim_on_a_topology_csv(dataflow, tmp_path, capsys):
    """The issue's command: `hwsim simulate --arch systolic-32x32-DF.yaml --model topo.csv
    --mode infer --format json` gives SCALE-Sim's per-layer compute cycles."""
    import json

    from cli import main

    csv = tmp_path / "topo.csv"
    csv.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                   "Num Filter, Strides,\n" + "".join(
                       f"{layer.name}, {', '.join(map(str, layer.csv_fields()))},\n"
                       for layer in TOPOLOGY_LAYERS))
    assert main(["simulate", "--arch", f"targets/accelerators/systolic-32x32-{dataflow}.yaml",
                 "--model", str(csv), "--mode", "infer", "--sparsity", "dense",
                 "--format", "json"]) == 0
    ours = json.loads(capsys.readouterr().out)["layers"]
    reference = run_scalesim(TOPOLOGY_LAYERS, 32, 32, dataflow, timeout_s=300)
    assert [layer["name"] for layer in ours] == [layer.name for layer in TOPOLOGY_LAYERS]
    assert [layer["compute_cycles"] for layer in ours] == \
        [layer.compute_cycles for layer in reference.layers]
