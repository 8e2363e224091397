"""An ISA is one record: targets.simd's levels and codegen.isa's flavours built on them.

Every reader (the build's flags, the harness's host check, the defaults, the shipped variants,
the CPU cost model's lanes and store widths, the target loader) answers from that record, in
any of a level's spellings.
"""
from __future__ import annotations

import pytest

from codegen.isa import ISAS, get_isa
from models.errors import UserError
from targets.simd import SIMD_LEVELS, SIMDS, host_simd, simd_level, x86_cflags_for_vector_bytes


def test_every_level_has_one_flavour_and_back():
    assert sorted(isa.level.name for isa in ISAS.values()) == sorted(SIMDS)
    for name, level in SIMD_LEVELS.items():
        assert get_isa(name) is get_isa(level.flavour)
        assert get_isa(name).level is level


@pytest.mark.parametrize("spelling", ["wasmsimd", "wasm_simd128", "wasm32"])
def test_wasm_spellings_are_one_flavour(spelling):
    assert get_isa(spelling) is ISAS["wasmsimd"]
    assert simd_level(spelling).name == "wasm_simd128"


def test_lane_counts():
    # float32 lanes per register: the architecture manuals' widths / 32 bits
    assert {name: isa.lanes for name, isa in ISAS.items()} == {
        "scalar": 1, "neon": 4, "wasmsimd": 4, "avx2": 8, "avx512": 16}


def test_avx512_is_16_lanes_for_every_reader():
    from codegen.kernels.nmgemm import NmGemmParams, render as render_nmgemm
    from codegen.kernels.nmgemm import default_schedule as default_nmgemm
    from codegen.kernels.spmm import default_schedule as default_spmm
    from hwsim.cpu.codegen_source import from_rendered
    from hwsim.cpu.cpu_model import _vector_bytes
    from hwsim.cpu.fallback_kernels import render_fallback as render
    from models.lowering import GemmWorkload

    assert simd_level("avx512").lanes == get_isa("avx512").lanes == 16
    with pytest.raises(UserError):          # a tile of 8 pixels is half an AVX-512 vector
        NmGemmParams(2, 8, "avx512", mr=4, nr=8)
    params = NmGemmParams(2, 8, "avx512", mr=4, nr=32, unroll=1)
    work = GemmWorkload("g", "FF", M=64, N=8, K=64, sparse=True, density=0.25, nm=(2, 8), pattern="2:8")
    source = from_rendered(render_nmgemm(params), work)
    assert source.tile_stores == 4 * 32 // 16          # mr rows x nr / 16 vectors
    assert _vector_bytes(source) == 64
    assert default_nmgemm(2, 8, "host", flavour="avx512").nr % 16 == 0
    assert default_spmm("host", flavour="avx512").mr % 16 == 0
    # hwsim's fallback kernels have no AVX-512 prelude: an avx512 target gets the AVX2 ones
    assert render("dense", "avx512").simd == "avx2"


def test_build_and_cost_model_compile_with_the_same_flags():
    from codegen.build import runnable_flavours
    from hwsim.cpu.cpu_model import _isa_cflags
    from hwsim.cpu.kernel_source import KernelSchedule, KernelSource
    from targets.cpu import load_cpu_target

    for isa in ISAS.values():
        kernel = KernelSource("nmgemm", isa.level.name, KernelSchedule(isa.lanes, 1), "f", "",
                              origin="codegen")
        assert _isa_cflags(None, kernel) == ("-std=gnu11", *isa.cflags)
    assert get_isa("avx512").cflags == ("-mavx512f", "-mavx2", "-mfma")
    assert runnable_flavours(load_cpu_target("wasm32-simd128")) == ("scalar", "wasmsimd")
    assert runnable_flavours(load_cpu_target("snapdragon855")) == ("scalar", "neon")


def test_register_file_bounds_every_default_and_shipped_tile():
    for isa in ISAS.values():
        for mr, nr, _ in isa.nm_tiles:
            assert nr % isa.lanes == 0
        for mr, nr in isa.shipped_nm_tiles:    # accumulators + a load + a broadcast fit
            assert nr % isa.lanes == 0
            assert isa.lanes == 1 or mr * (nr // isa.lanes) + 2 <= isa.vector_registers
        assert all(mr % isa.lanes == 0 for mr in (isa.spmm_pixels, *isa.shipped_spmm_pixels))


def test_host_level_from_cpuinfo_flags():
    assert host_simd(frozenset({"avx512f", "avx2", "fma"})) == "avx512"
    assert host_simd(frozenset({"avx2", "fma"})) == "avx2"
    assert host_simd(frozenset({"avx2"})) == "scalar"          # AVX2 kernels use FMA
    assert get_isa("avx2").x86_features == ("avx2", "fma")


def test_probe_flags_by_vector_width():
    assert x86_cflags_for_vector_bytes(16) == ("-msse4.2",)   # wasm SIMD128 under Cranelift
    assert x86_cflags_for_vector_bytes(32) == ("-mavx2", "-mfma")
    assert x86_cflags_for_vector_bytes(64) == ("-mavx512f", "-mavx2", "-mfma")
    with pytest.raises(ValueError):
        x86_cflags_for_vector_bytes(4)


def test_unknown_spelling_is_one_user_error():
    with pytest.raises(UserError, match="unknown kernel ISA flavour"):
        get_isa("sse9")
    with pytest.raises(UserError, match="unknown SIMD level"):
        simd_level("sse9")
