"""Which ops an inference kernel absorbs into its epilogue (one rule for codegen and hwsim).

A batch-1 inference build folds a batch norm that follows a convolution or dense layer
into that layer's bias, applies the relu / relu6 after it in the same kernel, and lets
an ``add`` apply the relu that follows it. codegen emits its kernels by this rule and
the CPU cost model must cost the same kernels, so the rule lives here, below both.
Training keeps every op: a batch norm with batch statistics cannot be folded.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.ir import Conv2d, Dense, Elementwise, Model, Norm

ACTIVATIONS = ("relu", "relu6")


@dataclass(frozen=True)
class Epilogue:
    """What one weighted op's kernel does after its product."""
    fused: tuple[str, ...]      # the ops it absorbs, in order (their outputs are its output)
    folded_norm: bool           # a batch norm folded into the bias
    activation: str             # none | relu | relu6


def _single_consumer(model: Model, name: str):
    consumers = list(model.graph.successors(name))
    return model.op(consumers[0]) if len(consumers) == 1 else None


def epilogue_of(model: Model, op_name: str) -> Epilogue:
    """Returns the batch norm and activation fused after weighted op ``op_name``: at most
    one norm then one activation, each the single consumer of what comes before it."""
    fused, folded, act = [], False, "none"
    current = op_name
    for _ in range(2):
        nxt = _single_consumer(model, current)
        if isinstance(nxt, Norm) and nxt.norm == "batch" and not folded and act == "none":
            folded = True
        elif isinstance(nxt, Elementwise) and nxt.function in ACTIVATIONS and act == "none":
            act = nxt.function
        else:
            break
        fused.append(nxt.name)
        current = nxt.name
    return Epilogue(tuple(fused), folded, act)


def add_activation(model: Model, op_name: str) -> str | None:
    """Returns the name of the relu an ``add`` op applies in its own kernel, if any."""
    nxt = _single_consumer(model, op_name)
    if isinstance(nxt, Elementwise) and nxt.function == "relu":
        return nxt.name
    return None


def fused_ops(model: Model) -> frozenset[str]:
    """Returns the names of the ops no inference kernel of their own runs: they are in
    the epilogue of a convolution / dense layer, or the relu of an add."""
    fused: set[str] = set()
    for op in model.ops():
        if op.name in fused:
            continue
        if isinstance(op, (Conv2d, Dense)):
            fused.update(epilogue_of(model, op.name).fused)
        elif isinstance(op, Elementwise) and op.function == "add":
            relu = add_activation(model, op.name)
            if relu:
                fused.add(relu)
    return frozenset(fused)


__all__ = ["Epilogue", "epilogue_of", "add_activation", "fused_ops", "ACTIVATIONS"]
