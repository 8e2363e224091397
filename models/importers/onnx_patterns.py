"""Multi-node idioms that exporters write for one layer, rewritten to that layer's ONNX op.

Runs on the folded graph (onnx_fold) before ops are mapped, so the op table sees
one ``Gelu`` or ``LayerNormalization`` node where PyTorch wrote five or nine:

    GELU (erf form):   Div(x, sqrt 2) | Mul(x, 1/sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5)
    LayerNorm (opset < 17):  ReduceMean(x, -1) -> Sub(x, .) -> Pow(., 2) -> ReduceMean(-1)
                             -> Add(eps) -> Sqrt -> Div(Sub, .) [-> Mul(gamma)] [-> Add(beta)]

A rewrite happens only when no intermediate tensor has another reader, so nothing
the rest of the graph uses disappears.
"""
from __future__ import annotations

import math

import numpy as np


class _Graph:
    def __init__(self, nodes, constants, used):
        self.nodes = list(nodes)
        self.constants = constants
        self.used = used
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.readers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)

    def only_reader(self, tensor: str, op_type: str):
        readers = self.readers.get(tensor, [])
        if len(readers) == 1 and self.used.get(tensor, 0) == 1 and readers[0].op_type == op_type:
            return readers[0]
        return None

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        if value is None or np.asarray(value).size != 1:
            return None
        return float(np.asarray(value).reshape(()))

    def other(self, node, tensor: str) -> str | None:
        """Returns the input of a binary node that is not ``tensor``."""
        a, b = node.input[0], node.input[1]
        return b if a == tensor else a if b == tensor else None


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-3 * abs(target)


def _gelu(graph: _Graph, erf):
    """Returns (x, nodes to drop, last node) of an erf GELU around ``erf``, or None."""
    scale_node = graph.producer.get(erf.input[0])
    if scale_node is None or scale_node.op_type not in ("Div", "Mul") or \
            graph.used.get(erf.input[0], 0) != 1:
        return None
    x = scale_node.input[0]
    factor = graph.scalar(scale_node.input[1])
    if scale_node.op_type == "Mul" and factor is None:
        x, factor = scale_node.input[1], graph.scalar(scale_node.input[0])
    if not (_close(factor, math.sqrt(2)) if scale_node.op_type == "Div"
            else _close(factor, 1 / math.sqrt(2))):
        return None
    add = graph.only_reader(erf.output[0], "Add")
    if add is None or not _close(graph.scalar(graph.other(add, erf.output[0]) or ""), 1.0):
        return None
    first = graph.only_reader(add.output[0], "Mul")
    if first is None:
        return None
    operand = graph.other(first, add.output[0])
    drop = [scale_node, erf, add, first]
    if operand == x:                                    # (x * (1 + erf)) * 0.5
        second = graph.only_reader(first.output[0], "Mul")
        if second is None or not _close(graph.scalar(graph.other(second, first.output[0]) or ""),
                                        0.5):
            return None
        return x, drop + [second], second
    if _close(graph.scalar(operand or ""), 0.5):        # ((1 + erf) * 0.5) * x
        second = graph.only_reader(first.output[0], "Mul")
        if second is None or graph.other(second, first.output[0]) != x:
            return None
        return x, drop + [second], second
    half = graph.producer.get(operand or "")            # (x * 0.5) * (1 + erf)
    if half is not None and half.op_type == "Mul" and graph.used.get(operand, 0) == 1 and \
            x in half.input and _close(graph.scalar(graph.other(half, x) or ""), 0.5):
        return x, drop + [half], first
    return None


def _is_last_axis_mean(graph: _Graph, node) -> bool:
    if node is None or node.op_type != "ReduceMean":
        return False
    axes = [a.ints for a in node.attribute if a.name == "axes"]
    if axes:
        axes = list(axes[0])
    elif len(node.input) > 1 and node.input[1] in graph.constants:
        axes = [int(v) for v in np.asarray(graph.constants[node.input[1]]).reshape(-1)]
    return axes == [-1]


def _layer_norm(graph: _Graph, mean):
    """Returns (x, eps, gamma, beta, nodes to drop, last node) of a decomposed layer norm."""
    if not _is_last_axis_mean(graph, mean):
        return None
    x = mean.input[0]
    sub = graph.only_reader(mean.output[0], "Sub")
    if sub is None or sub.input[0] != x or sub.input[1] != mean.output[0]:
        return None
    readers = graph.readers.get(sub.output[0], [])
    pow_node = next((n for n in readers if n.op_type == "Pow"), None)
    div = next((n for n in readers if n.op_type == "Div"), None)
    if len(readers) != 2 or pow_node is None or div is None or \
            not _close(graph.scalar(pow_node.input[1]), 2.0):
        return None
    variance = graph.only_reader(pow_node.output[0], "ReduceMean")
    if not _is_last_axis_mean(graph, variance):
        return None
    add = graph.only_reader(variance.output[0], "Add")
    eps = graph.scalar(graph.other(add, variance.output[0]) or "") if add is not None else None
    if eps is None:
        return None
    sqrt = graph.only_reader(add.output[0], "Sqrt")
    if sqrt is None or list(div.input) != [sub.output[0], sqrt.output[0]]:
        return None
    drop, last, gamma, beta = [mean, sub, pow_node, variance, add, sqrt, div], div, None, None
    mul = graph.only_reader(div.output[0], "Mul")
    if mul is not None and graph.other(mul, div.output[0]) in graph.constants:
        gamma, last = graph.other(mul, div.output[0]), mul
        drop.append(mul)
        bias = graph.only_reader(mul.output[0], "Add")
        if bias is not None and graph.other(bias, mul.output[0]) in graph.constants:
            beta, last = graph.other(bias, mul.output[0]), bias
            drop.append(bias)
    return x, eps, gamma, beta, drop, last


def fuse(nodes, constants: dict[str, np.ndarray], used: dict[str, int]) -> tuple[list, int]:
    """Returns (nodes with the idioms above rewritten, how many rewrites)."""
    from onnx import helper

    graph = _Graph(nodes, constants, used)
    replaced: dict[int, object] = {}        # id(last node) -> new node
    dropped: set[int] = set()
    rewrites = 0
    for node in graph.nodes:
        if id(node) in dropped:
            continue
        found = _gelu(graph, node) if node.op_type == "Erf" else None
        if found:
            x, drop, last = found
            new = helper.make_node("Gelu", [x], [last.output[0]], name=last.name or node.name)
        else:
            found = _layer_norm(graph, node) if node.op_type == "ReduceMean" else None
            if not found:
                continue
            x, eps, gamma, beta, drop, last = found
            if gamma is None:       # no affine scale: the width is unknown here, left as is
                continue
            new = helper.make_node("LayerNormalization", [x, gamma] + ([beta] if beta else []),
                                   [last.output[0]], name=last.name or node.name, axis=-1,
                                   epsilon=eps)
        if any(id(n) in dropped for n in drop):
            continue
        dropped.update(id(n) for n in drop)
        replaced[id(last)] = new
        rewrites += 1
    out = []
    for node in graph.nodes:
        if id(node) in replaced:
            out.append(replaced[id(node)])
        elif id(node) not in dropped:
            out.append(node)
    return out, rewrites
