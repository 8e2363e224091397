"""codegen.plan: one kernel-choice rule that codegen's planner and the CPU cost model both ask.

The property: for any CNN, pattern and CPU target, the kernel variant `hwsim codegen` emits for
each weighted layer (codegen.model_build) is the one `hwsim simulate --arch <cpu>` costs
(hwsim.cpu.codegen_source), tuned schedules included, because both get it from plan_workload.
"""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings, strategies as st

from codegen.kernels.nmgemm import default_schedule as default_nmgemm
from codegen.plan import (KernelPlan, plan_model, plan_workload, schedule_key, spmm_block,
                          tunable_ops)
from models.lowering import GemmWorkload
from models.patterns import BDWP, Block, Group, Unstructured, parse_pattern

MODELS = ("mobilenet_v1", "mobilenet_v2", "resnet9", "resnet18")
PATTERNS = ("dense", "2:8", "2:4", "1:8", "nm:4:16", "block:1x4:0.2", "block:4x1:0.3",
            "group:4:0.5", "unstructured:0.3")
TARGETS = ("host", "snapdragon855", "wasm32-simd128")
WEIGHTED_KINDS = ("nmgemm", "nmconv", "chgemm", "chconv", "winograd", "spmm", "dwconv")


def _model(name):
    from models.loading import load
    return load(name, dataset="cifar10", batch=1)


def _target(name):
    from targets.cpu import load_cpu_target
    return load_cpu_target(name)


def _tuned(model, pattern, target) -> dict:
    """A tuning log's worth of schedules: one N:M shape with a tile no default has."""
    ops = tunable_ops(model, pattern)
    if not ops:
        return {}
    key = sorted(ops)[0]
    base = default_nmgemm(ops[key].n, ops[key].m, target)
    return {key: dataclasses.replace(base, unroll=base.unroll + 1, kc=4)}


def _planner_kernels(model, target, pattern, schedules, tmp_path):
    from codegen.model_build import _Build, _Planner
    build = _Build(tmp_path)
    _Planner(model, target, pattern, build, 0, schedules).run()
    return [(case.ops[0], case.kind, case.kernel) for case in build.cases]


def _costed_kernels(model, target, pattern, schedules):
    from hwsim.cpu.codegen_source import kernel_source_for
    from hwsim.cpu.model_sim import model_workloads
    source = kernel_source_for(target, schedules, model)
    costed = []
    for work in model_workloads(model.with_sparsity(pattern), "infer"):
        kernel = source(work, None, target) if isinstance(work, GemmWorkload) else None
        costed.append((work.layer if isinstance(work, GemmWorkload) else work.name,
                       kernel and kernel.function))
    return costed


@settings(max_examples=5, deadline=None)
@example(model="mobilenet_v1", spec="2:8", target="snapdragon855")
@example(model="mobilenet_v2", spec="block:1x4:0.2", target="host")
@example(model="resnet9", spec="unstructured:0.3", target="wasm32-simd128")
@given(model=st.sampled_from(MODELS), spec=st.sampled_from(PATTERNS), target=st.sampled_from(TARGETS))
def test_planner_and_cpu_model_get_the_same_plan(tmp_path_factory, model, spec, target):
    model, target, pattern = _model(model), _target(target), parse_pattern(spec)
    schedules = _tuned(model, pattern, target)
    built = _planner_kernels(model, target, pattern, schedules, tmp_path_factory.mktemp("plan"))
    costed = _costed_kernels(model, target, pattern, schedules)
    # the same layers (models.fusion decides which ops run no kernel of their own) ...
    assert [layer for layer, _, _ in built] == [layer for layer, _ in costed]
    # ... and every weighted one costed as the very kernel built, epilogue and schedule included
    weighted = [(layer, kind, kernel) for layer, kind, kernel in built if kind in WEIGHTED_KINDS]
    assert [(layer, kernel) for layer, _, kernel in weighted] == \
        [(layer, kernel) for layer, kernel in costed if kernel is not None]
    plans = plan_model(model, pattern, target, schedules)
    assert [(layer, kind, kernel) for layer, kind, kernel in weighted] == \
        [(layer, plans[layer].family, plans[layer].params.name) for layer, _, _ in weighted]
    if schedules:
        (key, params), = schedules.items()
        tuned = [plan for plan in plans.values() if plan.key == key]
        assert tuned and all(plan.tuned and plan.params.kc == params.kc for plan in tuned)


def _work(**fields):
    base = dict(layer="fc", phase="FF", M=1, N=64, K=128, op_kind="dense")
    return GemmWorkload(**{**base, **fields})


def test_schedule_key_is_the_tuners_and_the_planners():
    from codegen.schedule import SparseOp
    model = _model("mobilenet_v1")
    ops = tunable_ops(model, BDWP(2, 8))
    assert ops and all(key == schedule_key(op.cout, op.k, op.p, op.n, op.m) for key, op in ops.items())
    assert schedule_key(256, 128, 784, 2, 8) == "256x128x784:2:8"
    plans = plan_model(model, BDWP(2, 8), _target("snapdragon855"))
    assert set(ops) <= {plan.key for plan in plans.values()}
    assert tunable_ops(model, Block(1, 4, 0.2)) == {} and isinstance(next(iter(ops.values())), SparseOp)


def test_the_rule_on_single_workloads():
    target = _target("snapdragon855")
    dense = plan_workload(_work(), None, target)
    assert isinstance(dense, KernelPlan) and dense.family == "nmgemm" and dense.params.dense
    nm = plan_workload(_work(sparse=True, density=0.25, nm=(2, 8), pattern="2:8"), None, target)
    assert (nm.params.n, nm.params.m, nm.key) == (2, 8, "64x128x1:2:8") and not nm.tuned
    block = plan_workload(_work(sparse=True, density=0.2, pattern="block:4x1:0.2"), None, target)
    assert block.family == "spmm" and (block.params.nr, block.params.kb) == (4, 1) and block.key is None
    for other in (_work(phase="BP"), _work(phase="WU"), _work(op_kind="conv2d", groups=4),
                  _work(op_kind="batch_matmul"), _work(op_kind="depthwise", groups=64)):
        assert plan_workload(other, None, target) is None      # hwsim.cpu's own kernels cost these


@pytest.mark.parametrize("target_name", TARGETS)
def test_one_pixel_dense_layers_take_a_vector_of_rows(target_name):
    """A dense classifier at batch 1 runs nmgemm's matrix-vector path with two vectors of rows
    a tile (at most 16; SIMD flavours only); an N:M one keeps its default tile; a tuned
    schedule is kept as it is."""
    from codegen.isa import get_isa
    from codegen.kernels.nmgemm import MATVEC_ROWS
    target = _target(target_name)
    dense = plan_workload(_work(), None, target)
    lanes = get_isa(dense.params.isa).lanes
    expected = min(MATVEC_ROWS, 2 * lanes) if lanes >= 4 else default_nmgemm(1, 1, target).mr
    assert dense.family == "nmgemm" and dense.params.mr == expected
    nm = plan_workload(_work(sparse=True, density=0.25, nm=(2, 8), pattern="2:8"), None, target)
    assert nm.params.mr == default_nmgemm(2, 8, target).mr
    tuned = dataclasses.replace(default_nmgemm(1, 1, target), mr=3)
    assert plan_workload(_work(), None, target, {dense.key: tuned}).params.mr == 3


@pytest.mark.parametrize("pattern,block", [(Block(1, 4, 0.2), (1, 4)), (Block(4, 1, 0.5), (4, 1)),
                                           (Group(8, 0.5), (8, 1)), (Unstructured(0.3), (1, 1)),
                                           (None, (1, 1))])
def test_spmm_block_of_a_pattern(pattern, block):
    assert spmm_block(pattern) == block


@settings(max_examples=40, deadline=None)
@given(pixels=st.integers(1, 4000), channels=st.integers(1, 2048),
       flavour=st.sampled_from(["avx512", "avx2", "neon", "wasmsimd"]))
def test_channel_vectors_only_where_they_fill_more_lanes(pixels, channels, flavour):
    """A dense layer moves to chgemm only where its lanes are CHANNEL_GAIN fuller than nmgemm's,
    never a one-pixel layer (the matrix-vector path) nor one beyond an im2col panel."""
    from codegen.kernels import chgemm, nmgemm
    from codegen.plan import CHANNEL_GAIN
    target = _target("host")
    plan = plan_workload(_work(M=pixels, N=channels, op_kind="conv2d", layer="c"), None, target,
                         flavour=flavour)
    pixel_tile = nmgemm.default_schedule(1, 1, target, flavour=flavour)
    mr, nr = chgemm.default_schedule(target, flavour=flavour).mr, chgemm.default_schedule(target, flavour=flavour).nr
    gain = chgemm.lane_use(pixels, channels, mr, nr) - nmgemm.lane_use(pixels, channels, pixel_tile)
    if plan.family == "chgemm":
        assert 2 <= pixels <= chgemm.PANEL_PIXELS and gain >= CHANNEL_GAIN
    else:
        assert plan.family == "nmgemm" and (pixels < 2 or pixels > chgemm.PANEL_PIXELS or gain < CHANNEL_GAIN)


def test_seven_by_seven_layers_vectorize_channels_on_avx512():
    """ResNet-18's 7 x 7 stage: 49 pixels fill 49 of nmgemm's 64 AVX-512 lanes, 7 x 48 tiles 97%."""
    target = _target("host")
    wide = plan_workload(_work(M=49, N=512, K=4608, op_kind="conv2d", layer="c"), None, target, flavour="avx512")
    assert wide.family == "chgemm" and (wide.params.mr, wide.params.nr) == (7, 48)
    for pixels in (1, 196, 3136):
        assert plan_workload(_work(M=pixels, N=512, op_kind="conv2d", layer="c"), None, target,
                             flavour="avx512").family == "nmgemm"
    sparse = plan_workload(_work(M=49, N=512, sparse=True, density=0.25, nm=(2, 8), pattern="2:8"), None,
                           target, flavour="avx512")
    assert sparse.family == "nmgemm" and sparse.params.n == 2


def _one_conv(cin, cout, kernel, stride, size, pad):
    from models.ir import Conv2d, Elementwise, GraphBuilder
    builder = GraphBuilder("one_conv")
    x = builder.input("image", (1, cin, size, size))
    x = builder.add(Conv2d("conv", cin, cout, kernel, stride=stride, padding=pad), x)
    builder.add(Elementwise("relu", "relu"), x)
    return builder.build()


@settings(max_examples=40, deadline=None)
@given(cin=st.integers(1, 80), cout=st.integers(1, 80), kernel=st.sampled_from([1, 3, 5]),
       stride=st.sampled_from([1, 2]), size=st.integers(3, 40), pad=st.sampled_from([0, 1]),
       spec=st.sampled_from(["dense", "2:8", "block:1x4:0.2"]),
       target=st.sampled_from(["host", "wasm32-simd128"]))
def test_winograd_only_for_dense_3x3_stride_1_layers_of_its_sizes(cin, cout, kernel, stride, size, pad,
                                                                  spec, target):
    """A layer gets winograd exactly where codegen.plan's rule says: run dense (a dense build,
    or a pattern with no KxK kernel: block, unstructured; an N:M layer keeps its sparse kernel,
    since a pruned kernel's zeros are not zeros after the transform), 3x3, stride 1, channels
    and pixels at least the measured minimums; its schedule carries the epilogue and the
    layer's tile count."""
    from codegen.kernels import winograd
    from codegen.build import runnable_flavours
    from codegen.plan import WINOGRAD_F4_MIN_TILES, forward_workloads, winograd_minimums
    if size + 2 * pad < kernel:
        return
    model, target = _one_conv(cin, cout, kernel, stride, size, pad), _target(target)
    work = forward_workloads(model, parse_pattern(spec))["conv"]
    plan = plan_workload(work, model, target)
    out = (size + 2 * pad - kernel) // stride + 1
    tiles = ((out + 1) // 2) ** 2
    channels, min_tiles = winograd_minimums(runnable_flavours(target)[-1])
    wanted = ((not work.sparse or work.nm is None) and kernel == 3 and stride == 1 and min(cin, cout) >= channels
              and tiles >= min_tiles)
    assert (plan.family == "winograd") == wanted
    if wanted:
        side = 4 if ((out + 3) // 4) ** 2 >= WINOGRAD_F4_MIN_TILES else 2
        assert plan.params == winograd.default_schedule(target, plan.params.isa, plan.params.threads, "relu",
                                                        tiles=((out + side - 1) // side) ** 2, m=side)


def test_resnet18_dense_3x3_stride_1_layers_run_winograd_and_sparse_ones_never():
    from models.loading import load
    model, target = load("resnet18"), _target("host")
    dense = plan_model(model, None, target)
    from models.ir import Conv2d
    convs = [layer for layer in dense if isinstance(model.op(layer), Conv2d)]
    kinds = {dense[layer].family for layer in convs
             if model.op(layer).kernel == (3, 3) and model.op(layer).stride == (1, 1)}
    assert kinds == {"winograd"}
    assert "winograd" not in {dense[layer].family for layer in convs if model.op(layer).stride != (1, 1)}
    assert "winograd" not in {plan.family for plan in plan_model(model, BDWP(2, 8), target).values()}
