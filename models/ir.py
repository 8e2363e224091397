"""The graph IR: ops as frozen dataclasses on the nodes of a networkx DiGraph.

Every op has one output tensor; edges carry that tensor's ``TensorSpec`` and the
position (``index``) at which the consumer takes it. Tensors are NCHW for images
and (batch, ..., features) for sequences; the leading axis is always the batch,
and zoo models are built with batch 1 (``lowering.lower`` scales it).

Example::

    b = GraphBuilder("tiny")
    x = b.input("image", (1, 3, 32, 32))
    x = b.add(Conv2d("conv1", 3, 16, (3, 3), padding=(1, 1)), x)
    x = b.add(Elementwise("relu1", "relu"), x)
    model = b.build()          # shapes inferred and checked once, here
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import networkx as nx

from models.errors import UserError
from models.patterns import SparsityPattern

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    shape: Shape
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


# ---------------------------------------------------------------- ops


@dataclass(frozen=True)
class Input:
    """A graph input; ``shape`` includes the batch axis."""
    name: str
    shape: Shape
    dtype: str = "float32"
    kind: str = field(default="input", init=False)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        return TensorSpec(tuple(self.shape), self.dtype)


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution, weights (out_channels, in_channels // groups, R, S).

    ``groups == in_channels == out_channels`` is a depthwise convolution."""
    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    bias: bool = False
    sparsity: SparsityPattern | None = None
    kind: str = field(default="conv2d", init=False)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "padding", _pair(self.padding))
        if min(self.in_channels, self.out_channels, self.groups, *self.kernel, *self.stride) < 1:
            raise UserError("channels, kernel, stride and groups must be >= 1",
                            field=self.name, fix="give positive sizes")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise UserError(f"groups={self.groups} does not divide the channels "
                            f"({self.in_channels} in, {self.out_channels} out)",
                            field=self.name, fix="use a groups value dividing both")

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def is_pointwise(self) -> bool:
        """A 1x1, stride-1, unpadded convolution: a plain GEMM over the CHW pixels."""
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    @property
    def weight_shape(self) -> Shape:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        if len(x.shape) != 4 or x.shape[1] != self.in_channels:
            raise UserError(f"expects input (N, {self.in_channels}, H, W), got {x.shape}",
                            field=self.name, fix="check the channel count of the op before it")
        n, _, h, w = x.shape
        out_h = _conv_out(h, self.kernel[0], self.stride[0], self.padding[0])
        out_w = _conv_out(w, self.kernel[1], self.stride[1], self.padding[1])
        if out_h < 1 or out_w < 1:
            raise UserError(f"kernel {self.kernel} does not fit input {h}x{w}",
                            field=self.name, fix="use a larger input or a smaller kernel")
        return TensorSpec((n, self.out_channels, out_h, out_w), x.dtype)


@dataclass(frozen=True)
class Dense:
    """y = x W^T (+ b) on the last axis; weights (out_features, in_features)."""
    name: str
    in_features: int
    out_features: int
    bias: bool = True
    sparsity: SparsityPattern | None = None
    kind: str = field(default="dense", init=False)

    def __post_init__(self):
        if min(self.in_features, self.out_features) < 1:
            raise UserError("features must be >= 1", field=self.name, fix="give positive sizes")

    @property
    def weight_shape(self) -> Shape:
        return (self.out_features, self.in_features)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        if x.shape[-1] != self.in_features:
            raise UserError(f"expects last axis {self.in_features}, got shape {x.shape}",
                            field=self.name, fix="flatten or reshape the input first")
        return TensorSpec((*x.shape[:-1], self.out_features), x.dtype)


@dataclass(frozen=True)
class BatchMatmul:
    """(..., M, K) x (..., K, N) -> (..., M, N) between two activations (attention)."""
    name: str
    transpose_b: bool = False
    kind: str = field(default="batch_matmul", init=False)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        a, b = _expect_inputs(self, inputs, 2)
        b_shape = (*b.shape[:-2], b.shape[-1], b.shape[-2]) if self.transpose_b else b.shape
        if a.shape[:-2] != b_shape[:-2] or a.shape[-1] != b_shape[-2]:
            raise UserError(f"shapes {a.shape} and {b.shape} do not multiply"
                            f"{' (b transposed)' if self.transpose_b else ''}",
                            field=self.name, fix="check the head split before it")
        return TensorSpec((*a.shape[:-1], b_shape[-1]), a.dtype)


@dataclass(frozen=True)
class Pool2d:
    """Max or average pooling; ``global_pool`` reduces H and W to 1."""
    name: str
    mode: str = "max"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    global_pool: bool = False
    kind: str = field(default="pool2d", init=False)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))
        object.__setattr__(self, "padding", _pair(self.padding))
        if self.mode not in ("max", "avg"):
            raise UserError(f"unknown pooling mode '{self.mode}'", field=self.name,
                            fix="use 'max' or 'avg'")

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        if len(x.shape) != 4:
            raise UserError(f"expects an NCHW input, got {x.shape}", field=self.name,
                            fix="pool only image tensors")
        n, c, h, w = x.shape
        if self.global_pool:
            return TensorSpec((n, c, 1, 1), x.dtype)
        out_h = _conv_out(h, self.kernel[0], self.stride[0], self.padding[0])
        out_w = _conv_out(w, self.kernel[1], self.stride[1], self.padding[1])
        if out_h < 1 or out_w < 1:
            raise UserError(f"pool {self.kernel} does not fit input {h}x{w}", field=self.name,
                            fix="use a larger input")
        return TensorSpec((n, c, out_h, out_w), x.dtype)


ELEMENTWISE_FUNCTIONS = {"relu": 1, "relu6": 1, "gelu": 1, "sigmoid": 1, "tanh": 1,
                         "softmax": 1, "add": 2, "mul": 2,
                         "hardsigmoid": 1, "hardswish": 1}   # MobileNet-v3's (ONNX import)


@dataclass(frozen=True)
class Elementwise:
    """Pointwise functions (relu, gelu, add, ...); softmax runs over the last axis."""
    name: str
    function: str
    kind: str = field(default="elementwise", init=False)

    def __post_init__(self):
        if self.function not in ELEMENTWISE_FUNCTIONS:
            raise UserError(f"unknown elementwise function '{self.function}'", field=self.name,
                            fix=f"use one of {sorted(ELEMENTWISE_FUNCTIONS)}")

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        specs = _expect_inputs(self, inputs, ELEMENTWISE_FUNCTIONS[self.function])
        if any(spec.shape != specs[0].shape for spec in specs):
            # a squeeze-excite gate (N, C, 1, 1) scales (N, C, H, W): the second operand
            # may broadcast to the first (numpy rules), never the other way round
            second = specs[-1].shape
            first = specs[0].shape
            if len(specs) != 2 or len(second) > len(first) or any(
                    b not in (1, a) for a, b in zip(first[::-1], second[::-1])):
                raise UserError(f"operand shapes differ: {[s.shape for s in specs]}",
                                field=self.name,
                                fix="make both operands the same shape (or the second "
                                    "broadcast to the first)")
        return specs[0]


@dataclass(frozen=True)
class Norm:
    """Batch norm (over axis 1 of NCHW) or layer norm (over the last axis)."""
    name: str
    norm: str = "batch"
    channels: int = 0
    kind: str = field(default="norm", init=False)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        axis_len = x.shape[1] if self.norm == "batch" else x.shape[-1]
        if self.channels and axis_len != self.channels:
            raise UserError(f"{self.norm} norm over {self.channels} channels got {x.shape}",
                            field=self.name, fix="check the channel count")
        return x


@dataclass(frozen=True)
class Reshape:
    """Reshape keeping the batch axis; -1 in ``shape`` is inferred. Flatten is (-1,)."""
    name: str
    shape: Shape = (-1,)
    kind: str = field(default="reshape", init=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        per_sample = math.prod(x.shape[1:])
        known = math.prod(v for v in self.shape if v != -1)
        unknown = [v for v in self.shape if v == -1]
        if len(unknown) > 1 or known == 0 or per_sample % known:
            raise UserError(f"cannot reshape {x.shape} to (N, {self.shape})", field=self.name,
                            fix="give a shape with the same number of elements")
        if not unknown and known != per_sample:
            raise UserError(f"cannot reshape {x.shape} to (N, {self.shape})", field=self.name,
                            fix="give a shape with the same number of elements")
        shape = tuple(per_sample // known if v == -1 else v for v in self.shape)
        return TensorSpec((x.shape[0], *shape), x.dtype)


@dataclass(frozen=True)
class Transpose:
    """Permutes the axes after the batch axis (``perm`` indexes the full shape)."""
    name: str
    perm: Shape
    kind: str = field(default="transpose", init=False)

    def __post_init__(self):
        object.__setattr__(self, "perm", tuple(int(v) for v in self.perm))

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        if sorted(self.perm) != list(range(len(x.shape))) or self.perm[0] != 0:
            raise UserError(f"perm {self.perm} does not fit shape {x.shape}", field=self.name,
                            fix="give a permutation of all axes that keeps axis 0 first")
        return TensorSpec(tuple(x.shape[p] for p in self.perm), x.dtype)


@dataclass(frozen=True)
class Concat:
    """Joins its inputs along ``axis`` (>= 1: the batch is never joined); no MACs."""
    name: str
    axis: int = 1
    kind: str = field(default="concat", init=False)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        if len(inputs) < 1:
            raise UserError("concat takes at least 1 input", field=self.name,
                            fix="connect the tensors to join")
        rank = len(inputs[0].shape)
        axis = self.axis % rank if rank else 0
        if axis == 0 or any(len(s.shape) != rank or s.shape[:axis] != inputs[0].shape[:axis]
                            or s.shape[axis + 1:] != inputs[0].shape[axis + 1:]
                            for s in inputs):
            raise UserError(f"cannot join {[s.shape for s in inputs]} on axis {self.axis}",
                            field=self.name, fix="join tensors that agree off the axis, "
                                                 "never on the batch axis")
        shape = list(inputs[0].shape)
        shape[axis] = sum(s.shape[axis] for s in inputs)
        return TensorSpec(tuple(shape), inputs[0].dtype)


@dataclass(frozen=True)
class Slice:
    """Keeps ``start:stop`` of ``axis`` (>= 1), one output of an ONNX Split; no MACs."""
    name: str
    axis: int
    start: int
    stop: int
    kind: str = field(default="slice", init=False)

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (x,) = _expect_inputs(self, inputs, 1)
        rank = len(x.shape)
        axis = self.axis % rank if rank else 0
        if axis == 0 or not 0 <= self.start < self.stop <= x.shape[axis]:
            raise UserError(f"slice {self.start}:{self.stop} of axis {self.axis} does not fit "
                            f"{x.shape}", field=self.name,
                            fix="slice inside the axis, never the batch axis")
        shape = list(x.shape)
        shape[axis] = self.stop - self.start
        return TensorSpec(tuple(shape), x.dtype)


@dataclass(frozen=True)
class Embedding:
    """Looks token ids (N, seq) up in a (vocab_size, dim) table -> (N, seq, dim).

    ``positions`` and ``token_types`` are the learned position and segment tables
    that BERT / GPT-2 add to the token embedding (0: none). A lookup is a gather,
    not a GEMM: it has parameters but no MACs, and lowers to no workload.

    Example: ``Embedding("embed", 30522, 768, positions=512, token_types=2)`` on
    ids (1, 128) gives (1, 128, 768) and (30522 + 512 + 2) * 768 parameters."""
    name: str
    vocab_size: int
    dim: int
    positions: int = 0
    token_types: int = 0
    kind: str = field(default="embedding", init=False)

    def __post_init__(self):
        if min(self.vocab_size, self.dim) < 1 or min(self.positions, self.token_types) < 0:
            raise UserError("vocab_size and dim must be >= 1, positions and token_types >= 0",
                            field=self.name, fix="give positive table sizes")

    def infer(self, inputs: Sequence[TensorSpec]) -> TensorSpec:
        (ids,) = _expect_inputs(self, inputs, 1)
        if len(ids.shape) != 2:
            raise UserError(f"expects token ids (N, seq), got {ids.shape}", field=self.name,
                            fix="feed a 2-D tensor of token ids")
        if self.positions and ids.shape[1] > self.positions:
            raise UserError(f"sequence {ids.shape[1]} is longer than the {self.positions} "
                            f"learned positions", field=self.name,
                            fix=f"use a sequence of at most {self.positions} tokens")
        return TensorSpec((*ids.shape, self.dim), "float32")


OP_TYPES: dict[str, type] = {cls.__dataclass_fields__["kind"].default: cls for cls in
                             (Input, Conv2d, Dense, BatchMatmul, Pool2d, Elementwise, Norm,
                              Reshape, Transpose, Embedding, Concat, Slice)}
WEIGHT_OPS = (Conv2d, Dense)
Op = (Input | Conv2d | Dense | BatchMatmul | Pool2d | Elementwise | Norm | Reshape | Transpose
      | Embedding | Concat | Slice)


def _expect_inputs(op, inputs: Sequence[TensorSpec], count: int) -> Sequence[TensorSpec]:
    if len(inputs) != count:
        raise UserError(f"{op.kind} takes {count} input(s), got {len(inputs)}", field=op.name,
                        fix="connect the right number of inputs")
    return inputs


def forward_macs(op: Op, inputs: Sequence[TensorSpec], output: TensorSpec) -> int:
    """Returns the dense multiply-accumulates of one forward pass of ``op``."""
    if isinstance(op, Conv2d):
        n, cout, out_h, out_w = output.shape
        return n * out_h * out_w * cout * (op.in_channels // op.groups) * op.kernel[0] * op.kernel[1]
    if isinstance(op, Dense):
        return math.prod(output.shape[:-1]) * op.in_features * op.out_features
    if isinstance(op, BatchMatmul):
        a = inputs[0]
        return output.numel * a.shape[-1]
    return 0


def weight_count(op: Op) -> int:
    """Returns the parameters of ``op``: weights plus bias (norm: scale and shift;
    embedding: its tables)."""
    if isinstance(op, Conv2d):
        return math.prod(op.weight_shape) + (op.out_channels if op.bias else 0)
    if isinstance(op, Dense):
        return op.in_features * op.out_features + (op.out_features if op.bias else 0)
    if isinstance(op, Norm):
        return 2 * op.channels
    if isinstance(op, Embedding):
        return (op.vocab_size + op.positions + op.token_types) * op.dim
    return 0


# ---------------------------------------------------------------- model


class Model:
    """A named DAG of ops; node attribute ``op``, edge attributes ``tensor`` and ``index``.

    ``weights`` holds a model's own tensors where a file brought them (ONNX import):
    op name -> {"weight": ..., "bias": ...} for Conv2d/Dense in the op's weight layout,
    {"scale", "shift", "mean", "var", "epsilon"} for a Norm. Empty for the zoo."""

    def __init__(self, name: str, graph: nx.DiGraph, weights: dict | None = None):
        self.name = name
        self.graph = graph
        self.weights: dict[str, dict[str, Any]] = dict(weights or {})

    # -- traversal
    def ops(self) -> Iterator[Op]:
        """Yields the ops in a topological order (stable: insertion order breaks ties)."""
        order = {node: position for position, node in enumerate(self.graph.nodes)}
        for node in nx.lexicographical_topological_sort(self.graph, key=order.__getitem__):
            yield self.graph.nodes[node]["op"]

    def op(self, name: str) -> Op:
        return self.graph.nodes[name]["op"]

    def input_specs(self, name: str) -> list[TensorSpec]:
        """Returns the specs of the op's inputs in argument order."""
        edges = sorted(self.graph.in_edges(name, data=True), key=lambda e: e[2]["index"])
        return [data["tensor"] for _, _, data in edges]

    def input_names(self, name: str) -> list[str]:
        edges = sorted(self.graph.in_edges(name, data=True), key=lambda e: e[2]["index"])
        return [source for source, _, _ in edges]

    def output_spec(self, name: str) -> TensorSpec:
        return self.graph.nodes[name]["output"]

    def inputs(self) -> list[Input]:
        return [op for op in self.ops() if isinstance(op, Input)]

    def outputs(self) -> list[str]:
        return [node for node in self.graph.nodes if self.graph.out_degree(node) == 0]

    def weight_ops(self) -> list[Conv2d | Dense]:
        return [op for op in self.ops() if isinstance(op, WEIGHT_OPS)]

    # -- figures
    @property
    def batch(self) -> int:
        return self.inputs()[0].shape[0]

    def params(self) -> int:
        return sum(weight_count(op) for op in self.ops())

    def macs(self) -> int:
        """Returns the dense forward MACs at the model's own batch."""
        return sum(forward_macs(op, self.input_specs(op.name), self.output_spec(op.name))
                   for op in self.ops())

    # -- transformations (return new models)
    def with_sparsity(self, pattern: SparsityPattern | None, *, include_depthwise: bool = False,
                      skip: Sequence[str] = ()) -> "Model":
        """Returns a copy whose weight-bearing ops carry ``pattern`` (None clears it).

        Depthwise convolutions stay dense unless ``include_depthwise``: their
        reduction is a single R x S window, too short to group."""
        builder = GraphBuilder(self.name)
        for op in self.ops():
            if isinstance(op, WEIGHT_OPS) and op.name not in skip and (
                    include_depthwise or not (isinstance(op, Conv2d) and op.is_depthwise)):
                op = dataclasses.replace(op, sparsity=pattern)
            builder.add_node(op, self.input_names(op.name))
        model = builder.build()
        model.weights = dict(self.weights)
        return model

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {self.graph.number_of_nodes()} ops)"


class GraphBuilder:
    """Builds a Model op by op; shapes are inferred and checked in ``build``."""

    def __init__(self, name: str):
        self.name = name
        self._ops: dict[str, Op] = {}
        self._inputs: dict[str, list[str]] = {}

    def input(self, name: str, shape: Sequence[int], dtype: str = "float32") -> str:
        return self.add(Input(name, tuple(int(v) for v in shape), dtype))

    def add(self, op: Op, *inputs: str) -> str:
        """Adds ``op`` fed by the named ops; returns the op's name for chaining."""
        return self.add_node(op, list(inputs))

    def add_node(self, op: Op, inputs: Sequence[str]) -> str:
        if op.name in self._ops:
            raise UserError(f"duplicate op name '{op.name}'", field=op.name,
                            fix="give every op a unique name")
        for source in inputs:
            if source not in self._ops:
                raise UserError(f"input '{source}' is not defined before it is used",
                                field=op.name, fix="add ops in topological order")
        self._ops[op.name] = op
        self._inputs[op.name] = list(inputs)
        return op.name

    def build(self) -> Model:
        if not any(isinstance(op, Input) for op in self._ops.values()):
            raise UserError("the model has no input", field=self.name, fix="add an input op")
        graph = nx.DiGraph()
        for name, op in self._ops.items():
            specs = [graph.nodes[source]["output"] for source in self._inputs[name]]
            output = op.infer(specs)
            graph.add_node(name, op=op, output=output)
            for index, source in enumerate(self._inputs[name]):
                if graph.has_edge(source, name):
                    raise UserError(f"'{source}' feeds '{name}' twice", field=name,
                                    fix="multiply or add an op with itself through a copy")
                graph.add_edge(source, name, tensor=graph.nodes[source]["output"], index=index)
        return Model(self.name, graph)


# ---------------------------------------------------------------- JSON

IR_FORMAT_VERSION = 1


def op_to_dict(op: Op) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for item in dataclasses.fields(op):
        value = getattr(op, item.name)
        if item.name == "sparsity":
            value = None if value is None else value.spec
        elif isinstance(value, tuple):
            value = list(value)
        record[item.name] = value
    return record


def op_from_dict(record: dict[str, Any], source: str | None = None) -> Op:
    from models.patterns import parse_pattern

    kind = record.get("kind")
    if not isinstance(kind, str) or kind not in OP_TYPES:
        from models.errors import suggest
        raise UserError(f"unknown op kind {_label(repr(kind))}", source=source,
                        field=f"nodes.{_label(record.get('name', '?'))}.kind",
                        fix=suggest(str(kind)[:60], OP_TYPES))
    cls = OP_TYPES[kind]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(record) - accepted - {"kind"}
    if unknown:
        raise UserError(f"unknown fields {_label(sorted(unknown))} for {kind}", source=source,
                        field=f"nodes.{_label(record.get('name', '?'))}",
                        fix=f"{kind} takes {sorted(accepted)}")
    values = {key: value for key, value in record.items() if key != "kind"}
    where = f"nodes.{_label(record.get('name', '?'))}"
    for key, value in values.items():
        values[key] = _checked_field(cls, key, value, source, f"{where}.{key}")
    if values.get("sparsity") is not None:
        values["sparsity"] = parse_pattern(values["sparsity"], field=f"{where}.sparsity")
    try:
        return cls(**values)
    except (TypeError, ValueError, OverflowError) as error:
        raise UserError(str(error), source=source, field=where,
                        fix=f"{kind} takes {sorted(accepted)}") from None
    except UserError as error:
        raise error.located(source) if source else error


def _label(value: Any) -> str:
    from models.errors import printable
    return printable(str(value), 60)


# The type and sane range of every op field an IR file may give (models.inputs.LIMITS names
# the ranges): checked before an op is built, so a string, a nested list, a boolean where a
# count belongs or a 2^62 dimension is one line naming the node and field.
_FIELD_RULES: dict[str, tuple] = {
    "in_channels": ("int", "channels", 1), "out_channels": ("int", "channels", 1),
    "in_features": ("int", "channels", 1), "out_features": ("int", "channels", 1),
    "groups": ("int", "channels", 1), "channels": ("int", "channels", 0),
    "vocab_size": ("int", "dim", 1), "dim": ("int", "channels", 1),
    "positions": ("int", "dim", 0), "token_types": ("int", "dim", 0),
    "start": ("int", "dim", 0), "stop": ("int", "dim", 1), "axis": ("axis",),
    "kernel": ("pair", "kernel", 1), "stride": ("pair", "kernel", 1),
    "padding": ("pair", "kernel", 0),
    "bias": ("bool",), "global_pool": ("bool",), "transpose_b": ("bool",),
    "name": ("str",), "mode": ("str",), "function": ("str",), "norm": ("str",),
    "dtype": ("str",), "sparsity": ("pattern",), "perm": ("perm",),
}
MAX_RANK = 8


def _checked_field(cls: type, key: str, value: Any, source: str | None, field: str) -> Any:
    """Returns ``value`` in the form the op's constructor takes, or raises a UserError."""
    from models.inputs import MAX_INT, Reader, limit

    reader = Reader(source)
    rule = _FIELD_RULES.get(key)
    if key == "shape":
        rule = ("shape",) if cls is Input else ("reshape",)
    if rule is None:            # a field added later without a rule: the constructor checks it
        return tuple(value) if isinstance(value, list) else value
    kind = rule[0]
    if kind == "int":
        _, range_name, minimum = rule
        if minimum == 0 and value == 0 and not isinstance(value, bool):
            return 0
        return reader.integer(value, field, range_name)
    if kind == "axis":
        if isinstance(value, bool) or not isinstance(value, int) or not -MAX_RANK <= value < MAX_RANK:
            raise reader.fail(field, f"axis {_label(value)} is not a whole number in "
                                     f"-{MAX_RANK}..{MAX_RANK - 1}", "e.g. 1")
        return value
    if kind == "pair":
        _, range_name, minimum = rule
        items = value if isinstance(value, list) else [value, value]
        if len(items) != 2:
            raise reader.fail(field, f"expected a number or a pair [h, w], got {_label(value)}",
                              "e.g. [3, 3]")
        if minimum == 0:
            return tuple(0 if item == 0 and not isinstance(item, bool) else
                         reader.integer(item, field, range_name) for item in items)
        return tuple(reader.integer(item, field, range_name) for item in items)
    if kind == "bool":
        return reader.boolean(value, field)
    if kind == "str":
        text = reader.string(value, field)
        if len(text) > 256:
            raise reader.fail(field, f"a {len(text)}-character name is too long", "shorten it")
        return text
    if kind == "pattern":
        return None if value is None else reader.string(value, field, "2:8")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_RANK or any(
            isinstance(item, bool) or not isinstance(item, int) for item in value):
        raise reader.fail(field, f"expected a list of 1 to {MAX_RANK} whole numbers, got "
                                 f"{_label(value)}", "e.g. [1, 3, 224, 224]")
    if kind == "shape":
        dims = tuple(reader.integer(item, field, "dim") for item in value)
        elements = math.prod(dims)
        if elements > limit("tensor_elements").high:
            raise reader.fail(field, f"{elements:.3g} elements is more than one tensor may hold "
                                     f"({limit('tensor_elements').describe()})",
                              "give a smaller input shape")
        return dims
    if kind == "reshape":
        if any(item == 0 or item < -1 or item > limit("dim").high for item in value):
            raise reader.fail(field, f"reshape sizes must be -1 or in 1..{limit('dim').high}, got "
                                     f"{_label(value)}", "e.g. [-1]")
        return tuple(value)
    if any(not 0 <= item < MAX_RANK for item in value) or abs(max(value)) > MAX_INT:
        raise reader.fail(field, f"perm {_label(value)} holds an axis outside 0..{MAX_RANK - 1}",
                          "e.g. [0, 2, 1]")
    return tuple(value)


def model_to_dict(model: Model) -> dict[str, Any]:
    return {"format": "sparse-ir", "version": IR_FORMAT_VERSION, "name": model.name,
            "nodes": [{**op_to_dict(op), "inputs": model.input_names(op.name)}
                      for op in model.ops()]}


def model_from_dict(document: Any, source: str | None = None) -> Model:
    if not isinstance(document, dict) or document.get("format") != "sparse-ir":
        raise UserError("not a sparse-ir model document", source=source, field="format",
                        fix="save models with `models.ir.save_model` (format: sparse-ir)")
    if document.get("version") != IR_FORMAT_VERSION:
        raise UserError(f"IR version {document.get('version')} is not supported", source=source,
                        field="version", fix=f"use version {IR_FORMAT_VERSION}")
    nodes = document.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise UserError("no nodes", source=source, field="nodes", fix="list the model's ops")
    name = document.get("name", "model")
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise UserError("the model name is not a short string", source=source, field="name",
                        fix='e.g. "name": "resnet18"')
    builder = GraphBuilder(name)
    try:
        for index, record in enumerate(nodes):
            if not isinstance(record, dict) or not isinstance(record.get("name"), str):
                raise UserError("every node needs a name (a string)", field=f"nodes[{index}]",
                                fix="give each node a 'name' and a 'kind'")
            record = dict(record)
            inputs = record.pop("inputs", [])
            if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
                raise UserError("inputs must be a list of node names",
                                field=f"nodes.{_label(record['name'])}.inputs",
                                fix='e.g. "inputs": ["conv1"]')
            builder.add_node(op_from_dict(record, source), inputs)
        model = builder.build()
    except UserError as error:
        raise error.located(source) if source else error
    _check_sizes(model, source)
    return model


def _check_sizes(model: "Model", source: str | None) -> None:
    """Refuses a model whose tensors or layers are beyond the sane ranges (a valid file can
    still describe a 2^40-channel layer): the size it would need is named up front."""
    from models.inputs import limit

    elements, macs = limit("tensor_elements"), limit("gemm_macs")
    for op in model.ops():
        spec = model.output_spec(op.name)
        if spec.numel > elements.high:
            raise UserError(f"its output of {spec.numel:.3g} elements is over "
                            f"{elements.describe()}", source=source, field=f"nodes.{_label(op.name)}",
                            fix="give smaller sizes")
        work = forward_macs(op, model.input_specs(op.name), spec)
        if work > macs.high:
            raise UserError(f"{work:.3g} MACs is over {macs.describe()}", source=source,
                            field=f"nodes.{_label(op.name)}", fix="give smaller sizes")


def save_model(model: Model, path: str) -> None:
    """Writes the model as JSON, atomically."""
    import json

    from models.fileio import write_atomic
    write_atomic(path, json.dumps(model_to_dict(model), indent=1) + "\n")


def load_model(path: str) -> Model:
    """Returns the model of an IR JSON file, read through the bounded strict JSON reader
    (models.inputs) and checked field by field (``op_from_dict``)."""
    from models.inputs import read_json

    document = read_json(path, what="IR model JSON (models.ir.save_model)")
    return model_from_dict(document, source=str(path))
