"""A model's own weights: what an imported ONNX file brings, as a build runs it.

The importer keeps every weighted layer's tensors in ``Model.weights`` (IR layout:
conv (Cout, Cin/g, R, S), dense (out, in)) and batch-norm statistics on the Norm op,
plus where each weight came from in the file (``"onnx"``: node, input, layout).
Here they become what an inference build uses, by the one fusion rule that codegen
and hwsim apply (``models.fusion.epilogue_of``): a batch norm after a conv or dense
layer folded into its weight and bias,

    w' = w * s,  b' = (b - mean) * s + shift,  s = scale / sqrt(var + eps),

masked by magnitude under a pattern, and written back into a copy of the ONNX file
(each masked weight a new initializer, the graph otherwise as exported), so that
ONNX Runtime runs the model the sparse build computes.

``ModelWeights`` is what ``codegen.model_build`` takes as its weight source: it hands
out folded weights and records the (masked) weights the build kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from models.errors import UserError
from models.ir import Conv2d, Dense, Model, Norm
from models.patterns import BDWP, NM, SparsityPattern


@dataclass(frozen=True)
class LayerWeights:
    """One weighted layer as a kernel runs it (batch norm folded when ``folded_norm``)."""
    weight: np.ndarray                 # IR layout, float32
    bias: np.ndarray | None            # (out,), float32
    folded_norm: str | None = None     # the Norm op folded in, if any


# ---------------------------------------------------------------- folding


def batch_norm_affine(norm: dict) -> tuple[np.ndarray, np.ndarray]:
    """Returns per-channel (s, t) with BN(x) = s * x + t, in float64."""
    scale = np.asarray(norm["scale"], np.float64).reshape(-1)
    shift = np.asarray(norm["shift"], np.float64).reshape(-1)
    mean = np.asarray(norm["mean"], np.float64).reshape(-1)
    var = np.asarray(norm["var"], np.float64).reshape(-1)
    s = scale / np.sqrt(var + float(norm.get("epsilon", 1e-5)))
    return s, shift - mean * s


def fold_batch_norm(weight: np.ndarray, bias: np.ndarray | None, norm: dict
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (w', b') of a conv/dense layer followed by the batch norm ``norm``."""
    s, t = batch_norm_affine(norm)
    if s.size != weight.shape[0]:
        raise UserError(f"batch norm over {s.size} channels after a layer of "
                        f"{weight.shape[0]} outputs", field="weights",
                        fix="the norm must follow the layer it normalizes")
    shape = (-1,) + (1,) * (weight.ndim - 1)
    folded = np.asarray(weight, np.float64) * s.reshape(shape)
    base = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    return folded.astype(np.float32), (base * s + t).astype(np.float32)


def _own(model: Model, name: str, keys: tuple[str, ...]) -> dict:
    entry = model.weights.get(name)
    if not entry or any(key not in entry for key in keys):
        raise UserError(f"layer '{name}' has no weights of its own", field="--model",
                        fix="only an imported file (.onnx) brings weights; zoo and .json "
                            "models are built on random weights")
    return entry


def layer_weights(model: Model, name: str, fold: bool | None = None) -> LayerWeights:
    """Returns layer ``name``'s weight and bias; ``fold`` (default: by the fusion rule)
    folds the batch norm that follows it."""
    from models.fusion import epilogue_of

    op = model.op(name)
    if not isinstance(op, (Conv2d, Dense)):
        raise UserError(f"'{name}' is a {op.kind}, not a weighted layer", field="weights",
                        fix="give a conv2d or dense layer")
    entry = _own(model, name, ("weight",))
    weight = np.asarray(entry["weight"], np.float32).reshape(op.weight_shape)
    bias = entry.get("bias")
    bias = None if bias is None else np.asarray(bias, np.float32).reshape(-1)
    epilogue = epilogue_of(model, name)
    if fold is None:
        fold = epilogue.folded_norm
    if not fold:
        return LayerWeights(weight, bias)
    norm_name = next(n for n in epilogue.fused if isinstance(model.op(n), Norm))
    norm = _own(model, norm_name, ("scale", "shift", "mean", "var"))
    weight, bias = fold_batch_norm(weight, bias, norm)
    return LayerWeights(weight, bias, norm_name)


# ---------------------------------------------------------------- masks and what they keep


def magnitude_mask(weight: np.ndarray, pattern: SparsityPattern) -> np.ndarray:
    """Returns the bool mask (weight's shape) keeping the largest |w| under ``pattern``,
    on the (out, in*R*S) matrix a kernel multiplies: N:M groups run along the reduction."""
    w2d = np.asarray(weight).reshape(weight.shape[0], -1)
    if isinstance(pattern, (BDWP, NM)):
        mask = NM(pattern.n, pattern.m, axis=1).mask(w2d)
    else:
        mask = pattern.mask(w2d)
    return np.asarray(mask, bool).reshape(weight.shape)


def retained_shares(weight: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Returns the (L1, L2) share of the weight's magnitude the mask keeps, in [0, 1]."""
    w = np.abs(np.asarray(weight, np.float64))
    kept = w * np.asarray(mask, bool)
    l1 = float(kept.sum() / w.sum()) if w.sum() else 1.0
    l2 = float(np.sqrt((kept ** 2).sum() / (w ** 2).sum())) if (w ** 2).sum() else 1.0
    return l1, l2


class ModelWeights:
    """The weight source a codegen build takes (see the module doc).

    ``layer``/``norm`` hand out the model's own tensors; ``kept`` records, per pattern
    spec ("dense" for none), the weights the build actually packed (after its mask)."""

    def __init__(self, model: Model):
        weighted = [op.name for op in model.ops() if isinstance(op, (Conv2d, Dense))]
        missing = [name for name in weighted if "weight" not in model.weights.get(name, {})]
        if missing:
            raise UserError(f"{len(missing)} layer(s) have no weights of their own "
                            f"(first: '{missing[0]}')", field="--model",
                            fix="own weights come only with an imported .onnx file")
        shifted = [name for name, entry in model.weights.items()
                   if entry.get("onnx", {}).get("asymmetric_pads") is not None]
        if shifted:
            pads = model.weights[shifted[0]]["onnx"]["asymmetric_pads"]
            raise UserError(f"{len(shifted)} layer(s) pad asymmetrically (first: '{shifted[0]}', "
                            f"pads {list(pads)} top, left, bottom, right), which codegen's "
                            f"kernels do not", field="--model",
                            fix="export with symmetric padding (e.g. Keras padding='valid' "
                                "after ZeroPadding2D(1)); hwsim simulate and models show "
                                "take this file as it is")
        self.model = model
        self.kept_weights: dict[str, dict[str, np.ndarray]] = {}

    def layer(self, name: str, folded: bool) -> tuple[np.ndarray, np.ndarray | None]:
        own = layer_weights(self.model, name, fold=folded)
        return own.weight, own.bias

    def norm(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Returns a lone batch norm's (scale, shift) per channel, float32."""
        s, t = batch_norm_affine(_own(self.model, name, ("scale", "shift", "mean", "var")))
        return s.astype(np.float32), t.astype(np.float32)

    def kept(self, pattern: SparsityPattern | None, name: str, weight: np.ndarray) -> None:
        key = "dense" if pattern is None else pattern.spec
        self.kept_weights.setdefault(key, {})[name] = np.array(weight, np.float32)


# ---------------------------------------------------------------- writing ONNX back


def masked_proto(proto, model: Model, kept: dict[str, np.ndarray]):
    """Returns a copy of ``proto`` whose weights are zero where ``kept`` (IR op name ->
    the weight a build kept, batch norm folded or not) is zero; nothing else changes."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    by_output = {node.output[0]: node for node in graph.node if node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    names = {name for node in graph.node for name in (*node.input, *node.output)}
    names.update(initializers)
    replaced: set[str] = set()
    for layer, weight in kept.items():
        source = model.weights.get(layer, {}).get("onnx")
        if source is None:
            raise UserError(f"layer '{layer}' does not say where its weight is in the file",
                            field="weights", fix="import the model with models.loading")
        node = by_output.get(source["node_output"])
        if node is None or node.input[source["input"]] != source["tensor"]:
            raise UserError(f"layer '{layer}': node '{source['node_output']}' is not in this "
                            f"file as imported", field="weights",
                            fix="write the masked model from the file it was imported from")
        original = np.asarray(source["value"])          # as the file holds it
        mask = np.asarray(weight).reshape(model.op(layer).weight_shape) != 0
        if source["transposed"]:
            mask = mask.T
        value = original * mask.reshape(original.shape)
        dtype = original.dtype
        name, count = f"{source['tensor']}.masked", 1
        while name in names:
            count += 1
            name = f"{source['tensor']}.masked{count}"
        names.add(name)
        graph.initializer.append(numpy_helper.from_array(value.astype(dtype), name))
        node.input[source["input"]] = name
        replaced.add(source["tensor"])
    read = {name for node in graph.node for name in node.input}
    read.update(output.name for output in graph.output)
    unused = [t for t in graph.initializer if t.name in replaced and t.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)
    unused_names = {t.name for t in unused}
    for value_info in [v for v in graph.input if v.name in unused_names]:
        graph.input.remove(value_info)
    return out


def save_proto(proto, path: str) -> None:
    """Writes ``proto`` to ``path`` atomically, weights inside (one file)."""
    from models.fileio import write_atomic

    data = proto.SerializeToString()
    if len(data) > 2_000_000_000:
        raise UserError(f"{len(data) / 1e9:.1f} GB is over protobuf's 2 GB for one file",
                        source=path, fix="use a smaller model for codegen")
    write_atomic(path, data)


def write_masked(source_path: str, model: Model, kept: dict[str, np.ndarray],
                 out_path: str) -> str:
    """Writes ``source_path`` with the build's masks applied to ``out_path``; returns it."""
    from models.importers.onnx_fold import read_model

    save_proto(masked_proto(read_model(source_path), model, kept), out_path)
    return out_path


BUILD_FILES = {"original": "model.onnx", "masked": "model.masked.onnx"}
BUILD_INDEX = "onnx.json"


def write_build_onnx(source_path: str, model: Model, weights: ModelWeights, out_dir: str,
                     input_size: int | None = None) -> dict:
    """Writes beside a codegen build: the source file as imported (model.onnx, weights
    inside), the sparse build's masked model (model.masked.onnx) and onnx.json naming
    them and the pattern, for ``hwsim run`` to compare the build with ONNX Runtime; it
    names the build's manifest by hash, so a later build into the folder from a zoo
    model is not compared with a stale file."""
    import json

    from models.fileio import write_atomic
    from models.importers.onnx_fold import read_model

    proto = read_model(source_path)
    sparse = [key for key in weights.kept_weights if key != "dense"]
    kept = weights.kept_weights[sparse[0]] if sparse else weights.kept_weights.get("dense", {})
    save_proto(proto, os.path.join(out_dir, BUILD_FILES["original"]))
    save_proto(masked_proto(proto, model, kept), os.path.join(out_dir, BUILD_FILES["masked"]))
    import hashlib

    manifest = os.path.join(out_dir, "manifest.json")    # this build's (written before)
    with open(manifest, "rb") as handle:
        manifest_sha256 = hashlib.sha256(handle.read()).hexdigest()
    index = {"source": os.path.abspath(source_path), "files": dict(BUILD_FILES),
             "manifest_sha256": manifest_sha256,
             "sparsity": sparse[0] if sparse else None, "input_size": input_size,
             "kept_share": masked_share(kept)}
    write_atomic(os.path.join(out_dir, BUILD_INDEX), json.dumps(index, indent=1) + "\n")
    return index


def masked_share(kept: dict[str, np.ndarray]) -> float:
    """Returns the fraction of weights a build kept nonzero (over every weighted layer)."""
    total = sum(w.size for w in kept.values())
    return sum(int(np.count_nonzero(w)) for w in kept.values()) / total if total else 1.0


# ---------------------------------------------------------------- what pruning costs


@dataclass(frozen=True)
class LayerPruning:
    """One masked layer's cost: the share of its weight magnitude the mask keeps and the
    relative error of its output, ||y_masked - y|| / ||y||, on the layer's real input
    (ONNX Runtime's activations for a sample model input)."""
    layer: str
    l1_kept: float
    l2_kept: float
    output_error: float

    def as_dict(self) -> dict:
        return {"layer": self.layer, "l1_kept": self.l1_kept, "l2_kept": self.l2_kept,
                "output_error": self.output_error}


def _conv(x: np.ndarray, weight: np.ndarray, bias, stride, pads, groups) -> np.ndarray:
    """Returns the convolution of one (C, H, W) input in float64 (im2col per group);
    ``pads`` (top, left, bottom, right)."""
    cout, cin_g, kh, kw = weight.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out_h = (padded.shape[1] - kh) // stride[0] + 1
    out_w = (padded.shape[2] - kw) // stride[1] + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride[0], ::stride[1]][:, :out_h, :out_w]   # C, oh, ow, kh, kw
    out = np.empty((cout, out_h * out_w))
    per_group = cout // groups
    for group in range(groups):
        cols = windows[group * cin_g:(group + 1) * cin_g].transpose(0, 3, 4, 1, 2)
        cols = cols.reshape(cin_g * kh * kw, -1)
        w = weight[group * per_group:(group + 1) * per_group].reshape(per_group, -1)
        out[group * per_group:(group + 1) * per_group] = w.astype(np.float64) @ cols
    if bias is not None:
        out += np.asarray(bias, np.float64)[:, None]
    return out.reshape(cout, out_h, out_w)


def layer_output(model: Model, name: str, x: np.ndarray, weight: np.ndarray,
                 bias) -> np.ndarray:
    """Returns layer ``name``'s output on ``x``, the input of its node in the ONNX file
    (batch 1), with the given weight: a conv pads as that node does (a Pad node before
    it, which the IR folds into the conv, has run already)."""
    op = model.op(name)
    if isinstance(op, Dense):
        flat = np.asarray(x, np.float64).reshape(-1, op.in_features)
        out = flat @ np.asarray(weight, np.float64).reshape(op.weight_shape).T
        return out + (0 if bias is None else np.asarray(bias, np.float64))
    x = np.asarray(x).reshape(x.shape[-3:])
    pads = model.weights.get(name, {}).get("onnx", {}).get("node_pads") or \
        (op.padding[0], op.padding[1]) * 2
    return _conv(x, weight.reshape(op.weight_shape), bias, op.stride, pads, op.groups)


def layer_inputs(proto, model: Model, layers: list[str], x: np.ndarray) -> dict:
    """Returns {layer: its input activation} from ONNX Runtime on model input ``x``."""
    import onnx
    import onnxruntime

    tensors = {}
    for layer in layers:
        source = model.weights[layer].get("onnx")
        node = next((n for n in proto.graph.node if source and n.output
                     and n.output[0] == source["node_output"]), None)
        if node is None:
            raise UserError(f"layer '{layer}' is not in the file as imported",
                            field="weights", fix="load the model from its ONNX file")
        tensors[layer] = node.input[0]
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    present = {output.name for output in probe.graph.output}
    for tensor in sorted(set(tensors.values()) - present):
        probe.graph.output.append(onnx.ValueInfoProto(name=tensor))
    session = onnxruntime.InferenceSession(probe.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
    return {layer: values[tensor] for layer, tensor in tensors.items()}


def pruning_costs(source_path: str, model: Model, pattern: SparsityPattern,
                  layers: list[str], seed: int = 0) -> list[LayerPruning]:
    """Returns what masking each of ``layers`` under ``pattern`` costs (see LayerPruning),
    with batch norms folded as a build folds them and one seeded N(0, 1) sample input."""
    from models.importers.onnx_fold import read_model

    proto = read_model(source_path)
    shape = model.inputs()[0].shape
    sample = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    inputs = layer_inputs(proto, model, layers, sample)
    costs = []
    for layer in layers:
        own = layer_weights(model, layer)
        mask = magnitude_mask(own.weight, pattern)
        l1, l2 = retained_shares(own.weight, mask)
        dense = layer_output(model, layer, inputs[layer], own.weight, own.bias)
        masked = layer_output(model, layer, inputs[layer], own.weight * mask, own.bias)
        scale = float(np.linalg.norm(dense))
        error = float(np.linalg.norm(masked - dense)) / scale if scale else 0.0
        costs.append(LayerPruning(layer, l1, l2, error))
    return costs


def whole_model_change(source_path: str, model: Model, pattern: SparsityPattern,
                       layers: list[str], inputs: int = 4, seed: int = 0
                       ) -> tuple[float, int, int]:
    """Returns (max relative output change, top-1 agreement, inputs) of the model with
    ``layers`` masked against the original, both run by ONNX Runtime."""
    import onnxruntime

    from models.importers.onnx_fold import read_model

    proto = read_model(source_path)
    kept = {layer: (lambda own: own.weight * magnitude_mask(own.weight, pattern))(
        layer_weights(model, layer)) for layer in layers}
    sessions = [onnxruntime.InferenceSession(p.SerializeToString(),
                                             providers=["CPUExecutionProvider"])
                for p in (proto, masked_proto(proto, model, kept))]
    name = sessions[0].get_inputs()[0].name
    rng = np.random.default_rng(seed)
    worst, agree = 0.0, 0
    for _ in range(inputs):
        x = rng.standard_normal(model.inputs()[0].shape).astype(np.float32)
        original, masked = (np.asarray(s.run(None, {name: x})[0], np.float64).ravel()
                            for s in sessions)
        scale = max(float(np.abs(original).max()), 1e-12)
        worst = max(worst, float(np.abs(masked - original).max()) / scale)
        agree += int(np.argmax(masked) == np.argmax(original))
    return worst, agree, inputs


__all__ = ["LayerWeights", "ModelWeights", "batch_norm_affine", "fold_batch_norm",
           "layer_weights", "magnitude_mask", "retained_shares", "masked_proto",
           "save_proto", "write_masked", "masked_share", "write_build_onnx", "LayerPruning",
           "layer_output", "layer_inputs", "pruning_costs", "whole_model_change"]
