"""Whole-model code generation: kernels, packed weights and cases for every layer.

``build_model`` walks a batch-1 CNN in topological order, fuses each convolution or
dense layer with the batch norm (folded into a bias) and the relu/relu6 after it,
chooses a kernel per layer, renders and compiles every distinct kernel variant once
for the target, and writes each layer as one *case* of its variant's harness: the
layer's input is the numpy reference input, so ``run_model`` checks every layer on
its own against numpy, with no error carried from one layer to the next.

Kernel choice (sparse build; the dense build uses the same families with n = m): the
weighted layers' kernels come from codegen.plan, the one rule the CPU cost model reads too:

    1x1 conv, dense layer   N:M -> nmgemm; block / group / unstructured -> spmm (XNNPACK style)
    KxK conv                N:M -> nmconv (groups of m along Cin*R*S in (c, ky, kx) order);
                            other patterns run as dense nmconv on the masked weights;
                            dense 3x3 stride 1 -> winograd (F(2x2) / F(4x4), weights transformed here)
    depthwise conv          dwconv (dense: a 3x3 window is too short to group)
    pooling, relu, add      pool, eltwise
    flatten / reshape       no kernel (CHW memory is already flat at batch 1)

A layer stays dense when its input channels are not a multiple of m (the rule
models.lowering applies to hardware, and codegen.plan reads), e.g. a first convolution on
3 channels.
Weights are random (He-normal, seeded), or the model's own (``weights=``, an imported
ONNX file's, batch norm folded), masked by the pattern's magnitude rule.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codegen import build as kernel_build
from codegen.kernels import chgemm, dwconv, eltwise, nmgemm, pool, spmm, winograd
from codegen.kernels.dwconv import DwconvParams
from codegen.kernels.eltwise import EltwiseParams
from codegen.kernels.nmgemm import NmGemmParams
from codegen.kernels.pool import PoolParams
from codegen.kernels.spmm import mask_blocks
from codegen.plan import forward_workloads, plan_workload
from codegen.reference import apply_activation, reference_conv, reference_pool
from codegen.render import RenderedKernel
from models.errors import UserError
from models.fileio import (check_output_dir, check_sha256, file_sha256, remove_matching,
                           safe_member_path, write_atomic)
from models.inputs import check_build_manifest, read_json
from models.fusion import add_activation, epilogue_of
from models.ir import (Conv2d, Dense, Elementwise, Input, Model, Norm, Pool2d, Reshape)
from models.patterns import (BDWP, NM, Block, Group, SparsityPattern, Unstructured,
                             apply_mask)
from targets.cpu import CpuTarget

MANIFEST = "manifest.json"
SUPPORTED_OPS = "conv2d (incl. depthwise), dense, pool2d, relu, relu6, add, batch norm, flatten"


@dataclass(frozen=True)
class LayerCase:
    """One layer as a case of a kernel variant's harness."""
    layer: str            # the IR op whose output this case produces (after fusion)
    ops: tuple[str, ...]  # the IR ops fused into it
    kind: str             # nmgemm | nmconv | chgemm | chconv | winograd | spmm | dwconv | pool | eltwise
    kernel: str           # kernel variant name
    case: str
    ints: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    sparse: bool
    pattern: str | None


@dataclass
class _Build:
    """Mutable while one build is written; frozen into the manifest at the end."""
    directory: Path
    kernels: dict[str, RenderedKernel] = field(default_factory=dict)
    cases: list[LayerCase] = field(default_factory=list)


# ---------------------------------------------------------------- masks


def kernel_mask(pattern: SparsityPattern, w2d: np.ndarray) -> np.ndarray:
    """Returns the mask a kernel can run, on the (cout x reduction) weight matrix."""
    if isinstance(pattern, (BDWP, NM)):
        return NM(pattern.n, pattern.m, axis=1).mask(w2d)
    if isinstance(pattern, Block):
        return mask_blocks(w2d, pattern.rows, pattern.cols, pattern.density) != 0
    if isinstance(pattern, Group):
        return mask_blocks(w2d, pattern.group_size, 1, pattern.density) != 0
    return pattern.mask(w2d)


# ---------------------------------------------------------------- planning


class _Planner:
    """Walks the model and writes every layer's case; holds the reference tensors."""

    def __init__(self, model: Model, target: CpuTarget, pattern: SparsityPattern | None,
                 build: _Build, seed: int, schedules: dict[str, NmGemmParams], weights=None):
        self.model, self.target, self.pattern, self.build = model, target, pattern, build
        self.source = weights       # the model's own weights (models.weights.ModelWeights)
        self.rng = np.random.default_rng(seed)
        self.flavour = kernel_build.runnable_flavours(target)[-1]
        self.tensors: dict[str, np.ndarray] = {}
        self.schedules = schedules
        # each weighted layer's forward GEMM under the pattern: what codegen.plan decides on
        self.forward = forward_workloads(model, pattern)
        self.data = build.directory / "data"
        self.reference = build.directory / "reference"

    def weights(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    def add_case(self, kernel: RenderedKernel, layer: str, ops: list[str], kind: str,
                 buffers: dict, ints: tuple[int, ...], reference: np.ndarray, macs: int,
                 sparse: bool, pattern: str | None) -> None:
        self.build.kernels.setdefault(kernel.name, kernel)
        case = f"L{len(self.build.cases):03d}"
        kernel_build.write_case(self.data, case, buffers, ints, cases_file=f"cases-{kernel.name}.txt")
        self.reference.mkdir(parents=True, exist_ok=True)
        np.save(self.reference / f"{case}.npy", reference.astype(np.float32))
        self.build.cases.append(LayerCase(layer, tuple(ops), kind, kernel.name, case, ints,
                                          tuple(reference.shape), macs, sparse, pattern))
        self.tensors[layer] = reference.astype(np.float32)

    def run(self) -> None:
        fused_into: dict[str, str] = {}
        for op in self.model.ops():
            if op.name in fused_into:
                self.tensors[op.name] = self.tensors[fused_into[op.name]]
                continue
            sources = [self.tensors[name] for name in self.model.input_names(op.name)]
            if isinstance(op, Input):
                if op.shape[0] != 1 or len(op.shape) != 4:
                    raise UserError(f"codegen takes batch-1 NCHW image models, input is {op.shape}",
                                    field="--model", fix="use a CNN from the zoo, e.g. mobilenet_v1")
                self.tensors[op.name] = self.rng.standard_normal(op.shape[1:]).astype(np.float32)
            elif isinstance(op, (Conv2d, Dense)):
                epilogue = epilogue_of(self.model, op.name)
                fused, folded, act = list(epilogue.fused), epilogue.folded_norm, epilogue.activation
                output = fused[-1] if fused else op.name
                self.weighted(op, sources[0], folded, act, output, [op.name, *fused])
                for name in fused:
                    fused_into[name] = output
            elif isinstance(op, Pool2d):
                self.pool(op, sources[0])
            elif isinstance(op, Elementwise) and op.function in ("relu", "relu6", "add"):
                for name in self.eltwise(op, sources):      # an add's relu runs in its kernel
                    fused_into[name] = name
            elif isinstance(op, Reshape):
                self.tensors[op.name] = sources[0].reshape(-1, 1, 1) if sources[0].ndim == 3 \
                    else sources[0]
            elif isinstance(op, Norm) and op.norm == "batch":
                self.batch_norm(op, sources[0])
            else:
                raise UserError(f"codegen has no kernel for {op.kind} '{op.name}'"
                                f"{' (' + op.function + ')' if isinstance(op, Elementwise) else ''}",
                                field="--model", fix=f"codegen runs: {SUPPORTED_OPS}")

    def plan(self, name: str):
        """Returns codegen.plan's kernel for weighted layer ``name`` (None: codegen has none)."""
        return plan_workload(self.forward[name], self.model, self.target, self.schedules,
                             flavour=self.flavour)

    def weighted(self, op: Conv2d | Dense, x: np.ndarray, folded: bool, act: str, output: str,
                 ops: list[str]) -> None:
        if isinstance(op, Dense):
            conv = Conv2d(op.name, op.in_features, op.out_features, 1, bias=op.bias)
            x = x.reshape(op.in_features, 1, 1)
        else:
            conv = op
        if conv.is_depthwise:
            return self.depthwise(conv, x, folded, act, output, ops)
        if conv.groups != 1:
            raise UserError(f"grouped convolution '{op.name}' (groups={conv.groups})",
                            field="--model", fix=f"codegen runs: {SUPPORTED_OPS}")
        cout, cin = conv.out_channels, conv.in_channels
        fan_in = cin * conv.kernel[0] * conv.kernel[1]
        own = self.source.layer(op.name, folded) if self.source else None
        w = own[0].reshape(conv.weight_shape) if own else self.weights(conv.weight_shape, fan_in)
        w2d = w.reshape(cout, -1)
        sparse = self.forward[op.name].sparse
        if sparse:
            w2d = apply_mask(w2d, kernel_mask(self.pattern, w2d))
        w = w2d.reshape(w.shape)
        if self.source:
            self.source.kept(self.pattern, op.name, w)
        bias = own[1] if own else (self.rng.standard_normal(cout) * 0.1).astype(np.float32) \
            if (folded or conv.bias) else None
        reference = reference_conv(w, bias, x, conv, act)
        pointwise = conv.is_pointwise
        pixels = reference.shape[1] * reference.shape[2]
        macs = int(np.count_nonzero(w2d)) * pixels
        spec = self.pattern.spec if sparse else None
        plan = self.plan(op.name)
        params = plan.params
        if plan.family == "spmm":
            self.add_case(plan.render(), output, ops, "spmm",
                          spmm.buffers(params, w2d, bias, x.reshape(cin, pixels)),
                          (cout, cin, pixels), reference, macs, True, spec)
            return
        family = chgemm if plan.family in ("chgemm", "chconv") else \
            winograd if plan.family == "winograd" else nmgemm
        buffers = family.buffers(params, w2d, bias, x.reshape(cin, pixels) if pointwise else x)
        if pointwise:
            ints = (cout, cin, pixels)
        else:
            ints = (cout, cin, x.shape[1], x.shape[2], conv.kernel[0], conv.kernel[1],
                    conv.stride[0], conv.padding[0])
            if conv.kernel[0] != conv.kernel[1] or conv.stride[0] != conv.stride[1] \
                    or conv.padding[0] != conv.padding[1]:
                raise UserError(f"non-square convolution '{op.name}'", field="--model",
                                fix="codegen's KxK kernel takes square kernels, strides, padding")
        self.add_case(plan.render(), output, ops, plan.family,
                      buffers, ints, reference, macs, sparse, spec)

    def depthwise(self, conv: Conv2d, x: np.ndarray, folded: bool, act: str, output: str,
                  ops: list[str]) -> None:
        plan = self.plan(conv.name)
        if plan is None:
            raise UserError(f"non-square depthwise '{conv.name}'", field="--model",
                            fix="use square kernels, strides and padding")
        own = self.source.layer(conv.name, folded) if self.source else None
        w = own[0].reshape(conv.weight_shape) if own else \
            self.weights(conv.weight_shape, conv.kernel[0] * conv.kernel[1])
        bias = own[1] if own else (self.rng.standard_normal(conv.out_channels) * 0.1).astype(
            np.float32) if (folded or conv.bias) else None
        reference = reference_conv(w, bias, x, conv, act)
        channels, height, width = x.shape
        self.add_case(plan.render(), output, ops, plan.family,
                      dwconv.buffers(plan.params, w, bias, x), (channels, height, width, conv.padding[0]),
                      reference, int(w.size) * reference.shape[1] * reference.shape[2], False, None)

    def batch_norm(self, op: Norm, x: np.ndarray) -> None:
        """A batch norm with no convolution before it: a 1x1 depthwise scale + shift."""
        channels = x.shape[0]
        conv = Conv2d(op.name, channels, channels, 1, groups=channels)
        if self.source:
            scale, bias = self.source.norm(op.name)
            scale = scale.reshape(channels, 1, 1, 1)
        else:
            scale = (1 + 0.1 * self.rng.standard_normal((channels, 1, 1, 1))).astype(np.float32)
            bias = (self.rng.standard_normal(channels) * 0.1).astype(np.float32)
        reference = reference_conv(scale, bias, x, conv, "none")
        params = DwconvParams(self.flavour, 1, 1, "none")
        self.add_case(dwconv.render(params), op.name, [op.name], "dwconv",
                      dwconv.buffers(params, scale, bias, x), (channels, *x.shape[1:], 0),
                      reference, int(x.size), False, None)

    def pool(self, op: Pool2d, x: np.ndarray) -> None:
        channels, height, width = x.shape
        if op.global_pool and op.mode == "avg":
            kind, kernel, stride, pad = "gavg", (height, width), 1, 0
        else:
            kind = op.mode
            kernel, stride, pad = ((height, width), 1, 0) if op.global_pool else \
                (op.kernel, op.stride[0], op.padding[0])
        reference = reference_pool(x, kind, kernel, stride, pad)
        params = PoolParams(kind, self.flavour, threads=kernel_build.default_threads(self.target))
        ints = (channels, height * width) if kind == "gavg" else \
            (channels, height, width, kernel[0], kernel[1], stride, pad)
        self.add_case(pool.render(params), op.name, [op.name], "pool", {"x": x}, ints,
                      reference.reshape(channels, *reference.shape[1:]), 0, False, None)

    def eltwise(self, op: Elementwise, sources: list[np.ndarray]) -> list[str]:
        """Writes the case of an add (with the relu after it fused) or an activation; returns
        the ops it absorbed."""
        function = op.function
        ops = [op.name]
        output = op.name
        if function == "add":
            relu = add_activation(self.model, op.name)
            if relu:
                function, output = "add_relu", relu
                ops.append(relu)
        a = sources[0]
        b = sources[1] if len(sources) > 1 else None
        reference = a.astype(np.float64) + (b if b is not None else 0)
        reference = apply_activation(reference, {"add_relu": "relu", "add": "none"}.get(function, function))
        params = EltwiseParams(function, self.flavour)
        self.add_case(eltwise.render(params), output, ops, "eltwise", {"a": a, "b": b},
                      (int(a.size),), reference, 0, False, None)
        if output != op.name:
            self.tensors[op.name] = self.tensors[output]
        return ops[1:]


# ---------------------------------------------------------------- build and run


def build_model(model: Model, target: CpuTarget, pattern: SparsityPattern | None, out: Path,
                *, seed: int = 0, schedules: dict[str, NmGemmParams] | None = None,
                progress: bool = True, weights=None) -> dict:
    """Writes the sparse and the dense build of ``model`` for ``target`` under ``out``;
    returns the manifest (also written to out/manifest.json, last, atomically).
    ``weights`` (models.weights.ModelWeights): the model's own weights instead of
    random ones; it records the weights each build packed (after masking)."""
    from tqdm import tqdm

    problems = kernel_build.target_problems(target)
    if problems:
        raise UserError("; ".join(problems), field="--target", fix="run `make sysdeps` as root")
    out = Path(out)
    check_output_dir(str(out))    # a file, /proc, no permission: one line before any work
    builds = {}
    for label, build_pattern in (("sparse", pattern), ("dense", None)):
        build = _Build(out / label)
        # a rebuild into the same folder (a resumed --tune) replaces the case lists
        remove_matching(str(build.directory / "data"), "cases-*.txt")
        _Planner(model, target, build_pattern, build, seed, schedules or {}, weights).run()
        executables, hashes = {}, {}
        bar = tqdm(build.kernels.values(), desc=f"building {label} kernels for {target.name}",
                   unit="kernel", disable=not progress)
        for kernel in bar:
            executable = kernel_build.build(kernel, target, build.directory / "bin")
            executables[kernel.name] = str(executable.relative_to(out))
            hashes[kernel.name] = file_sha256(executable)     # `hwsim run` runs only these
            write_atomic(str(out / "kernels" / kernel.filename), kernel.source)
        builds[label] = {"pattern": None if build_pattern is None else build_pattern.spec,
                         "executables": executables, "sha256": hashes,
                         "layers": [dataclasses.asdict(case) for case in build.cases]}
    manifest = {"format": "hwsim-codegen", "version": 1, "model": model.name,
                "target": target.name, "target_source": target.source,
                "sparsity": None if pattern is None else pattern.spec, "seed": seed,
                "builds": builds}
    write_atomic(str(out / MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise UserError("no codegen build here", source=str(path),
                        fix="run `hwsim codegen --target T --model M --out DIR` first")
    # bounded strict JSON, then every field `hwsim run` reads checked (models.inputs)
    return check_build_manifest(read_json(path, what="codegen manifest"), str(path))


@dataclass(frozen=True)
class LayerRun:
    layer: str
    kind: str
    kernel: str
    shape: tuple[int, ...]
    macs: int
    sparse: bool
    pattern: str | None
    times_s: tuple[float, ...]
    max_abs_error: float
    relative_error: float

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s)) if self.times_s else float("nan")


def run_build(directory: Path, manifest: dict, label: str, target: CpuTarget, runner_name: str | None,
              repeats: int, warmup: int, timeout_s: float, progress: bool = True) -> list[LayerRun]:
    """Runs every kernel variant of one build over its cases; returns one record per layer."""
    from tqdm import tqdm

    from targets.runners import get_runner

    directory = Path(directory)
    build = manifest["builds"][label]
    data = directory / label / "data"
    layers = [LayerCase(**{**case, "ops": tuple(case["ops"]), "ints": tuple(case["ints"]),
                           "output_shape": tuple(case["output_shape"])}) for case in build["layers"]]
    by_kernel: dict[str, list[LayerCase]] = {}
    for case in layers:
        by_kernel.setdefault(case.kernel, []).append(case)
    runner = get_runner(runner_name, target)
    records: dict[str, LayerRun] = {}
    for kernel, cases in tqdm(by_kernel.items(), desc=f"running {label}", unit="kernel",
                              disable=not progress):
        executable = safe_member_path(directory, build["executables"][kernel],
                                      source=str(directory / MANIFEST), field="executables")
        check_sha256(executable, build.get("sha256", {}).get(kernel))
        result = runner.run(executable, [f"cases-{kernel}.txt", str(repeats), str(warmup)], data,
                            timeout_s=timeout_s)
        times = list(result.times_s)
        if len(times) != repeats * len(cases):
            raise UserError(f"{kernel} reported {len(times)} times for {len(cases)} cases x "
                            f"{repeats} repeats", source=str(executable), field="HWSIM_TIMES",
                            fix="rebuild with `hwsim codegen`")
        for index, case in enumerate(cases):
            got = np.fromfile(data / f"{case.case}.y.bin", dtype=np.float32)
            expected = np.load(directory / label / "reference" / f"{case.case}.npy").ravel()
            if got.size != expected.size:
                raise UserError(f"layer {case.layer}: {got.size} outputs, expected {expected.size}",
                                source=str(executable), fix="rebuild with `hwsim codegen`")
            error = float(np.abs(got - expected).max()) if got.size else 0.0
            scale = float(np.abs(expected).max()) if expected.size else 1.0
            records[case.case] = LayerRun(case.layer, case.kind, kernel, case.output_shape,
                                          case.macs, case.sparse, case.pattern,
                                          tuple(times[index * repeats:(index + 1) * repeats]),
                                          error, error / max(scale, 1e-6))
    return [records[case.case] for case in layers]
