"""ONNX models into the graph IR (needs the optional `onnx` package): the driver.

The file is read and its constant subgraphs evaluated by ``onnx_fold`` (onnx's own
reference evaluator and shape inference), multi-node idioms (GELU, decomposed layer
norm) become one node in ``onnx_patterns``, and every node left is mapped in order by
its handler in ``onnx_ops.HANDLERS`` through the ``_Context`` below. Ops with no
handler are listed once, by name with their counts, in a single ``UserError``.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from models.errors import UserError
from models.importers import onnx_fold, onnx_ops, onnx_patterns
from models.ir import Conv2d, Dense, GraphBuilder, Input, Model, TensorSpec


def load_onnx(path: str, input_size: int | None = None) -> Model:
    """Returns the IR of the ONNX model at ``path`` (external data beside it)."""
    onnx_fold.import_onnx()
    proto = onnx_fold.read_model(path)
    try:
        return model_from_onnx(proto, input_size=input_size)
    except UserError as error:
        raise error.located(path) from None


def _safe(name: str) -> str:
    return name.replace("/", ".").replace(":", ".").strip(".") or "op"


def _op_label(node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


class _Context:
    """What the op handlers see: constants, static shapes and the IR being built.

    Activations are named by their ONNX tensor names; ``produced`` maps each to the
    IR op that computes it. A zero Pad is held back (``pending_pads``) until the Conv
    that reads it takes it as padding."""

    def __init__(self, folded: onnx_fold.Folded, graph_name: str):
        self.folded = folded
        self.constants = folded.constants
        self.opset = folded.opset
        self.graph_name = graph_name
        self.ops: dict[str, object] = {}                # IR name -> op (insertion order)
        self.sources: dict[str, list[str]] = {}         # IR name -> IR source names
        self.specs: dict[str, TensorSpec] = {}          # IR name -> output spec
        self.weights: dict[str, dict] = {}
        self.produced: dict[str, str] = {}              # ONNX tensor -> IR op name
        self.pending_pads: dict[str, tuple[str, tuple[int, int, int, int]]] = {}
        self.readers: Counter = Counter()               # IR name -> IR consumers
        self.merged_reads: Counter = Counter()          # ONNX tensor -> reads merged away
        self.used_names: set[str] = set()
        self.index = 0

    # -- names
    def unique(self, name: str) -> str:
        base = candidate = _safe(name)
        count = 1
        while candidate in self.used_names:
            count += 1
            candidate = f"{base}_{count}"
        self.used_names.add(candidate)
        return candidate

    def name(self, node) -> str:
        return self.unique(node.name or f"{node.op_type.lower()}_{self.index}")

    # -- reading
    def activation(self, node, position: int, where: str) -> str:
        if position >= len(node.input) or not node.input[position]:
            raise UserError(f"input {position} is missing", field=where,
                            fix="export the node with all its inputs")
        tensor = node.input[position]
        if tensor in self.constants:
            raise UserError(f"input {position} ('{tensor}') is a constant where the IR takes "
                            f"an activation", field=where,
                            fix="the IR maps this op only on tensors computed from the input")
        if tensor not in self.produced and tensor not in self.pending_pads:
            raise UserError(f"reads '{tensor}', which no earlier node produces", field=where,
                            fix="the graph must be topologically sorted (onnx.checker)")
        return tensor

    def shape(self, tensor: str) -> tuple[int, ...]:
        if tensor in self.pending_pads:
            return tuple(self.folded.shapes[tensor])
        return tuple(self.specs[self.produced[tensor]].shape)

    def onnx_shape(self, tensor: str, node) -> tuple[int, ...]:
        shape = self.folded.shapes.get(tensor)
        if shape is None:
            raise UserError(f"onnx shape inference gives no static shape for '{tensor}'",
                            field=f"node {node.name or node.op_type} ({node.op_type})",
                            fix="export with static shapes (only the batch may be symbolic)")
        return tuple(shape)

    def is_used(self, tensor: str) -> bool:
        return self.folded.used.get(tensor, 0) > 0

    # -- writing
    def emit(self, node, op, sources: list[str], weights: dict | None = None,
             output: str | None | object = ...) -> str:
        """Adds ``op`` fed by the ONNX tensors (or earlier emit results) ``sources``;
        returns the tensor name of its output (``output``: default the node's first)."""
        where = f"node {node.name or node.op_type} ({node.op_type})"
        if op.name in self.ops:
            op = dataclasses.replace(op, name=self.unique(op.name))
        else:
            self.used_names.add(op.name)
        ir_sources = []
        for tensor in sources:
            if tensor in self.pending_pads:
                raise UserError("reads a Pad output, which the IR folds only into a Conv",
                                field=where, fix="pad inside the Conv (its pads attribute)")
            ir_sources.append(self.produced[tensor])
        if len(set(ir_sources)) != len(ir_sources):
            raise UserError("reads one tensor twice (" + ", ".join(f"'{t}'" for t in sources)
                            + " carry the same values)", field=where,
                            fix="the IR's binary ops take two different tensors; x+x or x*x "
                                "is not expressible (scale by a constant instead)")
        try:
            spec = op.infer([self.specs[s] for s in ir_sources])
        except UserError as error:
            raise UserError(error.message, field=where, fix=error.fix) from None
        self.ops[op.name] = op
        self.sources[op.name] = ir_sources
        self.specs[op.name] = spec
        self.readers.update(ir_sources)
        if weights:
            self.weights[op.name] = weights
        tensor = node.output[0] if output is ... else output
        if tensor is None:
            tensor = f"{op.name}:out"
        self.produced[tensor] = op.name
        return tensor

    def add_input(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        op = Input(self.unique(name), tuple(shape), dtype)
        self.ops[op.name] = op
        self.sources[op.name] = []
        self.specs[op.name] = op.infer([])
        self.produced[name] = op.name

    def alias(self, node, tensor: str) -> None:
        if tensor in self.pending_pads:
            self.pending_pads[node.output[0]] = self.pending_pads[tensor]
        else:
            self.produced[node.output[0]] = self.produced[tensor]

    def pad(self, node, tensor: str, pads: tuple[int, int, int, int]) -> None:
        """Holds back a zero pad (top, left, bottom, right) for the Conv that reads it."""
        source, extra = self.take_pad(tensor)
        self.pending_pads[node.output[0]] = (source, tuple(a + b for a, b in zip(extra, pads)))

    def take_pad(self, tensor: str) -> tuple[str, tuple[int, int, int, int]]:
        return self.pending_pads.get(tensor, (tensor, (0, 0, 0, 0)))

    def _per_output(self, op, value: np.ndarray) -> np.ndarray | None:
        """Returns ``value`` as one number per output channel of ``op`` when it broadcasts
        over the op's output that way (a bias or a scale), else None."""
        value = np.asarray(value)
        if isinstance(op, Dense):
            width = op.out_features
            ok = value.size in (1, width) and (value.ndim == 0 or value.shape[-1] in (1, width))
        else:
            width = op.out_channels
            ok = value.size in (1, width) and (
                value.ndim == 0 or value.size == 1 or
                (value.ndim >= 3 and value.shape[-3] == width and value.shape[-2:] == (1, 1)))
        return np.broadcast_to(value.reshape(-1), (width,)).astype(np.float64) if ok else None

    def merge_affine(self, tensor: str, value: np.ndarray, node) -> bool:
        """Folds Add(bias) or Mul(scale) by a per-channel constant into the Conv or Dense
        whose output it alone reads (MatMul + Add; tf2onnx's batch norm after a
        depthwise conv as Mul + Add): the layer's own weights then carry it."""
        producer = self.produced.get(tensor)
        op = self.ops.get(producer)
        if not isinstance(op, (Dense, Conv2d)) or producer not in self.weights:
            return False
        readers = sum(self.folded.used.get(name, 0) - self.merged_reads[name]
                      for name, source in self.produced.items() if source == producer)
        per_output = self._per_output(op, value)
        if readers != 1 or self.readers[producer] or per_output is None:
            return False
        entry = self.weights[producer]
        if node.op_type == "Add":
            base = entry.get("bias", np.zeros(per_output.size))
            entry["bias"] = (np.asarray(base, np.float64) + per_output).astype(np.float32)
            if not op.bias:
                self.ops[producer] = onnx_ops.replace_bias(op)
        else:
            weight = np.asarray(entry["weight"], np.float64)
            entry["weight"] = (weight * per_output.reshape((-1,) + (1,) * (weight.ndim - 1))
                               ).astype(np.float32)
            if "bias" in entry:
                entry["bias"] = (np.asarray(entry["bias"], np.float64) * per_output
                                 ).astype(np.float32)
        self.produced[node.output[0]] = producer
        self.merged_reads[tensor] += 1
        return True

    def build(self) -> Model:
        builder = GraphBuilder(_safe(self.graph_name or "onnx_model"))
        for name, op in self.ops.items():
            builder.add_node(op, self.sources[name])
        model = builder.build()
        model.weights = dict(self.weights)
        return model


def _unsupported(nodes) -> UserError | None:
    counts = Counter(_op_label(node) for node in nodes
                     if node.domain not in ("", "ai.onnx") or node.op_type not in onnx_ops.HANDLERS)
    if not counts:
        return None
    listed = ", ".join(f"{op} ({count})" for op, count in sorted(counts.items()))
    return UserError(f"unsupported ONNX ops: {listed}", field="graph.node",
                     fix="replace them in the model before export; the importer maps "
                         + ", ".join(sorted(onnx_ops.HANDLERS)))


def _has_subgraph(node) -> bool:
    """Loop / If / Scan carry graphs: never folded, never modelled, and onnx's shape
    inference can run away on a malformed one, so they are refused before folding."""
    from onnx import AttributeProto
    return node.op_type in ("Loop", "If", "Scan") or any(
        attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for attr in node.attribute)


def model_from_onnx(proto, input_size: int | None = None) -> Model:
    """Returns the IR of an in-memory ``onnx.ModelProto``."""
    error = _unsupported([node for node in proto.graph.node if _has_subgraph(node)])
    if error is not None:
        raise error
    folded = onnx_fold.fold(proto, input_size=input_size)
    nodes, _ = onnx_patterns.fuse(folded.nodes, folded.constants, folded.used)
    error = _unsupported(nodes)
    if error is not None:
        raise error
    if not folded.inputs:
        raise UserError("the graph has no inputs", field="graph.input",
                        fix="export with at least one non-constant input")
    ctx = _Context(folded, proto.graph.name)
    for name, shape, dtype in folded.inputs:
        ctx.add_input(name, shape, dtype)
    for index, node in enumerate(nodes):
        ctx.index = index
        where = f"node {node.name or index} ({node.op_type})"
        attrs = onnx_ops.attributes(node, folded.opset)
        try:
            onnx_ops.HANDLERS[node.op_type](ctx, node, attrs, where)
        except UserError as error:
            raise UserError(error.message, field=error.field or where, fix=error.fix) from None
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as error:
            raise UserError(f"cannot map it ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:160] if str(error) else ''})",
                            field=where, fix="check the model with onnx.checker.check_model; "
                                             "the IR may not express this use of the op") from None
    return ctx.build()
