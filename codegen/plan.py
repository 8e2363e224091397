"""Which kernel a layer gets, with which schedule: one rule for codegen and the CPU cost model.

``hwsim codegen`` (codegen.model_build) emits the kernel this rule picks for each layer and
``hwsim simulate --arch <cpu>`` (hwsim.cpu.codegen_source) costs the same one, so the choice
lives here, below both, as the inference epilogue does in models.fusion::

    >>> plan = plan_workload(workload, model, target, schedules)    # a GemmWorkload's FF GEMM
    >>> plan.family, plan.params.name
    ('nmgemm', 'nmgemm_2of8_4x24_avx2_u2_t2_relu')

The rule (what models.lowering says is sparse decides; codegen has kernels for batch-1 FF):

    depthwise conv       dwconv (square kernel, stride and padding, batch 1; None otherwise)
    1x1 conv, dense      N:M -> nmgemm; block / group / unstructured -> spmm (XNNPACK style,
                         block of nr outputs x kb inputs from the pattern); dense -> nmgemm n = m,
                         or chgemm (vectors along output channels) where that fills the lanes
                         better by CHANNEL_GAIN (few pixels: 7 x 7 layers)
    KxK conv             nmconv (N:M along Cin*R*S); dense, and other patterns (there is
                         no sparse KxK block kernel: their masked weights run dense): nmconv
                         n = m, or chconv by the same lane rule; 3x3 stride 1: winograd
                         (F(2x2, 3x3) or F(4x4, 3x3): ``winograd_side``) where
                         ``prefers_winograd`` says it is measured faster
    anything else        None (grouped convolutions, attention, training BP/WU: no codegen
                         kernel; hwsim.cpu costs its own)

The N:M families take the tuning log's schedule for the layer's shape when it has one
(``schedule_key``: the one key the log is read and written with), else the flavour's default
(codegen.isa's record). Without a model (a batch > 1 simulation) only the workload is known:
no epilogue, no KxK convolution, no depthwise kernel.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from codegen import build as kernel_build
from codegen.kernels import chgemm, dwconv, nmgemm, render, spmm, winograd
from codegen.kernels.chgemm import ChGemmParams
from codegen.kernels.dwconv import DwconvParams
from codegen.kernels.nmgemm import NmGemmParams
from codegen.kernels.spmm import SpmmParams
from codegen.kernels.winograd import WinogradParams
from codegen.render import RenderedKernel
from models.errors import UserError
from models.lowering import GemmWorkload, lower
from models.patterns import Block, Group, SparsityPattern, nm_of, parse_pattern


@dataclass(frozen=True)
class KernelPlan:
    """The kernel one layer runs: its family, its parameters (schedule and epilogue included),
    and the tuning-log key of its shape (N:M families; None for spmm and dwconv).

    ``family`` is the codegen.kernels family's name, except "nmconv" / "chconv" for the nmgemm /
    chgemm family's KxK convolution (``params.conv``): the build's manifest names a layer's
    kind by it."""
    family: str                        # nmgemm | nmconv | chgemm | chconv | winograd | spmm | dwconv
    params: NmGemmParams | ChGemmParams | WinogradParams | SpmmParams | DwconvParams
    key: str | None = None
    tuned: bool = False                                # the schedule came from the tuning log

    def render(self) -> RenderedKernel:
        """Returns the rendered C of the planned kernel."""
        return render(self.params)


def schedule_key(cout: int, k: int, pixels: int, n: int, m: int) -> str:
    """Returns the key of an N:M GEMM's schedule: output rows x reduction x pixels, then n:m.

    >>> schedule_key(256, 128, 784, 2, 8)
    '256x128x784:2:8'
    """
    return f"{cout}x{k}x{pixels}:{n}:{m}"


def spmm_block(pattern: SparsityPattern | None) -> tuple[int, int]:
    """Returns (nr output channels, kb input channels) of the spmm block a pattern prunes:
    a Block's rows x cols, a Group's group of output channels, else single weights."""
    if isinstance(pattern, Block):
        return pattern.rows, pattern.cols
    if isinstance(pattern, Group):
        return pattern.group_size, 1
    return 1, 1


def _activation(model, workload: GemmWorkload) -> str:
    """Returns the activation the layer's kernel applies (models.fusion's epilogue)."""
    from models.fusion import epilogue_of

    return "none" if model is None else epilogue_of(model, workload.layer).activation


def _is_kxk_conv(model, workload: GemmWorkload) -> bool:
    """True for a convolution with a window (codegen's implicit-im2col KxK kernel)."""
    from models.ir import Conv2d

    if model is None or workload.op_kind != "conv2d":
        return False
    op = model.op(workload.layer)
    return isinstance(op, Conv2d) and not op.is_pointwise


def _depthwise_params(model, workload: GemmWorkload, flavour: str, threads: int = 1) -> DwconvParams | None:
    """Returns the dwconv of a depthwise layer (None where the family has none)."""
    op = model.op(workload.layer)
    (spec,) = model.input_specs(op.name)
    return dwconv.default_schedule(op, spec.shape, flavour, _activation(model, workload), threads)


def plan_workload(workload: GemmWorkload, model, target, schedules: dict | None = None,
                  flavour: str | None = None) -> KernelPlan | None:
    """Returns the kernel codegen runs ``workload`` (a lowered GEMM of ``model``) with, or None
    where codegen has no kernel for it. ``schedules`` maps schedule_key -> NmGemmParams (the
    tuning log's, see schedules_from_log); ``flavour`` defaults to the target's widest."""
    if workload.phase != "FF":
        return None
    flavour = flavour or kernel_build.runnable_flavours(target)[-1]
    if workload.op_kind == "depthwise":
        params = _depthwise_params(model, workload, flavour, kernel_build.default_threads(target)) \
            if model is not None else None
        return KernelPlan("dwconv", params) if params is not None else None
    if workload.op_kind not in ("conv2d", "dense") or workload.groups != 1:
        return None
    kxk = _is_kxk_conv(model, workload)
    act = _activation(model, workload)
    if workload.sparse and workload.nm is None and not kxk:
        nr, kb = spmm_block(parse_pattern(workload.pattern) if workload.pattern else None)
        params = dataclasses.replace(spmm.default_schedule(target, nr=nr, kb=kb, flavour=flavour), act=act)
        return KernelPlan("spmm", params)
    n, m = workload.nm if workload.sparse and workload.nm else (1, 1)
    key = schedule_key(workload.N, workload.K, workload.M, n, m)
    tuned = (schedules or {}).get(key)
    # a KxK layer runs dense where its pattern has no KxK kernel (block, unstructured: n == m
    # here), so it takes the best dense one; its masked weights are multiplied as they are
    if kxk and n == m and not tuned:
        op = model.op(workload.layer)
        if prefers_winograd(op, winograd_tiles(model, op), flavour):
            side = winograd_side(model, op)
            return KernelPlan("winograd", winograd.default_schedule(
                target, flavour, kernel_build.default_threads(target), act,
                tiles=winograd_tiles(model, op, side), m=side), key)
    params = tuned or nmgemm.default_schedule(n, m, target, flavour=flavour)
    if not tuned and workload.M == 1 and not kxk:   # nmgemm's matrix-vector path
        params = nmgemm.matvec_schedule(params)
    if not tuned and n == m:
        channels = chgemm.default_schedule(target, flavour=flavour, act=act, conv=kxk)
        if prefers_channel_vectors(workload, params, channels):
            return KernelPlan("chconv" if kxk else "chgemm", channels, key)
    params = dataclasses.replace(params, act=act, conv=kxk)
    return KernelPlan("nmconv" if kxk else "nmgemm", params, key, tuned is not None)


# chgemm replaces a dense nmgemm where its register tiles use this much more of their lanes
CHANNEL_GAIN = 0.1


def prefers_channel_vectors(workload: GemmWorkload, pixels: NmGemmParams, channels: ChGemmParams) -> bool:
    """True where the channel-vectorized kernel ``channels`` fills more of its multiply lanes
    than the pixel-vectorized ``pixels`` (by CHANNEL_GAIN), on a layer of at most one im2col
    panel of pixels; a one-pixel layer stays on nmgemm's matrix-vector path."""
    if workload.M < 2 or workload.M > chgemm.PANEL_PIXELS:
        return False
    gain = chgemm.lane_use(workload.M, workload.N, channels.mr, channels.nr) - \
        nmgemm.lane_use(workload.M, workload.N, pixels)
    return gain >= CHANNEL_GAIN


# winograd replaces a dense 3x3 stride-1 nmconv / chconv from these sizes (see
# prefers_winograd): input and output channels, 2x2 output tiles; per flavour where measured
WINOGRAD_MIN_CHANNELS = {"wasmsimd": 16}
WINOGRAD_MIN_TILES = {"wasmsimd": 1}
WINOGRAD_DEFAULT_MIN = (32, 16)        # (channels, tiles) elsewhere


def winograd_minimums(flavour: str) -> tuple[int, int]:
    """Returns (channels, tiles) from which ``flavour``'s winograd kernel is planned."""
    return (WINOGRAD_MIN_CHANNELS.get(flavour, WINOGRAD_DEFAULT_MIN[0]),
            WINOGRAD_MIN_TILES.get(flavour, WINOGRAD_DEFAULT_MIN[1]))


def prefers_winograd(op, tiles: int, flavour: str) -> bool:
    """True for a dense 3x3 stride-1 ungrouped convolution ``op`` of ``tiles`` 2x2 output
    tiles that F(2x2, 3x3) (codegen.kernels.winograd) runs faster than the kernel this rule
    gives it otherwise. Measured on this Zen 4 (AVX-512, best of 20, relu, cin = cout,
    1 / 2 threads), today's plan -> winograd: ResNet-18's 64 x 56 x 56 2.18 -> 1.33 ms /
    1.21 -> 0.84, 128 x 28 x 28 2.34 -> 1.28 / 1.23 -> 0.75, 256 x 14 x 14 2.34 -> 1.43 /
    1.32 -> 0.76, 512 x 7 x 7 (chconv; 16 tiles) 2.30 -> 1.63 / 1.27 -> 0.91, and under
    wasmtime 10.5 -> 5.0, 10.5 -> 5.5, 10.2 -> 5.0, 10.1 -> 6.7 ms. Where it loses: 4 tiles
    (4 x 4 outputs: 64 channels 0.034 -> 0.040 ms, 256: 0.23 -> 0.35; 2 x 2 at 512:
    0.40 -> 1.53), one nr-tile block mostly empty; 16 channels at 16 x 16 (0.018 -> 0.021),
    while 32 channels at 8 x 8 (16 tiles) win (0.021 -> 0.017 / 0.028 -> 0.023). Under
    wasmtime (best of 10) it wins at every size measured: 16 channels at 32 x 32
    0.32 -> 0.17 ms, 64 at 4 x 4 0.066 -> 0.054, 512 at 2 x 2 2.95 -> 2.19 (nmconv's wasm
    tile is 1 x 32). NEON (qemu: no timing) takes the host's rule. Sparse layers never: their
    zeros are not zeros of the transformed weights."""
    channels, min_tiles = winograd_minimums(flavour)
    return (op.kernel == (3, 3) and op.stride == (1, 1) and op.groups == 1
            and op.padding[0] == op.padding[1]
            and min(op.in_channels, op.out_channels) >= channels and tiles >= min_tiles)


def winograd_tiles(model, op, side: int = 2) -> int:
    """Returns the side x side output tiles of 3x3 stride-1 ``op`` (its input plane from
    ``model``)."""
    (spec,) = model.input_specs(op.name)
    out_h = spec.shape[2] + 2 * op.padding[0] - 2
    out_w = spec.shape[3] + 2 * op.padding[1] - 2
    return -(-out_h // side) * -(-out_w // side)


# F(4x4, 3x3) replaces F(2x2, 3x3) from this many 4x4 output tiles (see winograd_side)
WINOGRAD_F4_MIN_TILES = 16


def winograd_side(model, op) -> int:
    """Returns the output tile side (4: F(4x4, 3x3), else 2) of a layer prefers_winograd
    takes: 4 from WINOGRAD_F4_MIN_TILES 4x4 tiles. F(4x4) does 36 multiplies per 16 outputs
    where F(2x2) does 64, but its transformed weights are 36 / 16 larger and its blocks of 4x4
    tiles emptier. Measured on this Zen 4 (best of 20, relu, 1 / 2 threads), F(2x2) -> F(4x4):
    64 x 56 x 56 1.38 -> 1.16 ms / 0.83 -> 0.76, 128 x 28 x 28 1.28 -> 1.02 / 0.83 -> 0.77,
    256 x 14 x 14 (16 tiles) 1.37 -> 1.15 / 0.79 -> 0.72; 512 x 7 x 7 (4 tiles) 1.42 -> 3.84.
    Its float32 error: 4e-6 to 9e-6 of the output's largest value on these layers (F(2x2):
    3e-7 to 7e-7), within the build's 1e-3; tests/test_winograd.py allows 3e-5."""
    return 4 if winograd_tiles(model, op, 4) >= WINOGRAD_F4_MIN_TILES else 2


def forward_workloads(model, pattern: SparsityPattern | None) -> dict[str, GemmWorkload]:
    """Returns {layer: its forward GEMM} of ``model`` under ``pattern`` at batch 1 (lowering's
    rule of which layers are sparse: an N:M layer needs its input channels in whole groups)."""
    return {work.layer: work for work in lower(model.with_sparsity(pattern), "infer")
            if work.phase == "FF"}


def plan_model(model, pattern: SparsityPattern | None, target, schedules: dict | None = None
               ) -> dict[str, KernelPlan]:
    """Returns {layer: plan} for every weighted layer of ``model`` codegen has a kernel for."""
    plans = {}
    for layer, work in forward_workloads(model, pattern).items():
        plan = plan_workload(work, model, target, schedules)
        if plan is not None:
            plans[layer] = plan
    return plans


# ---------------------------------------------------------------- the tuning log's schedules


def tunable_ops(model, pattern: SparsityPattern | None) -> dict:
    """Returns {schedule_key: codegen.schedule.SparseOp} of the N:M GEMMs the tuner schedules
    for ``model`` under ``pattern`` (none for patterns that are not N:M)."""
    from codegen.schedule import SparseOp

    nm = nm_of(pattern)
    if nm is None:
        return {}
    ops = {}
    for work in lower(model.with_sparsity(pattern), "infer"):
        if work.sparse and work.nm and work.groups == 1:
            op = SparseOp(work.N, work.K, work.M, *nm)
            ops[schedule_key(op.cout, op.k, op.p, op.n, op.m)] = op
    return ops


def schedules_in_log(log_path: str | Path, ops: dict) -> dict[str, NmGemmParams]:
    """Returns {schedule_key: the log's best NmGemmParams} for the ``ops`` the log has."""
    from codegen.schedule import best_params
    from codegen.tuning_log import TuningLog

    log = TuningLog(log_path)
    found = {}
    for key, op in ops.items():
        params = best_params(log, op)
        if params is not None:
            found[key] = params
    return found


def build_schedules(model, pattern: SparsityPattern | None, target, log_path: str | Path, *,
                    tune: bool = False, budget: int = 4, predictor=None) -> dict[str, NmGemmParams]:
    """Returns {schedule_key: NmGemmParams} for ``hwsim codegen``: the tuning log's best for the
    N:M layers of ``model`` under ``pattern``, after tuning them (``tune``: ``budget`` candidates
    per shape, ranked by ``predictor`` where the target's timing is not real) when asked; {}
    when there is nothing to tune or no log to read."""
    from codegen.schedule import tune as tune_ops

    ops = tunable_ops(model, pattern)
    if not ops or (not tune and not Path(log_path).exists()):
        return {}
    if tune:
        if budget < 1:
            raise UserError(f"budget {budget} must be >= 1", field="--budget", fix="e.g. --budget 4")
        tune_ops(list(ops.values()), target, log_path, budget=budget, predictor=predictor)
    return schedules_in_log(log_path, ops)


def schedules_from_log(log_path: str | None, model, patterns) -> dict[str, NmGemmParams]:
    """Returns {schedule_key: NmGemmParams} for the N:M layers of ``model`` under ``patterns`` that
    the tuning log at ``log_path`` has (``hwsim simulate --arch <cpu> --tuning-log``)."""
    if not log_path:
        return {}
    if not Path(log_path).is_file():
        raise UserError("no such tuning log", source=log_path,
                        fix="run `hwsim codegen ... --tune --log FILE` first")
    schedules = {}
    for pattern in patterns:
        schedules.update(schedules_in_log(log_path, tunable_ops(model, pattern)))
    return schedules
