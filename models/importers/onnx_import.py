"""ONNX models into the graph IR (needs the optional `onnx` package).

Supported: Conv (groups, pads, strides), Gemm, MatMul (with a weight initializer:
a dense layer; between two activations: a batched product), Relu, Clip (relu6),
Sigmoid, Tanh, Softmax, MaxPool, AveragePool, GlobalAveragePool, Add, Mul,
Flatten, Reshape (constant shape), BatchNormalization, LayerNormalization,
Transpose, and Identity/Dropout (passed through). Shapes come from the graph
inputs (a symbolic batch becomes 1) through the IR's own shape inference.
Every unsupported op type is listed in one error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models.errors import UserError
from models.ir import (BatchMatmul, Conv2d, Dense, Elementwise, GraphBuilder, Model, Norm,
                       Pool2d, Reshape, Transpose)

SUPPORTED = {"Conv", "Gemm", "MatMul", "Relu", "Clip", "Sigmoid", "Tanh", "Softmax", "MaxPool",
             "AveragePool", "GlobalAveragePool", "Add", "Mul", "Flatten", "Reshape",
             "BatchNormalization", "LayerNormalization", "Transpose", "Identity", "Dropout"}
UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}


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
    import onnx
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _safe(name: str) -> str:
    return name.replace("/", ".").strip(".") or "op"


def model_from_onnx(proto) -> Model:
    """Returns the IR of an in-memory ``onnx.ModelProto``."""
    from onnx import numpy_helper

    graph = proto.graph
    unsupported = sorted({node.op_type for node in graph.node} - SUPPORTED)
    if unsupported:
        raise UserError(f"unsupported ONNX ops: {', '.join(unsupported)}", field="graph.node",
                        fix=f"supported: {', '.join(sorted(SUPPORTED))}")
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(_attributes(node)["value"])
    builder = GraphBuilder(_safe(graph.name or "onnx_model"))
    produced: dict[str, str] = {}     # onnx tensor name -> IR op name
    for graph_input in graph.input:
        if graph_input.name in constants:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1
                for d in graph_input.type.tensor_type.shape.dim]
        if not dims:
            raise UserError(f"input '{graph_input.name}' has no shape", field="graph.input",
                            fix="export with static input shapes")
        produced[graph_input.name] = builder.input(_safe(graph_input.name), [max(1, d) for d in dims])
    for index, node in enumerate(graph.node):
        name = _safe(node.name or f"{node.op_type.lower()}_{index}")
        attrs = _attributes(node)
        activations = [t for t in node.input if t and t not in constants]
        weights = [constants[t] for t in node.input if t in constants]
        missing = [t for t in activations if t not in produced]
        if missing:
            raise UserError(f"node '{name}' reads undefined tensors {missing}", field="graph.node",
                            fix="the graph must be topologically sorted")
        sources = [produced[t] for t in activations]
        op_type = node.op_type
        if op_type in ("Identity", "Dropout"):
            produced[node.output[0]] = sources[0]
            continue
        if op_type == "Conv":
            weight = weights[0]
            cout, cin_per_group, kernel_h, kernel_w = weight.shape
            groups = int(attrs.get("group", 1))
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise UserError(f"asymmetric padding {pads}", field=f"node {name}",
                                fix="pad symmetrically")
            op = Conv2d(name, cin_per_group * groups, cout, (kernel_h, kernel_w),
                        tuple(attrs.get("strides", [1, 1])), tuple(pads[:2]), groups,
                        bias=len(weights) > 1)
        elif op_type == "Gemm":
            weight = weights[0]
            out_features, in_features = weight.shape if attrs.get("transB", 0) else weight.shape[::-1]
            op = Dense(name, in_features, out_features, bias=len(weights) > 1)
        elif op_type == "MatMul":
            if weights:
                in_features, out_features = weights[0].shape
                op = Dense(name, in_features, out_features, bias=False)
            else:
                op = BatchMatmul(name)
        elif op_type in UNARY:
            op = Elementwise(name, UNARY[op_type])
        elif op_type == "Clip":
            op = Elementwise(name, "relu6" if len(weights) >= 2 and float(weights[1]) == 6.0
                             or attrs.get("max") == 6.0 else "relu")
        elif op_type in ("Add", "Mul"):
            if len(sources) != 2:       # adding a constant (a bias): shape-preserving
                produced[node.output[0]] = sources[0]
                continue
            op = Elementwise(name, op_type.lower())
        elif op_type in ("MaxPool", "AveragePool"):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            op = Pool2d(name, "max" if op_type == "MaxPool" else "avg",
                        tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", [1, 1])),
                        tuple(pads[:2]))
        elif op_type == "GlobalAveragePool":
            op = Pool2d(name, "avg", global_pool=True)
        elif op_type == "Flatten":
            if int(attrs.get("axis", 1)) != 1:
                raise UserError("Flatten with axis != 1", field=f"node {name}",
                                fix="flatten from axis 1")
            op = Reshape(name, (-1,))
        elif op_type == "Reshape":
            target = [int(v) for v in np.asarray(weights[0]).ravel()] if weights else None
            if target is None:
                raise UserError("Reshape needs a constant shape", field=f"node {name}",
                                fix="fold the shape into an initializer")
            if 0 in target[1:]:
                raise UserError("Reshape with 0 (copy a dimension)", field=f"node {name}",
                                fix="export with explicit sizes")
            op = Reshape(name, tuple(target[1:]) if len(target) > 1 else (-1,))
        elif op_type == "BatchNormalization":
            op = Norm(name, "batch", int(weights[0].shape[0]))
        elif op_type == "LayerNormalization":
            op = Norm(name, "layer", int(weights[0].shape[0]) if weights else 0)
        else:  # Transpose
            op = Transpose(name, tuple(attrs["perm"]))
        produced[node.output[0]] = builder.add(op, *sources)
    return builder.build()
