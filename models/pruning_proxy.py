"""The accuracy proxy of a pruned model: how much of its weight magnitude the masks keep.

For each weight layer (conv, dense) the L2 share its magnitude mask keeps,
``||w * mask|| / ||w||`` (``models.weights.retained_shares``, the "L2 kept" column of
`hwsim models show FILE --sparsity P`), averaged over the layers weighted by their
weight count; a layer the lowered model runs dense (no pattern, a depthwise conv, a
first conv whose channels are no multiple of m) counts as 1.0, so a dense model is
exactly 1.0:

    magnitude_kept = sum_l |w_l| * l2_kept_l / sum_l |w_l|      (|w_l|: weights in layer l)

Magnitude-based pruning treats small weights as cheap to drop (Han et al., "Learning
both Weights and Connections", NeurIPS 2015; Mishra et al., "Accelerating Sparse Deep
Neural Networks", 2021, for 2:4 N:M): the kept share is a proxy for what a pattern
costs before fine-tuning, not an accuracy.

Weights: an imported file's own (batch norm folded as a build folds it,
``models.weights.layer_weights``); a model without its own (zoo, .json, .csv) gets
He-normal weights N(0, 2 / fan_in) drawn per layer from a generator seeded by
(seed, CRC-32 of the layer name), the distribution ``codegen`` builds zoo models on
(not its stream: a layer's share does not depend on the weights' scale).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from models.ir import Conv2d, Dense, Model
from models.patterns import NM, SparsityPattern


@dataclass(frozen=True)
class LayerKept:
    """One weight layer's part of the proxy: its weight count and the L2 share kept
    (1.0 and pattern None when the lowered model runs it dense)."""
    layer: str
    weights: int
    pattern: str | None
    l2_kept: float


def seeded_weight(layer: str, weight_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Returns He-normal float32 weights of ``weight_shape``, the same for the same
    (layer name, seed) whatever else the model holds."""
    fan_in = math.prod(weight_shape[1:]) or 1
    rng = np.random.default_rng([seed, zlib.crc32(layer.encode())])
    return (rng.standard_normal(weight_shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def weight_source(model: Model) -> str:
    """Returns "own" when every weight layer has its file's weights, else "seeded"."""
    layers = [op.name for op in model.ops() if isinstance(op, (Conv2d, Dense))]
    own = [name for name in layers if "weight" in model.weights.get(name, {})]
    return "own" if layers and len(own) == len(layers) else "seeded"


def pruned_patterns(model: Model, mode: str = "infer") -> dict[str, SparsityPattern]:
    """Returns {layer: its pattern} for every layer with a sparse GEMM when ``model`` is
    lowered in ``mode`` (the rule the simulator costs, models.lowering)."""
    from models.lowering import lower

    sparse = {w.layer for w in lower(model, mode=mode) if w.sparse}
    return {op.name: op.sparsity for op in model.ops()
            if isinstance(op, (Conv2d, Dense)) and op.name in sparse}


def layer_l2_kept(weight: np.ndarray, pattern: SparsityPattern) -> float:
    """Returns the L2 share of ``weight`` that its magnitude mask under ``pattern`` keeps.

    The mask is ``models.weights.magnitude_mask`` (N:M groups along the reduction, as
    kernels run them), except N:M on axis 0, whose groups run along output channels."""
    from models.weights import magnitude_mask, retained_shares

    if isinstance(pattern, NM) and pattern.axis == 0:
        w2d = np.asarray(weight).reshape(weight.shape[0], -1)
        mask = pattern.mask(w2d).reshape(weight.shape)
    else:
        mask = magnitude_mask(weight, pattern)
    return retained_shares(weight, mask)[1]


class MagnitudeKept:
    """A model's weights and the L2 share each (layer, pattern) keeps, each computed once.

    ``of(patterned)`` gives the proxy of a copy of the model carrying patterns
    (``Model.with_sparsity``): the per-layer shares are looked up, so a space of many
    pattern choices costs one mask per distinct (layer, pattern)."""

    def __init__(self, model: Model, seed: int = 0):
        self.model = model
        self.seed = seed
        self.source = weight_source(model)
        self._shares: dict[tuple[str, str], float] = {}

    def weight(self, layer: str) -> np.ndarray:
        """Returns the weight the proxy measures for ``layer`` (own or seeded)."""
        op = self.model.op(layer)
        if self.source == "own":
            from models.weights import layer_weights
            return layer_weights(self.model, layer).weight
        return seeded_weight(layer, tuple(op.weight_shape), self.seed)

    def layer_share(self, layer: str, pattern: SparsityPattern) -> float:
        key = (layer, pattern.spec)
        if key not in self._shares:
            self._shares[key] = layer_l2_kept(self.weight(layer), pattern)
        return self._shares[key]

    def layers(self, patterned: Model, mode: str = "infer") -> tuple[LayerKept, ...]:
        """Returns every weight layer's part of the proxy, in graph order."""
        pruned = pruned_patterns(patterned, mode)
        parts = []
        for op in patterned.ops():
            if not isinstance(op, (Conv2d, Dense)):
                continue
            count = math.prod(op.weight_shape)
            pattern = pruned.get(op.name)
            if pattern is None:
                parts.append(LayerKept(op.name, count, None, 1.0))
            else:
                parts.append(LayerKept(op.name, count, pattern.spec,
                                       self.layer_share(op.name, pattern)))
        return tuple(parts)

    def of(self, patterned: Model, mode: str = "infer") -> float:
        """Returns the weight-count-weighted L2 share kept (1.0 for a dense model)."""
        return combine(self.layers(patterned, mode))


def combine(parts: tuple[LayerKept, ...]) -> float:
    """Returns sum(weights * l2_kept) / sum(weights) (1.0 without weight layers)."""
    total = sum(part.weights for part in parts)
    if not total:
        return 1.0
    return float(sum(part.weights * part.l2_kept for part in parts) / total)


def magnitude_kept(patterned: Model, mode: str = "infer", seed: int = 0) -> float:
    """Returns the accuracy proxy of ``patterned`` (a model carrying its patterns): the
    weight-count-weighted L2 share of weight magnitude its masks keep, in (0, 1].

    >>> from models import zoo
    >>> from models.patterns import parse_pattern
    >>> net = zoo.build("resnet9", dataset="cifar10")
    >>> magnitude_kept(net)
    1.0
    >>> 0.5 < magnitude_kept(net.with_sparsity(parse_pattern("2:8"))) < 1.0
    True
    """
    return MagnitudeKept(patterned, seed).of(patterned, mode)


__all__ = ["LayerKept", "MagnitudeKept", "combine", "layer_l2_kept", "magnitude_kept",
           "pruned_patterns", "seeded_weight", "weight_source"]
