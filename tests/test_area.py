"""hwsim.area: the area model's monotonic properties, the technology field's validation,
and area in `hwsim simulate` output."""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from cli import main
from hwsim.arch import accelerator_document, load_arch, parse_accelerator, with_overrides
from hwsim.area import (accelerator_area, accelerator_area_mm2, bundled_technologies,
                        load_technology)
from hwsim.engine import area_of
from models.errors import UserError

NODES = ("28nm", "7nm")
SETTINGS = settings(max_examples=25, deadline=None)


def sat_document(technology: str | None = "28nm", **changes) -> dict:
    """Returns the bundled SAT description as a YAML mapping, with a technology and changes."""
    document = copy.deepcopy(accelerator_document(load_arch("sat")))
    if technology is not None:
        document["technology"] = technology
    for path, value in changes.items():
        node = document
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return document


def arch_of(document: dict):
    return parse_accelerator(document, "<test>")


def area(**changes):
    return accelerator_area(arch_of(sat_document(**changes)))


def test_bundled_nodes_load_and_the_smaller_node_is_smaller():
    assert set(NODES) <= set(bundled_technologies())
    for node in NODES:
        tech = load_technology(node)
        assert tech.name == node and tech.reference == node and 16 in tech.operand_widths()
    big, small = area(technology="28nm"), area(technology="7nm")
    for part in ("pe_array_mm2", "nm_select_mm2", "sram_mm2", "total_mm2"):
        assert getattr(small, part) < getattr(big, part), part


@SETTINGS
@given(node=st.sampled_from(NODES), rows=st.integers(1, 128), cols=st.integers(1, 128),
       extra=st.integers(1, 64))
def test_more_pes_cost_more_area(node, rows, cols, extra):
    kb = 2 * (rows + extra) * (cols + extra) * 2 / 1024 + 1   # buffers hold the largest array's tiles
    memory = {"memory.ifmap_sram_kb": kb, "memory.filter_sram_kb": kb, "memory.ofmap_sram_kb": kb}
    base = area(technology=node, **{"array.rows": rows, "array.cols": cols}, **memory)
    taller = area(technology=node, **{"array.rows": rows + extra, "array.cols": cols}, **memory)
    wider = area(technology=node, **{"array.rows": rows, "array.cols": cols + extra}, **memory)
    for bigger in (taller, wider):
        assert bigger.pe_array_mm2 > base.pe_array_mm2
        assert bigger.total_mm2 > base.total_mm2


@SETTINGS
@given(node=st.sampled_from(NODES), buffer=st.sampled_from(["ifmap_sram_kb", "filter_sram_kb",
                                                           "ofmap_sram_kb"]),
       kb=st.floats(4, 4096), extra_kb=st.floats(0.5, 2048))
def test_more_sram_costs_more_area(node, buffer, kb, extra_kb):
    base = area(technology=node, **{f"memory.{buffer}": kb})
    bigger = area(technology=node, **{f"memory.{buffer}": kb + extra_kb})
    assert bigger.sram_mm2 > base.sram_mm2
    assert bigger.total_mm2 > base.total_mm2
    assert bigger.pe_array_mm2 == base.pe_array_mm2


@pytest.mark.parametrize("node", NODES)
def test_a_2_8_capable_array_costs_more_than_a_dense_one(node):
    dense = area(technology=node, sparsity=None, index_bits=None)
    sparse = area(technology=node, **{"sparsity.modes": ["2:8"]})
    assert dense.nm_select_mm2 == 0.0
    assert sparse.nm_select_mm2 > 0.0
    assert sparse.total_mm2 > dense.total_mm2
    assert sparse.pe_array_mm2 == dense.pe_array_mm2


@SETTINGS
@given(node=st.sampled_from(NODES), count=st.integers(1, 7))
def test_each_supported_mode_adds_select_area(node, count):
    modes = [f"{n}:8" for n in range(1, 9)]
    fewer = area(technology=node, **{"sparsity.modes": modes[:count]})
    more = area(technology=node, **{"sparsity.modes": modes[:count + 1]})
    assert more.nm_select_mm2 > fewer.nm_select_mm2
    assert more.total_mm2 > fewer.total_mm2


@pytest.mark.parametrize("node", NODES)
def test_larger_groups_need_more_select_area(node):
    m4 = area(technology=node, **{"sparsity.group_size": 4, "sparsity.modes": ["2:4"],
                                  "index_bits": 2})
    m8 = area(technology=node, **{"sparsity.group_size": 8, "sparsity.modes": ["2:8"]})
    assert m8.nm_select_mm2 > m4.nm_select_mm2


@SETTINGS
@given(node=st.sampled_from(NODES), rows=st.integers(1, 64), cols=st.integers(1, 64),
       kbs=st.tuples(*[st.floats(64, 8192)] * 3), gbps=st.floats(1, 400),
       sparse=st.booleans(), word_bytes=st.sampled_from([1, 2, 4]))
def test_the_breakdown_sums_to_the_total(node, rows, cols, kbs, gbps, sparse, word_bytes):
    changes = {"array.rows": rows, "array.cols": cols, "memory.dram_gbps": gbps,
               "memory.ifmap_sram_kb": kbs[0], "memory.filter_sram_kb": kbs[1],
               "memory.ofmap_sram_kb": kbs[2], "word_bytes": word_bytes}
    if not sparse:
        changes.update(sparsity=None, index_bits=None)
    arch = arch_of(sat_document(technology=node, **changes))
    result = accelerator_area(arch)
    parts = result.as_dict()
    assert parts["total_mm2"] == pytest.approx(parts["pe_array_mm2"] + parts["nm_select_mm2"]
                                               + parts["sram_mm2"] + parts["dram_phy_mm2"])
    assert all(parts[key] >= 0 for key in parts if key.endswith("_mm2"))
    assert (parts["nm_select_mm2"] > 0) == sparse
    assert accelerator_area_mm2(arch) == result.total_mm2
    assert area_of(arch) == result


def test_more_dram_bandwidth_needs_more_phys():
    one = area(**{"memory.dram_gbps": 19.2})
    two = area(**{"memory.dram_gbps": 19.3})
    assert two.dram_phy_mm2 == 2 * one.dram_phy_mm2 > 0


@pytest.mark.parametrize("name", ["28mn", "5nm", "nodes/3nm.yaml"])
def test_unknown_technology_is_a_user_error(name):
    with pytest.raises(UserError) as caught:
        arch_of(sat_document(technology=name))
    assert caught.value.field == "technology" and caught.value.source == "<test>"
    assert "28nm" in caught.value.fix or "bundled" in caught.value.fix
    if name == "28mn":
        assert "28nm" in caught.value.fix


def test_technology_must_be_a_string():
    with pytest.raises(UserError) as caught:
        arch_of(sat_document(technology=28))
    assert caught.value.field == "technology"


def test_a_width_the_node_does_not_price_is_a_user_error(tmp_path):
    tech = yaml.safe_load(open(load_technology("28nm").source))
    del tech["mac_um2"][16]
    path = tmp_path / "no16.yaml"
    path.write_text(yaml.safe_dump(tech))
    with pytest.raises(UserError) as caught:
        arch_of(sat_document(technology=str(path)))
    assert caught.value.field == "mac_um2" and "16-bit" in caught.value.message


def test_a_malformed_technology_file_names_file_and_field(tmp_path):
    tech = yaml.safe_load(open(load_technology("28nm").source))
    tech["sram"]["a_mm2"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tech))
    with pytest.raises(UserError) as caught:
        load_technology(str(path))
    assert caught.value.field == "sram.a_mm2" and caught.value.source == str(path)


def test_technology_path_next_to_the_accelerator_file_round_trips(tmp_path):
    (tmp_path / "node.yaml").write_text(open(load_technology("7nm").source).read())
    arch_path = tmp_path / "arch.yaml"
    arch_path.write_text(yaml.safe_dump(sat_document(technology="node.yaml")))
    arch = load_arch(str(arch_path))
    assert arch.technology.name == "7nm"
    assert arch.technology.reference == str((tmp_path / "node.yaml").resolve())
    assert parse_accelerator(accelerator_document(arch), arch.source) == arch
    bigger = with_overrides(arch, {"array.rows": 64})
    assert bigger.technology == arch.technology
    assert accelerator_area(bigger).total_mm2 > accelerator_area(arch).total_mm2


def test_no_technology_means_no_area():
    arch = load_arch("sat")
    assert arch.technology is None and area_of(arch) is None
    assert "technology" not in accelerator_document(arch)
    with pytest.raises(UserError) as caught:
        accelerator_area(arch)
    assert caught.value.field == "technology"


def test_simulate_reports_area_in_json_and_text(tmp_path, capsys):
    path = tmp_path / "sat-28nm.yaml"
    path.write_text(yaml.safe_dump(sat_document(technology="28nm")))
    expected = accelerator_area(load_arch(str(path)))
    assert main(["simulate", "--arch", str(path), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    for run in document["runs"].values():
        assert run["area_mm2"] == pytest.approx(expected.total_mm2)
        assert run["area"]["sram_mm2"] == pytest.approx(expected.sram_mm2)
        assert run["perf_per_mm2"] > 0 and run["edp_j_s"] > 0
    assert document["runs"]["2:8"]["perf_per_mm2"] > document["runs"]["dense"]["perf_per_mm2"]
    assert main(["simulate", "--arch", str(path)]) == 0
    assert f"area at 28nm: {expected.total_mm2:.3g} mm2" in capsys.readouterr().out
