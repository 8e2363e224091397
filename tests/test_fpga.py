"""hwsim.fpga: DSP/LUT/BRAM36 estimate of an accelerator on its board (SAT on the VCU1525)."""
from __future__ import annotations

import json

import pytest

from cli import main
from hwsim.arch import accelerator_to_yaml, load_arch, with_overrides
from hwsim.fpga import (BOARDS, bram36_for, dsp_per_mac, fpga_estimate, mux_luts,
                        sorting_network_comparators)
from models.errors import UserError


def test_building_blocks_follow_their_sources():
    # UG579: 27x18 multiplier tiles; WP486: two INT8 MACs per DSP48E2.
    assert [dsp_per_mac(b) for b in (4, 8, 16, 18, 24, 27, 32)] == [0.5, 0.5, 1, 1, 2, 2, 4]
    # UG574: 4:1 per LUT6, 8/16/32:1 with F7/F8/F9 muxes.
    assert [mux_luts(m, 1) for m in (1, 2, 4, 8, 16, 32)] == [0, 1, 1, 2, 4, 8]
    assert mux_luts(8, 16) == 32 and mux_luts(64, 1) == 2 * 8 + 1
    # Batcher's bitonic sorter: 6, 24, 80 compare-swaps on 4, 8, 16 inputs.
    assert [sorting_network_comparators(m) for m in (4, 8, 16)] == [6, 24, 80]
    # UG573: 4 KB of data and 64 data bits per cycle per RAMB36.
    assert bram36_for(512, 512) == 128 and bram36_for(8, 4096) == 64


def test_sat_on_the_vcu1525_by_hand():
    estimate = fpga_estimate(load_arch("sat"))
    assert estimate.board.device == "XCVU9P" and estimate.board.dsp == 6840
    assert estimate.dsp == 32 * 32 * 1                                    # 16-bit MACs
    parts = dict(estimate.parts)
    assert parts["pe_control_lut"] == 1024 * 16
    assert parts["nm_select_lut"] == 1024 * (2 * 16 + 3 + 3)             # 8:1 x 16 bit, counter, 3 modes
    assert parts["topn_selector_lut"] == 32 * 24 * 2 * 16                # one bitonic-8 per column
    assert estimate.lut == 16384 + 38912 + 24576
    # ifmap: 512 KB / 4 KB = 128 blocks beats 32 rows x 8/1 words x 16 bit / 64 = 64 ports
    assert (parts["ifmap_bram36"], parts["filter_bram36"], parts["ofmap_bram36"]) == (128, 128, 64)
    assert estimate.bram36 == 320 and estimate.share("bram36") == pytest.approx(320 / 2160)


def test_estimate_grows_with_the_hardware_and_sparse_mode_costs_luts():
    sat = load_arch("sat")
    base = fpga_estimate(sat)
    wider = fpga_estimate(with_overrides(sat, {"array.cols": 64, "memory.filter_sram_kb": 1024}))
    assert wider.dsp == 2 * base.dsp and wider.lut > base.lut and wider.bram36 > base.bram36
    dense_document = {k: v for k, v in json.loads(json.dumps(_document(sat))).items()
                      if k not in ("sparsity", "index_bits")}
    from hwsim.arch import parse_accelerator
    dense = fpga_estimate(parse_accelerator(dense_document, "dense.yaml"))
    assert dense.dsp == base.dsp and dense.lut == 1024 * 16 < base.lut
    int8 = fpga_estimate(with_overrides(sat, {"word_bytes": 1}))
    assert int8.dsp == base.dsp / 2


def _document(arch):
    from hwsim.arch import accelerator_document
    return accelerator_document(arch)


def test_simulate_prints_the_estimate_next_to_the_reported_use(capsys, tmp_path):
    assert main(["simulate", "--arch", "sat", "--model", "resnet9", "--dataset", "cifar10"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("FPGA estimate"))
    assert "DSP48E2 1,024 of 6,840 (15.0%)" in line and "BRAM36 320 of 2,160" in line
    assert "reported: none given" in line and "SAT.md" in line
    reported = tmp_path / "sat-reported.yaml"
    reported.write_text(accelerator_to_yaml(load_arch("sat")).replace(
        "board: vcu1525", "board: vcu1525, reported: {dsp: 1100, lut: 250000}"))
    assert main(["simulate", "--arch", str(reported), "--model", "resnet9", "--dataset", "cifar10",
                 "--sparsity", "2:8", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["fpga"]["dsp"] == 1024 and document["fpga"]["reported"] == {"dsp": 1100, "lut": 250000}
    assert main(["simulate", "--arch", str(reported), "--model", "resnet9", "--dataset", "cifar10",
                 "--sparsity", "2:8"]) == 0
    assert "reported: dsp 1,100, lut 250,000" in capsys.readouterr().out


def test_round_trip_and_bad_board():
    sat = load_arch("sat")
    assert sat.fpga is not None and sat.fpga.board is BOARDS["vcu1525"]
    assert with_overrides(sat, {}).fpga == sat.fpga
    with pytest.raises(UserError) as error:
        with_overrides(sat, {"fpga.board": "vcu1526"})
    assert error.value.field == "fpga.board" and "vcu1525" in error.value.fix
    with pytest.raises(UserError) as error:
        with_overrides(sat, {"fpga.reported": {"dsps": 3}})
    assert error.value.field == "fpga.reported.dsps"
