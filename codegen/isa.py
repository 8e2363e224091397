"""The vector vocabulary each kernel flavour is written in.

Templates never spell an intrinsic: they call ``isa.load(ptr)``, ``isa.fma(acc, a, b)``
and so on, so one template renders the portable C reference, NEON, WASM SIMD128,
AVX2+FMA and AVX-512 flavours. Each method returns a C expression (a string).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import UserError


@dataclass(frozen=True)
class Isa:
    """One SIMD flavour: its name in file names, lane count, header and intrinsics."""
    name: str
    lanes: int
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

    def load_even(self, ptr: str) -> str:
        return self._load_even.format(p=ptr)

    @property
    def masked_tails(self) -> bool:
        return bool(self._load_first)

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


ISAS: dict[str, Isa] = {
    "scalar": Isa("scalar", 1, "#include <math.h>", "float",
                  "(*({p}))", "*({p}) = {v}", "({s})", "({c} + {a} * {b})", "0.0f",
                  "fmaxf({a}, {b})", "fminf({a}, {b})"),
    "neon": Isa("neon", 4, "#include <arm_neon.h>", "float32x4_t",
                "vld1q_f32({p})", "vst1q_f32({p}, {v})", "vdupq_n_f32({s})",
                "vfmaq_f32({c}, {a}, {b})", "vdupq_n_f32(0.0f)",
                "vmaxq_f32({a}, {b})", "vminq_f32({a}, {b})",
                _load_even="vld2q_f32({p}).val[0]"),
    "wasmsimd": Isa("wasmsimd", 4, "#include <wasm_simd128.h>", "v128_t",
                    "wasm_v128_load({p})", "wasm_v128_store({p}, {v})", "wasm_f32x4_splat({s})",
                    "wasm_f32x4_add({c}, wasm_f32x4_mul({a}, {b}))", "wasm_f32x4_splat(0.0f)",
                    "wasm_f32x4_pmax({a}, {b})", "wasm_f32x4_pmin({a}, {b})",
                    _load_even="wasm_i32x4_shuffle(wasm_v128_load({p}), wasm_v128_load(({p}) + 4), "
                               "0, 2, 4, 6)"),
    "avx2": Isa("avx2", 8, "#include <immintrin.h>", "__m256",
                "_mm256_loadu_ps({p})", "_mm256_storeu_ps({p}, {v})", "_mm256_set1_ps({s})",
                "_mm256_fmadd_ps({a}, {b}, {c})", "_mm256_setzero_ps()",
                "_mm256_max_ps({a}, {b})", "_mm256_min_ps({a}, {b})",
                "_mm256_maskload_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int) ({n})), "
                "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))",
                "_mm256_maskstore_ps({p}, _mm256_cmpgt_epi32(_mm256_set1_epi32((int) ({n})), "
                "_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), {v})",
                "_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps("
                "_mm256_loadu_ps({p}), _mm256_loadu_ps(({p}) + 8), 0x88)), 0xD8))"),
    "avx512": Isa("avx512", 16, "#include <immintrin.h>", "__m512",
                  "_mm512_loadu_ps({p})", "_mm512_storeu_ps({p}, {v})", "_mm512_set1_ps({s})",
                  "_mm512_fmadd_ps({a}, {b}, {c})", "_mm512_setzero_ps()",
                  "_mm512_max_ps({a}, {b})", "_mm512_min_ps({a}, {b})",
                  "_mm512_maskz_loadu_ps((__mmask16) ((1u << ({n})) - 1u), {p})",
                  "_mm512_mask_storeu_ps({p}, (__mmask16) ((1u << ({n})) - 1u), {v})",
                  "_mm512_permutex2var_ps(_mm512_loadu_ps({p}), _mm512_setr_epi32(0, 2, 4, 6, 8, 10, "
                  "12, 14, 16, 18, 20, 22, 24, 26, 28, 30), _mm512_loadu_ps(({p}) + 16))"),
}

# Architectural vector registers per flavour (x86-64 AVX2 and wasm SIMD engines on x86: 16;
# AVX-512 and aarch64 NEON: 32); register tiles must fit them.
VECTOR_REGISTERS: dict[str, int] = {"avx512": 32, "avx2": 16, "neon": 32, "wasmsimd": 16,
                                    "scalar": 16}


def get_isa(name: str) -> Isa:
    """Returns the flavour called ``name`` (UserError naming the known ones otherwise)."""
    if name not in ISAS:
        raise UserError(f"unknown kernel ISA flavour {name!r}", field="isa",
                        fix=f"use one of {', '.join(ISAS)}")
    return ISAS[name]
