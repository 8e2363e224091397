"""Silicon area of an accelerator at a technology node (issue 13): PE array, N:M select logic,
SRAM buffers and the DRAM interface, from a technology file (targets/technology/*.yaml).

An accelerator YAML opts in with ``technology: 28nm`` (a bundled file name) or a path;
``hwsim simulate`` then reports area, perf/mm2 and EDP beside cycles and energy::

    from hwsim.arch import load_arch
    from hwsim.area import accelerator_area
    accelerator_area(load_arch("my-array.yaml")).as_dict()

The model is first-order on purpose: every figure of a technology file names its source or
says "estimate"/"assumed", so a result is only as good as those lines (see the files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError, suggest
from models.inputs import Reader, Section, read_yaml

TECH_KEYS = ("kind", "name", "mac_um2", "pe_register_bits_per_operand_bit", "logic", "sram", "dram")
LOGIC_KEYS = ("flip_flop_um2_per_bit", "mux2_um2_per_bit", "comparator_um2_per_bit",
              "mode_control_um2")
SRAM_KEYS = ("a_mm2", "b", "max_bank_kb")
DRAM_KEYS = ("channel_gbps", "phy_controller_mm2")


@dataclass(frozen=True)
class Technology:
    """A node's area figures (one technology YAML), validated at load.

    ``mac_um2``: (operand bits, um^2 of one MAC unit) pairs. The SRAM fit gives one bank of
    ``kb`` kilobytes ``sram_a_mm2 * kb ** sram_b`` mm^2; buffers are split into banks of
    at most ``sram_max_bank_kb``. The DRAM interface is one PHY + controller per
    ``dram_channel_gbps`` of bandwidth. ``reference`` is what an accelerator YAML writes
    to name it again (the bundled name, or the file's absolute path)."""
    name: str
    mac_um2: tuple[tuple[int, float], ...]
    pe_register_bits_per_operand_bit: float
    flip_flop_um2_per_bit: float
    mux2_um2_per_bit: float
    comparator_um2_per_bit: float
    mode_control_um2: float
    sram_a_mm2: float
    sram_b: float
    sram_max_bank_kb: float
    dram_channel_gbps: float
    dram_phy_controller_mm2: float
    reference: str = ""
    source: str | None = None

    def operand_widths(self) -> tuple[int, ...]:
        return tuple(bits for bits, _ in self.mac_um2)

    def mac_area_um2(self, bits: int) -> float:
        """Returns one MAC unit's area for ``bits``-bit operands (a width the file lists)."""
        for width, area in self.mac_um2:
            if width == bits:
                return area
        raise UserError(f"technology '{self.name}' has no MAC area for {bits}-bit operands",
                        source=self.source, field="mac_um2",
                        fix=f"add '{bits}: <um2>' under mac_um2, or use word_bytes of "
                            f"{', '.join(str(w // 8) for w in self.operand_widths())}")


@dataclass(frozen=True)
class AreaBreakdown:
    """An accelerator's area in mm^2 by part; ``total_mm2`` is their sum."""
    technology: str
    pe_array_mm2: float
    nm_select_mm2: float
    sram_mm2: float
    dram_phy_mm2: float

    @property
    def total_mm2(self) -> float:
        return self.pe_array_mm2 + self.nm_select_mm2 + self.sram_mm2 + self.dram_phy_mm2

    def as_dict(self) -> dict[str, Any]:
        return {"technology": self.technology, "pe_array_mm2": self.pe_array_mm2,
                "nm_select_mm2": self.nm_select_mm2, "sram_mm2": self.sram_mm2,
                "dram_phy_mm2": self.dram_phy_mm2, "total_mm2": self.total_mm2}


# ---------------------------------------------------------------- reading technology files


def technology_dir() -> Path:
    import targets
    return Path(targets.__file__).resolve().parent / "technology"


def bundled_technologies() -> list[str]:
    folder = technology_dir()
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_technology(name_or_path: str, relative_to: str | None = None) -> tuple[Path, str]:
    """Returns (file, reference) of a bundled name ('28nm') or a path (tried next to
    ``relative_to``, the accelerator file, then as given)."""
    bundled = technology_dir() / f"{name_or_path}.yaml"
    if "/" not in name_or_path and bundled.is_file():
        return bundled, name_or_path
    candidates = [Path(name_or_path)]
    if relative_to and not Path(name_or_path).is_absolute():
        candidates.insert(0, Path(relative_to).resolve().parent / name_or_path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate, str(candidate.resolve())
    raise UserError(f"unknown technology '{name_or_path}'", source=relative_to, field="technology",
                    fix=suggest(name_or_path, bundled_technologies())
                    or f"use a bundled node ({', '.join(bundled_technologies())}) or a YAML path")


def parse_technology(document: Any, source: str, reference: str = "") -> Technology:
    """Returns the validated Technology of a parsed technology YAML mapping."""
    reader = Reader(source)
    top = Section(document, reader, "", TECH_KEYS, required=("name", "mac_um2", "logic", "sram",
                                                             "dram"))
    if top.get("kind", "technology") != "technology":
        raise top.error("kind", f"expected 'technology', got {top.get('kind')!r}",
                        "write 'kind: technology'")
    macs = top.get("mac_um2", required=True)
    if not isinstance(macs, dict) or not macs:
        raise top.error("mac_um2", "expected a mapping of operand bits to um^2", "e.g. {8: 162, 16: 2254}")
    mac_um2 = tuple(sorted((reader.integer(bits, f"mac_um2.{bits}"),
                            reader.number(area, f"mac_um2.{bits}")) for bits, area in macs.items()))
    logic = top.section("logic", LOGIC_KEYS, required=LOGIC_KEYS)
    sram = top.section("sram", SRAM_KEYS, required=SRAM_KEYS)
    dram = top.section("dram", DRAM_KEYS, required=DRAM_KEYS)
    exponent = sram.number("b")
    if exponent > 1.5:
        raise sram.error("b", f"exponent {exponent} makes area per KB grow fast with bank size",
                         "use 0.7-1.0 (larger banks share their periphery)")
    return Technology(
        name=top.text("name"), mac_um2=mac_um2,
        pe_register_bits_per_operand_bit=top.number("pe_register_bits_per_operand_bit", 4.0,
                                                    positive=False),
        **{key: logic.number(key, positive=False) for key in LOGIC_KEYS},
        sram_a_mm2=sram.number("a_mm2"), sram_b=exponent, sram_max_bank_kb=sram.number("max_bank_kb"),
        dram_channel_gbps=dram.number("channel_gbps"),
        dram_phy_controller_mm2=dram.number("phy_controller_mm2", positive=False),
        reference=reference or source, source=source)


def load_technology(name_or_path: str, relative_to: str | None = None) -> Technology:
    """Returns the Technology of a bundled name ('28nm', '7nm') or a technology YAML path."""
    path, reference = resolve_technology(name_or_path, relative_to)
    return parse_technology(read_yaml(path, what="technology file"), str(path), reference)


# ---------------------------------------------------------------- the area model


def pe_um2(tech: Technology, bits: int) -> float:
    """Returns one dense PE: a MAC unit plus its operand and accumulator registers."""
    return tech.mac_area_um2(bits) + tech.flip_flop_um2_per_bit * tech.pe_register_bits_per_operand_bit * bits


def nm_select_per_pe_um2(tech: Technology, m: int, modes: int, bits: int) -> float:
    """Returns one PE's sparse-mode logic: a group of m staged activations (registers), an
    m:1 mux picking the one a weight's index names, and per supported mode its control."""
    if m <= 1:
        return 0.0
    return (m * bits * tech.flip_flop_um2_per_bit + (m - 1) * bits * tech.mux2_um2_per_bit
            + modes * tech.mode_control_um2)


def selector_um2(tech: Technology, m: int, modes: int, bits: int) -> float:
    """Returns one on-the-fly top-n selector: m*log2(m) magnitude comparators of ``bits``
    and, per mode, a mux routing the kept values (a sorting-network-sized estimate)."""
    if m <= 1:
        return 0.0
    comparators = m * math.ceil(math.log2(m))
    return comparators * bits * tech.comparator_um2_per_bit + modes * m * bits * tech.mux2_um2_per_bit


def sram_mm2(tech: Technology, kb: float) -> float:
    """Returns a buffer of ``kb`` KB as full banks of max_bank_kb plus one smaller bank."""
    full_banks, rest_kb = divmod(kb, tech.sram_max_bank_kb)
    bank = lambda size_kb: tech.sram_a_mm2 * size_kb ** tech.sram_b  # noqa: E731
    return full_banks * bank(tech.sram_max_bank_kb) + (bank(rest_kb) if rest_kb > 0 else 0.0)


def dram_phy_mm2(tech: Technology, gbps: float) -> float:
    """Returns the DRAM PHYs + controllers: one per channel the bandwidth needs."""
    return math.ceil(gbps / tech.dram_channel_gbps - 1e-9) * tech.dram_phy_controller_mm2


def accelerator_area(arch: Any) -> AreaBreakdown:
    """Returns the area breakdown of an Accelerator (hwsim.arch) that names a technology."""
    tech = getattr(arch, "technology", None)
    if tech is None:
        raise UserError(f"'{arch.name}' names no technology, so it has no area", source=arch.source,
                        field="technology", fix=f"add 'technology: 28nm' (bundled: "
                                                f"{', '.join(bundled_technologies())}) or a path")
    bits = arch.word_bytes * 8
    pes = arch.array.pes
    select_um2 = 0.0
    if arch.sparsity is not None:
        m, modes = arch.sparsity.group_size, len(arch.sparsity.modes)
        select_um2 = (pes * nm_select_per_pe_um2(tech, m, modes, bits)
                      + arch.sparsity.select_groups_per_cycle * selector_um2(tech, m, modes, bits))
    memory = arch.memory
    buffers_mm2 = sum(sram_mm2(tech, kb) for kb in (memory.ifmap_sram_kb, memory.filter_sram_kb,
                                                     memory.ofmap_sram_kb))
    return AreaBreakdown(technology=tech.name, pe_array_mm2=pes * pe_um2(tech, bits) * 1e-6,
                         nm_select_mm2=select_um2 * 1e-6, sram_mm2=buffers_mm2,
                         dram_phy_mm2=dram_phy_mm2(tech, memory.dram_gbps))


def accelerator_area_mm2(arch: Any) -> float:
    """Returns the accelerator's total area in mm^2 (the explorer's area objective)."""
    return accelerator_area(arch).total_mm2
