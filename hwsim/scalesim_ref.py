"""Runs the real SCALE-Sim 3.0.0 on a topology: the reference our dataflow model must equal.

SCALE-Sim lives in its own environment (``.venv-scalesim``, built by
``make .venv-scalesim/.installed``) because it needs numpy<2 while this project runs
numpy 2. We write its three input files (config .cfg, topology CSV, layout CSV,
which it opens even with custom layouts off) into a temporary folder, run it there as
a subprocess through its Python API with traces off, and parse COMPUTE_REPORT.csv and
DETAILED_ACCESS_REPORT.csv into typed records.

The config gives the SRAMs and the DRAM interface far more room and bandwidth than
any test layer needs, so a run reports no stalls and "Total Cycles" is pure compute.
SCALE-Sim is slow (a per-cycle Python loop over demand matrices): keep layers small.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hwsim.dataflow import DATAFLOWS
from models.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCALESIM_VENV = REPO_ROOT / ".venv-scalesim"
BIG_SRAM_KB = 65536          # 64 MiB per buffer: every test layer fits, nothing is refetched
BIG_BANDWIDTH_WORDS = 1000   # words per cycle from DRAM and per SRAM bank: no stalls

# Runs inside .venv-scalesim: argv = config, topology, layout, out dir, "gemm"|"conv".
# Prints the seconds SCALE-Sim itself ran (after imports and file parsing) as JSON.
_DRIVER = """
import json, sys, time
from scalesim.scale_sim import scalesim
sim = scalesim(save_disk_space=True, verbose=False, config=sys.argv[1],
               topology=sys.argv[2], layout=sys.argv[3], input_type_gemm=sys.argv[5] == "gemm")
start = time.perf_counter()
sim.run_scale(top_path=sys.argv[4])
print(json.dumps({"run_s": time.perf_counter() - start}))
"""


@dataclass(frozen=True)
class ConvLayer:
    """A SCALE-Sim conv topology row: no padding, one stride for both axes."""
    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride: int = 1

    def gemm(self) -> tuple[int, int, int]:
        """Returns (M, N, K) the way SCALE-Sim lowers the layer (topology_utils.py)."""
        ofmap_h = -(-(self.ifmap_h - self.filter_h + self.stride) // self.stride)
        ofmap_w = -(-(self.ifmap_w - self.filter_w + self.stride) // self.stride)
        return ofmap_h * ofmap_w, self.num_filters, self.filter_h * self.filter_w * self.channels

    def csv_fields(self) -> list[int]:
        return [self.ifmap_h, self.ifmap_w, self.filter_h, self.filter_w, self.channels,
                self.num_filters, self.stride]


@dataclass(frozen=True)
class GemmLayer:
    """A SCALE-Sim GEMM topology row (M x K times K x N)."""
    name: str
    M: int
    N: int
    K: int

    def gemm(self) -> tuple[int, int, int]:
        return self.M, self.N, self.K

    def csv_fields(self) -> list[int]:
        return [self.M, self.N, self.K]


@dataclass(frozen=True)
class LayerResult:
    """One layer of SCALE-Sim's reports (COMPUTE_REPORT.csv, DETAILED_ACCESS_REPORT.csv)."""
    name: str
    compute_cycles: int          # "Total Cycles"
    cycles_incl_prefetch: int    # "Total Cycles (incl. prefetch)"
    stall_cycles: int
    utilization: float           # "Overall Util %" / 100
    mapping_efficiency: float    # "Mapping Efficiency %" / 100
    compute_utilization: float   # "Compute Util %" / 100
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int


@dataclass(frozen=True)
class ScaleSimRun:
    """The per-layer results of one SCALE-Sim invocation and how long it took."""
    layers: tuple[LayerResult, ...]
    wall_s: float        # the whole subprocess: interpreter start, imports, run, reports
    run_s: float         # SCALE-Sim's run_scale alone


def scalesim_python(venv: Path = SCALESIM_VENV) -> Path:
    """Returns SCALE-Sim's interpreter; UserError when its environment is not built."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise UserError(f"SCALE-Sim environment not found at {venv}",
                        fix="run `make .venv-scalesim/.installed`")
    return python


def config_text(rows: int, cols: int, dataflow: str) -> str:
    """Returns a SCALE-Sim .cfg for a rows x cols array with stall-free memories."""
    return f"""[general]
run_name = hwsim_ref

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
ifmapsramszkB = {BIG_SRAM_KB}
filtersramszkB = {BIG_SRAM_KB}
ofmapsramszkB = {BIG_SRAM_KB}
IfmapOffset = 0
FilterOffset = 100000000
OfmapOffset = 200000000
Dataflow = {dataflow}
Bandwidth = {BIG_BANDWIDTH_WORDS}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = {BIG_BANDWIDTH_WORDS}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = {BIG_BANDWIDTH_WORDS}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
"""


def topology_text(layers: list[ConvLayer] | list[GemmLayer]) -> str:
    """Returns the topology CSV. Rows are named layer0, layer1, ... because SCALE-Sim
    splits any layer whose name contains 'DP' into per-channel depthwise layers."""
    if isinstance(layers[0], GemmLayer):
        header = "Layer, M, N, K,"
    else:
        header = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                  "Channels, Num Filter, Strides,")
    lines = [header] + [", ".join([f"layer{index}"] + [str(v) for v in layer.csv_fields()]) + ","
                        for index, layer in enumerate(layers)]
    return "\n".join(lines) + "\n"


def _validate(layers: list, rows: int, cols: int, dataflow: str) -> None:
    if not layers:
        raise ValueError("no layers to simulate")
    kinds = {type(layer) for layer in layers}
    if len(kinds) != 1 or not kinds <= {ConvLayer, GemmLayer}:
        raise ValueError("layers must be all ConvLayer or all GemmLayer (one topology format)")
    if dataflow not in DATAFLOWS:
        raise ValueError(f"unknown dataflow {dataflow!r}")
    if rows < 1 or cols < 1:
        raise ValueError(f"array {rows}x{cols} must be at least 1x1")
    for layer in layers:
        if isinstance(layer, ConvLayer) and (layer.filter_h > layer.ifmap_h
                                             or layer.filter_w > layer.ifmap_w):
            raise ValueError(f"{layer.name}: filter larger than ifmap (SCALE-Sim has no padding)")


def _read_report(path: Path) -> list[list[str]]:
    """Returns the data rows of a SCALE-Sim report (header dropped, trailing comma cut)."""
    rows = [line.rstrip().rstrip(",").split(",") for line in path.read_text().splitlines()[1:]
            if line.strip()]
    return [[field.strip() for field in row] for row in rows]


def run_scalesim(layers: list[ConvLayer] | list[GemmLayer], rows: int, cols: int,
                 dataflow: str, timeout_s: float | None = None,
                 venv: Path = SCALESIM_VENV) -> ScaleSimRun:
    """Returns SCALE-Sim 3.0.0's per-layer results for ``layers`` in one invocation.

    Raises UserError when .venv-scalesim is missing, subprocess.TimeoutExpired past
    ``timeout_s``, RuntimeError when SCALE-Sim fails."""
    _validate(layers, rows, cols, dataflow)
    python = scalesim_python(venv)
    gemm = isinstance(layers[0], GemmLayer)
    with tempfile.TemporaryDirectory(prefix="hwsim-scalesim-") as tmp:
        folder = Path(tmp)
        (folder / "arch.cfg").write_text(config_text(rows, cols, dataflow))
        (folder / "topology.csv").write_text(topology_text(layers))
        (folder / "layout.csv").write_text("Layer name,\n")
        command = [str(python), "-c", _DRIVER, "arch.cfg", "topology.csv", "layout.csv",
                   "out", "gemm" if gemm else "conv"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                              timeout=timeout_s)
        wall_s = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"SCALE-Sim failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        run_s = json.loads(done.stdout.strip().splitlines()[-1])["run_s"]
        compute = _read_report(folder / "out" / "hwsim_ref" / "COMPUTE_REPORT.csv")
        access = _read_report(folder / "out" / "hwsim_ref" / "DETAILED_ACCESS_REPORT.csv")
    if len(compute) != len(layers) or len(access) != len(layers):
        raise RuntimeError(f"SCALE-Sim reported {len(compute)} layers for {len(layers)}")
    results = tuple(
        LayerResult(name=layer.name, cycles_incl_prefetch=int(float(c[1])),
                    compute_cycles=int(float(c[2])), stall_cycles=int(float(c[3])),
                    utilization=float(c[4]) / 100, mapping_efficiency=float(c[5]) / 100,
                    compute_utilization=float(c[6]) / 100,
                    ifmap_sram_reads=int(float(a[3])), filter_sram_reads=int(float(a[6])),
                    ofmap_sram_writes=int(float(a[9])))
        for layer, c, a in zip(layers, compute, access))
    return ScaleSimRun(layers=results, wall_s=wall_s, run_s=run_s)
