"""Per-layer cycles of the CPU/wasm kernels, from their machine code (llvm-mca) and a memory roofline.

For each layer: render the kernel (the caller's ``kernel_source``, else
hwsim.cpu.fallback_kernels), compile it with the target's toolchain, find its loops
(asm_loops), and cost them with llvm-mca:

    hot loop     the innermost loop doing the most multiply lanes per iteration;
                 iterations = padded MACs / (multiply lanes per iteration),
                 which holds whatever unroll factor the compiler chose
    its parents  own body (inner-loop set-up, stores, pointer bumps: the
                 prologue/epilogue of the inner loop) x times entered:
                 parent = m_tiles x n_blocks, grandparent = m_tiles; only the
                 blocks a trip through the child on the chain always runs
                 (asm_loops.AsmLoop.through_child: not the other arms of an
                 if/else, e.g. the other tile widths' code)
    tails        M and N are padded to whole MR x NR tiles (the remainder tile
                 costs a full tile)
    accesses     a loop whose kernel states its loads' and stores' line offsets
                 (LoopWork.memory_ops) takes at least what the host measurably takes
                 for that mix (gather_bench.memory_ops_cycles; host only)
    spills       a loop that keeps values in stack slots (Cranelift's accumulators) takes at
                 least its dependence chain through store-to-load forwarding
                 (stack_forwarding; the host's forwarding latency measured)
    gathers      a loop that fetches rows through loaded indices (codegen's per-row
                 N:M kernel) takes at least picks x the host's measured cycles per
                 indexed pick at the kernel's panel size (gather_bench; host only)
    running sums a tile whose reduction is blocked reads its sums back at each block
                 (KernelWork.tile_loads): from L1, or from L2 when the buffer outgrows L1
    packing      a memcpy panel pack (codegen nmgemm) adds the host's measured copy
                 cycles (gather_bench.pack_cycles; llvm-mca sees only the call)

    compute_cycles = sum(mca cycles/iteration x trips) x ceil(m_tiles / cores) / m_tiles
    memory_cycles  = max over levels(bytes into level / its fill bandwidth)   (memory_model)
    cycles         = max(compute_cycles, memory_cycles)

The max is the roofline argument: out-of-order cores and hardware prefetchers
overlap refills with arithmetic, so a layer takes at least the longer of the
two, and with long regular streams not much more. ``bound`` says which won.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from models.errors import UserError
from models.fileio import write_atomic
from models.lowering import GemmWorkload
from hwsim.cpu import asm_loops, gather_bench, mca, memory_model, wasm_native
from hwsim.cpu.fallback_kernels import fallback_simd, render_fallback
from hwsim.cpu.kernel_source import KernelSchedule, KernelSource
from codegen.kernels.work import MemoryOps
from targets.simd import simd_level


@dataclass(frozen=True)
class ElementwiseWork:
    """A non-GEMM layer as a stream over ``elements`` floats (pooling, add, relu)."""
    name: str
    elements: int
    inputs: int = 2
    phase: str = "FF"


@dataclass(frozen=True)
class CpuLayerTime:
    """Predicted time of one layer on one CPU target."""
    name: str
    phase: str
    cycles: float
    ms: float
    bound: str                    # compute | memory
    compute_cycles: float
    memory_cycles: float
    macs: int
    memory_level: str             # the level whose traffic bounds memory time
    kernel: str                   # function name of the kernel costed
    hot_loop_cycles_per_iteration: float
    hot_loop_iterations: float
    mca_core: str
    mca_model: str                # scheduling model really used (resource name prefix)
    dram_bytes: float
    kernel_origin: str = "hwsim"  # codegen (the kernel hwsim codegen emits) | hwsim (fallback_kernels.py)
    utilization: float = 0.0      # macs / (cycles x lanes x FMA units x cores used)

    def as_dict(self) -> dict:
        return asdict(self)


KernelSourceFn = Callable[[GemmWorkload, object, object], KernelSource]


def fallback_family(workload: GemmWorkload) -> str:
    """Returns the fallback kernel (hwsim.cpu.fallback_kernels) that runs ``workload``."""
    if workload.op_kind == "depthwise":
        return "depthwise"
    return "sparse" if workload.sparse else "dense"


def mca_core(target, triple: str | None = None) -> str:
    """Returns the llvm-mca -mcpu name that models ``target``'s physical core.

    The host (features detected): the first of targets.features' preferred names for this
    CPU that the installed llvm-mca knows (znver4 with llvm-mca-19 on a Zen 4, znver3 with
    LLVM 14) and whose model issues as many full-width FMAs a cycle as the host has
    (targets.features.vector_fma_units against mca.fma_per_cycle: skylake-avx512 on a Sapphire
    Rapids Xeon, since LLVM's sapphirerapids model has one 512-bit FMA pipe); the first known
    one when none does. Others: the YAML's core, sent to a same-microarchitecture name with a
    dedicated model where the installed llvm-mca has one (mca.model_core: cortex-a76 -> neoverse-n1)."""
    triple = triple or mca.triple_for_isa(target.core_isa or target.isa)
    features = getattr(target, "host_features", None)
    if features is not None and triple.startswith("x86_64"):
        from targets.features import preferred_llvm_cores, vector_fma_units
        known = mca.known_cores(triple)
        candidates = [name for name in preferred_llvm_cores(features) if name in known]
        for name in candidates:
            if round(mca.fma_per_cycle(triple, name, features.vector_bits)) == vector_fma_units(features):
                return name
        if candidates:
            return candidates[0]
    mca.check_core(triple, target.core)
    return mca.model_core(triple, target.core)


def _assembly(target, kernel: KernelSource, cache_dir: Path) -> tuple[str, str, str, str | None]:
    """Returns (assembly text, llvm-mca triple, llvm-mca core, function symbol) of ``kernel``."""
    from targets import toolchains
    work_dir = cache_dir / "build"
    work_dir.mkdir(parents=True, exist_ok=True)
    if target.isa == "wasm32":
        physical = target.core_isa or "x86_64"
        if physical == "aarch64":
            triple = mca.triple_for_isa("aarch64")
            return (wasm_native.aarch64_proxy_assembly(kernel.c_source, work_dir),
                    triple, mca_core(target, triple), kernel.function)
        command = toolchains.compiler_command(target, link=True, extra_cflags=("-std=gnu11",))
        wasm = wasm_native.compile_wasm_module(kernel.c_source, kernel.function, work_dir, command)
        text = wasm_native.cranelift_disassembly(wasm, work_dir)
        triple = mca.triple_for_isa("x86_64")
        core = mca_core(target, triple) if target.core_isa == "x86_64" and target.core else mca.host_core()
        return text, triple, core, wasm_native.cranelift_function_name(text, kernel.function)
    digest = hashlib.sha256(kernel.c_source.encode()).hexdigest()[:20]
    source = work_dir / f"{kernel.function}-{digest}.c"
    if not source.exists():
        write_atomic(str(source), kernel.c_source)
    output = work_dir / f"{kernel.function}-{digest}-{target.name}.s"
    toolchains.compile_to_assembly(target, source, output, cache_dir=work_dir / "cc",
                                   extra_cflags=_isa_cflags(target, kernel))
    triple = mca.triple_for_isa(target.core_isa or target.isa)
    return output.read_text(), triple, mca_core(target, triple), kernel.function


def _isa_cflags(target, kernel: KernelSource) -> tuple[str, ...]:
    """Returns the flags codegen.build adds for a flavour (the same code must be costed as is run)."""
    if kernel.origin != "codegen":
        return ()
    return ("-std=gnu11", *simd_level(kernel.simd).cflags)


@dataclass(frozen=True)
class LoopCost:
    """Cycles per iteration of each loop on the hot chain, innermost first."""
    hot_cycles_per_iteration: float
    hot_mac_lanes: int
    parent_cycles_per_iteration: tuple[float, ...]
    mca_core: str
    mca_model: str
    loop_cycles: float = 0.0           # sum over the kernel's LoopWork of cycles x iterations
    hot_iterations: float = 0.0
    parent_vector_stores: int = 0      # vector stores llvm-mca already saw in the first parent's body
    store_cycles: float = 0.0          # llvm-mca's cycles per vector store of this kernel's width
    load_cycles: float = 0.0           # and per vector load (L1 hits)
    l1_load_cycles: float = 0.0        # the multiplying loops' loads from L1, at the host's rate


# One vector store of each width in the form compilers emit, for llvm-mca's store throughput.
LOAD_SNIPPETS = {
    ("x86_64", 64): "vmovups {offset}(%rdi), %zmm{i}",
    ("x86_64", 32): "vmovups {offset}(%rdi), %ymm{i}",
    ("x86_64", 16): "movups {offset}(%rdi), %xmm{i}",
    ("aarch64", 16): "ldr q{i}, [x0, #{offset}]",
}
STORE_SNIPPETS = {
    ("x86_64", 64): "vmovups %zmm{i}, {offset}(%rdi)",
    ("x86_64", 32): "vmovups %ymm{i}, {offset}(%rdi)",
    ("x86_64", 16): "movups %xmm{i}, {offset}(%rdi)",
    ("aarch64", 16): "str q{i}, [x0, #{offset}]",
}


def store_cycles(triple: str, vector_bytes: int, run, snippets=None) -> float:
    """Returns llvm-mca's cycles per vector store (``snippets``: LOAD_SNIPPETS, per load): 16
    independent accesses of ``vector_bytes``."""
    isa = "aarch64" if triple.startswith("aarch64") else "x86_64"
    snippet = (snippets or STORE_SNIPPETS).get((isa, vector_bytes))
    if snippet is None:
        return 0.0
    body = "\n".join(snippet.format(i=i, offset=i * vector_bytes) for i in range(16))
    return run(body).cycles_per_iteration / 16


def _match(innermost: list, lanes: int):
    """Returns (asm loop, unroll multiple) for a source loop of ``lanes`` multiply lanes: the
    compiled innermost loop with exactly that many lanes, else the smallest multiple."""
    exact = [loop for loop, have in innermost if have == lanes]
    if exact:
        return exact[0], 1
    multiples = sorted(((have // lanes, loop) for loop, have in innermost if have % lanes == 0),
                       key=lambda entry: entry[0])
    if multiples:
        return multiples[0][1], multiples[0][0]
    return None, 1


def _dividing_loop_cycles(loops: list, function: str, run) -> float:
    """Returns llvm-mca's cycles per iteration of the kernel's innermost dividing loop with
    the fewest divisions (the per-element loop of an index computation)."""
    dividing = [(asm_loops.integer_divisions(loop), loop.index, loop) for loop in loops if loop.innermost]
    dividing = [entry for entry in dividing if entry[0] > 0]
    if not dividing:
        raise RuntimeError(f"{function}: no innermost loop divides (the im2col gather was expected)")
    return run(min(dividing, key=lambda entry: entry[:2])[2].text()).cycles_per_iteration


def _vectorized_scalar_loop(innermost: list, work, run) -> tuple[object, float]:
    """Returns (a compiled loop, total cycles) of a scalar source loop the compiler may
    have vectorized: the widest compiled copy of V x its lanes with V <= its trips per
    entry runs trips // V times per entry and the scalar copy the remainder; where the
    remainder has no loop of its own (the compiler wrote it as straight-line code), one
    iteration of the narrowest vector copy per entry stands for it."""
    lanes, trips = work.mac_lanes, work.trips_per_entry
    entries = work.iterations / trips
    scalar = next((loop for loop, have in innermost if have == lanes), None)
    vectors = sorted(((have // lanes, loop) for loop, have in innermost
                      if have % lanes == 0 and have // lanes > 1), key=lambda entry: entry[0])
    if scalar is None and not vectors:
        raise RuntimeError(f"no loop does {lanes} multiply lanes (or a multiple) per iteration "
                           f"(found {sorted({have for _, have in innermost})})")
    fitting = [(width, loop) for width, loop in vectors if width <= trips]
    width, vector = fitting[-1] if fitting else (trips + 1, None)
    steps = trips // width if vector is not None else 0
    remainder = trips - steps * width
    per_entry = steps * run(vector.text()).cycles_per_iteration if vector is not None else 0.0
    if remainder:
        per_entry += (remainder * run(scalar.text()).cycles_per_iteration if scalar is not None
                      else run(vectors[0][1].text()).cycles_per_iteration)
    return (vector or scalar or vectors[0][1]), per_entry * entries


def _forwarded_recurrence(loop, triple: str, core: str, cache_dir: Path) -> float:
    """Returns the cycles per iteration of ``loop``'s dependences through its stack slots
    (hwsim.cpu.stack_forwarding, at the host's measured forwarding latency); 0 without any."""
    from hwsim.cpu import stack_forwarding
    body = list(loop.body)
    if not any(stack_forwarding.STACK_SLOT.match(operand) for text in body
               for operand in stack_forwarding.operands(text)[1][-1:]):
        return 0.0                      # no stores to stack slots: nothing is forwarded
    latencies = mca.instruction_latencies(loop.text(), triple, core, cache_dir=str(cache_dir))
    return stack_forwarding.recurrence_cycles(body, latencies, gather_bench.forwarding_cycles(cache_dir))


def vector_clock_slowdown(target, kernel: KernelSource, triple: str, core: str, cache_dir: Path) -> float:
    """Returns how many scalar-clock cycles one llvm-mca cycle of ``kernel`` takes on the host:
    its measured FMA issue rate at the kernel's vector width against the model's (1.0 where
    nothing is measured, for 128-bit vectors, and never below 1: the vector clock does not
    run above the scalar one). Intel's AVX frequency licenses (gather_bench.fma_cycles):
    1.07 for zmm and 1.0 for ymm on this project's Xeon; Zen 4 about 1.0."""
    width = _vector_bytes(kernel)
    if width < 32 or not triple.startswith("x86_64") or not gather_bench.can_measure(target):
        return 1.0                       # wasm SIMD128 and scalar kernels: 16 bytes
    return max(1.0, gather_bench.fma_cycles(width, cache_dir) * mca.fma_per_cycle(triple, core, 8 * width))


def cost_loops(target, kernel: KernelSource, cache_dir: Path) -> LoopCost:
    """Returns llvm-mca's cycles for the kernel's hot loop(s) and the loops around the first one."""
    text, triple, core, function = _assembly(target, kernel, cache_dir)
    mca.check_core(triple, core)
    loops = asm_loops.find_loops(text, "aarch64" if triple.startswith("aarch64") else "x86_64")
    mine = [loop for loop in loops if loop.function == function]
    by_name = {loop.name: loop for loop in mine}
    slowdown = vector_clock_slowdown(target, kernel, triple, core, cache_dir)

    def run(body: str) -> mca.McaResult:
        result = mca.run_mca(body, triple, core, cache_dir=str(cache_dir))
        return replace(result, cycles_per_iteration=result.cycles_per_iteration * slowdown)

    loop_cycles, hot_iterations, loads = 0.0, 0.0, 0.0
    if kernel.loops:
        innermost = [(loop, asm_loops.loop_mac_lanes(loop)) for loop in mine if loop.innermost]
        innermost = [(loop, lanes) for loop, lanes in innermost if lanes > 0]
        hot = None
        for work in kernel.loops:
            if work.iterations <= 0:
                continue
            if work.divides:
                loop_cycles += _dividing_loop_cycles(mine, function, run) * work.iterations
                continue
            if work.trips_per_entry:
                loop, cycles = _vectorized_scalar_loop(innermost, work, run)
                loop_cycles += cycles
                if hot is None:
                    hot, hot_cycles, hot_lanes = loop, cycles / work.iterations, work.mac_lanes
                    hot_iterations = work.iterations
                continue
            loop, multiple = _match(innermost, work.mac_lanes)
            if loop is None:
                raise RuntimeError(f"no loop of {function} does {work.mac_lanes} multiply lanes per "
                                   f"iteration (found {sorted({lanes for _, lanes in innermost})})")
            cycles = run(loop.text()).cycles_per_iteration
            if gather_bench.can_measure(target) and triple.startswith("x86_64"):
                # accumulators kept on the stack (Cranelift) chain each iteration to the
                # previous one through store-to-load forwarding, which llvm-mca does not see
                cycles = max(cycles, _forwarded_recurrence(loop, triple, core, cache_dir))
            if work.memory_ops is not None and gather_bench.can_measure(target):
                # llvm-mca takes every access as aligned and (znver4) two 512-bit loads and a
                # 512-bit store per cycle: the host's measured cost of the loop's own mix of
                # loads and stores at their line offsets is a lower bound (gather_bench)
                per_source = gather_bench.memory_ops_cycles(work.memory_ops, cache_dir)   # per iteration
                cycles = max(cycles, per_source * multiple)
            if work.gathers and kernel.gather is not None and gather_bench.can_measure(target):
                # llvm-mca takes every load as an L1 hit; indexed rows of a panel that
                # outlives L1 cost what the host measurably takes per pick (gather_bench)
                per_pick = gather_bench.cycles_per_pick(kernel.gather, cache_dir)
                cycles = max(cycles, work.gathers * multiple * per_pick)
            loop_cycles += cycles * work.iterations / multiple
            loads += asm_loops.memory_loads(loop.text().splitlines()) * work.iterations / multiple
            if hot is None:       # the first loop with work is the hot one (the full tile)
                hot, hot_cycles, hot_lanes = loop, cycles, asm_loops.loop_mac_lanes(loop)
                hot_iterations = work.iterations / multiple
        if hot is None:
            raise RuntimeError(f"{function}: no loop has work for this workload")
    else:
        hot = asm_loops.hot_loop(mine)
        if hot is None:
            raise RuntimeError(f"no multiplying loop found in {function} ({len(mine)} loops)")
        hot_cycles, hot_lanes = run(hot.text()).cycles_per_iteration, asm_loops.loop_mac_lanes(hot)
    hot_result = run(hot.text())
    # each parent on the hot chain: the part of its own body that a trip through the child
    # on the chain runs (AsmLoop.through_child: not the other arms of its if/else chains)
    parents = []
    child, parent = hot, (by_name.get(hot.parent) if hot.parent else None)
    first_parent_stores = asm_loops.vector_stores(parent.through_child(child.name)) if parent is not None else 0
    while parent is not None:
        body = parent.through_child(child.name)
        parents.append(run("\n".join(body) + "\n").cycles_per_iteration if body else 0.0)
        child, parent = parent, (by_name.get(parent.parent) if parent.parent else None)
    model = mca.model_name(hot_result.model_resources) or core
    per_store = store_cycles(triple, _vector_bytes(kernel), run) if kernel.tile_stores else 0.0
    if kernel.tile_stores and gather_bench.can_measure(target) and triple.startswith("x86_64"):
        # znver4 takes a 512-bit store as one a cycle; Zen 4 stores 256 bits a cycle (a zmm
        # store measures 2.0 cycles): the host's measured cost of aligned stores of this width
        per_store = max(per_store, _measured_access_cycles(_vector_bytes(kernel), cache_dir, store=True))
    per_load = store_cycles(triple, _vector_bytes(kernel), run, LOAD_SNIPPETS) if kernel.tile_loads else 0.0
    l1_load_cycles = 0.0
    if loads and kernel.gather is not None and not transfers_overlap(target):
        l1_load_cycles = loads * _measured_access_cycles(_vector_bytes(kernel), cache_dir, store=False)
    return LoopCost(hot_cycles, hot_lanes, tuple(parents), core, model, loop_cycles, hot_iterations,
                    first_parent_stores, per_store, per_load, l1_load_cycles)


def _measured_access_cycles(width: int, cache_dir: Path, *, store: bool) -> float:
    """Returns the host's cycles per aligned L1 load or store of ``width`` bytes (16 in a loop)."""
    accesses = ((width, 0),) * 16
    ops = MemoryOps((), accesses, 1) if store else MemoryOps(accesses, (), 1)
    return gather_bench.memory_ops_cycles(ops, cache_dir) / 16


def transfers_overlap(target) -> bool:
    """True unless ``target`` is this Intel host: there, lines moving between cache levels do
    not overlap with the core's own loads from L1 (the ECM model of Hager and Treibig, which
    fits Intel cores; AMD Zen overlaps them), so a kernel that gathers rows by index takes at
    least its L1 load cycles plus every level's transfer cycles, not the largest of them.
    Only gathering kernels (cost_loops): streams that a prefetcher runs ahead of overlap on
    Intel too (dense 128x768x768 here ran 1.10x its compute time where the sum said 1.46x).
    Seen on this project's Xeon: 1:8 at 128x768x768, whose gathered panel rows come from
    L2 once the running sums evict them, ran 1.5x the larger of its compute and transfer times."""
    if not gather_bench.can_measure(target):
        return True
    features = getattr(target, "host_features", None)
    if features is None:                 # a wasm target costed on this host
        from targets.features import detect_host_features
        features = detect_host_features()
    return features.vendor != "GenuineIntel"


# Scalar kernels are costed with the narrowest vector store (an xmm / q register's 16 bytes).
MIN_STORE_BYTES = 16


def _vector_bytes(kernel: KernelSource) -> int:
    """Returns the store width of a kernel's vectors on the costed machine code."""
    return max(MIN_STORE_BYTES, simd_level(kernel.simd).vector_bytes)


def running_sums_cycles(target, kernel: KernelSource, cost: LoopCost, bandwidths=None) -> float:
    """Returns the cycles one entry of a k-blocked tile's loop takes to read its running sums
    back (KernelWork.tile_loads), beyond the stores tile_stores already counts.

    The entry's accumulators start from those loads, so their time is not hidden behind the
    FMAs: from L1, llvm-mca's cycles per load; when the per-thread sum buffer outgrows its
    share of L1 (FIT_FRACTION, as for every stream), each vector's line comes from L2 and
    goes back dirty: two lines per vector at the L2 fill bandwidth (memory_model)."""
    vector_bytes = _vector_bytes(kernel)
    l1_bytes = (target.caches_kb.as_dict().get("l1d") or 0) * 1024
    if l1_bytes and kernel.tile_sums_bytes > memory_model.FIT_FRACTION * l1_bytes:
        rate = (bandwidths or memory_model.CacheBandwidths.default(target.cache_line_bytes)).l2
        return 2 * kernel.tile_loads * vector_bytes / rate
    return kernel.tile_loads * cost.load_cycles


def gemm_trips(workload: GemmWorkload, family: str, schedule: KernelSchedule) -> tuple[float, list[float], int]:
    """Returns (padded MAC lanes, trips of the parent loops innermost first, m_tiles)."""
    if family == "depthwise":
        side = math.isqrt(workload.M)
        rows, cols = (side, side) if side * side == workload.M else (1, workload.M)
        steps = math.ceil(cols / schedule.mr)
        lanes = workload.groups * rows * steps * schedule.mr * workload.K
        return lanes, [workload.groups * rows, workload.groups], workload.groups
    m_tiles = math.ceil(workload.M / schedule.mr)
    n_blocks = math.ceil(workload.N / schedule.nr)
    if family == "sparse":
        positions = n_blocks * workload.K * workload.density
        lanes = positions * schedule.nr * m_tiles * schedule.mr
    else:
        lanes = n_blocks * schedule.nr * m_tiles * schedule.mr * workload.K
    return lanes * workload.groups, [m_tiles * n_blocks * workload.groups, m_tiles * workload.groups], m_tiles


def _schedule_for(schedules, workload, family: str, simd: str, raw: bool = False):
    """Returns the schedule of one layer: the caller's object unchanged when ``raw`` (a
    kernel_source reads its own schedule type, e.g. codegen's NmGemmParams; None = its
    default), else a KernelSchedule for the fallback kernels."""
    chosen = None
    if isinstance(schedules, Mapping):
        chosen = schedules.get(workload.layer) or schedules.get(family)
    elif schedules is not None and not isinstance(schedules, Mapping):
        chosen = schedules
    if raw:
        return chosen
    if chosen is None:
        return render_fallback(family, simd).schedule
    return KernelSchedule(mr=int(getattr(chosen, "mr")), nr=int(getattr(chosen, "nr", 1)))


def simulate_layer(target, workload: GemmWorkload, schedule: KernelSchedule | None, cache_dir: Path, *,
                   kernel_source: KernelSourceFn | None = None, warm_weights: bool = False,
                   cores: int | None = None, bandwidths=None) -> CpuLayerTime:
    """Returns the predicted cycles of one lowered GEMM (or depthwise conv) on ``target``."""
    family = fallback_family(workload)
    simd = fallback_simd(target.simd)
    kernel = kernel_source(workload, schedule, target) if kernel_source else None
    if kernel is None:
        kernel = render_fallback(family, simd, schedule if isinstance(schedule, KernelSchedule) else None)
    cost = cost_loops(target, kernel, cache_dir)
    cores = cores or target.cores
    if kernel.loops:
        # codegen's kernels: every multiplying loop with its exact iterations, plus the parents
        hot_iterations = cost.hot_iterations
        serial = cost.loop_cycles + sum(
            cycles * trips for cycles, trips in zip(cost.parent_cycles_per_iteration, kernel.parent_trips or ()))
        if kernel.tile_stores and kernel.parent_trips:
            # the output tile's stores, where the compiler placed them outside the loop
            # bodies llvm-mca saw (a block after the row loop's back edge)
            missing = max(0.0, kernel.tile_stores - cost.parent_vector_stores)
            serial += missing * kernel.parent_trips[0] * cost.store_cycles
        if kernel.tile_loads and kernel.parent_trips:
            serial += kernel.parent_trips[0] * running_sums_cycles(target, kernel, cost, bandwidths)
        if kernel.pack is not None and gather_bench.can_measure(target):
            packs = kernel.pack if isinstance(kernel.pack, tuple) else (kernel.pack,)
            serial += sum(gather_bench.pack_cycles(pack, cache_dir) for pack in packs)   # calls to llvm-mca
        threads = min(cores, kernel.threads)
        units = kernel.parallel_units or 1
        share = math.ceil(units / threads) / units
        compute_cycles = serial * share
        memory = _memory(target, kernel.streams, kernel.memory_tiles, threads, warm_weights, bandwidths)
        return _record(target, workload.layer, workload.phase, compute_cycles, memory, workload.macs,
                       kernel.function, cost, hot_iterations, kernel.origin, threads,
                       l1_load_cycles=cost.l1_load_cycles * share)
    schedule = kernel.schedule
    lanes, parent_trips, m_tiles = gemm_trips(workload, family, schedule)
    hot_iterations = lanes / cost.hot_mac_lanes
    serial = hot_iterations * cost.hot_cycles_per_iteration + sum(
        cycles * trips for cycles, trips in zip(cost.parent_cycles_per_iteration, parent_trips))
    parallel = math.ceil(m_tiles / cores) / m_tiles if m_tiles else 1.0
    compute_cycles = serial * parallel
    if family == "depthwise":
        streams = (memory_model.Stream("weights", workload.groups * workload.K * 4, 1),
                   memory_model.Stream("panel", workload.groups * workload.M * 4, 1),
                   memory_model.Stream("output", workload.groups * workload.M * 4, 1))
        m_tiles_memory = 1
    else:
        streams = memory_model.gemm_streams(workload.M, workload.N, workload.K,
                                            workload.density if workload.sparse else 1.0,
                                            schedule.mr, schedule.nr, workload.sparse, workload.groups)
        m_tiles_memory = m_tiles
    memory = _memory(target, streams, m_tiles_memory, cores, warm_weights, bandwidths)
    return _record(target, workload.layer, workload.phase, compute_cycles, memory, workload.macs,
                   kernel.function, cost, hot_iterations, kernel.origin, min(cores, m_tiles or 1))


def _memory(target, streams, m_tiles: int, cores: int, warm_weights: bool,
            bandwidths=None) -> memory_model.MemoryEstimate:
    dram_bytes_per_cycle = target.dram_gbps * 1e9 / (target.clock_mhz * 1e6)
    return memory_model.estimate(streams, m_tiles, target.caches_kb.as_dict(), target.cache_line_bytes,
                                 dram_bytes_per_cycle, cores=cores, warm_weights=warm_weights,
                                 bandwidths=bandwidths)


def _record(target, name, phase, compute_cycles, memory, macs, function, cost: LoopCost, iterations,
            origin: str = "hwsim", cores: int = 1, l1_load_cycles: float = 0.0) -> CpuLayerTime:
    # transfers_overlap: where they do not, the loads from L1 and every level's transfers add
    transfers = l1_load_cycles + sum(memory.cycles_by_level.values()) if l1_load_cycles else memory.cycles
    cycles = max(compute_cycles, transfers)
    peak = target.vector_lanes_f32 * target.fma_units * max(1, cores)
    return CpuLayerTime(name=name, phase=phase, cycles=cycles, ms=cycles / (target.clock_mhz * 1e3),
                       bound="compute" if compute_cycles >= transfers else "memory",
                       compute_cycles=compute_cycles, memory_cycles=transfers, macs=macs,
                       memory_level=memory.bottleneck, kernel=function,
                       hot_loop_cycles_per_iteration=cost.hot_cycles_per_iteration,
                       hot_loop_iterations=iterations, mca_core=cost.mca_core, mca_model=cost.mca_model,
                       dram_bytes=memory.bytes_by_level.get("dram", 0.0), kernel_origin=origin,
                       utilization=macs / (cycles * peak) if cycles else 0.0)


def simulate_elementwise(target, work: ElementwiseWork, cache_dir: Path, *, cores: int | None = None,
                         bandwidths=None) -> CpuLayerTime:
    """Returns the predicted cycles of a streaming layer (add + relu over ``elements`` floats)."""
    kernel = render_fallback("elementwise", fallback_simd(target.simd))
    cost = cost_loops(target, kernel, cache_dir)
    # one multiply lane per element: the kernel computes a * scale + b
    iterations = math.ceil(work.elements / kernel.schedule.mr) * kernel.schedule.mr / cost.hot_mac_lanes
    cores = cores or target.cores
    compute_cycles = iterations * cost.hot_cycles_per_iteration / cores
    streams = (memory_model.Stream("panel", work.elements * 4 * work.inputs, 1),
               memory_model.Stream("output", work.elements * 4, 1))
    memory = _memory(target, streams, 1, cores, False, bandwidths)
    return _record(target, work.name, work.phase, compute_cycles, memory, 0, kernel.function, cost, iterations,
                   "hwsim", cores)


def measured_bandwidths(target, cache_dir: Path) -> memory_model.CacheBandwidths | None:
    """Returns the host's measured cache fill bandwidths (None: not this host, keep the defaults).

    One core reading a buffer that lives in L2 (half of it) gives L2 -> L1, one of four L2s
    (at most half the L3) gives L3 -> L2 (gather_bench.read_bytes_per_cycle). The defaults,
    a line every 2 / 4 cycles, are far off on a mesh L3: this project's Xeon reads its L3 at
    the rate below, not 16 bytes a cycle."""
    caches = target.caches_kb
    if not gather_bench.can_measure(target) or not caches.l2_kb:
        return None
    l2_bytes = caches.l2_kb * 1024
    default = memory_model.CacheBandwidths.default(target.cache_line_bytes)
    l2_rate = gather_bench.read_bytes_per_cycle(l2_bytes // 2, cache_dir)
    l3_rate = (gather_bench.read_bytes_per_cycle(min(caches.l3_kb * 1024 // 2, 4 * l2_bytes), cache_dir)
               if caches.l3_kb and caches.l3_kb * 1024 >= 4 * l2_bytes else default.l3)
    return memory_model.CacheBandwidths(l2=l2_rate, l3=l3_rate)


def simulate_cpu(target, workloads: Iterable[GemmWorkload | ElementwiseWork], schedules=None,
                 cache_dir: str | Path = ".hwsim-cache", *, kernel_source: KernelSourceFn | None = None,
                 warm_weights: bool = False, cores: int | None = None,
                 bandwidths: memory_model.CacheBandwidths | None = None) -> list[CpuLayerTime]:
    """Returns one CpuLayerTime per workload, in order.

    ``schedules``: None (each family's default tile), one schedule for all, or a
    mapping layer name (or family name) -> schedule; a schedule is any object
    with ``mr`` (pixels) and ``nr`` (channels). ``kernel_source(workload,
    schedule, target) -> KernelSource`` lets the caller (the CLI) bring
    codegen's kernels. ``cache_dir`` holds compiled assembly and llvm-mca
    results keyed by content hash; nothing is cached anywhere else.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if target.cores < 1:
        raise UserError("cores must be >= 1", source=getattr(target, "source", None), field="cores")
    bandwidths = bandwidths or measured_bandwidths(target, cache_dir)
    records = []
    for work in workloads:
        if isinstance(work, ElementwiseWork):
            records.append(simulate_elementwise(target, work, cache_dir, cores=cores, bandwidths=bandwidths))
            continue
        family = fallback_family(work)
        schedule = _schedule_for(schedules, work, family, fallback_simd(target.simd), raw=kernel_source is not None)
        records.append(simulate_layer(target, work, schedule, cache_dir, kernel_source=kernel_source,
                                      warm_weights=warm_weights, cores=cores, bandwidths=bandwidths))
    return records
