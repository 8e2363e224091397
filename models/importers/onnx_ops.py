"""The op table: how each ONNX op on activations becomes IR ops (after onnx_fold).

One handler per op type, ``handler(ctx, node, attrs)``; ``attrs`` holds the node's
attributes over the defaults of its operator schema in the model's opset
(``onnx.defs.get_schema``), so a missing optional attribute is the ONNX default,
never a KeyError. A handler either emits IR ops (``ctx.emit``), passes its input
through (``ctx.alias``: Identity, Dropout, a bias add or scale by a constant), or
raises a ``UserError`` saying what the IR cannot express, in one line.

What is folded: MatMul + Add(bias) is one dense layer; Gemm's alpha, beta and
transB go into the weight; a zero Pad before a Conv becomes the Conv's padding.
A batch norm after a conv stays a Norm op (the zoo's form; codegen and hwsim fold
it), with its statistics kept in ``Model.weights``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from models.errors import UserError
from models.ir import (BatchMatmul, Concat, Conv2d, Dense, Elementwise, Norm, Pool2d, Reshape,
                       Slice, Transpose)


# ---------------------------------------------------------------- attributes


def attributes(node, opset: int) -> dict:
    """Returns the node's attributes over its schema's defaults at ``opset``."""
    import onnx
    from onnx import helper

    values = {}
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
        for name, attribute in schema.attributes.items():
            default = attribute.default_value
            if default is not None and default.type:
                values[name] = helper.get_attribute_value(default)
    except Exception:       # SchemaError: an op of another domain; no defaults then
        pass
    for attribute in node.attribute:
        values[attribute.name] = helper.get_attribute_value(attribute)
    return {key: value.decode() if isinstance(value, bytes) else value
            for key, value in values.items()}


def _require(attrs: dict, name: str, where: str):
    if name not in attrs:
        raise UserError(f"lacks the required attribute '{name}'", field=where,
                        fix=f"export the node with its '{name}'")
    return attrs[name]


def _ints(values, count: int, default: int, what: str, where: str) -> tuple[int, ...]:
    """Returns ``count`` ints (the default when absent); one length-mismatch line otherwise."""
    if values is None or (hasattr(values, "__len__") and len(values) == 0):
        return (default,) * count
    values = tuple(int(v) for v in values)
    if len(values) != count:
        raise UserError(f"{what} {list(values)} has {len(values)} values for a "
                        f"{count // (2 if what == 'pads' else 1)}-D window", field=where,
                        fix=f"give {count} {what} values")
    return values


# ---------------------------------------------------------------- windows


def _symmetric_equivalent(size: int, kernel: int, stride: int, begin: int, end: int,
                          ) -> int | None:
    """Returns a symmetric pad giving the output size of pads (begin, end), if one does:
    TF's 'same' on a stride-2 layer pads (0, 1), which gives the size of (1, 1)."""
    out = (size + begin + end - kernel) // stride + 1
    for pad in sorted({(begin + end) // 2, -(-(begin + end) // 2)}):
        if (size + 2 * pad - kernel) // stride + 1 == out:
            return pad
    return None


def _window(ctx, node, attrs: dict, kernel: tuple[int, int], x: str, where: str,
            extra_pads=(0, 0, 0, 0)):
    """Returns (strides, symmetric pads, exact pads (top, left, bottom, right)) of a 2-D
    Conv or pool node, ``extra_pads`` (a Pad node's before it) included.

    The IR pads one size per axis. Asymmetric pads are taken when a symmetric pad gives
    the same output size (shapes and MACs are then exact; the values are shifted by a
    pixel, so the exact pads are kept for whatever computes values)."""
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise UserError(f"expects an NCHW input, got {shape}", field=where,
                        fix="only 2-D convolutions and pools are supported")
    dilations = _ints(attrs.get("dilations"), 2, 1, "dilations", where)
    if dilations != (1, 1):
        raise UserError(f"dilations {list(dilations)}", field=where,
                        fix="the IR has no dilated convolutions; use dilation 1")
    strides = _ints(attrs.get("strides"), 2, 1, "strides", where)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for axis in range(2):
            size = shape[2 + axis]
            total = max((math.ceil(size / strides[axis]) - 1) * strides[axis] + kernel[axis]
                        - size, 0)
            low = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(low)
            end.append(total - low)
        pads = (*begin, *end)
    else:
        pads = (0, 0, 0, 0) if auto_pad == "VALID" else \
            _ints(attrs.get("pads"), 4, 0, "pads", where)
    exact = tuple(int(a + b) for a, b in zip(pads, extra_pads))
    if exact[:2] == exact[2:]:
        return strides, (exact[0], exact[1]), exact
    symmetric = [_symmetric_equivalent(shape[2 + axis], kernel[axis], strides[axis],
                                       exact[axis], exact[2 + axis]) for axis in range(2)]
    if None in symmetric:
        raise UserError(f"asymmetric padding {list(pads)}", field=where,
                        fix="pad symmetrically (the IR's padding is one size per axis, and "
                            "no symmetric pad gives this output size)")
    return strides, tuple(symmetric), exact


def _const(ctx, node, position: int, ndim: int | None, what: str, where: str) -> np.ndarray:
    if position >= len(node.input) or node.input[position] not in ctx.constants:
        raise UserError(f"{what} is not a constant (it is computed from the input)",
                        field=where, fix="export with the weights as initializers")
    value = np.asarray(ctx.constants[node.input[position]])
    if ndim is not None and value.ndim != ndim:
        raise UserError(f"{what} is {value.ndim}-D {list(value.shape)}, not {ndim}-D",
                        field=where, fix=f"give a {ndim}-D constant")
    return value


def _optional_const(ctx, node, position: int):
    if position < len(node.input) and node.input[position]:
        return np.asarray(ctx.constants[node.input[position]]) \
            if node.input[position] in ctx.constants else False
    return None


# ---------------------------------------------------------------- handlers


def _source(ctx, node, position: int, transposed: bool, scale: float) -> dict:
    """Where a weight came from, so that models.weights can write a masked copy back:
    the node (by its first output, unique in the graph), which input, its value as the
    file holds it, and how the IR weight (out, in, ...) relates to it (IR = scale *
    value, transposed or not, before any per-channel Mul the importer merged in)."""
    return {"node_output": node.output[0], "input": position, "tensor": node.input[position],
            "value": np.asarray(ctx.constants[node.input[position]]),
            "transposed": bool(transposed), "scale": float(scale)}


def conv(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    weight = _const(ctx, node, 1, None, "the Conv weight", where)
    if weight.ndim != 4:
        raise UserError(f"a {weight.ndim - 2}-D convolution (weight {list(weight.shape)})",
                        field=where, fix="the IR has 2-D convolutions only")
    bias = _optional_const(ctx, node, 2)
    if bias is False:
        raise UserError("the Conv bias is not a constant", field=where,
                        fix="export with the bias as an initializer")
    cout, cin_per_group, kernel_h, kernel_w = (int(v) for v in weight.shape)
    kernel = tuple(_ints(attrs.get("kernel_shape"), 2, 0, "kernel_shape", where))
    if kernel != (0, 0) and kernel != (kernel_h, kernel_w):
        raise UserError(f"kernel_shape {list(kernel)} differs from the weight's "
                        f"{[kernel_h, kernel_w]}", field=where, fix="export the model again")
    x, extra = ctx.take_pad(x)
    strides, pads, exact = _window(ctx, node, attrs, (kernel_h, kernel_w), x, where, extra)
    groups = int(attrs.get("group", 1))
    op = Conv2d(ctx.name(node), cin_per_group * groups, cout, (kernel_h, kernel_w), strides, pads,
                groups, bias=bias is not None)
    weights = {"weight": weight.astype(np.float32), "onnx": _source(ctx, node, 1, False, 1.0)}
    # what ONNX Runtime's input to this node needs (a Pad node before it ran already)
    weights["onnx"]["node_pads"] = tuple(a - b for a, b in zip(exact, extra))
    if exact[:2] != exact[2:]:
        weights["onnx"]["asymmetric_pads"] = exact
    if bias is not None:
        weights["bias"] = bias.astype(np.float32).reshape(-1)
    ctx.emit(node, op, [x], weights)


def gemm(ctx, node, attrs, where):
    if node.input[0] in ctx.constants:
        raise UserError("Gemm with a constant A and an activation B", field=where,
                        fix="export as x @ W^T (the input on the left)")
    if attrs.get("transA", 0):
        raise UserError("Gemm with transA=1 on an activation", field=where,
                        fix="export without transposing the input (transA=0)")
    x = ctx.activation(node, 0, where)
    b = _const(ctx, node, 1, 2, "the Gemm B operand", where)
    weight = (b if attrs.get("transB", 0) else b.T) * float(attrs.get("alpha", 1.0))
    out_features, in_features = weight.shape
    c = _optional_const(ctx, node, 2)
    if c is False:
        raise UserError("the Gemm C operand is not a constant", field=where,
                        fix="export with the bias as an initializer")
    weights = {"weight": weight.astype(np.float32),
               "onnx": _source(ctx, node, 1, not attrs.get("transB", 0),
                                 float(attrs.get("alpha", 1.0)))}
    if c is not None:
        if c.size not in (1, out_features):
            raise UserError(f"Gemm bias {list(c.shape)} is not one value per output",
                            field=where, fix=f"give a ({out_features},) bias")
        weights["bias"] = np.broadcast_to(c.reshape(-1) * float(attrs.get("beta", 1.0)),
                                          (out_features,)).astype(np.float32)
    if len(ctx.shape(x)) != 2:
        raise UserError(f"Gemm on a {len(ctx.shape(x))}-D input", field=where,
                        fix="Gemm takes (N, K); flatten first")
    ctx.emit(node, Dense(ctx.name(node), int(in_features), int(out_features),
                         bias=c is not None), [x], weights)


def matmul(ctx, node, attrs, where):
    a_const, b_const = (node.input[i] in ctx.constants for i in (0, 1))
    if a_const:
        raise UserError("MatMul with a constant left operand", field=where,
                        fix="export as x @ W (weights on the right)")
    x = ctx.activation(node, 0, where)
    if len(ctx.shape(x)) < 2:
        raise UserError(f"MatMul of a 1-D operand {ctx.shape(x)}", field=where,
                        fix="the IR keeps a batch axis: give the input shape (N, K)")
    if b_const:
        weight = np.asarray(ctx.constants[node.input[1]])
        if weight.ndim != 2:
            raise UserError(f"MatMul with a {weight.ndim}-D weight {list(weight.shape)}",
                            field=where, fix="the IR's dense layer takes a (K, N) weight")
        in_features, out_features = weight.shape
        ctx.emit(node, Dense(ctx.name(node), int(in_features), int(out_features), bias=False),
                 [x], {"weight": weight.T.astype(np.float32), "onnx": _source(ctx, node, 1, True, 1.0)})
        return
    y = ctx.activation(node, 1, where)
    if len(ctx.shape(y)) < 2:
        raise UserError(f"MatMul of a 1-D operand {ctx.shape(y)}", field=where,
                        fix="give both operands at least two axes")
    ctx.emit(node, BatchMatmul(ctx.name(node)), [x, y])


def binary(ctx, node, attrs, where):
    """Add/Mul/Sub/Div: between two activations an elementwise op; with a constant a
    bias or scale that keeps the shape (passed through), or a dense layer's bias."""
    names = [name for name in node.input]
    constant = [name for name in names if name in ctx.constants]
    if len(constant) == 2:
        raise AssertionError("folded")              # onnx_fold evaluates these
    if constant:
        x = names[1] if names[0] in ctx.constants else names[0]
        value = np.asarray(ctx.constants[constant[0]])
        x_shape = ctx.shape(x)
        if np.broadcast_shapes(x_shape, value.shape) != tuple(x_shape):
            raise UserError(f"{node.op_type} of {list(x_shape)} with a constant of "
                            f"{list(value.shape)} changes the shape", field=where,
                            fix="the IR keeps a constant operand only as a bias or scale")
        if node.op_type in ("Add", "Mul") and ctx.merge_affine(x, value, node):
            return
        if node.op_type in ("Sub", "Div") and names[0] != x:
            raise UserError(f"{node.op_type} of a constant by an activation", field=where,
                            fix="the IR has no reciprocal or negation op")
        ctx.alias(node, x)
        return
    if node.op_type not in ("Add", "Mul"):
        raise UserError(f"{node.op_type} of two activations", field=where,
                        fix="the IR's elementwise ops between tensors are add and mul")
    a, b = ctx.activation(node, 0, where), ctx.activation(node, 1, where)
    if math.prod(ctx.shape(b)) > math.prod(ctx.shape(a)):
        a, b = b, a         # the IR broadcasts the second operand (a squeeze-excite gate)
    if a == b:
        raise UserError(f"{node.op_type} of a tensor with itself", field=where,
                        fix="the IR takes two different operands (use x * x via a copy)")
    ctx.emit(node, Elementwise(ctx.name(node), node.op_type.lower()), [a, b])


def sum_op(ctx, node, attrs, where):
    """Sum (opset < 7 exports' residual add) of activations: a chain of adds."""
    if any(name in ctx.constants for name in node.input if name):
        raise UserError("Sum with a constant operand", field=where,
                        fix="the IR adds only activations; fold the constant into a bias")
    sources = [ctx.activation(node, i, where) for i, name in enumerate(node.input) if name]
    if len(sources) == 1:
        ctx.alias(node, sources[0])
        return
    base, total = ctx.name(node), sources[0]
    for index, source in enumerate(sources[1:], start=1):
        last = index == len(sources) - 1
        total = ctx.emit(node, Elementwise(base if last else f"{base}.{index}", "add"),
                         [total, source], output=node.output[0] if last else None)


UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu",
         "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish"}


def unary(ctx, node, attrs, where):
    if node.op_type == "HardSigmoid" and not (
            math.isclose(attrs.get("alpha", 0.2), 1 / 6, rel_tol=1e-3) or
            math.isclose(attrs.get("alpha", 0.2), 0.2, rel_tol=1e-3)):
        raise UserError(f"HardSigmoid with alpha {attrs.get('alpha')}", field=where,
                        fix="the IR's hardsigmoid is relu6(x + 3) / 6 (alpha 1/6) or alpha 0.2")
    ctx.emit(node, Elementwise(ctx.name(node), UNARY[node.op_type]),
             [ctx.activation(node, 0, where)])


def softmax(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    rank = len(ctx.shape(x))
    shape = ctx.shape(x)
    axis = int(attrs.get("axis", 1 if ctx.opset < 13 else -1)) % rank
    if axis == rank - 1:
        ctx.emit(node, Elementwise(ctx.name(node), "softmax"), [x])
        return
    if ctx.opset >= 13 or axis == 0:
        raise UserError(f"Softmax over axis {axis} of a {rank}-D tensor", field=where,
                        fix="the IR's softmax runs over the last axis; transpose first")
    # opset < 13: one softmax over all axes from ``axis`` on (the input seen as 2-D):
    # exactly a softmax over the last axis of (N, prod(shape[1:axis]), prod(shape[axis:]))
    name = ctx.name(node)
    rows = (math.prod(shape[1:axis]),) if axis > 1 else ()
    flat = ctx.emit(node, Reshape(f"{name}.flat", (*rows, math.prod(shape[axis:]))), [x],
                    output=None)
    probs = ctx.emit(node, Elementwise(name, "softmax"), [flat], output=None)
    ctx.emit(node, Reshape(f"{name}.unflat", tuple(shape[1:])), [probs])


def clip(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    bounds = []
    for position, name in ((1, "min"), (2, "max")):
        value = _optional_const(ctx, node, position)
        if value is False:
            raise UserError(f"Clip's {name} is computed, not a constant", field=where,
                            fix="export Clip with constant bounds")
        if value is None:
            value = attrs.get(name) if ctx.opset < 11 else None
        if value is not None and np.asarray(value).size != 1:
            raise UserError(f"Clip with a vector {name} bound {list(np.shape(value))}",
                            field=where, fix="the IR clips only to scalar bounds (relu, relu6)")
        bounds.append(None if value is None else float(np.asarray(value).reshape(())))
    low, high = bounds
    if high is not None and high >= 3.4e38:
        high = None
    if low == 0.0 and high == 6.0:
        function = "relu6"
    elif low == 0.0 and high is None:
        function = "relu"
    elif low is None and high is None:
        ctx.alias(node, x)
        return
    else:
        raise UserError(f"Clip to [{low}, {high}]", field=where,
                        fix="the IR clips only to relu (0, none) and relu6 (0, 6)")
    ctx.emit(node, Elementwise(ctx.name(node), function), [x])


def pool(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    kernel = _ints(_require(attrs, "kernel_shape", where), 2, 1, "kernel_shape", where)
    strides, pads, exact = _window(ctx, node, attrs, kernel, x, where)
    shape = ctx.shape(x)
    if attrs.get("ceil_mode", 0) and any(
            (shape[2 + a] + 2 * pads[a] - kernel[a]) % strides[a] for a in range(2)):
        raise UserError("ceil_mode changes the output size", field=where,
                        fix="export with ceil_mode=0 or pad the input")
    mode = "max" if node.op_type == "MaxPool" else "avg"
    ctx.emit(node, Pool2d(ctx.name(node), mode, kernel, strides, pads), [x],
             {"onnx": {"asymmetric_pads": exact}} if exact[:2] != exact[2:] else None)


def global_pool(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    if len(ctx.shape(x)) != 4:
        raise UserError(f"{node.op_type} of a {len(ctx.shape(x))}-D tensor", field=where,
                        fix="global pooling is over H, W of an NCHW tensor")
    ctx.emit(node, Pool2d(ctx.name(node), "avg" if "Average" in node.op_type else "max",
                          global_pool=True), [x])


def reduce(ctx, node, attrs, where):
    """ReduceMean/ReduceMax over H, W of NCHW: a global pool (keepdims 0: then flattened)."""
    x = ctx.activation(node, 0, where)
    rank = len(ctx.shape(x))
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _const(ctx, node, 1, None, "the axes", where).reshape(-1).tolist()
    axes = sorted(int(a) % rank for a in axes) if axes else list(range(rank))
    if rank != 4 or axes != [2, 3]:
        raise UserError(f"{node.op_type} over axes {axes} of a {rank}-D tensor", field=where,
                        fix="the IR reduces only H and W of NCHW (a global pool)")
    name = ctx.name(node)
    mode = "avg" if node.op_type == "ReduceMean" else "max"
    if attrs.get("keepdims", 1):
        ctx.emit(node, Pool2d(name, mode, global_pool=True), [x])
        return
    pooled = ctx.emit(node, Pool2d(f"{name}.pool", mode, global_pool=True), [x], output=None)
    ctx.emit(node, Reshape(name, (-1,)), [pooled])


def reshape_like(ctx, node, attrs, where):
    """Reshape, Flatten, Squeeze, Unsqueeze: the IR Reshape to the shape onnx infers."""
    x = ctx.activation(node, 0, where)
    out = ctx.onnx_shape(node.output[0], node)
    shape = ctx.shape(x)
    if not out or out[0] != shape[0]:
        raise UserError(f"{node.op_type} {list(shape)} -> {list(out) if out else out} moves "
                        f"the batch axis", field=where,
                        fix="keep the batch as the leading axis")
    if tuple(out) == tuple(shape):
        ctx.alias(node, x)
        return
    ctx.emit(node, Reshape(ctx.name(node), tuple(out[1:]) or (1,)), [x])


def transpose(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    perm = attrs.get("perm") or list(range(len(ctx.shape(x))))[::-1]
    ctx.emit(node, Transpose(ctx.name(node), tuple(int(v) for v in perm)), [x])


def batch_norm(ctx, node, attrs, where):
    if attrs.get("training_mode", 0):
        raise UserError("BatchNormalization in training mode", field=where,
                        fix="export the model in eval mode (model.eval())")
    x = ctx.activation(node, 0, where)
    scale, shift, mean, var = (_const(ctx, node, i, 1, what, where) for i, what in
                               enumerate(("the scale", "the shift", "the mean", "the variance"),
                                         start=1))
    ctx.emit(node, Norm(ctx.name(node), "batch", int(scale.shape[0])), [x],
             {"scale": scale, "shift": shift, "mean": mean, "var": var,
              "epsilon": float(attrs.get("epsilon", 1e-5))})


def layer_norm(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    rank = len(ctx.shape(x))
    if int(attrs.get("axis", -1)) % rank != rank - 1:
        raise UserError(f"LayerNormalization from axis {attrs.get('axis')} of a {rank}-D tensor",
                        field=where, fix="the IR normalizes over the last axis only")
    scale = _const(ctx, node, 1, 1, "the scale", where)
    weights = {"scale": scale, "epsilon": float(attrs.get("epsilon", 1e-5))}
    shift = _optional_const(ctx, node, 2)
    if shift is not None and shift is not False:
        weights["shift"] = shift
    ctx.emit(node, Norm(ctx.name(node), "layer", int(scale.shape[0])), [x], weights)


def concat(ctx, node, attrs, where):
    if any(name in ctx.constants for name in node.input if name):
        raise UserError("Concat with a constant input (a class token or a fixed tensor)",
                        field=where, fix="the IR joins only activations; drop the constant")
    sources = [ctx.activation(node, i, where) for i, name in enumerate(node.input) if name]
    ctx.emit(node, Concat(ctx.name(node), int(_require(attrs, "axis", where))), sources)


def split(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    shape = ctx.shape(x)
    axis = int(attrs.get("axis", 0)) % len(shape)
    sizes = attrs.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = _const(ctx, node, 1, 1, "the split sizes", where).tolist()
    outputs = [name for name in node.output]
    if not sizes:
        parts = int(attrs.get("num_outputs", len(outputs)))
        chunk = -(-shape[axis] // parts)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(parts)]
    if sum(sizes) != shape[axis] or len(sizes) != len(outputs):
        raise UserError(f"split sizes {list(sizes)} do not cover axis {axis} ({shape[axis]})",
                        field=where, fix="give sizes adding up to the axis")
    start = 0
    base = ctx.name(node)
    for index, (size, output) in enumerate(zip(sizes, outputs)):
        if output and ctx.is_used(output):
            ctx.emit(node, Slice(f"{base}.{index}", axis, start, start + int(size)), [x],
                     output=output)
        start += int(size)


def slice_op(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    shape = ctx.shape(x)
    if ctx.opset < 10:
        starts, ends, axes = attrs.get("starts"), attrs.get("ends"), attrs.get("axes")
        steps = None
    else:
        starts, ends = (_const(ctx, node, i, 1, what, where).tolist()
                        for i, what in ((1, "starts"), (2, "ends")))
        axes = _optional_const(ctx, node, 3)
        steps = _optional_const(ctx, node, 4)
        axes = None if axes is None else axes.tolist()
        steps = None if steps is None else steps.tolist()
    axes = list(range(len(starts))) if axes is None else axes
    if len(axes) != 1 or (steps and steps != [1]):
        raise UserError(f"Slice over axes {axes} with steps {steps}", field=where,
                        fix="the IR slices one axis with step 1")
    axis = int(axes[0]) % len(shape)
    start, stop, _ = slice(int(starts[0]), int(ends[0])).indices(shape[axis])
    if start == 0 and stop == shape[axis]:
        ctx.alias(node, x)
        return
    ctx.emit(node, Slice(ctx.name(node), axis, start, stop), [x])


def pad(ctx, node, attrs, where):
    x = ctx.activation(node, 0, where)
    rank = len(ctx.shape(x))
    pads = attrs.get("pads") if ctx.opset < 11 else \
        _const(ctx, node, 1, 1, "the pads", where).tolist()
    value = attrs.get("value", 0.0) if ctx.opset < 11 else _optional_const(ctx, node, 2)
    value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0]) \
        if np.asarray(value).size else 0.0
    if len(node.input) > 3 and node.input[3]:
        axes = [int(a) % rank for a in _const(ctx, node, 3, 1, "the axes", where).tolist()]
        full = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
        pads = full
    pads = [int(p) for p in pads]
    if attrs.get("mode", "constant") != "constant" or value != 0.0 or rank != 4 or \
            pads[:2] != [0, 0] or pads[4:6] != [0, 0] or min(pads) < 0:
        raise UserError(f"Pad {pads} (mode {attrs.get('mode', 'constant')}, value {value})",
                        field=where, fix="the IR pads only zeros on H, W inside the "
                                         "convolution that follows")
    ctx.pad(node, x, (pads[2], pads[3], pads[6], pads[7]))


def passthrough(ctx, node, attrs, where):
    if node.op_type == "Cast" and int(attrs.get("to", 1)) not in (1, 10, 11, 16):
        raise UserError("Cast of an activation to a non-float type", field=where,
                        fix="the IR's activations are floating point")
    ctx.alias(node, ctx.activation(node, 0, where))


HANDLERS: dict[str, Callable] = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul,
    "Add": binary, "Mul": binary, "Sub": binary, "Div": binary, "Sum": sum_op,
    **{op: unary for op in UNARY}, "Softmax": softmax, "Clip": clip,
    "MaxPool": pool, "AveragePool": pool,
    "GlobalAveragePool": global_pool, "GlobalMaxPool": global_pool,
    "ReduceMean": reduce, "ReduceMax": reduce,
    "Reshape": reshape_like, "Flatten": reshape_like, "Squeeze": reshape_like,
    "Unsqueeze": reshape_like, "Transpose": transpose,
    "BatchNormalization": batch_norm, "LayerNormalization": layer_norm,
    "Concat": concat, "Split": split, "Slice": slice_op, "Pad": pad,
    "Identity": passthrough, "Dropout": passthrough, "Cast": passthrough,
}
SUPPORTED = frozenset(HANDLERS) | {"Constant", "Erf"}   # Erf: inside a GELU only


def replace_bias(op):
    return dataclasses.replace(op, bias=True)
