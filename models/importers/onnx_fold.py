"""Reading an ONNX file and evaluating what is constant in it, before any op is mapped.

Exporters leave computation on constants in the graph: the TorchScript exporter's
Identity on a shared initializer, the Shape -> Gather -> Unsqueeze -> Concat ->
Reshape chains that compute a reshape target, a Pad's ConstantOfShape / Slice /
Transpose chain. Those are evaluated here with onnx's own reference evaluator
(`onnx.reference.ReferenceEvaluator`), one node at a time, and the Shape of a
tensor whose shape `onnx.shape_inference` made static counts as constant too. No
op has a hand-written folding rule, so what folds is what onnx computes.

Every problem with the file itself is a ``UserError`` naming the file and the
initializer or node: undecodable bytes, external data that is missing or short,
an opset onnx does not know, a symbolic non-batch axis with no ``input_size``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.errors import UserError

# Ops whose output is random or depends on more than the values: never folded.
NEVER_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                "Multinomial", "Bernoulli", "If", "Loop", "Scan"}
SHAPE_ONLY = {"Shape", "Size"}          # read only the (static) shape of their input
FOLD_LIMIT_ELEMENTS = 1 << 28           # a folded tensor larger than this is a mistake
                                        # (VGG's first FC weight is 102.8M elements)
MAX_ONNX_FILE_BYTES = 4 << 30


def import_onnx():
    """Returns the onnx module, or a UserError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise UserError("reading ONNX needs the onnx package", field="--model",
                        fix="pip install 'sparse-codesign[onnx]'") from None
    return onnx


# ---------------------------------------------------------------- reading


def _check_external_data(proto, path: str) -> None:
    """Raises a UserError naming the first initializer whose external file is missing,
    outside the model's folder or shorter than the bytes it names."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    base = os.path.dirname(os.path.abspath(path))
    for tensor in proto.graph.initializer:
        if not uses_external_data(tensor):
            continue
        with warnings.catch_warnings():     # a damaged key: reported below, in one line
            warnings.simplefilter("ignore")
            info = ExternalDataInfo(tensor)
        location = info.location or ""
        target = os.path.normpath(os.path.join(base, location))
        if not location.strip():
            raise UserError(f"initializer '{tensor.name}' is marked as external data but "
                            f"names no file", source=path, field=f"initializer {tensor.name}",
                            fix="the model file is corrupted: copy or export it again")
        if os.path.isabs(location) or not target.startswith(base + os.sep):
            raise UserError(f"initializer '{tensor.name}' names external data outside the "
                            f"model's folder ('{location}')", source=path,
                            field=f"initializer {tensor.name}",
                            fix="keep the .data file beside the .onnx file (onnx.save with "
                                "save_as_external_data=True)")
        if not os.path.isfile(target):
            raise UserError(f"initializer '{tensor.name}' is stored in '{location}', which is "
                            f"missing", source=path, field=f"initializer {tensor.name}",
                            fix=f"copy '{location}' into {base} beside the model")
        needed = (info.offset or 0) + (info.length or 0)
        if needed > os.path.getsize(target):
            raise UserError(f"initializer '{tensor.name}' needs bytes up to {needed} of "
                            f"'{location}', which holds {os.path.getsize(target)}",
                            source=path, field=f"initializer {tensor.name}",
                            fix="the .data file is truncated: copy or export it again")


def read_model(path: str):
    """Returns the ``onnx.ModelProto`` at ``path`` with its external data loaded."""
    onnx = import_onnx()
    from onnx.external_data_helper import load_external_data_for_model

    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise UserError(f"cannot read: {error.strerror}", source=path,
                        fix="check the path") from None
    if size > MAX_ONNX_FILE_BYTES:
        raise UserError(f"{size / 2**30:.1f} GiB is larger than the 4 GiB this tool reads",
                        source=path, fix="keep weights in external data (the .onnx then "
                                         "holds only the graph)")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:      # DecodeError, RuntimeWarning, ... for bad bytes
        raise UserError(f"not a readable ONNX model ({type(error).__name__}: the bytes do not "
                        f"decode as a ModelProto; truncated or corrupted)", source=path,
                        fix="copy or export the model again (torch.onnx.export / onnx.save)"
                        ) from None
    if not proto.graph.node and not proto.graph.input:
        raise UserError("holds no graph (an empty or non-ONNX file decoded as nothing)",
                        source=path, fix="give an ONNX model file exported with onnx.save")
    _check_external_data(proto, path)
    try:
        load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
    except Exception as error:
        raise UserError(f"external data does not load ({type(error).__name__}: {error})",
                        source=path, fix="export the model again with its .data file") from None
    return proto


def default_opset(proto) -> int:
    """Returns the model's ai.onnx opset, or a UserError when it is missing or unknown."""
    onnx = import_onnx()
    versions = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
    if "ai.onnx" not in versions:
        raise UserError("the model imports no ai.onnx opset", field="opset_import",
                        fix="export with an opset_version (e.g. 17)")
    version = int(versions["ai.onnx"])
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= version <= newest:
        raise UserError(f"opset {version} is not one onnx {onnx.__version__} knows "
                        f"(1..{newest})", field="opset_import",
                        fix=f"export with opset_version between 7 and {newest}")
    return version


# ---------------------------------------------------------------- shapes


def _static_input_shape(value_info, input_size: int | None) -> tuple[int, ...]:
    """Returns the input's shape: a symbolic batch is 1; ``input_size`` fills symbolic
    spatial axes (H, W of NCHW) and the sequence axis of token inputs."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        raise UserError(f"input '{value_info.name}' has no shape", field=f"input {value_info.name}",
                        fix="export with a sample input of the real shape")
    dims = list(tensor_type.shape.dim)
    rank = len(dims)
    shape = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        elif axis == 0:
            shape.append(1)
        elif input_size is not None and (axis >= 2 and rank == 4 or axis == 1 and rank <= 3):
            shape.append(int(input_size))
        else:
            symbol = dim.dim_param or "?"
            raise UserError(f"input '{value_info.name}' has a symbolic size '{symbol}' at "
                            f"axis {axis}", field=f"input {value_info.name}",
                            fix="give --input-size (pixels of H = W, or the sequence length), "
                                "or export with static sizes (only the batch may be symbolic)")
    return tuple(shape)


def _set_shape(value_info, shape: tuple[int, ...]) -> None:
    dims = value_info.type.tensor_type.shape.dim
    for dim, size in zip(dims, shape):
        dim.Clear()
        dim.dim_value = size


def _shape_of(value_info) -> tuple[int, ...] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


# ---------------------------------------------------------------- folding


@dataclass
class Folded:
    """The graph after constant folding: the nodes left to map and what is known."""
    nodes: list                                    # NodeProto, topological
    constants: dict[str, np.ndarray]               # tensor name -> value
    shapes: dict[str, tuple[int, ...]]             # tensor name -> static shape
    inputs: list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype)
    outputs: list[str]
    opset: int
    folded_nodes: int = 0
    used: dict[str, int] = field(default_factory=dict)   # tensor -> consumer count


def _evaluate(node, feeds: dict[str, Any], opsets: dict[str, int]) -> list[np.ndarray]:
    """Runs one node in a one-node model of the file's opsets (a bare NodeProto would be
    run at the newest opset: Unsqueeze's axes attribute of opset < 13 then fails)."""
    from onnx import TypeProto, helper
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(
        [node], "fold", [helper.make_value_info(name, TypeProto()) for name in feeds],
        [helper.make_value_info(name, TypeProto()) for name in node.output if name])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version)
                                                    for domain, version in opsets.items()])
    return ReferenceEvaluator(model).run(None, feeds)


def _to_array(tensor, where: str) -> np.ndarray:
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(tensor)
    except Exception as error:
        raise UserError(f"initializer '{tensor.name}' does not decode ({type(error).__name__}: "
                        f"its data does not match its {list(tensor.dims)} shape)", field=where,
                        fix="the file is corrupted: copy or export it again") from None


SMALL_CONSTANT_ELEMENTS = 4096     # given to shape inference as values (reshape targets)


def _infer_shapes(proto, nodes, constants, inputs) -> dict[str, tuple[int, ...]]:
    """Returns static shapes of the nodes left after folding, shape inference now seeing
    the folded values (a Reshape target computed by a Shape chain) as initializers."""
    import onnx
    from onnx import helper, numpy_helper

    read = {name for node in nodes for name in node.input if name in constants}
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
        np.dtype(dtype)), list(shape)) for name, shape, dtype in inputs]
    initializers = []
    for name in sorted(read):
        value = np.asarray(constants[name])
        if value.size <= SMALL_CONSTANT_ELEMENTS:
            initializers.append(numpy_helper.from_array(value, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    graph = helper.make_graph(nodes, "shapes", graph_inputs, [], initializers)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import))
    model.ir_version = proto.ir_version
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False,
                                                     strict_mode=False, data_prop=True)
    except Exception:       # the first pass already vetted the graph; keep its shapes
        return {}
    return {info.name: s for info in inferred.graph.value_info
            if (s := _shape_of(info)) is not None}


def fold(proto, input_size: int | None = None) -> Folded:
    """Returns the graph with every constant subgraph evaluated (see the module doc).

    Before: Shape(x) -> Gather(0) -> Unsqueeze -> Concat([.., -1]) -> Reshape(x, .)
    After:  Reshape(x, <constant [1, -1]>), the four shape nodes gone."""
    onnx = import_onnx()
    from onnx import helper

    opset = default_opset(proto)
    if proto.functions:
        from onnx.inliner import inline_local_functions
        proto = inline_local_functions(proto)
    graph = proto.graph
    constants: dict[str, np.ndarray] = {
        tensor.name: _to_array(tensor, f"initializer {tensor.name}") for tensor in graph.initializer}
    for sparse in graph.sparse_initializer:
        raise UserError(f"sparse initializer '{sparse.values.name}' is not supported",
                        field=f"initializer {sparse.values.name}",
                        fix="store the weights as dense initializers")
    # keep_initializers_as_inputs: an input with an initializer is a constant
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(proto)
    inputs = []
    del model_copy.graph.input[:]
    for value_info in graph.input:
        if value_info.name in constants:
            continue
        shape = _static_input_shape(value_info, input_size)
        copy = model_copy.graph.input.add()
        copy.CopyFrom(value_info)
        _set_shape(copy, shape)
        elem = value_info.type.tensor_type.elem_type
        dtype = str(helper.tensor_dtype_to_np_dtype(elem)) if elem else "float32"
        inputs.append((value_info.name, shape, dtype))
    del model_copy.graph.value_info[:]
    # shapes only: weights go in as typed inputs; small constants (axes, reshape
    # targets) stay values so that shape inference can use them
    del model_copy.graph.initializer[:]
    from onnx import numpy_helper
    for name, value in constants.items():
        if value.size <= SMALL_CONSTANT_ELEMENTS:
            model_copy.graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            model_copy.graph.input.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    try:
        inferred = onnx.shape_inference.infer_shapes(model_copy, check_type=False,
                                                     strict_mode=False, data_prop=True)
        infos = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    except Exception as error:
        raise UserError(f"onnx shape inference fails: {str(error).splitlines()[0][:200]}",
                        field="graph", fix="check the model with onnx.checker.check_model "
                                           "and export it again") from None
    shapes = {info.name: s for info in infos if (s := _shape_of(info)) is not None}
    for name, shape, _ in inputs:
        shapes[name] = shape

    opsets = {entry.domain: entry.version for entry in proto.opset_import}
    left, folded = [], 0
    for index, node in enumerate(graph.node):
        where = f"node {node.name or index} ({node.op_type})"
        present = [name for name in node.input if name]
        foldable = node.domain in ("", "ai.onnx") and node.op_type not in NEVER_FOLDED
        if foldable and node.op_type in SHAPE_ONLY and present and present[0] in shapes \
                and present[0] not in constants:
            feeds = {present[0]: np.zeros(shapes[present[0]], dtype=np.float32)} \
                if np.prod(shapes[present[0]]) <= FOLD_LIMIT_ELEMENTS else None
        elif foldable and all(name in constants for name in present):
            feeds = {name: constants[name] for name in present}
        else:
            feeds = None
        if feeds is None:
            left.append(node)
            continue
        try:
            values = _evaluate(node, feeds, opsets)
        except Exception as error:
            raise UserError(f"evaluating the constant {node.op_type} fails "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''})",
                            field=where, fix="the node's constant inputs do not fit its "
                                             "attributes: export the model again") from None
        for name, value in zip(node.output, values):
            value = np.asarray(value)
            if value.size > FOLD_LIMIT_ELEMENTS:
                raise UserError(f"folds to a tensor of {value.size} elements", field=where,
                                fix="a constant that large is not a weight; check the export")
            constants[name] = value
            shapes[name] = tuple(value.shape)
        folded += 1
    if any(out and out not in shapes for node in left for out in node.output):
        shapes.update(_infer_shapes(proto, left, constants, inputs))
    used: dict[str, int] = {}
    for node in left:
        for name in node.input:
            used[name] = used.get(name, 0) + 1
    for output in graph.output:
        used[output.name] = used.get(output.name, 0) + 1
    return Folded(left, constants, shapes, inputs, [o.name for o in graph.output], opset,
                  folded, used)
