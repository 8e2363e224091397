"""Accelerator descriptions: the YAML schema, validated once at load into frozen dataclasses.

A file looks like this (every key is documented on its dataclass below)::

    kind: accelerator
    name: sat-vcu1525
    clock_mhz: 200
    word_bytes: 2
    array: {rows: 32, cols: 32}
    dataflow: os                     # os | ws | is
    sparsity: {group_size: 8, modes: ["1:8", "2:8", "4:8"]}
    memory: {ifmap_sram_kb: 512, filter_sram_kb: 512, ofmap_sram_kb: 256, dram_gbps: 19.2}
    energy_pj: {mac: 1.0, sram_byte: 5.0, dram_byte: 100.0}
    dataflow_options: {interleave: true, pregenerate_sparse_weights: true, offline_schedule: true}
    technology: 28nm                 # optional: a bundled node (targets/technology) or a path; gives area
    mapping: edp                     # optional: fixed (default) | cycles | energy | edp (hwsim.mapper)
    fpga: {board: vcu1525}           # optional: estimated DSP/LUT/BRAM use on that board (hwsim.fpga)

Unknown keys are errors with the closest known key suggested; every error is a
``UserError`` naming the file and the dotted field (``memory.dram_gbps``).
Files are found, read and checked field by field by the one reader of target
descriptions (``targets.descriptions``), which ``kind: cpu`` files share (their
schema is targets/cpu.py); this module holds the accelerator's schema.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from models.errors import UserError, suggest
# read_target / target_kind: the CLI reads --arch (either kind) here and hands kind: cpu on.
from targets.descriptions import (KINDS, Fields, SchemaReader, bundled_dirs,  # noqa: F401
                                  bundled_names, read_target, resolve_target_path, target_kind)

from hwsim.area import Technology, load_technology
from hwsim.fpga import FpgaSpec, parse_fpga, spec_document
from hwsim.dataflow import DATAFLOWS  # noqa: E402  (the one list of dataflows)


@dataclass(frozen=True)
class ArrayShape:
    """The PE grid: ``rows`` x ``cols`` multiply-accumulate units."""
    rows: int
    cols: int

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class SparsitySupport:
    """What the PEs can skip: groups of ``group_size`` reduction steps, keeping n of them.

    ``modes`` are (n, m) pairs with m dividing ``group_size``; a group of m steps
    costs n cycles. ``select_groups_per_cycle`` is the on-the-fly top-n selector's
    throughput (used only when weights are not pre-generated)."""
    group_size: int
    modes: tuple[tuple[int, int], ...]
    select_groups_per_cycle: int

    def runs(self, n: int, m: int) -> bool:
        """Returns True when an n:m pattern runs in sparse mode.

        n:m runs directly when listed, or as (n*g/m):g when m divides the group size
        g and that mode is listed (2:4 data satisfies 4:8)."""
        if (n, m) in self.modes:
            return True
        if self.group_size % m:
            return False
        scale = self.group_size // m
        return (n * scale, self.group_size) in self.modes

    def mode_names(self) -> list[str]:
        return [f"{n}:{m}" for n, m in self.modes]


@dataclass(frozen=True)
class MemoryConfig:
    """On-chip buffers (double-buffered halves are used for prefetch) and the DRAM link."""
    ifmap_sram_kb: float
    filter_sram_kb: float
    ofmap_sram_kb: float
    dram_gbps: float

    @property
    def ifmap_bytes(self) -> int:
        return int(self.ifmap_sram_kb * 1024)

    @property
    def filter_bytes(self) -> int:
        return int(self.filter_sram_kb * 1024)

    @property
    def ofmap_bytes(self) -> int:
        return int(self.ofmap_sram_kb * 1024)


@dataclass(frozen=True)
class EnergyConfig:
    """Energy per event in picojoules: a MAC, an SRAM byte, a DRAM byte, a top-n group selection."""
    mac_pj: float
    sram_byte_pj: float
    dram_byte_pj: float
    select_group_pj: float = 0.0


def switch(*, flag: str, on: str, off: str, help: str, default: bool = True):
    """Returns one DataflowOptions field: its YAML key is the field's name under
    ``dataflow_options``, ``flag`` turns it off on `hwsim simulate`, ``on``/``off`` are
    what the report's header says, ``help`` what the flag's help says."""
    return field(default=default, metadata={"flag": flag, "on": on, "off": off, "help": help})


@dataclass(frozen=True)
class DataflowOptions:
    """SAT's dataflow optimisations as switches (SAT.md), so each one's effect can be measured.

    Everything about an option is derived from its field: the YAML key
    (``dataflow_options.NAME``, read and written by this module), the `hwsim simulate`
    flag that turns it off (cli/simulate_cmd.py), the report's header (``describe``) and
    summary.json's ``dataflow_options``. Adding one is this field and the code that reads
    ``arch.options.NAME`` (hwsim/engine.py, timeline.py, sparse_mode.py).

    ``interleave``: per-phase orientation choice and back-to-back folds whose fill
    and drain overlap (the array stays busy across FF/BP/WU shape changes).
    ``pregenerate_sparse_weights``: compressed FF/BP weights made once per step
    (off the critical path) instead of selected from dense weights at every tile load.
    ``offline_schedule``: double-buffered prefetch of the next tile (and the next
    layer's first tile) during compute; off, every transfer serialises with compute."""
    interleave: bool = switch(
        flag="--no-interleave", on="interleave on", off="interleave off",
        help="fixed orientation, every fold pays its own fill and drain")
    pregenerate_sparse_weights: bool = switch(
        flag="--on-the-fly-weights", on="weights pre-generated", off="weights selected on the fly",
        help="select N:M weights from dense ones at every tile load")
    offline_schedule: bool = switch(
        flag="--no-overlap", on="offline schedule on", off="offline schedule off",
        help="no offline schedule: DRAM transfers serialise with compute")

    def describe(self) -> str:
        """Returns the switches as the report's header shows them ("interleave on, ...")."""
        return ", ".join(option.metadata["on" if getattr(self, option.name) else "off"]
                         for option in fields(self))


@dataclass(frozen=True)
class Accelerator:
    """A validated accelerator description (``load_arch``)."""
    name: str
    clock_mhz: float
    word_bytes: int
    array: ArrayShape
    dataflow: str
    memory: MemoryConfig
    energy: EnergyConfig
    options: DataflowOptions = field(default_factory=DataflowOptions)
    sparsity: SparsitySupport | None = None
    index_bits: int = 0
    dataflows: tuple[str, ...] = ()     # a reconfigurable array's dataflows ((): just ``dataflow``)
    source: str | None = None
    description: str = ""
    technology: Technology | None = None   # area figures (hwsim.area); None: no area reported
    mapping: str | None = None   # the mapper's objective (cycles | energy | edp); None: fixed mapping
    fpga: FpgaSpec | None = None     # the FPGA board it is built on (hwsim.fpga); None: an ASIC

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.memory.dram_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def supported_dataflows(self) -> tuple[str, ...]:
        """Returns the dataflows the mapper may choose among (the default first)."""
        return self.dataflows or (self.dataflow,)

    def sparse_mode_names(self) -> list[str]:
        return self.sparsity.mode_names() if self.sparsity else []

    def runs_nm(self, n: int, m: int) -> bool:
        return self.sparsity is not None and self.sparsity.runs(n, m)


# ---------------------------------------------------------------- reading YAML


# Each numeric field's sane range (models/inputs.py LIMITS states them, with units).
_FIELD_LIMITS = {"clock_mhz": "clock_mhz", "word_bytes": "word_bytes", "index_bits": "index_bits",
                 "array.rows": "array_dim", "array.cols": "array_dim",
                 "sparsity.group_size": "group_size",
                 "sparsity.select_groups_per_cycle": "select_groups_per_cycle",
                 "memory.ifmap_sram_kb": "sram_kb", "memory.filter_sram_kb": "sram_kb",
                 "memory.ofmap_sram_kb": "sram_kb", "memory.dram_gbps": "dram_gbps",
                 "energy_pj.mac": "energy_pj", "energy_pj.sram_byte": "energy_pj",
                 "energy_pj.dram_byte": "energy_pj", "energy_pj.select_group": "energy_pj"}


def _fields(mapping: Any, source: str, prefix: str, known: tuple[str, ...]) -> Fields:
    """Returns one mapping of the file read with this schema's ranges (targets.descriptions)."""
    return Fields(mapping, SchemaReader(source, _FIELD_LIMITS), prefix, known)


# The example a bad name (or technology) is told to follow.
NAME_EXAMPLE = "name: my-array"
TOP_KEYS = ("kind", "name", "description", "clock_mhz", "word_bytes", "index_bits", "array",
            "dataflow", "sparsity", "memory", "energy_pj", "dataflow_options", "technology",
            "mapping", "fpga")
# ``mapping:`` values: "fixed" runs the engine's own plan (today's results, SCALE-Sim equal);
# the others run hwsim.mapper with that objective (``hwsim simulate --map`` overrides it).
MAPPINGS = ("fixed", "cycles", "energy", "edp")
ARRAY_KEYS = ("rows", "cols")
SPARSITY_KEYS = ("group_size", "modes", "select_groups_per_cycle")
MEMORY_KEYS = ("ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb", "dram_gbps")
ENERGY_KEYS = ("mac", "sram_byte", "dram_byte", "select_group")
# Derived from the dataclass: adding an option is one field (+ the code that uses it).
OPTION_KEYS = tuple(option.name for option in fields(DataflowOptions))


def _parse_mode(text: Any, reader: Fields, group_size: int) -> tuple[int, int]:
    fix = f"write modes as \"N:M\" with M dividing group_size {group_size}, e.g. \"2:{group_size}\""
    if not isinstance(text, str) or text.count(":") != 1:
        raise reader.error("modes", f"cannot read mode {text!r}", fix)
    try:
        n, m = (int(part) for part in text.split(":"))
    except ValueError:
        raise reader.error("modes", f"cannot read mode {text!r}", fix) from None
    if m < 1 or not 1 <= n <= m:
        raise reader.error("modes", f"mode '{text}' needs 1 <= N <= M", fix)
    if group_size % m:
        raise reader.error("modes", f"mode '{text}' needs groups of {m}, but group_size is "
                           f"{group_size}", fix)
    return n, m


def _parse_dataflows(top: Fields, value: Any) -> tuple[str, tuple[str, ...]]:
    """Returns (the default dataflow, all it supports): ``os`` or a list ``[os, ws]``.

    A list declares a reconfigurable array: the first entry runs when no mapper
    chooses (``hwsim simulate`` without --map), the mapper may pick any of them."""
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise top.error("dataflow", "empty dataflow list", f"e.g. dataflow: [os, ws] ({', '.join(DATAFLOWS)})")
    names = []
    for entry in entries:
        if not isinstance(entry, str) or entry.strip().lower() not in DATAFLOWS:
            raise top.error("dataflow", f"unknown dataflow {entry!r}",
                            suggest(str(entry), DATAFLOWS) if isinstance(entry, str)
                            else f"use {', '.join(DATAFLOWS)}")
        names.append(entry.strip().lower())
    names = list(dict.fromkeys(names))
    return names[0], (tuple(names) if isinstance(value, list) else ())


def parse_accelerator(document: dict[str, Any], source: str) -> Accelerator:
    """Returns the validated Accelerator of a parsed YAML mapping (kind: accelerator)."""
    top = _fields(document, source, "", TOP_KEYS)
    name = top.text("name", example=NAME_EXAMPLE)
    array_reader = _fields(top.get("array", None, True), source, "array", ARRAY_KEYS)
    array = ArrayShape(array_reader.positive_int("rows"), array_reader.positive_int("cols"))
    dataflow, dataflows = _parse_dataflows(top, document.get("dataflow", "os"))
    word_bytes = top.positive_int("word_bytes", 2)

    sparsity = None
    index_bits = 0
    if document.get("sparsity") is not None:
        sparse_reader = _fields(document["sparsity"], source, "sparsity", SPARSITY_KEYS)
        group_size = sparse_reader.positive_int("group_size")
        modes_value = sparse_reader.get("modes", None, True)
        if not isinstance(modes_value, list) or not modes_value:
            raise sparse_reader.error("modes", f"expected a non-empty list, got {modes_value!r}",
                                      f"e.g. modes: [\"2:{group_size}\"]")
        modes = tuple(dict.fromkeys(_parse_mode(mode, sparse_reader, group_size)
                                    for mode in modes_value))
        selector = sparse_reader.positive_int("select_groups_per_cycle", array.cols)
        sparsity = SparsitySupport(group_size, modes, selector)
        needed_bits = max(1, math.ceil(math.log2(group_size)))
        index_bits = top.positive_int("index_bits", needed_bits)
        if index_bits < needed_bits:
            raise top.error("index_bits", f"{index_bits} bits cannot address a group of "
                            f"{group_size}", f"use index_bits >= {needed_bits}")
    elif "index_bits" in document:
        raise top.error("index_bits", "index_bits without a sparsity section",
                        "add 'sparsity: {group_size: 8, modes: [\"2:8\"]}' or drop index_bits")

    memory_reader = _fields(top.get("memory", None, True), source, "memory", MEMORY_KEYS)
    memory = MemoryConfig(*(memory_reader.positive_number(key) for key in MEMORY_KEYS))
    # Double buffering: each buffer half must hold at least one array-sized tile.
    tile_bytes = 2 * array.rows * array.cols * word_bytes
    for key, capacity in (("ifmap_sram_kb", memory.ifmap_bytes), ("filter_sram_kb",
                          memory.filter_bytes), ("ofmap_sram_kb", memory.ofmap_bytes)):
        if capacity < tile_bytes:
            raise memory_reader.error(key, f"{capacity} bytes cannot hold two {array.rows}x"
                                      f"{array.cols} tiles of {word_bytes}-byte words",
                                      f"use at least {math.ceil(tile_bytes / 1024)} KB")

    energy_reader = _fields(top.get("energy_pj", None, True), source, "energy_pj", ENERGY_KEYS)
    energy = EnergyConfig(energy_reader.non_negative_number("mac"),
                          energy_reader.non_negative_number("sram_byte"),
                          energy_reader.non_negative_number("dram_byte"),
                          energy_reader.non_negative_number("select_group", 0.0))

    options_reader = _fields(document.get("dataflow_options") or {}, source, "dataflow_options",
                             OPTION_KEYS)
    options = DataflowOptions(**{option.name: options_reader.boolean(option.name, option.default)
                                 for option in fields(DataflowOptions)})
    description = document.get("description") or ""
    if not isinstance(description, str):
        raise top.error("description", "expected a string", "quote the description")
    technology = None
    if document.get("technology") is not None:
        technology = load_technology(top.text("technology", example=NAME_EXAMPLE), source)
        technology.mac_area_um2(word_bytes * 8)   # the node must price this operand width
    mapping = parse_mapping(document.get("mapping"), source)
    fpga = parse_fpga(document["fpga"], source) if document.get("fpga") is not None else None
    return Accelerator(name=name, clock_mhz=top.positive_number("clock_mhz"), word_bytes=word_bytes,
                       array=array, dataflow=dataflow, memory=memory, energy=energy,
                       options=options, sparsity=sparsity, index_bits=index_bits, dataflows=dataflows,
                       source=source,
                       description=description.strip(), technology=technology, mapping=mapping,
                       fpga=fpga)


def parse_mapping(value: Any, source: str | None, field: str = "mapping") -> str | None:
    """Returns the mapper objective a ``mapping:`` value names (None for fixed or absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in MAPPINGS:
        raise UserError(f"unknown mapping {value!r}", source=source, field=field,
                        fix=suggest(str(value), MAPPINGS) if isinstance(value, str)
                        else f"use one of {', '.join(MAPPINGS)}")
    value = value.strip().lower()
    return None if value == "fixed" else value


def load_arch(path_or_name: str) -> Accelerator:
    """Returns the validated accelerator of a YAML file or a bundled name ('sat')."""
    source, document = read_target(path_or_name)
    if target_kind(document) != "accelerator":
        raise UserError(f"'{source}' describes a {target_kind(document)}, not an accelerator",
                        source=source, field="kind", fix="give an accelerator description")
    return parse_accelerator(document, source)


# ---------------------------------------------------------------- writing YAML


def accelerator_document(arch: Accelerator) -> dict[str, Any]:
    """Returns the YAML mapping that ``parse_accelerator`` turns back into ``arch``.

    Every field is written out (defaults too), so the document stands alone:
    ``parse_accelerator(accelerator_document(a), src) == replace(a, source=src)``."""
    document: dict[str, Any] = {"kind": "accelerator", "name": arch.name}
    if arch.description:
        document["description"] = arch.description
    document.update({
        "clock_mhz": arch.clock_mhz, "word_bytes": arch.word_bytes,
        "array": {"rows": arch.array.rows, "cols": arch.array.cols},
        "dataflow": list(arch.dataflows) if arch.dataflows else arch.dataflow})
    if arch.sparsity is not None:
        document["sparsity"] = {"group_size": arch.sparsity.group_size,
                                "modes": arch.sparsity.mode_names(),
                                "select_groups_per_cycle": arch.sparsity.select_groups_per_cycle}
        document["index_bits"] = arch.index_bits
    document["memory"] = {key: getattr(arch.memory, key) for key in MEMORY_KEYS}
    energy = arch.energy
    document["energy_pj"] = {"mac": energy.mac_pj, "sram_byte": energy.sram_byte_pj,
                             "dram_byte": energy.dram_byte_pj, "select_group": energy.select_group_pj}
    document["dataflow_options"] = {key: getattr(arch.options, key) for key in OPTION_KEYS}
    if arch.technology is not None:
        document["technology"] = arch.technology.reference
    if arch.mapping is not None:
        document["mapping"] = arch.mapping
    if arch.fpga is not None:
        document["fpga"] = spec_document(arch.fpga)
    return document


def accelerator_to_yaml(arch: Accelerator, header: str = "") -> str:
    """Returns YAML text that re-loads (``load_arch``) to exactly ``arch`` (floats round-trip).

    ``header`` lines are written first as comments (e.g. where a design came from)."""
    import yaml
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + yaml.safe_dump(accelerator_document(arch), sort_keys=False,
                                     default_flow_style=None, width=100)


def with_overrides(arch: Accelerator, overrides: dict[str, Any]) -> Accelerator:
    """Returns ``arch`` with dotted YAML fields replaced ({"array.rows": 64}), validated again.

    The change goes through the document, so every check of ``parse_accelerator``
    applies (a UserError names the field)."""
    import copy
    document = copy.deepcopy(accelerator_document(arch))
    for path, value in overrides.items():
        node = document
        parts = path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    return parse_accelerator(document, arch.source or "<overrides>")
