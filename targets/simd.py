"""The SIMD levels a CPU target may have: one record per level, every fact about it once.

A target's YAML names its level (``simd: wasm_simd128``); codegen names its kernel flavours
after the same levels, spelt for file names (``wasmsimd``: ``spmm_32x1_kb1_wasmsimd.c``).
Everything else that needs a width, a register count, a compiler flag or a host feature
reads it here (codegen.isa adds the intrinsics and the default tiles on top)::

    >>> simd_level("wasmsimd").lanes, simd_level("avx512").lanes
    (4, 16)
    >>> simd_level("avx2").cflags
    ('-mavx2', '-mfma')

The data is pure (no codegen, no hwsim): targets/ sits below both, so both may read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserError

FLOAT_BYTES = 4


@dataclass(frozen=True)
class SimdLevel:
    """One SIMD level: its two spellings, its registers, and what building for it needs."""
    name: str                      # the targets/ spelling (a YAML's ``simd:``)
    flavour: str                   # the kernel flavour spelling (codegen file names)
    vector_bits: int | None        # register width; None: no vectors (the target's own width is free)
    vector_registers: int          # architectural vector registers a register tile must fit
    # C flags a kernel of this level needs beyond the target's toolchain flags (the wasm
    # toolchain's YAML already carries -msimd128; NEON is in every aarch64 compiler)
    cflags: tuple[str, ...] = ()
    # /proc/cpuinfo flags the host must list to run it (x86 levels; checked by the harness)
    host_flags: tuple[str, ...] = ()
    # masked loads / stores of the first n lanes (a vector tail without a scalar loop)
    masked_tails: bool = False
    # flags of native x86 C whose vectors have this level's width: what a probe of this
    # level's code on an x86 host compiles with (wasm SIMD128 runs as SSE4 under Cranelift);
    # None where no x86 code has it (NEON)
    x86_cflags: tuple[str, ...] | None = None

    @property
    def lanes(self) -> int:
        """Returns the float32 lanes of one vector register (1 for the scalar level)."""
        return self.vector_bits // (8 * FLOAT_BYTES) if self.vector_bits else 1

    @property
    def vector_bytes(self) -> int:
        return self.lanes * FLOAT_BYTES


# Register counts: x86-64 AVX2 has 16 ymm, AVX-512 32 zmm (Intel SDM vol. 1, 15.1); AArch64
# has 32 V registers (Arm ARM, B1.2.1); a wasm engine on x86 maps v128 onto the 16 xmm.
SIMD_LEVELS: dict[str, SimdLevel] = {level.name: level for level in (
    SimdLevel("neon", "neon", 128, 32),
    SimdLevel("wasm_simd128", "wasmsimd", 128, 16, x86_cflags=("-msse4.2",)),
    SimdLevel("avx2", "avx2", 256, 16, cflags=("-mavx2", "-mfma"), host_flags=("avx2", "fma"),
              masked_tails=True, x86_cflags=("-mavx2", "-mfma")),
    SimdLevel("avx512", "avx512", 512, 32, cflags=("-mavx512f", "-mavx2", "-mfma"),
              host_flags=("avx512f",), masked_tails=True, x86_cflags=("-mavx512f", "-mavx2", "-mfma")),
    SimdLevel("scalar", "scalar", None, 16),
)}

# Every other spelling of a level, resolved here only: the kernel flavour names and the
# wasm target's ISA name (a wasm32 target's vectors are SIMD128's).
ALIASES: dict[str, str] = {"wasmsimd": "wasm_simd128", "wasm32": "wasm_simd128"}

# The levels a target may name (targets/cpu.py validates ``simd:`` against these).
SIMDS: tuple[str, ...] = tuple(SIMD_LEVELS)


def simd_level(name: str) -> SimdLevel:
    """Returns the level called ``name`` in any of its spellings (UserError naming the known ones)."""
    level = SIMD_LEVELS.get(ALIASES.get(name, name))
    if level is None:
        raise UserError(f"unknown SIMD level {name!r}", field="simd",
                        fix=f"use one of {', '.join(SIMDS)}")
    return level


def by_flavour() -> dict[str, SimdLevel]:
    """Returns the levels keyed by their kernel flavour spelling, in SIMD_LEVELS' order."""
    return {level.flavour: level for level in SIMD_LEVELS.values()}


def host_simd(cpu_flags: frozenset[str]) -> str:
    """Returns the widest x86 level whose host flags the CPU lists (scalar when none)."""
    for name in ("avx512", "avx2"):
        if all(flag in cpu_flags for flag in SIMD_LEVELS[name].host_flags):
            return name
    return "scalar"


def x86_cflags_for_vector_bytes(vector_bytes: int) -> tuple[str, ...]:
    """Returns the -m flags of native x86 C with ``vector_bytes``-wide vectors (ValueError if none)."""
    for level in SIMD_LEVELS.values():
        if level.x86_cflags is not None and level.vector_bytes == vector_bytes:
            return level.x86_cflags
    raise ValueError(f"no x86 SIMD level has {vector_bytes}-byte vectors")
