"""FPGA resources of an accelerator: DSP, LUT and BRAM use on a named board (issue 13).

SAT runs on a Xilinx VCU1525 (XCVU9P). An accelerator YAML names its board with::

    fpga:
      board: vcu1525
      reported: {dsp: 1024, lut: 500000, bram36: 900}   # optional: the paper's figures

and ``hwsim simulate`` prints this first-order estimate next to the reported use (or
says that no reported figures are at hand). What is counted, per the SAT design:

    DSP48E2   one MAC per PE, tiled onto the DSP's 27x18 multiplier by operand width
    LUT       per PE: the M:1 activation select of the N:M sparse mode (one mux of the
              operand width), its cycle counter and mode decode, and a fixed share of
              control; per top-n selector: a sorting network over a group of M
    BRAM36    per buffer: enough blocks for its capacity and for its read port width
              (the words it feeds the array per cycle; in sparse mode a group of M
              activations per N cycles)

Not counted: flip-flops, the DDR4 controllers (MIG) and the PCIe shell, URAM (buffers are
placed in BRAM36 here), routing overhead. Every constant names its source; where no
published figure was at hand it says "assumed".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.errors import UserError, suggest


@dataclass(frozen=True)
class Board:
    """An FPGA board's device and what it offers (one device per board here)."""
    name: str
    device: str
    dsp: int
    lut: int
    bram36: int
    uram: int
    source: str


BOARDS = {
    # Xilinx UltraScale+ FPGA product selection guide (XMP103) and DS890, XCVU9P column:
    # 1,182K CLB LUTs, 6,840 DSP slices, 75.9 Mb block RAM = 2,160 RAMB36, 270 Mb UltraRAM
    # = 960 blocks. The VCU1525 carries one XCVU9P (Xilinx UG1268, VCU1525 board guide).
    "vcu1525": Board("vcu1525", "XCVU9P", dsp=6840, lut=1_182_240, bram36=2160, uram=960,
                     source="Xilinx XMP103 / DS890 (XCVU9P), UG1268 (VCU1525)"),
}

# UG579 (UltraScale DSP48E2 slice): a 27 x 18 two's-complement multiplier with a 48-bit
# accumulator (P register), so a fixed-point MAC of up to 18-bit operands is one slice
# and the accumulation needs no fabric. Wider operands tile the multiplier:
# ceil(bits / 27) x ceil(bits / 18) slices (UG579, "wide multipliers" by cascading).
DSP_MULTIPLIER_BITS = (27, 18)
# Xilinx WP486 ("Deep Learning with INT8 Optimization on Xilinx Devices"): two 8-bit
# multiplies that share one operand pack into one DSP48E2, so 8-bit MACs cost 0.5 slice.
INT8_MACS_PER_DSP = 2
# UG574 (UltraScale CLB): a LUT6 is a 4:1 mux; with the F7/F8/F9 muxes of a CLB, 8:1,
# 16:1 and 32:1 muxes take 2, 4 and 8 LUTs per bit: ceil(m / 4) LUTs per bit up to m = 32.
MUX_INPUTS_PER_LUT = 4
MAX_MUX_INPUTS = 32
# UG574 carry logic (CARRY8): a b-bit magnitude compare is b LUTs feeding the carry chain;
# the swap is two b-bit 2:1 muxes sharing a select, i.e. b dual-output LUT6s (O5/O6).
COMPARE_SWAP_LUTS_PER_BIT = 2
# Assumed: operand-forwarding enables, valid bits and the PE's FSM (no published figure
# for SAT's PE); the accumulator itself sits in the DSP.
PE_CONTROL_LUTS = 16
# UG573 (UltraScale memory resources): a RAMB36E2 is 36 Kb, 512 x 72 in simple dual-port
# mode; with 16-bit words packed four to a 64-bit line (the parity bits unused) a block
# holds 4 KB of data and reads 64 data bits per cycle per port.
BRAM36_DATA_KB = 4.0
BRAM36_PORT_BITS = 64


@dataclass(frozen=True)
class FpgaSpec:
    """An accelerator's ``fpga:`` section: the board and, if known, the design's reported use."""
    board: Board
    reported: tuple[tuple[str, float], ...] = ()    # (resource, count) pairs: dsp, lut, bram36


@dataclass(frozen=True)
class FpgaEstimate:
    """Estimated use of one board's resources, with the parts that make it up."""
    board: Board
    dsp: float
    lut: int
    bram36: int
    parts: tuple[tuple[str, float], ...]
    reported: tuple[tuple[str, float], ...] = ()

    def share(self, resource: str) -> float:
        return getattr(self, resource) / getattr(self.board, resource)

    def as_dict(self) -> dict[str, Any]:
        return {"board": self.board.name, "device": self.board.device,
                "dsp": self.dsp, "lut": self.lut, "bram36": self.bram36,
                "available": {"dsp": self.board.dsp, "lut": self.board.lut,
                              "bram36": self.board.bram36},
                "parts": dict(self.parts), "reported": dict(self.reported) or None}


RESOURCES = ("dsp", "lut", "bram36")
FPGA_KEYS = ("board", "reported")


def parse_fpga(value: Any, source: str | None) -> FpgaSpec:
    """Returns the validated ``fpga:`` section (a board name, or {board, reported})."""
    mapping = {"board": value} if isinstance(value, str) else value
    if not isinstance(mapping, dict):
        raise UserError(f"expected a board name or {{board: ..., reported: ...}}, got {value!r}",
                        source=source, field="fpga", fix="e.g. fpga: {board: vcu1525}")
    for key in mapping:
        if key not in FPGA_KEYS:
            raise UserError(f"unknown key '{key}'", source=source, field=f"fpga.{key}",
                            fix=suggest(str(key), FPGA_KEYS))
    name = str(mapping.get("board", "")).strip().lower()
    if name not in BOARDS:
        raise UserError(f"unknown FPGA board '{mapping.get('board')}'", source=source,
                        field="fpga.board", fix=suggest(name, BOARDS))
    reported = mapping.get("reported") or {}
    if not isinstance(reported, dict):
        raise UserError("expected a mapping of resource: count", source=source,
                        field="fpga.reported", fix="e.g. reported: {dsp: 1024, lut: 300000, bram36: 800}")
    pairs = []
    for key, count in reported.items():
        if key not in RESOURCES:
            raise UserError(f"unknown resource '{key}'", source=source, field=f"fpga.reported.{key}",
                            fix=suggest(str(key), RESOURCES))
        if isinstance(count, bool) or not isinstance(count, (int, float)) or count < 0:
            raise UserError(f"{key} count must be a number >= 0, got {count!r}", source=source,
                            field=f"fpga.reported.{key}", fix=f"e.g. {key}: 1024")
        pairs.append((key, count))
    return FpgaSpec(BOARDS[name], tuple(pairs))


def spec_document(spec: FpgaSpec) -> dict[str, Any]:
    """Returns the YAML mapping that ``parse_fpga`` reads back into ``spec``."""
    document: dict[str, Any] = {"board": spec.board.name}
    if spec.reported:
        document["reported"] = dict(spec.reported)
    return document


def dsp_per_mac(bits: int) -> float:
    """Returns DSP48E2 slices per MAC unit of ``bits``-bit operands (UG579, WP486)."""
    if bits <= 8:
        return 1 / INT8_MACS_PER_DSP
    wide, narrow = DSP_MULTIPLIER_BITS
    return math.ceil(bits / wide) * math.ceil(bits / narrow)


def mux_luts(inputs: int, bits: int) -> int:
    """Returns LUT6s for an ``inputs``:1 mux of ``bits`` bits (UG574 wide muxes)."""
    if inputs <= 1:
        return 0
    if inputs > MAX_MUX_INPUTS:        # a tree of 32:1 muxes
        return mux_luts(MAX_MUX_INPUTS, bits) * math.ceil(inputs / MAX_MUX_INPUTS) + \
            mux_luts(math.ceil(inputs / MAX_MUX_INPUTS), bits)
    return math.ceil(inputs / MUX_INPUTS_PER_LUT) * bits


def sorting_network_comparators(m: int) -> int:
    """Returns the compare-swaps of Batcher's bitonic sorter on m inputs (m rounded up to
    a power of two): (m/4) log2(m) (log2(m) + 1) (Batcher 1968). A top-n select needs at
    most this."""
    if m <= 1:
        return 0
    levels = math.ceil(math.log2(m))
    size = 2 ** levels
    return size // 4 * levels * (levels + 1) if size >= 4 else 1


def bram36_for(kb: float, port_bits: float) -> int:
    """Returns RAMB36 blocks for a buffer of ``kb`` KB read ``port_bits`` bits per cycle (UG573)."""
    return max(math.ceil(kb / BRAM36_DATA_KB), math.ceil(port_bits / BRAM36_PORT_BITS))


def fpga_estimate(arch: Any, spec: FpgaSpec | None = None) -> FpgaEstimate:
    """Returns the estimated DSP/LUT/BRAM36 use of ``arch`` on its board (``arch.fpga``)."""
    spec = spec or arch.fpga
    bits = arch.word_bytes * 8
    rows, cols = arch.array.rows, arch.array.cols
    pes = rows * cols
    dsp = pes * dsp_per_mac(bits)
    parts: list[tuple[str, float]] = [("pe_control_lut", pes * PE_CONTROL_LUTS)]
    input_words_per_cycle = rows
    if arch.sparsity is not None:
        m = arch.sparsity.group_size
        modes = len(arch.sparsity.modes)
        # Per PE: one m:1 select of an activation, a log2(m)-bit cycle counter and a
        # comparison against each supported n (assumed one LUT per mode).
        select = pes * (mux_luts(m, bits) + math.ceil(math.log2(max(m, 2))) + modes)
        selectors = arch.sparsity.select_groups_per_cycle * sorting_network_comparators(m) * \
            COMPARE_SWAP_LUTS_PER_BIT * bits
        parts += [("nm_select_lut", select), ("topn_selector_lut", selectors)]
        # A row consumes a group of m activations every n cycles in its sparsest mode.
        smallest_n = min(n for n, _ in arch.sparsity.modes)
        input_words_per_cycle = rows * m / smallest_n
    lut = int(sum(count for _, count in parts))
    memory = arch.memory
    buffers = (("ifmap_bram36", bram36_for(memory.ifmap_sram_kb, input_words_per_cycle * bits)),
               ("filter_bram36", bram36_for(memory.filter_sram_kb, cols * bits)),
               ("ofmap_bram36", bram36_for(memory.ofmap_sram_kb, cols * bits)))
    parts += list(buffers)
    return FpgaEstimate(spec.board, dsp, lut, sum(count for _, count in buffers), tuple(parts),
                        spec.reported)


def describe(estimate: FpgaEstimate) -> str:
    """Returns the report line: estimated use of each resource, then the reported use."""
    board = estimate.board
    used = ", ".join(f"{label} {getattr(estimate, key):,.0f} of {getattr(board, key):,} "
                     f"({estimate.share(key):.1%})"
                     for key, label in (("dsp", "DSP48E2"), ("lut", "LUT"), ("bram36", "BRAM36")))
    if estimate.reported:
        reported = "reported: " + ", ".join(f"{key} {count:,}" for key, count in estimate.reported)
    else:
        reported = ("reported: none given (no fpga.reported in the YAML; for SAT, the public "
                    "material here, SAT.md, states no DSP/LUT/BRAM figures)")
    return f"FPGA estimate on {board.name} ({board.device}): {used}; {reported}"
