"""llvm-mca wrapper and loop finder: parsing, core checks, missing-tool errors, loop structure."""
from __future__ import annotations

import pytest

from models.errors import UserError
from hwsim.cpu import asm_loops, mca
from tests.conftest import require_tools

AARCH64_LOOP = """ld1r {v2.4s}, [x7], #4
ldp q3, q4, [x13]
subs w1, w1, #1
fmla v1.4s, v2.4s, v3.4s
fmla v0.4s, v2.4s, v4.4s
b.ne .LBB0_5
"""

NESTED_GNU = """\t.text
\t.globl\tkernel
kernel:
\tmov\tx10, xzr
.LBB0_3:\t// outer
\tmovi\tv0.2d, #0
\t// LLVM-MCA-BEGIN nz
.LBB0_5:
\tld1r\t{ v2.4s }, [x7], #4
\tfmla\tv1.4s, v2.4s, v3.4s
\tsubs\tw1, w1, #1
\tb.ne\t.LBB0_5
\t// LLVM-MCA-END nz
\tstr\tq1, [x1]
\tsubs\tx12, x12, #1
\tb.ne\t.LBB0_3
\tret
"""

OBJDUMP = """
x.elf:\tfile format elf64-x86-64

Disassembly of section .text:

0000000000000000 <wasm[0]::function[0]::k>:
       0: 55                           \tpushq\t%rbp
      10: c5 f8 59 c9                  \tvmulps\t%xmm1, %xmm0, %xmm1
      14: c5 f8 58 c1                  \tvaddps\t%xmm1, %xmm0, %xmm0
      18: 85 f6                        \ttestl\t%esi, %esi
      1a: 0f 85 8e ff ff ff            \tjne\t0x10 <wasm[0]::function[0]::k+0x10>
      20: c3                           \tretq
"""


def test_gnu_loops_nest_and_regions():
    loops = asm_loops.find_loops(NESTED_GNU, "aarch64")
    assert [(loop.depth, loop.innermost) for loop in loops] == [(1, False), (2, True)]
    inner = loops[1]
    assert inner.parent == loops[0].name and inner.region == "nz"
    assert inner.body == ("ld1r\t{ v2.4s }, [x7], #4", "fmla\tv1.4s, v2.4s, v3.4s", "subs\tw1, w1, #1", "b.ne\t.LBB0_5")
    assert "fmla\tv1.4s, v2.4s, v3.4s" not in loops[0].own_body and "str\tq1, [x1]" in loops[0].own_body
    assert asm_loops.hot_loop(loops) is inner and asm_loops.loop_mac_lanes(inner) == 4


def test_objdump_branch_addresses_become_labels():
    loops = asm_loops.find_loops(OBJDUMP)
    assert len(loops) == 1 and loops[0].function == "wasm[0]::function[0]::k"
    assert loops[0].body[-1] == "jne\t.Lpc_10" and asm_loops.loop_mac_lanes(loops[0]) == 4


def test_mac_lanes_by_register_width():
    assert asm_loops.mac_lanes("vfmadd231ps %ymm5, %ymm1, %ymm13") == 8
    assert asm_loops.mac_lanes("vmulps %xmm1, %xmm0, %xmm1") == 4
    assert asm_loops.mac_lanes("fmla v2.4s, v4.4s, v0.s[0]") == 4
    assert asm_loops.mac_lanes("vaddps %ymm1, %ymm0, %ymm0") == 0


def test_mca_cycles_are_parsed_and_cached(tmp_path):
    require_tools("llvm-mca")
    first = mca.run_mca(AARCH64_LOOP, "aarch64-linux-gnu", "cortex-a55", cache_dir=str(tmp_path))
    assert first.cycles_per_iteration == first.total_cycles / first.iterations
    assert first.cycles_per_iteration >= first.block_rthroughput > 0
    assert first.instructions_per_iteration == 6 and "CortexA55UnitFPMAC" in first.model_resources
    assert list(tmp_path.rglob("*.json"))
    assert mca.run_mca(AARCH64_LOOP, "aarch64-linux-gnu", "cortex-a55", cache_dir=str(tmp_path)) == first


def test_more_work_per_iteration_never_costs_fewer_cycles():
    require_tools("llvm-mca")
    one = mca.run_mca(AARCH64_LOOP, "aarch64-linux-gnu", "cortex-a76")
    two = mca.run_mca(AARCH64_LOOP.replace("b.ne", "fmla v5.4s, v2.4s, v3.4s\nfmla v6.4s, v2.4s, v4.4s\nb.ne"),
                      "aarch64-linux-gnu", "cortex-a76")
    assert two.cycles_per_iteration >= one.cycles_per_iteration


def test_unknown_core_lists_known_ones():
    require_tools("llvm-mca")
    with pytest.raises(UserError) as error:
        mca.run_mca(AARCH64_LOOP, "aarch64-linux-gnu", "cortex-a99")
    assert "cortex-a78" in str(error.value) and "cortex-a55" in str(error.value)


def test_missing_llvm_mca_names_the_debian_package():
    with pytest.raises(UserError) as error:
        mca.find_llvm_mca("llvm-mca-not-installed-here")
    assert "'llvm'" in str(error.value) and "apt-get install llvm-19" in str(error.value)


def test_newest_llvm_mca_is_preferred_and_a76_gets_the_n1_model():
    require_tools("llvm-mca-19")
    assert mca.default_executable() == "llvm-mca-19"
    triple = "aarch64-linux-gnu"
    assert mca.scheduling_model(triple, "neoverse-n1") == "N1Unit"
    assert mca.model_core(triple, "cortex-a76") == "neoverse-n1"     # A76 name -> A57 model in LLVM 19
    assert mca.model_core(triple, "cortex-a55") == "cortex-a55"
    assert mca.scheduling_model(triple, "cortex-a55") == "CortexA55Unit"
    assert mca.scheduling_model("x86_64-linux-gnu", "znver4") == "Zn4"


def test_host_core_follows_the_cpu_features():
    require_tools("llvm-mca-19")
    import dataclasses
    from hwsim.cpu.cpu_model import mca_core
    from targets.cpu import load_cpu_target
    from targets.features import parse_host_features
    host = load_cpu_target("host")
    zen4 = parse_host_features("vendor_id : AuthenticAMD\ncpu family : 25\nmodel : 17\n"
                               "flags : avx2 fma avx512f\n", logical_cpus=2)
    assert mca_core(dataclasses.replace(host, host_features=zen4)) == "znver4"
    zen3 = dataclasses.replace(zen4, flags=frozenset({"avx2", "fma"}))
    assert mca_core(dataclasses.replace(host, host_features=zen3)) == "znver3"


def test_host_core_model_issues_as_many_fmas_as_the_host():
    """A Sapphire Rapids Xeon has two 512-bit FMA pipes: its llvm-mca model must too."""
    require_tools("llvm-mca-19")
    import dataclasses
    from hwsim.cpu import mca
    from hwsim.cpu.cpu_model import mca_core
    from targets.cpu import load_cpu_target
    from targets.features import parse_host_features
    host = load_cpu_target("host")
    spr = parse_host_features("vendor_id : GenuineIntel\ncpu family : 6\nmodel : 143\n"
                              "flags : avx2 fma avx512f amx_tile\n", logical_cpus=2)
    core = mca_core(dataclasses.replace(host, host_features=spr))
    assert round(mca.fma_per_cycle("x86_64-linux-gnu", core, 512)) == 2
    assert core in ("sapphirerapids", "icelake-server", "skylake-avx512")


def test_host_identity_tells_masked_cpus_apart():
    """Two VMs that both show "Intel(R) Xeon(R) Processor" but differ in model or caches get
    different identities (gather_bench keys its measured figures by it); the same CPU the same."""
    import dataclasses
    from targets.features import parse_host_features
    text = ("vendor_id : GenuineIntel\nmodel name : Intel(R) Xeon(R) Processor\ncpu family : 6\n"
            "model : 167\nflags : avx2 fma avx512f\n")
    xeon = parse_host_features(text, logical_cpus=2, caches_kb=(("l1d", 48), ("l2", 2048)))
    assert xeon.identity == parse_host_features(text, logical_cpus=2,
                                                caches_kb=(("l1d", 48), ("l2", 2048))).identity
    assert xeon.identity != dataclasses.replace(xeon, caches_kb=(("l1d", 32), ("l2", 1024))).identity
    assert xeon.identity != dataclasses.replace(xeon, model=143).identity
    assert xeon.identity != dataclasses.replace(xeon, flags=frozenset({"avx2", "fma"})).identity
    assert xeon.model_name in xeon.identity


# An outer loop whose body picks one of two inner loops (a full tile, a narrower tail tile), each
# with its own set-up; then a guarded store; then the back edge.
BRANCHY_GNU = """
f:
.L1:
\tmovq\t%rdi, %rax
\tcmpq\t$8, %rsi
\tjne\t.Ltail
\tvxorps\t%ymm0, %ymm0, %ymm0
.Lfull:
\tvfmadd231ps\t(%rax), %ymm1, %ymm0
\taddq\t$32, %rax
\tcmpq\t%rax, %rdx
\tjne\t.Lfull
\tjmp\t.Ljoin
.Ltail:
\tvxorps\t%xmm0, %xmm0, %xmm0
\tvmovaps\t%xmm0, %xmm2
.Lpart:
\tvfmadd231ps\t(%rax), %xmm1, %xmm0
\taddq\t$16, %rax
\tcmpq\t%rax, %rdx
\tjne\t.Lpart
.Ljoin:
\ttestq\t%rcx, %rcx
\tje\t.Lskip
\tvmovups\t%ymm0, (%r8)
.Lskip:
\taddq\t$1, %r9
\tcmpq\t%r9, %r10
\tjne\t.L1
\tret
"""


def test_a_trip_through_one_inner_loop_runs_only_its_path():
    loops = {loop.name: loop for loop in asm_loops.find_loops(BRANCHY_GNU, "x86_64")}
    outer, full, part = loops["f:L0"], loops["f:L1"], loops["f:L2"]
    assert full.parent == outer.name and part.parent == outer.name
    through_full = outer.through_child(full.name)
    # the head and the latch run on every trip; the full tile's set-up runs on its trips
    assert "movq\t%rdi, %rax" in through_full and "jne\t.L1" in through_full
    assert "vxorps\t%ymm0, %ymm0, %ymm0" in through_full
    # the other arm's set-up and the guarded store do not run on every trip through it
    assert "vxorps\t%xmm0, %xmm0, %xmm0" not in through_full
    assert "vmovups\t%ymm0, (%r8)" not in through_full
    through_part = outer.through_child(part.name)
    assert "vmovaps\t%xmm0, %xmm2" in through_part and "vxorps\t%ymm0, %ymm0, %ymm0" not in through_part
    # whatever the child, the path is part of the own body, never more
    assert set(through_full) <= set(outer.own_body) and len(through_full) < len(outer.own_body)


SPILLED_ACCUMULATOR = ["movdqu\t16(%rsp), %xmm0", "addps\t%xmm1, %xmm0", "movdqu\t%xmm0, 16(%rsp)",
                       "subq\t$1, %rcx", "jne\t.L1"]


@pytest.mark.parametrize("forward", [0.0, 4.0, 9.0])
def test_an_accumulator_on_the_stack_chains_iterations_through_forwarding(forward):
    """Reload, add, store back to one slot: each iteration waits for the last one's store to
    be forwarded (forwarding + the add), whatever the port model says; a store to another
    slot than the one loaded carries nothing from one iteration to the next."""
    from hwsim.cpu.stack_forwarding import recurrence_cycles
    latencies = [8.0, 3.0, 1.0, 1.0, 1.0]
    assert recurrence_cycles(SPILLED_ACCUMULATOR, latencies, forward) == pytest.approx(forward + 3.0)
    elsewhere = [SPILLED_ACCUMULATOR[0], SPILLED_ACCUMULATOR[1], "movdqu\t%xmm0, 48(%rsp)",
                 *SPILLED_ACCUMULATOR[3:]]
    assert recurrence_cycles(elsewhere, latencies, forward) == pytest.approx(1.0)   # the counter


def test_register_roles_of_att_instructions():
    """Sources and destinations as AT&T writes them: a three-operand AVX op and a move only
    write their destination, a two-operand SSE op and an FMA also read it, xor of a register
    with itself reads nothing."""
    from hwsim.cpu.stack_forwarding import _access
    assert _access("vaddps\t%xmm1, %xmm2, %xmm3")[:2] == ({"v1", "v2"}, {"v3"})
    assert _access("addps\t%xmm1, %xmm3")[:2] == ({"v1", "v3"}, {"v3"})
    assert _access("vfmadd231ps\t%zmm1, %zmm2, %zmm3")[:2] == ({"v1", "v2", "v3"}, {"v3"})
    assert _access("vxorps\t%xmm4, %xmm4, %xmm4")[:2] == (set(), {"v4"})
    assert _access("xorps\t%xmm4, %xmm4")[:2] == (set(), {"v4"})
    assert _access("movdqu\t32(%rsp), %xmm5") == ({"rsp"}, {"v5"}, "32(%rsp)", None)
    assert _access("movdqu\t%xmm5, 32(%rsp)")[3] == "32(%rsp)"
