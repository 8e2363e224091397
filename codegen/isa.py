"""The vector vocabulary each kernel flavour is written in.

Templates never spell an intrinsic: they call ``isa.load(ptr)``, ``isa.fma(acc, a, b)``
and so on, so one template renders the portable C reference, NEON, WASM SIMD128,
AVX2+FMA and AVX-512 flavours. Each method returns a C expression (a string).

The record is the whole flavour: its SIMD level's facts (targets.simd: lanes, vector
registers, compiler flags, host features, masked tails) and its default register tiles, so
the build, the renderer, the defaults, the shipped variants and the CPU cost model all read
one place. ``get_isa`` takes any spelling (``wasmsimd``, ``wasm_simd128``, ``wasm32``).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserError
from targets.simd import SIMD_LEVELS, SimdLevel, simd_level


@dataclass(frozen=True, kw_only=True)
class Isa:
    """One kernel flavour: its SIMD level (targets.simd: lanes, registers, flags, host features,
    masked tails), the intrinsics templates call, and the register tiles it starts from."""
    level: SimdLevel
    header: str
    vtype: str
    _load: str
    _store: str
    _splat: str
    _fma: str
    _zero: str
    _max: str
    _min: str
    # loads / stores of the first {n} lanes only (n < lanes): a vector tail with no scalar
    # loop after it; empty where the ISA has no masked memory access (NEON, SIMD128)
    _load_first: str = ""
    _store_first: str = ""
    # lanes 0, 2, 4, ... of the 2 x lanes floats at {p} (a stride-2 row of taps); reads
    # 2 x lanes floats, so the buffer needs lanes floats of slack past the last tap
    _load_even: str = ""
    # Register tiles chosen before any tuning (the scheduler's log overrides them): wide pixel
    # tiles so each loaded activation vector serves several rows, within the vector registers.
    # (mr, nr, unroll) of nmgemm with per-row indices, with shared indices, and dense (n == m)
    nm_tiles: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]
    spmm_pixels: int                               # spmm's untuned pixel tile
    # the tiles codegen.kernels ships (every one compiled in the tests): nmgemm (mr, nr)
    # and spmm pixel tiles (XNNPACK ships 4..32 pixels per flavour)
    shipped_nm_tiles: tuple[tuple[int, int], ...]
    shipped_spmm_pixels: tuple[int, ...]
    # chgemm (vectors along output channels): (pixels, output channels) per register tile,
    # pixels x channel vectors accumulators plus one register per weight vector
    channel_tile: tuple[int, int] = (1, 1)
    # a dense GEMM's full column tiles read X's rows in place, no panel copy: measured faster
    # on AVX-512 (Zen 4: 64x32x12544 0.65 -> 0.49 ms), slower under wasmtime (3136x128x128
    # 4.5 -> 6.4 ms, rows 12.5 KB apart); the others keep the packed panel
    dense_rows_in_place: bool = False

    def __post_init__(self):
        if bool(self._load_first) != self.level.masked_tails:
            raise ValueError(f"{self.name}: masked intrinsics disagree with targets.simd's masked_tails")

    @property
    def name(self) -> str:
        """Returns the flavour's name in kernel file names (wasmsimd, avx2, ...)."""
        return self.level.flavour

    @property
    def lanes(self) -> int:
        return self.level.lanes

    @property
    def vector_registers(self) -> int:
        return self.level.vector_registers

    @property
    def cflags(self) -> tuple[str, ...]:
        """Returns the flags a kernel of this flavour is compiled with (beyond the toolchain's)."""
        return self.level.cflags

    @property
    def x86_features(self) -> tuple[str, ...]:
        """Returns the cpuinfo flags the harness checks before running the kernel."""
        return self.level.host_flags

    @property
    def masked_tails(self) -> bool:
        return self.level.masked_tails

    def load_even(self, ptr: str) -> str:
        return self._load_even.format(p=ptr)

    def load_first(self, ptr: str, count: str) -> str:
        return self._load_first.format(p=ptr, n=count)

    def store_first(self, ptr: str, value: str, count: str) -> str:
        return self._store_first.format(p=ptr, v=value, n=count)

    def load(self, ptr: str) -> str:
        return self._load.format(p=ptr)

    def store(self, ptr: str, value: str) -> str:
        return self._store.format(p=ptr, v=value)

    def splat(self, scalar: str) -> str:
        return self._splat.format(s=scalar)

    def fma(self, acc: str, a: str, b: str) -> str:
        """acc + a * b (fused where the ISA has it)."""
        return self._fma.format(c=acc, a=a, b=b)

    def zero(self) -> str:
        return self._zero

    def max(self, a: str, b: str) -> str:
        return self._max.format(a=a, b=b)

    def min(self, a: str, b: str) -> str:
        return self._min.format(a=a, b=b)


def _flavour(level: str, header: str, vtype: str, intrinsics: tuple[str, ...], *, masked=("", ""),
             load_even: str = "", **tiles) -> Isa:
    load, store, splat, fma, zero, vmax, vmin = intrinsics
    return Isa(level=SIMD_LEVELS[level], header=header, vtype=vtype, _load=load, _store=store,
               _splat=splat, _fma=fma, _zero=zero, _max=vmax, _min=vmin, _load_first=masked[0],
               _store_first=masked[1], _load_even=load_even, **tiles)


_FLAVOURS = (
    _flavour("scalar", "#include <math.h>", "float",
             ("(*({p}))", "*({p}) = {v}", "({s})", "({c} + {a} * {b})", "0.0f",
              "fmaxf({a}, {b})", "fminf({a}, {b})"),
             nm_tiles=((4, 4, 1), (4, 4, 1), (4, 4, 1)), spmm_pixels=4,
             shipped_nm_tiles=((1, 4), (4, 4)), shipped_spmm_pixels=(4,), channel_tile=(2, 4)),
    _flavour("neon", "#include <arm_neon.h>", "float32x4_t",
             ("vld1q_f32({p})", "vst1q_f32({p}, {v})", "vdupq_n_f32({s})",
              "vfmaq_f32({c}, {a}, {b})", "vdupq_n_f32(0.0f)",
              "vmaxq_f32({a}, {b})", "vminq_f32({a}, {b})"),
             load_even="vld2q_f32({p}).val[0]",
             nm_tiles=((4, 16, 2), (8, 8, 2), (4, 16, 2)), spmm_pixels=16,
             shipped_nm_tiles=((4, 8), (4, 16), (8, 8)), shipped_spmm_pixels=(16, 32),
             channel_tile=(6, 16)),
    _flavour("wasm_simd128", "#include <wasm_simd128.h>", "v128_t",
             ("wasm_v128_load({p})", "wasm_v128_store({p}, {v})", "wasm_f32x4_splat({s})",
              "wasm_f32x4_add({c}, wasm_f32x4_mul({a}, {b}))", "wasm_f32x4_splat(0.0f)",
              "wasm_f32x4_pmax({a}, {b})", "wasm_f32x4_pmin({a}, {b})"),
             load_even="wasm_i32x4_shuffle(wasm_v128_load({p}), wasm_v128_load(({p}) + 4), "
                       "0, 2, 4, 6)",
             # wasm: clang hoists an unrolled step's loads above its multiplies (wasm locals
             # are free) and Cranelift/V8 then spill them: one group per step, and a dense
             # 2 x 16 tile (8 accumulators + 4 rows + a weight in 16 xmm). wasmtime, this Zen 4,
             # min of 30, dense 512x512x196 1x32 u2 4.19 -> 2x16 u1 3.31 ms, 64x32x12544
             # 2.83 -> 1.80; 2:8 512x512x196 u2 -> u1 1.29 -> 1.21, 128x64x3136 0.74 -> 0.66
             nm_tiles=((1, 32, 1), (4, 12, 2), (2, 16, 1)), spmm_pixels=16,
             shipped_nm_tiles=((4, 8), (2, 16)), shipped_spmm_pixels=(16, 32),
             channel_tile=(3, 12)),
    _flavour("avx2", "#include <immintrin.h>", "__m256",
             ("_mm256_loadu_ps({p})", "_mm256_storeu_ps({p}, {v})", "_mm256_set1_ps({s})",
              "_mm256_fmadd_ps({a}, {b}, {c})", "_mm256_setzero_ps()",
              "_mm256_max_ps({a}, {b})", "_mm256_min_ps({a}, {b})"),
             masked=("_mm256_maskload_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int) ({n})), "
                     "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))",
                     "_mm256_maskstore_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int) ({n})), "
                     "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), {v})"),
             load_even="_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps("
                       "_mm256_loadu_ps({p}), _mm256_loadu_ps(({p}) + 8), 0x88)), 0xD8))",
             nm_tiles=((4, 24, 2), (4, 24, 2), (4, 24, 2)), spmm_pixels=32,
             shipped_nm_tiles=((2, 48), (4, 24)), shipped_spmm_pixels=(32, 64),
             channel_tile=(3, 32)),
    _flavour("avx512", "#include <immintrin.h>", "__m512",
             ("_mm512_loadu_ps({p})", "_mm512_storeu_ps({p}, {v})", "_mm512_set1_ps({s})",
              "_mm512_fmadd_ps({a}, {b}, {c})", "_mm512_setzero_ps()",
              "_mm512_max_ps({a}, {b})", "_mm512_min_ps({a}, {b})"),
             masked=("_mm512_maskz_loadu_ps((__mmask16) ((1u << ({n})) - 1u), {p})",
                     "_mm512_mask_storeu_ps({p}, (__mmask16) ((1u << ({n})) - 1u), {v})"),
             load_even="_mm512_permutex2var_ps(_mm512_loadu_ps({p}), _mm512_setr_epi32(0, 2, 4, 6, 8, "
                       "10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), _mm512_loadu_ps(({p}) + 16))",
             nm_tiles=((6, 64, 2), (8, 32, 2), (6, 64, 2)), spmm_pixels=64,
             shipped_nm_tiles=((6, 64), (8, 32), (4, 48)), shipped_spmm_pixels=(32, 64),
             channel_tile=(7, 48), dense_rows_in_place=True),
)
# Keyed by flavour name, in the order variants and tests walk them.
ISAS: dict[str, Isa] = {isa.name: isa for isa in _FLAVOURS}


def get_isa(name: str) -> Isa:
    """Returns the flavour called ``name`` in any spelling: the flavour (``wasmsimd``), the
    target's SIMD level (``wasm_simd128``) or the wasm ISA (``wasm32``); UserError otherwise."""
    if name in ISAS:
        return ISAS[name]
    try:
        flavour = simd_level(name).flavour
    except UserError:
        flavour = None
    if flavour not in ISAS:
        raise UserError(f"unknown kernel ISA flavour {name!r}", field="isa",
                        fix=f"use one of {', '.join(ISAS)}")
    return ISAS[flavour]
