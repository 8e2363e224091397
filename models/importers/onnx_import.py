"""ONNX models into the graph IR (needs the optional `onnx` package).

Supported: Conv (groups/depthwise, pads, auto_pad, strides), Gemm (transB),
MatMul (a constant right operand: a dense layer; two activations: a batched
product), Relu, Clip (relu6; min 0 without max: relu), Sigmoid, Tanh, Softmax,
MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, Add, Mul, Flatten (axis 1), Reshape
(constant shape; 0 copies a dimension), BatchNormalization, LayerNormalization,
Transpose, Identity/Dropout (passed through) and Constant (folded into the
operands). Add/Mul with a constant operand (a bias or a scale) pass through.

Shapes come from the graph inputs through the IR's own shape inference; a
symbolic batch axis becomes 1, any other symbolic axis is an error. Every
unsupported op type is listed in one error, as is anything the IR cannot say
exactly (dilations, asymmetric padding, ceil-mode pooling that changes a size).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.errors import UserError
from models.ir import (BatchMatmul, Conv2d, Dense, Elementwise, GraphBuilder, Input, Model, Norm,
                       Pool2d, Reshape, TensorSpec, Transpose)

PASS_THROUGH = {"Identity", "Dropout"}
UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
SUPPORTED = {"Conv", "Gemm", "MatMul", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool",
             "GlobalMaxPool",
             "Add", "Mul", "Flatten", "Reshape", "BatchNormalization", "LayerNormalization",
             "Transpose", "Constant", *PASS_THROUGH, *UNARY}


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("reading ONNX needs the onnx package", field="--model",
                        fix="pip install 'sparse-codesign[onnx]'") from None
    return onnx


def load_onnx(path: str) -> Model:
    """Returns the IR of the ONNX model at ``path``."""
    onnx = _import_onnx()
    try:
        proto = onnx.load(path)
    except Exception as error:      # onnx raises DecodeError, OSError, ... for bad files
        raise UserError(f"not a readable ONNX model ({type(error).__name__})", source=path,
                        fix="export the model again with onnx.save") from None
    try:
        return model_from_onnx(proto)
    except UserError as error:
        raise error.located(path) from None


def _attributes(node) -> dict[str, Any]:
    from onnx import helper
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _safe(name: str) -> str:
    return name.replace("/", ".").strip(".") or "op"


class _Importer:
    """Walks the ONNX graph once, keeping each tensor's IR producer and shape."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.builder = GraphBuilder(_safe(graph.name or "onnx_model"))
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.produced: dict[str, str] = {}          # onnx tensor -> IR op name
        self.shapes: dict[str, TensorSpec] = {}     # IR op name -> output spec
        self.used_names: set[str] = set()

    def unique(self, name: str) -> str:
        """Returns an IR-safe op name not used yet (ONNX node names may repeat or be empty)."""
        base = candidate = _safe(name)
        count = 1
        while candidate in self.used_names:
            count += 1
            candidate = f"{base}_{count}"
        self.used_names.add(candidate)
        return candidate

    def add(self, op, sources: list[str]) -> str:
        self.shapes[op.name] = op.infer([self.shapes[s] for s in sources])
        return self.builder.add(op, *sources)

    def add_input(self, graph_input) -> None:
        from onnx import helper

        tensor_type = graph_input.type.tensor_type
        if not tensor_type.HasField("shape") or not tensor_type.shape.dim:
            raise UserError(f"input '{graph_input.name}' has no shape", field="graph.input",
                            fix="export with static input shapes")
        dims = []
        for axis, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            elif axis == 0:
                dims.append(1)      # a symbolic batch: the zoo's batch 1
            else:
                raise UserError(f"input '{graph_input.name}' has a symbolic size "
                                f"'{dim.dim_param}' at axis {axis}", field="graph.input",
                                fix="export with static sizes (only the batch may be symbolic)")
        dtype = str(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)) \
            if tensor_type.elem_type else "float32"
        name = self.unique(graph_input.name)
        self.produced[graph_input.name] = self.add(Input(name, tuple(dims), dtype), [])


def _constant_value(node) -> np.ndarray:
    from onnx import numpy_helper

    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_int"):
            return np.asarray(attribute.f if attribute.name == "value_float" else attribute.i)
        if attribute.name in ("value_floats", "value_ints"):
            return np.asarray(list(attribute.floats if attribute.name == "value_floats"
                                   else attribute.ints))
    raise UserError(f"Constant '{node.name}' holds no tensor value", field="graph.node",
                    fix="use a 'value' tensor attribute")


def _same_pads(size: int, kernel: int, stride: int, where: str) -> int:
    """Returns the symmetric padding of auto_pad SAME (ONNX: total = max((ceil(n/s)-1)*s + k - n, 0))."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    if total % 2:
        raise UserError(f"auto_pad SAME needs asymmetric padding ({total} pixels)", field=where,
                        fix="export with explicit, symmetric pads")
    return total // 2


def _window(attrs: dict, kernel: tuple[int, int], spec: TensorSpec, where: str
            ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Returns (strides, symmetric pads) of a Conv or pool node."""
    if len(spec.shape) != 4:
        raise UserError(f"expects an NCHW input, got {spec.shape}", field=where,
                        fix="only 2-D convolutions and pools are supported")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise UserError(f"dilations {list(attrs['dilations'])}", field=where,
                        fix="the IR has no dilated convolutions; use dilation 1")
    strides = tuple(int(v) for v in attrs.get("strides", [1, 1]))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = tuple(_same_pads(spec.shape[2 + axis], kernel[axis], strides[axis], where)
                     for axis in range(2))
        return strides, pads
    pads = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])] if auto_pad != "VALID" else [0] * 4
    if pads[:2] != pads[2:]:
        raise UserError(f"asymmetric padding {pads}", field=where, fix="pad symmetrically")
    return strides, (pads[0], pads[1])


def _weight(weights: dict[int, np.ndarray], position: int, ndim: int, where: str, what: str
            ) -> np.ndarray:
    if position not in weights or weights[position].ndim != ndim:
        raise UserError(f"{what} must be a constant {ndim}-D initializer", field=where,
                        fix="export with the weights as initializers (do_constant_folding)")
    return weights[position]


def _clip_function(node, attrs: dict, weights: dict[int, np.ndarray], where: str) -> str:
    """Returns 'relu6' for Clip(0, 6) and 'relu' for Clip(0, none) (attributes or inputs)."""
    low = attrs.get("min", float(weights[1]) if 1 in weights else None)
    high = attrs.get("max", float(weights[2]) if 2 in weights else None)
    if low == 0.0 and high == 6.0:
        return "relu6"
    if low == 0.0 and high is None:
        return "relu"
    raise UserError(f"Clip to [{low}, {high}]", field=where,
                    fix="only relu6 (Clip 0..6) and relu (Clip 0..) are supported")


def _convert(imp: _Importer, node, name: str, sources: list[str],
             weights: dict[int, np.ndarray]):
    """Returns the IR op for one supported, non-pass-through ONNX node."""
    attrs = _attributes(node)
    op_type = node.op_type
    where = f"node {name} ({op_type})"
    spec = imp.shapes[sources[0]] if sources else None
    if op_type == "Conv":
        weight = _weight(weights, 1, 4, where, "the Conv weight")
        cout, cin_per_group, kernel_h, kernel_w = (int(v) for v in weight.shape)
        strides, pads = _window(attrs, (kernel_h, kernel_w), spec, where)
        groups = int(attrs.get("group", 1))
        return Conv2d(name, cin_per_group * groups, cout, (kernel_h, kernel_w), strides, pads,
                      groups, bias=2 in weights)
    if op_type == "Gemm":
        if attrs.get("transA", 0):
            raise UserError("Gemm with transA", field=where, fix="export without transA")
        weight = _weight(weights, 1, 2, where, "the Gemm B operand")
        out_features, in_features = weight.shape if attrs.get("transB", 0) else weight.shape[::-1]
        return Dense(name, int(in_features), int(out_features), bias=2 in weights)
    if op_type == "MatMul":
        if 0 in weights:
            raise UserError("MatMul with a constant left operand", field=where,
                            fix="export as x @ W (weights on the right)")
        if 1 in weights:
            in_features, out_features = _weight(weights, 1, 2, where, "the MatMul weight").shape
            return Dense(name, int(in_features), int(out_features), bias=False)
        return BatchMatmul(name)
    if op_type in UNARY:
        return Elementwise(name, UNARY[op_type])
    if op_type == "Clip":
        return Elementwise(name, _clip_function(node, attrs, weights, where))
    if op_type in ("Add", "Mul"):
        return Elementwise(name, op_type.lower())
    if op_type in ("MaxPool", "AveragePool"):
        kernel = tuple(int(v) for v in attrs["kernel_shape"])
        strides, pads = _window(attrs, kernel, spec, where)
        op = Pool2d(name, "max" if op_type == "MaxPool" else "avg", kernel, strides, pads)
        if attrs.get("ceil_mode", 0) and any(
                (spec.shape[2 + a] + 2 * pads[a] - kernel[a]) % strides[a] for a in range(2)):
            raise UserError("ceil_mode changes the output size", field=where,
                            fix="export with ceil_mode=0 or pad the input")
        return op
    if op_type in ("GlobalAveragePool", "GlobalMaxPool"):
        return Pool2d(name, "avg" if op_type == "GlobalAveragePool" else "max", global_pool=True)
    if op_type == "Flatten":
        if int(attrs.get("axis", 1)) != 1:
            raise UserError("Flatten with axis != 1", field=where, fix="flatten from axis 1")
        return Reshape(name, (-1,))
    if op_type == "Reshape":
        target = [int(v) for v in _weight(weights, 1, 1, where, "the Reshape shape")]
        # ONNX 0 copies the input's size on that axis; axis 0 is the batch the IR keeps
        resolved = [spec.shape[axis] if value == 0 and axis < len(spec.shape) else value
                    for axis, value in enumerate(target)]
        if resolved and resolved[0] not in (-1, spec.shape[0]):
            raise UserError(f"Reshape to {target} changes the batch axis", field=where,
                            fix="keep the batch as the leading axis")
        return Reshape(name, tuple(resolved[1:]) or (-1,))
    if op_type == "BatchNormalization":
        return Norm(name, "batch", int(_weight(weights, 1, 1, where, "the BN scale").shape[0]))
    if op_type == "LayerNormalization":
        return Norm(name, "layer", int(weights[1].shape[0]) if 1 in weights else 0)
    if op_type == "Transpose":
        perm = attrs.get("perm") or list(range(len(spec.shape)))[::-1]
        return Transpose(name, tuple(int(v) for v in perm))
    raise AssertionError(op_type)       # SUPPORTED and this function disagree


def model_from_onnx(proto) -> Model:
    """Returns the IR of an in-memory ``onnx.ModelProto``."""
    graph = proto.graph
    unsupported = sorted({node.op_type for node in graph.node} - SUPPORTED)
    if unsupported:
        raise UserError(f"unsupported ONNX ops: {', '.join(unsupported)}", field="graph.node",
                        fix=f"supported: {', '.join(sorted(SUPPORTED))}")
    imp = _Importer(graph)
    for graph_input in graph.input:
        if graph_input.name not in imp.constants:
            imp.add_input(graph_input)
    if not imp.produced:
        raise UserError("the graph has no inputs", field="graph.input",
                        fix="export with at least one non-constant input")
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            imp.constants[node.output[0]] = _constant_value(node)
            continue
        name = node.name or f"{node.op_type.lower()}_{index}"
        weights = {position: imp.constants[t] for position, t in enumerate(node.input)
                   if t in imp.constants}
        activations = [t for t in node.input if t and t not in imp.constants]
        missing = [t for t in activations if t not in imp.produced]
        if missing:
            raise UserError(f"node '{name}' reads undefined tensors {missing}", field="graph.node",
                            fix="the graph must be topologically sorted")
        if not activations:
            raise UserError(f"node '{name}' ({node.op_type}) has only constant inputs",
                            field="graph.node", fix="fold constants before export")
        sources = [imp.produced[t] for t in activations]
        if node.op_type in PASS_THROUGH or (node.op_type in ("Add", "Mul") and len(sources) == 1):
            imp.produced[node.output[0]] = sources[0]   # a bias add or scale keeps the shape
            continue
        try:
            op = _convert(imp, node, imp.unique(name), sources, weights)
            imp.produced[node.output[0]] = imp.add(op, sources)
        except UserError as error:
            raise UserError(error.message, field=error.field or f"node {name}",
                            fix=error.fix) from None
    return imp.builder.build()
