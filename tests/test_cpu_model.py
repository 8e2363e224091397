"""CPU cost model properties: monotone in work, above the FMA peak, sparse no slower, clean errors."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings, strategies as st

from models.errors import UserError
from models.lowering import GemmWorkload
from hwsim.cpu.cpu_model import ElementwiseWork, simulate_cpu
from tests.conftest import require_tools

TOOLS = ("llvm-mca", "llvm-objdump", "aarch64-linux-gnu-gcc", "clang", "gcc")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hwsim-cpu")


def _target(name):
    require_tools(*TOOLS)
    from targets.cpu import load_cpu_target
    return load_cpu_target(name)


def _gemm(M, N, K, density=1.0):
    if density >= 1.0:
        return GemmWorkload("g", "FF", M=M, N=N, K=K)
    return GemmWorkload("g", "FF", M=M, N=N, K=K, sparse=True, pattern="u", density=density)


@settings(max_examples=6, deadline=None)
@given(M=st.integers(8, 4096), N=st.integers(1, 256), K=st.integers(4, 512), grow=st.sampled_from("MNK"),
       density=st.sampled_from([1.0, 0.5, 0.25]))
def test_cycles_never_fall_as_work_grows(cache, M, N, K, grow, density):
    target = _target("snapdragon855")
    bigger = {"M": (2 * M, N, K), "N": (M, 2 * N, K), "K": (M, N, 2 * K)}[grow]
    small, large = simulate_cpu(target, [_gemm(M, N, K, density), _gemm(*bigger, density)], cache_dir=cache)
    assert large.cycles >= small.cycles and large.compute_cycles >= small.compute_cycles


@settings(max_examples=6, deadline=None)
@given(M=st.integers(8, 4096), N=st.integers(1, 512), K=st.integers(8, 1024),
       name=st.sampled_from(["snapdragon855", "cortex-a55", "wasm32-simd128"]),
       density=st.sampled_from([1.0, 0.25, 0.125]), cores=st.sampled_from([1, 4]))
def test_never_faster_than_the_fma_peak(cache, M, N, K, name, density, cores):
    target = dataclasses.replace(_target(name), cores=cores)
    record = simulate_cpu(target, [_gemm(M, N, K, density)], cache_dir=cache)[0]
    peak_macs_per_cycle = target.vector_lanes_f32 * target.fma_units * cores
    assert record.cycles >= record.macs / peak_macs_per_cycle
    assert record.bound in ("compute", "memory") and record.cycles == max(record.compute_cycles, record.memory_cycles)


@pytest.mark.parametrize("name", ["snapdragon855", "cortex-a55", "wasm32-simd128"])
@pytest.mark.parametrize("shape", [(3136, 128, 128), (196, 512, 512), (49, 1024, 1024)])
def test_sparse_never_slower_than_dense_when_compute_bound(cache, name, shape):
    """At 2:8-level density or sparser; at 50% the XNNPACK-style kernel (a load and a
    broadcast per nonzero) is predicted slower than the dense tile on the in-order A55,
    as XNNPACK's sparse path only pays at high sparsity."""
    target = _target(name)
    dense, *sparse = simulate_cpu(target, [_gemm(*shape)] + [_gemm(*shape, d) for d in (0.5, 0.25, 0.125)],
                                  cache_dir=cache)
    for record in sparse[1:]:
        if dense.bound == "compute" and record.bound == "compute":
            assert record.cycles <= dense.cycles
    assert sparse[0].cycles >= sparse[1].cycles >= sparse[2].cycles


def test_depthwise_and_elementwise_layers_are_costed(cache):
    target = _target("snapdragon855")
    dw = GemmWorkload("dw", "FF", M=56 * 56, N=1, K=9, groups=128, op_kind="depthwise")
    records = simulate_cpu(target, [dw, ElementwiseWork("add", 56 * 56 * 128)], cache_dir=cache)
    assert [r.name for r in records] == ["dw", "add"]
    assert all(r.cycles > 0 and r.ms > 0 for r in records)
    assert records[0].macs == 56 * 56 * 128 * 9


def test_unknown_core_is_a_user_error_listing_known_cores(cache):
    target = dataclasses.replace(_target("snapdragon855"), core="cortex-a99")
    with pytest.raises(UserError) as error:
        simulate_cpu(target, [_gemm(64, 64, 64)], cache_dir=cache)
    assert "cortex-a76" in str(error.value)


def test_mca_results_are_cached_where_the_caller_says(tmp_path):
    target = _target("cortex-a55")
    simulate_cpu(target, [_gemm(64, 64, 64)], cache_dir=tmp_path / "c")
    assert list((tmp_path / "c" / "mca").rglob("*.json"))


# ---------------------------------------------------------------- codegen's kernels (bench/CLI path)


def _codegen_source(target_name):
    """Returns a kernel_source rendering codegen's nmgemm (dense: n == m) as the CLI does."""
    from codegen.kernels.nmgemm import default_schedule as default_nmgemm
    from codegen.kernels.nmgemm import render as render_nmgemm
    from hwsim.cpu.codegen_source import from_rendered

    def source(workload, schedule, target):
        n, m = workload.nm if workload.nm else (1, 1)
        return from_rendered(render_nmgemm(default_nmgemm(n, m, target, threads=1)), workload)
    return source


def _nm(M, N, K, n, m):
    if n == m:
        return GemmWorkload("g", "FF", M=M, N=N, K=K)
    return GemmWorkload("g", "FF", M=M, N=N, K=K, sparse=True, pattern=f"{n}:{m}", density=n / m, nm=(n, m))


@settings(max_examples=4, deadline=None)
@given(M=st.integers(16, 2048), N=st.integers(4, 256), K=st.integers(8, 512), grow=st.sampled_from("MNK"),
       nm=st.sampled_from([(1, 1), (2, 8)]))
def test_codegen_kernel_cycles_never_fall_as_work_grows(cache, M, N, K, grow, nm):
    target = _target("snapdragon855")
    bigger = {"M": (2 * M, N, K), "N": (M, 2 * N, K), "K": (M, N, 2 * K)}[grow]
    small, large = simulate_cpu(target, [_nm(M, N, K, *nm), _nm(*bigger, *nm)], cache_dir=cache,
                                kernel_source=_codegen_source("snapdragon855"))
    assert small.kernel_origin == "codegen" and small.kernel.startswith(("gemm_", "nmgemm_2of8"))
    assert large.cycles >= small.cycles and large.compute_cycles >= small.compute_cycles
    peak = target.vector_lanes_f32 * target.fma_units
    assert small.cycles >= small.macs / peak and small.mca_model == "N1Unit"


@pytest.mark.parametrize("shape", [(3136, 128, 128), (196, 512, 512)])
def test_codegen_sparse_never_slower_than_dense_when_compute_bound(cache, shape):
    target = _target("snapdragon855")
    dense, *sparse = simulate_cpu(target, [_nm(*shape, 1, 1), _nm(*shape, 2, 4), _nm(*shape, 2, 8),
                                           _nm(*shape, 1, 8)], cache_dir=cache,
                                  kernel_source=_codegen_source("snapdragon855"))
    for record in sparse:
        if dense.bound == "compute" and record.bound == "compute":
            assert record.cycles <= dense.cycles
    assert sparse[0].cycles >= sparse[1].cycles >= sparse[2].cycles


def test_model_api_costs_every_layer_and_fills_the_summary(cache, cnn):
    from hwsim.cpu.model_sim import model_workloads, simulate_model_on_cpu, summary_dict
    target = _target("cortex-a55")
    works = model_workloads(cnn)
    records = simulate_model_on_cpu(target, works, cache_dir=cache)
    names = [r.name for r in records]
    # inference: relu1 runs in conv1's epilogue (models.fusion), as codegen emits it
    assert "pool" in names and "conv1" in names and "fc" in names and "relu1" not in names
    assert "relu1" in [getattr(w, "name", None) for w in model_workloads(cnn, "train")]
    summary = summary_dict(target, records, model="small_cnn", workloads=works)
    for key in ("tool", "version", "arch", "model", "sparsity", "mode", "batch", "total_cycles", "seconds",
                "energy_j", "layers"):
        assert key in summary
    assert summary["total_cycles"] == pytest.approx(sum(r.cycles for r in records))
    layer = summary["layers"][0]
    assert {"name", "phase", "M", "N", "K", "sparse", "compute_cycles", "stall_cycles", "total_cycles",
            "utilization", "dram_bytes", "bound", "ms"} <= set(layer)
    assert all(row["bound"] in ("compute", "memory") for row in summary["layers"])


def test_pattern_the_kernels_cannot_run_lists_the_ones_they_can(cache):
    from hwsim.cpu.model_sim import simulate_model_on_cpu
    target = _target("cortex-a55")
    bad = GemmWorkload("g", "FF", M=64, N=64, K=64, sparse=True, pattern="nm:3:32", density=3 / 32, nm=(3, 32))
    with pytest.raises(UserError) as error:
        simulate_model_on_cpu(target, [bad], cache_dir=cache)
    assert "2:8" in str(error.value) and "block" in str(error.value)


def test_gather_micro_benchmark_measures_a_positive_pick_cost_and_caches_it(tmp_path):
    """The indexed-row micro-benchmark runs on an x86 host and is read back from the cache."""
    import platform
    from hwsim.cpu.gather_bench import GatherShape, cycles_per_pick
    require_tools("gcc")
    if platform.machine() != "x86_64":
        pytest.skip("the gather micro-benchmark measures x86 hosts only")
    shape = GatherShape(vector_bytes=16, row_vectors=2, panel_rows=64, group_rows=8, picks_per_group=4, slots=2)
    first = cycles_per_pick(shape, tmp_path)
    # two 16-byte loads, an index and a weight per pick: at least half a cycle at 4 loads/cycle
    assert 0.5 <= first < 200
    assert len(list((tmp_path / "gather").glob("*.json"))) == 1
    assert cycles_per_pick(shape, tmp_path) == first


def test_host_probes_see_the_cache_levels_and_the_fma_rate(tmp_path):
    """Reading an L1-sized buffer is faster per cycle than one of four L2s; an FMA issues at
    most twice a cycle; the costed host's bandwidths are the measured ones."""
    import platform
    from hwsim.cpu.cpu_model import measured_bandwidths
    from hwsim.cpu.gather_bench import fma_cycles, fma_load_rate, read_bytes_per_cycle
    from targets.cpu import load_cpu_target
    require_tools("gcc")
    if platform.machine() != "x86_64":
        pytest.skip("the probes measure x86 hosts only")
    host = load_cpu_target("host")
    l1_rate = read_bytes_per_cycle(host.caches_kb.l1d_kb * 1024 // 2, tmp_path)
    far_rate = read_bytes_per_cycle(4 * host.caches_kb.l2_kb * 1024, tmp_path)
    assert far_rate < l1_rate < 256
    assert 0.45 < fma_cycles(32, tmp_path) < 4
    # FMAs that load their operand issue no faster than the FMA pipes (a little noise aside)
    assert 0.1 < fma_load_rate(32, tmp_path) < 1.1 / fma_cycles(32, tmp_path)
    bandwidths = measured_bandwidths(host, tmp_path)
    assert bandwidths.l2 > 0 and bandwidths.l3 > 0
    if host.caches_kb.l3_kb and host.caches_kb.l3_kb >= 8 * host.caches_kb.l2_kb:
        assert bandwidths.l3 == far_rate


def test_codegen_per_row_sparse_kernel_declares_its_gathers():
    """nmgemm with per-row indices names its indexed row loads; dense and shared ones do not."""
    from types import SimpleNamespace
    from codegen.kernels.nmgemm import NmGemmParams
    from hwsim.cpu.codegen_source import from_rendered
    work = GemmWorkload("g", "FF", M=96, N=64, K=256, sparse=True, pattern="2:8", density=0.25, nm=(2, 8))
    def rendered(n, m, shared=False):
        params = NmGemmParams(n, m, "avx2", mr=4, nr=24, unroll=2, kc=0, shared=shared, threads=1)
        return SimpleNamespace(name="k", source="", params=params)
    sparse = from_rendered(rendered(2, 8), work)
    assert sparse.loops[0].gathers == 2 * 2 * 4 and sparse.gather.row_vectors == 3
    assert sparse.gather.panel_rows == 256
    assert from_rendered(rendered(8, 8), work).gather is None
    assert from_rendered(rendered(2, 8, shared=True), work).gather is None


def test_pack_micro_benchmark_scales_with_the_rows_copied(tmp_path):
    """The measured memcpy packing cost grows with the copies and is cached per shape."""
    import platform
    from hwsim.cpu.gather_bench import PackShape, pack_cycles
    require_tools("gcc")
    if platform.machine() != "x86_64":
        pytest.skip("the pack micro-benchmark measures x86 hosts only")
    small = pack_cycles(PackShape(rows=32, row_bytes=96, stride_bytes=4096, tiles=2), tmp_path)
    large = pack_cycles(PackShape(rows=32, row_bytes=96, stride_bytes=4096, tiles=200), tmp_path)
    assert 0 < small < large
    assert pack_cycles(PackShape(rows=32, row_bytes=96, stride_bytes=4096, tiles=2), tmp_path) == small


def _dwconv_source(flavour, channels, side, stride):
    from codegen.kernels.dwconv import DwconvParams, render as render_dwconv
    from codegen.kernels.dwconv import DepthwiseGeometry
    from hwsim.cpu.codegen_source import from_rendered
    rendered = render_dwconv(DwconvParams(flavour, 3, stride, "relu"))
    geometry = DepthwiseGeometry(channels, side, side, 1)
    return lambda w, s, t: from_rendered(rendered, w, geometry)


def _dwconv_work(channels, side, stride):
    out = (side + 2 - 3) // stride + 1
    return GemmWorkload(f"dw{channels}x{side}s{stride}", "FF", M=out * out, N=1, K=9, groups=channels,
                        op_kind="depthwise")


@settings(max_examples=4, deadline=None)
@example(channels=1, side=17, stride=1, grow="channels", name="wasm32-simd128")   # 1-trip tail
@example(channels=1, side=17, stride=2, grow="side", name="snapdragon855")
@given(channels=st.integers(1, 96), side=st.integers(3, 60), stride=st.sampled_from([1, 2]),
       grow=st.sampled_from(["channels", "side"]),
       name=st.sampled_from(["snapdragon855", "wasm32-simd128", "host"]))
def test_codegen_depthwise_costed_monotone_and_above_peak(cache, channels, side, stride, grow, name):
    """codegen's dwconv (vector loop, and a scalar tail the compiler may vectorize) is costed
    from its own machine code: more channels or a larger plane never predict fewer cycles."""
    target = _target(name)
    from codegen.build import runnable_flavours
    flavour = runnable_flavours(target)[-1]
    bigger = (2 * channels, side) if grow == "channels" else (channels, 2 * side)
    small = simulate_cpu(target, [_dwconv_work(channels, side, stride)], cache_dir=cache,
                         kernel_source=_dwconv_source(flavour, channels, side, stride))[0]
    large = simulate_cpu(target, [_dwconv_work(*bigger, stride)], cache_dir=cache,
                         kernel_source=_dwconv_source(flavour, *bigger, stride))[0]
    assert small.kernel_origin == "codegen" and small.kernel.startswith(f"dwconv_3x3_s{stride}_")
    assert large.cycles >= small.cycles
    peak = target.vector_lanes_f32 * target.fma_units
    assert small.cycles >= small.macs / peak


@pytest.mark.parametrize("name", ["snapdragon855", "host"])
def test_kxk_conv_costs_its_im2col_gather(cache, name):
    """codegen's KxK kernel finds its im2col runs itself (a division per run of a tile's
    pixels): that loop is costed, by a loop llvm-mca saw, on top of the same kernel's GEMM
    loops. (Comparing with the 1x1 GEMM and its packed panel no longer holds: a dense
    stride-1 conv now reads a padded copy of its input in place, without panels.)"""
    import dataclasses as dc
    from codegen.build import runnable_flavours
    from codegen.kernels.nmgemm import default_schedule as default_nmgemm
    from codegen.kernels.nmgemm import render as render_nmgemm
    from hwsim.cpu.codegen_source import from_rendered
    target = _target(name)
    params = dc.replace(default_nmgemm(2, 8, target, flavour=runnable_flavours(target)[-1], threads=1), conv=True)
    work = GemmWorkload("conv0", "FF", M=112 * 112, N=32, K=27, op_kind="conv2d", sparse=True,
                        pattern="2:8", density=0.25, nm=(2, 8))
    kernel = from_rendered(render_nmgemm(params), work)
    assert any(loop.divides for loop in kernel.loops)
    without = dc.replace(kernel, loops=tuple(loop for loop in kernel.loops if not loop.divides))
    conv, gemm_loops = (simulate_cpu(target, [work], cache_dir=cache, cores=1, kernel_source=lambda w, s, t, k=k: k)[0]
                        for k in (kernel, without))
    assert conv.kernel.startswith("nmconv_")
    assert conv.compute_cycles > gemm_loops.compute_cycles


def test_integer_divisions_are_counted_per_iteration():
    from hwsim.cpu.asm_loops import AsmLoop, integer_divisions
    x86 = AsmLoop(name="f:L0", function="f", index=0, depth=1, parent=None, innermost=True, region=None,
                  body=("movq %rax, %rdx", "divq %r13", "addq $1, %rax", "jne .L3"), own_body=())
    arm = dataclasses.replace(x86, body=("udiv x3, x5, x28", "msub x4, x3, x28, x5", "sdiv w1, w2, w3",
                                         "b.ne .L3"))
    assert integer_divisions(x86) == 1 and integer_divisions(arm) == 2


def test_the_model_applies_nmgemm_s_own_threading_rule():
    """The kernel starts its OpenMP team only above a MAC threshold: the model must know the
    same threshold (a small sparse layer runs on one thread even on a 2-core target)."""
    from pathlib import Path
    import codegen
    from codegen.kernels.nmgemm import NmGemmParams, render as render_nmgemm
    from codegen.kernels.nmgemm import PARALLEL_MACS as NMGEMM_PARALLEL_MACS
    from hwsim.cpu.codegen_source import from_rendered
    template = (Path(codegen.__file__).parent / "kernels" / "nmgemm.c.j2").read_text()
    import re
    (threshold,) = re.findall(r"\(double\) p >= ([0-9.e+]+);", template)
    assert float(threshold) == NMGEMM_PARALLEL_MACS
    rendered = render_nmgemm(NmGemmParams(2, 8, "avx2", mr=4, nr=24, unroll=2, threads=2))
    small = GemmWorkload("pw", "FF", M=196, N=64, K=32, sparse=True, density=0.25, nm=(2, 8), pattern="2:8")
    large = dataclasses.replace(small, M=12544, N=256, K=256)
    assert small.macs < NMGEMM_PARALLEL_MACS <= large.macs    # one on each side of the rule
    assert from_rendered(rendered, small).threads == 1
    assert from_rendered(rendered, large).threads == 2


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("flavour", ["scalar", "neon", "wasmsimd", "avx2", "avx512"])
def test_dwconv_tail_costed_as_the_template_renders_it(flavour, stride):
    """codegen.isa's one record says whether a flavour has masked tails: the rendered dwconv
    then ends each row with a masked vector (no scalar tail loop), and the cost description
    has no scalar tail loop; without masked tails both have the scalar loop."""
    from codegen.isa import get_isa
    from codegen.kernels.dwconv import DwconvParams, render as render_dwconv
    from codegen.kernels.dwconv import DepthwiseGeometry
    from hwsim.cpu.codegen_source import from_rendered
    isa = get_isa(flavour)
    rendered = render_dwconv(DwconvParams(flavour, 3, stride, "none"))
    side = 4 * isa.lanes * stride + 3                      # a row that leaves a partial vector
    out = (side + 2 - 3) // stride + 1
    work = GemmWorkload("dw", "FF", M=out * out, N=1, K=9, groups=8, op_kind="depthwise")
    source = from_rendered(rendered, work, DepthwiseGeometry(8, side, side, 1))
    scalar_tail = any(loop.trips_per_entry for loop in source.loops)
    masked_store = isa.store_first("P", "V", "N").split("(")[0]     # e.g. _mm256_maskstore_ps
    assert bool(masked_store and masked_store in rendered.source) == isa.masked_tails
    assert scalar_tail == (not isa.masked_tails and isa.lanes > 1 or flavour == "scalar")
    assert source.simd == isa.level.name


def test_memory_loads_count_what_reads_memory():
    """FMAs and broadcasts from memory and scalar loads read memory; lea, stores and register
    operations do not (AT&T: the destination is the last operand)."""
    from hwsim.cpu.asm_loops import memory_loads
    x86 = ["vfmadd231ps\t0(%r13), %zmm0, %zmm12", "vbroadcastss\t8(%rax,%rcx,8), %zmm0",
           "movl\t6(%rdx,%r10), %ebx", "leaq\t2048(%rsi,%r8), %rdi", "vmovups\t%zmm1, (%rdi)",
           "addq\t%r12, %r13", "vfmadd231ps\t%zmm3, %zmm9, %zmm15", "vmovaps\t-256(%r11), %zmm0",
           "prefetcht0\t64(%rax)"]
    assert memory_loads(x86) == 4
    assert memory_loads(["ldr q0, [x1]", "fmla v0.4s, v1.4s, v2.4s", "str q0, [x2]"]) == 1


def test_gathering_kernels_on_intel_add_their_transfers(monkeypatch):
    """On an Intel host a gathering kernel's L1 loads and cache transfers add (the ECM model);
    elsewhere, and for kernels without gathers, the larger of compute and transfers wins."""
    from hwsim.cpu.cpu_model import simulate_cpu, transfers_overlap
    from hwsim.cpu.codegen_source import from_rendered
    from codegen.kernels import nmgemm
    from targets.cpu import load_cpu_target
    from targets.features import detect_host_features
    require_tools("gcc", "llvm-mca")
    host = dataclasses.replace(load_cpu_target("host"), cores=1)
    assert transfers_overlap(host) == (detect_host_features().vendor != "GenuineIntel")
    work = GemmWorkload("g", "FF", M=128, N=256, K=512, sparse=True, pattern="1:8", density=0.125, nm=(1, 8))
    params = nmgemm.default_schedule(1, 8, host, flavour=host.simd, threads=1)
    def simulate():
        return simulate_cpu(host, [work], cache_dir=".hwsim-cache", cores=1,
                            kernel_source=lambda w, s, t: from_rendered(nmgemm.render(params), w))[0]
    record = simulate()
    assert record.cycles == max(record.compute_cycles, record.memory_cycles)
    import hwsim.cpu.cpu_model as cpu_model
    monkeypatch.setattr(cpu_model, "transfers_overlap", lambda target: True)
    overlapped = simulate()
    assert overlapped.compute_cycles == record.compute_cycles
    if transfers_overlap(host):
        assert overlapped.memory_cycles == record.memory_cycles
    else:
        assert record.memory_cycles > overlapped.memory_cycles


def test_vector_stores_are_counted_in_both_isas():
    from hwsim.cpu.asm_loops import vector_stores
    x86 = ["vmovups %zmm3, 64(%rsi)", "vmovups (%rsi), %zmm3", "vmovaps %zmm1, %zmm2", "movdqu %xmm0, (%rdi)",
           "vfmadd231ps (%rcx), %zmm7, %zmm10"]
    arm = ["str q0, [x1, #16]", "stp q1, q2, [x3]", "ldr q4, [x5]", "st1 {v0.4s, v1.4s}, [x6]", "str x1, [x2]"]
    assert vector_stores(x86) == 2 and vector_stores(arm) == 5


@pytest.mark.parametrize("name", ["host", "snapdragon855", "wasm32-simd128"])
def test_tile_stores_are_added_once(cache, name):
    """The output tile's stores, where the compiler put them outside the loop bodies llvm-mca
    sees, are added (a short reduction makes them a large share); where the row loop's body
    has them already they are not counted twice."""
    from codegen.kernels.nmgemm import default_schedule as default_nmgemm
    from codegen.kernels.nmgemm import render as render_nmgemm
    from hwsim.cpu.codegen_source import from_rendered
    from hwsim.cpu.cpu_model import cost_loops
    target = _target(name)
    work = _nm(3136, 256, 16, 1, 8)
    kernel = from_rendered(render_nmgemm(default_nmgemm(1, 8, target, threads=1)), work)
    with_stores, without = (simulate_cpu(target, [work], cache_dir=cache, cores=1,
                                         kernel_source=lambda *_, k=k: k)[0]
                            for k in (kernel, dataclasses.replace(kernel, tile_stores=0)))
    seen = cost_loops(target, kernel, cache).parent_vector_stores
    if seen >= kernel.tile_stores:
        assert with_stores.compute_cycles == without.compute_cycles
    else:
        assert with_stores.compute_cycles > without.compute_cycles


@settings(max_examples=20, deadline=None)
@given(flavour=st.sampled_from(["avx2", "avx512", "wasmsimd"]), stride=st.sampled_from([1, 2]),
       side=st.integers(8, 120), channels=st.integers(1, 9))
def test_depthwise_taps_are_stated_with_their_line_offsets(flavour, stride, side, channels):
    """dwconv's vector loop states its loads (k x k taps, two vectors a tap at stride 2; at
    stride 1 a pair of output rows: (k + 1) x k taps) and its output stores per iteration (two
    for a pair); at stride 1 the taps of column offset 0 sit on the ring rows' 64-byte-aligned
    starts only when a vector is a whole line (AVX-512), so exactly the share (k - 1) / k of
    them are off a line start there."""
    from codegen.isa import get_isa
    from codegen.kernels.dwconv import DepthwiseGeometry, DwconvParams, work
    params = DwconvParams(flavour, 3, stride, "relu")
    out = (side + 2 - 3) // stride + 1
    if out < get_isa(flavour).lanes:
        return                                   # no vector loop at this width
    loop = work(params, _dwconv_work(channels, side, stride), DepthwiseGeometry(channels, side, side, 1)).loops[0]
    ops = loop.memory_ops
    assert ops is not None and ops.iterations == 16
    taps, stores = (12, 2) if stride == 1 and out >= 2 else (9 * stride, 1)
    assert abs(len(ops.loads) - 16 * taps) <= taps and abs(len(ops.stores) - 16 * stores) <= stores
    vector_bytes = get_isa(flavour).lanes * 4
    assert {size for size, _ in ops.loads + ops.stores} == {vector_bytes}
    assert all(0 <= offset < 64 and offset % 4 == 0 for _, offset in ops.loads + ops.stores)
    if flavour == "avx512" and stride == 1:
        off_line = sum(1 for _, offset in ops.loads if offset)
        assert abs(off_line - len(ops.loads) * 2 / 3) <= 2


def test_memory_ops_probe_charges_line_crossings_and_more_accesses(tmp_path):
    """The host's measured cost of a loop's loads and stores: more accesses never cost less,
    and loads whose 32-byte half crosses a line cost more than aligned ones (two L1 accesses
    each on every x86 core we know of; a host where they were free would fail here, and the
    cost model would then need no floor for them)."""
    import platform
    from codegen.kernels.work import MemoryOps
    from hwsim.cpu.gather_bench import memory_ops_cycles
    require_tools("gcc")
    if platform.machine() != "x86_64":
        pytest.skip("the memory-access micro-benchmark measures x86 hosts only")
    aligned = memory_ops_cycles(MemoryOps(((32, 0),) * 8, (), 1), tmp_path)
    crossing = memory_ops_cycles(MemoryOps(((32, 48),) * 8, (), 1), tmp_path)
    more = memory_ops_cycles(MemoryOps(((32, 0),) * 16, ((32, 0),) * 2, 1), tmp_path)
    assert 0 < aligned < crossing and more > aligned
    assert memory_ops_cycles(MemoryOps(((32, 0),) * 8, (), 1), tmp_path) == aligned      # cached


def test_depthwise_taps_floor_the_host_prediction(cache):
    """On the x86 host the dwconv vector loop costs at least its measured loads and stores:
    never less than llvm-mca alone (the same kernel with its accesses left unstated)."""
    import platform
    if platform.machine() != "x86_64":
        pytest.skip("the accesses are measured on x86 hosts only")
    target = _target("host")
    from codegen.build import runnable_flavours
    flavour = runnable_flavours(target)[-1]
    source = _dwconv_source(flavour, 32, 56, 1)
    stated = simulate_cpu(target, [_dwconv_work(32, 56, 1)], cache_dir=cache, kernel_source=source)[0]

    def unstated(w, s, t):
        kernel = source(w, s, t)
        loops = tuple(dataclasses.replace(loop, memory_ops=None) for loop in kernel.loops)
        return dataclasses.replace(kernel, loops=loops)
    plain = simulate_cpu(target, [_dwconv_work(32, 56, 1)], cache_dir=cache, kernel_source=unstated)[0]
    assert stated.compute_cycles >= plain.compute_cycles


@settings(max_examples=25, deadline=None)
@given(flavour=st.sampled_from(["avx2", "avx512", "wasmsimd", "neon"]), cin=st.integers(4, 2048),
       cout=st.integers(1, 300), pixels=st.integers(2, 4000))
def test_spmm_states_its_channel_chunks_and_running_sums(flavour, cin, cout, pixels):
    """spmm.c.j2 walks the input channels in chunks whose tile rows fill 32 KB: past one chunk
    every block row is entered once per chunk and reads its running sums back (all but the
    first chunk); within one chunk it is entered once and keeps no sums."""
    from codegen.kernels.spmm import SpmmParams, _chunk_channels, work
    from codegen.isa import get_isa
    mr = get_isa(flavour).spmm_pixels
    params = SpmmParams(flavour, mr=mr, nr=1, kb=4)
    workload = GemmWorkload("s", "FF", M=pixels, N=cout, K=cin, sparse=True, pattern="block", density=0.2)
    described = work(params, workload)
    chunks = -(-cin // _chunk_channels(params))
    tiles = described.parent_trips[-1]
    if chunks > 1:
        assert len(described.parent_trips) == 3 and described.parent_trips[0] == tiles * cout * chunks
        assert 0 < described.tile_loads < described.tile_stores
        assert described.tile_sums_bytes == cout * mr * 4
    else:
        assert len(described.parent_trips) == 2 and described.parent_trips[0] == tiles * cout
        assert described.tile_loads == 0 and described.tile_sums_bytes == 0
    assert described.gather is None or described.gather.panel_rows <= _chunk_channels(params)


@settings(max_examples=25, deadline=None)
@given(flavour=st.sampled_from(["avx2", "avx512", "wasmsimd", "scalar"]), cin=st.integers(8, 2048),
       cout=st.integers(1, 1200), block=st.sampled_from([(1, 1), (2, 1), (4, 1), (1, 4), (1, 8)]),
       density=st.floats(0.05, 1.0), threads=st.sampled_from([1, 2]))
def test_spmm_one_pixel_is_a_matrix_vector_product(flavour, cin, cout, block, density, threads):
    """At one pixel spmm.c.j2 walks every block row's kept blocks once, matvec_sets blocks a
    step and the rest one by one: the loops multiply exactly the kept MACs, the weights and
    the input are read once, and threads join only from 256k kept MACs."""
    from codegen.isa import get_isa
    from codegen.kernels.spmm import MATVEC_PARALLEL_MACS, SpmmParams, _kept_blocks, work
    nr, kb = block
    params = SpmmParams(flavour, mr=get_isa(flavour).spmm_pixels, nr=nr, kb=kb, threads=threads)
    workload = GemmWorkload("fc", "FF", M=1, N=cout, K=cin, sparse=density < 1, pattern="block",
                            density=density)
    described = work(params, workload)
    block_rows = -(-cout // nr)
    kept_macs = block_rows * _kept_blocks(workload, kb) * nr * kb
    assert sum(loop.mac_lanes * loop.iterations for loop in described.loops) == pytest.approx(kept_macs)
    assert described.loops[0].mac_lanes == nr * kb * params.matvec_sets
    assert described.parent_trips == (block_rows,)
    assert all(stream.passes == 1 for stream in described.streams)
    assert described.threads == (threads if kept_macs >= MATVEC_PARALLEL_MACS else 1)


def test_running_sums_beyond_l1_cost_their_lines_from_l2():
    """Reading a blocked tile's sums back: from L1 at llvm-mca's load figure, and once the sum
    buffer outgrows half of L1, two lines per vector at the L2 fill bandwidth (more)."""
    from types import SimpleNamespace
    from hwsim.cpu.cpu_model import running_sums_cycles
    from hwsim.cpu.kernel_source import KernelSchedule, KernelSource
    target = SimpleNamespace(caches_kb=SimpleNamespace(as_dict=lambda: {"l1d": 32}), cache_line_bytes=64)
    kernel = KernelSource("nmgemm", "avx512", KernelSchedule(16, 1), "k", "", tile_loads=20.0,
                          tile_sums_bytes=8 * 1024)
    cost = SimpleNamespace(load_cycles=0.5)
    in_l1 = running_sums_cycles(target, kernel, cost)
    beyond = running_sums_cycles(target, dataclasses.replace(kernel, tile_sums_bytes=200 * 1024), cost)
    assert in_l1 == pytest.approx(20 * 0.5)
    assert beyond == pytest.approx(2 * 20 * 64 / 32) and beyond > in_l1


def test_host_tile_stores_cost_what_the_host_measures(cache):
    """The output tile's stores outside the loops llvm-mca saw are costed on an x86 host at the
    larger of llvm-mca's figure and the host's measured aligned store (Zen 4: a 512-bit store
    takes two cycles, znver4 says one)."""
    import platform
    from codegen.kernels.work import MemoryOps
    from hwsim.cpu.cpu_model import _vector_bytes, cost_loops
    from hwsim.cpu.gather_bench import memory_ops_cycles
    if platform.machine() != "x86_64":
        pytest.skip("stores are measured on x86 hosts only")
    from codegen.build import runnable_flavours
    from codegen.kernels.nmgemm import default_schedule, render
    from hwsim.cpu.codegen_source import from_rendered
    target = _target("host")
    params = default_schedule(2, 8, target, flavour=runnable_flavours(target)[-1], threads=1)
    workload = GemmWorkload("g", "FF", M=256, N=64, K=128, sparse=True, pattern="2:8", density=0.25, nm=(2, 8))
    kernel = from_rendered(render(params), workload)
    cost = cost_loops(target, kernel, cache)
    measured = memory_ops_cycles(MemoryOps((), ((_vector_bytes(kernel), 0),) * 16, 1), cache) / 16
    assert cost.store_cycles >= measured - 1e-9 and cost.store_cycles > 0


@settings(max_examples=25, deadline=None)
@given(flavour=st.sampled_from(["avx2", "avx512", "wasmsimd"]), pattern=st.sampled_from([(1, 1), (2, 8), (1, 8), (2, 4)]),
       M=st.integers(1, 700), N=st.integers(1, 200), K=st.integers(1, 1200))
def test_nmgemm_partial_column_tile_runs_its_own_vectors(flavour, pattern, M, N, K):
    """nmgemm.c.j2 runs a last partial column tile on the fewest vectors that cover it: the
    stated multiply lanes add up to every row tile x group x the pixels' whole vectors (not
    a full tile's), and running sums are read back exactly when the reduction is blocked."""
    import math
    from codegen.isa import get_isa
    from codegen.kernels.nmgemm import NmGemmParams, L1_PANEL_BYTES, work
    n, m = pattern
    isa = get_isa(flavour)
    mr, nr, unroll = isa.nm_tiles[0]
    params = NmGemmParams(n, m, flavour, mr=mr, nr=nr, unroll=unroll, threads=1)
    workload = GemmWorkload("g", "FF", M=M, N=N, K=K, sparse=n < m, density=n / m, nm=(n, m) if n < m else None)
    described = work(params, workload)
    groups, lanes = math.ceil(K / m), isa.lanes
    vectors = nr // lanes
    rest = M % nr
    covered = (M // nr) * nr + ((math.ceil(rest / lanes) * lanes if vectors > 1 else nr) if rest else 0)
    total = sum(loop.mac_lanes * loop.iterations for loop in described.loops if not loop.divides)
    assert total == n * math.ceil(N / mr) * mr * groups * covered
    kc = min(groups, max(1, L1_PANEL_BYTES // (m * nr * 4))) if n < m else groups
    assert (described.tile_loads > 0) == (math.ceil(groups / kc) > 1)


@pytest.mark.parametrize("flavour", ["scalar", "neon", "wasmsimd", "avx2", "avx512"])
@pytest.mark.parametrize("side", [9, 14, 15])
@pytest.mark.parametrize("stride", [1, 2])
def test_dwconv_work_counts_every_output_once(flavour, side, stride):
    """dwconv.c.j2 runs stride-1 rows in pairs (an odd last row alone): the cost description's
    loops multiply each output pixel's K x K taps once, in whole vectors where the flavour ends
    a row with a masked one, exactly where it has a scalar tail."""
    import math
    from codegen.isa import get_isa
    from codegen.kernels.dwconv import DepthwiseGeometry, DwconvParams, work
    isa = get_isa(flavour)
    channels, out = 5, (side + 2 - 3) // stride + 1
    workload = GemmWorkload("dw", "FF", M=out * out, N=1, K=9, groups=channels, op_kind="depthwise")
    described = work(DwconvParams(flavour, 3, stride, "none"), workload,
                     DepthwiseGeometry(channels, side, side, 1))
    total = sum(loop.mac_lanes * loop.iterations for loop in described.loops)
    columns = math.ceil(out / isa.lanes) * isa.lanes if isa.masked_tails else out
    assert total == channels * out * columns * 9
    steps = channels * (out // 2 + out % 2) if stride == 1 and isa.lanes > 1 else channels * out
    assert described.parent_trips == (steps, channels)
