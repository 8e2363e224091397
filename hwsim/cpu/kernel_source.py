"""The record the CPU cost model costs: one kernel's C text, the function to read, and (for
codegen's kernels) what it runs for one workload.

codegen's kernels arrive through hwsim.cpu.codegen_source.from_rendered, which copies their
family's codegen.kernels.work.KernelWork into the optional fields; hwsim.cpu.fallback_kernels
renders the kernels for what codegen has no kernel for, with the optional fields left None
(cpu_model derives their trips from the workload).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelSchedule:
    """Register tile of the fallback kernels: ``mr`` pixels (multiple of the lanes) x ``nr`` channels."""
    mr: int
    nr: int

    def __post_init__(self):
        if self.mr < 1 or self.nr < 1:
            raise ValueError(f"bad schedule {self}")


@dataclass(frozen=True)
class KernelSource:
    """C text of one kernel and the function the model should read.

    The optional fields describe one workload's run of the kernel (for codegen's kernels,
    hwsim.cpu.codegen_source copies them from the family's codegen.kernels.work.KernelWork):
    every multiplying innermost loop with its iterations, the entries of the loops around
    the first one (innermost first), the memory streams of its blocking, and how many
    independent tiles the threads share. Left None, the model derives them for
    hwsim.cpu.fallback_kernels' kernels."""
    family: str          # dense | sparse | depthwise | elementwise | nmgemm | spmm
    simd: str
    schedule: KernelSchedule
    function: str
    c_source: str
    loops: tuple = None                 # tuple[codegen.kernels.work.LoopWork, ...]
    parent_trips: tuple = None          # tuple[float, ...], innermost parent first
    streams: tuple = None               # tuple[codegen.kernels.work.Stream, ...]
    memory_tiles: int = 1               # pixel tiles the streams' passes are counted over
    parallel_units: int = 0             # tiles shared out among threads (0: unknown)
    threads: int = 1                    # threads the kernel itself starts (OpenMP)
    origin: str = "hwsim"               # hwsim (fallback_kernels.py) | codegen
    gather: object = None               # codegen.kernels.work.GatherShape of the indexed row loads, if any
    pack: object = None                 # codegen.kernels.work.PackShape (or a tuple of them) of memcpy packing
    tile_stores: float = 0.0            # vector stores of the output tile per entry of the hot loop's parent
    tile_loads: float = 0.0             # vector loads of a k-blocked tile's running sums per such entry
    tile_sums_bytes: int = 0            # bytes of the running-sum buffer one thread walks
