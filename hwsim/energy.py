"""Energy of one GEMM from event counts and the per-event picojoules of the YAML."""
from __future__ import annotations

from hwsim.arch import EnergyConfig


def gemm_energy_pj(energy: EnergyConfig, *, macs: float, sram_bytes: float, dram_bytes: float,
                   select_groups: float = 0.0) -> float:
    """Returns picojoules: MACs, SRAM and DRAM bytes, and top-n group selections.

    E = macs * mac_pj + sram_bytes * sram_byte_pj + dram_bytes * dram_byte_pj
        + select_groups * select_group_pj
    (the usual event-count model; idle PEs and static power are not counted)."""
    return (macs * energy.mac_pj + sram_bytes * energy.sram_byte_pj
            + dram_bytes * energy.dram_byte_pj + select_groups * energy.select_group_pj)
