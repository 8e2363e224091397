"""A minimal IR -> ONNX writer for the zoo CNNs' ops, so every engine runs the same file.

No exporter existed in models/importers when this was written; this one covers conv2d
(incl. depthwise/grouped), dense, batch norm, pool2d (max/avg/global), relu, relu6, add
and flatten. Weights are random (He-normal, seeded); with ``pattern`` every weight
matrix (Cout x Cin*R*S) is masked by the pattern's own magnitude rule, so a sparse
engine can find the zeros. Timing of dense engines does not depend on the values.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.fileio import write_atomic
from models.ir import Conv2d, Dense, Elementwise, Input, Model, Norm, Pool2d, Reshape
from models.patterns import SparsityPattern, apply_mask

OPSET = 17


def model_to_onnx(model: Model, *, pattern: SparsityPattern | None = None, seed: int = 0):
    """Returns an onnx.ModelProto of ``model`` (input "x", output "y")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    names: dict[str, str] = {}
    input_name, input_shape = None, None

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    for op in model.ops():
        sources = [names[name] for name in model.input_names(op.name)]
        out = op.name
        if isinstance(op, Input):
            input_name, input_shape = "x", op.shape
            names[op.name] = "x"
            continue
        if isinstance(op, (Conv2d, Dense)):
            shape = op.weight_shape
            fan_in = math.prod(shape[1:])
            w = (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
            groups = op.groups if isinstance(op, Conv2d) else 1
            if pattern is not None and groups == 1:
                w2d = w.reshape(shape[0], -1)
                w = apply_mask(w2d, pattern.mask(w2d)).reshape(shape).astype(np.float32)
            inputs = [sources[0], constant(f"{op.name}.weight", w)]
            if op.bias:
                inputs.append(constant(f"{op.name}.bias",
                                       (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)))
            if isinstance(op, Conv2d):
                ph, pw = op.padding
                nodes.append(helper.make_node("Conv", inputs, [out], kernel_shape=list(op.kernel),
                                              strides=list(op.stride), pads=[ph, pw, ph, pw],
                                              group=groups))
            else:
                nodes.append(helper.make_node("Gemm", inputs, [out], transB=1))
        elif isinstance(op, Norm) and op.norm == "batch":
            channels = model.output_spec(op.name).shape[1]
            params = [constant(f"{op.name}.scale", (1 + 0.1 * rng.standard_normal(channels)).astype(np.float32)),
                      constant(f"{op.name}.shift", (0.1 * rng.standard_normal(channels)).astype(np.float32)),
                      constant(f"{op.name}.mean", np.zeros(channels, np.float32)),
                      constant(f"{op.name}.var", np.ones(channels, np.float32))]
            nodes.append(helper.make_node("BatchNormalization", [sources[0], *params], [out]))
        elif isinstance(op, Pool2d):
            if op.global_pool:
                kind = "GlobalAveragePool" if op.mode == "avg" else "GlobalMaxPool"
                nodes.append(helper.make_node(kind, sources, [out]))
            else:
                ph, pw = op.padding
                kind = "AveragePool" if op.mode == "avg" else "MaxPool"
                extra = {"count_include_pad": 1} if op.mode == "avg" else {}
                nodes.append(helper.make_node(kind, sources, [out], kernel_shape=list(op.kernel),
                                              strides=list(op.stride), pads=[ph, pw, ph, pw],
                                              **extra))
        elif isinstance(op, Elementwise) and op.function == "relu":
            nodes.append(helper.make_node("Relu", sources, [out]))
        elif isinstance(op, Elementwise) and op.function == "relu6":
            low = constant(f"{op.name}.min", np.array(0, np.float32))
            high = constant(f"{op.name}.max", np.array(6, np.float32))
            nodes.append(helper.make_node("Clip", [sources[0], low, high], [out]))
        elif isinstance(op, Elementwise) and op.function == "add":
            nodes.append(helper.make_node("Add", sources, [out]))
        elif isinstance(op, Reshape):
            nodes.append(helper.make_node("Flatten", sources, [out], axis=1))
        else:
            raise UserError(f"the ONNX writer has no rule for {op.kind} '{op.name}'",
                            field="model", fix="zoo CNNs only (conv, dense, bn, pool, relu, add)")
        names[op.name] = out
    last = list(model.ops())[-1].name
    nodes.append(helper.make_node("Identity", [names[last]], ["y"]))
    output_shape = list(model.output_spec(last).shape)
    graph = helper.make_graph(
        nodes, model.name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hwsim")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def write_onnx(model: Model, path: Path, *, pattern: SparsityPattern | None = None,
               seed: int = 0) -> Path:
    """Writes ``model`` as ONNX to ``path`` atomically; returns the path."""
    proto = model_to_onnx(model, pattern=pattern, seed=seed)
    write_atomic(str(path), proto.SerializeToString())
    return Path(path)
