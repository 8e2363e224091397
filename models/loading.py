"""Resolves a model argument: a zoo name, an IR .json, a SCALE-Sim .csv or an .onnx file."""
from __future__ import annotations

import os

from models.errors import UserError
from models.ir import Model

FILE_SUFFIXES = (".json", ".csv", ".onnx")


def load(spec: str, *, dataset: str | None = None, input_size: int | None = None,
         batch: int = 1) -> Model:
    """Returns the model ``spec`` names; files are read by their suffix."""
    suffix = os.path.splitext(spec)[1].lower()
    looks_like_path = os.sep in spec or suffix in FILE_SUFFIXES
    if os.path.isfile(spec):
        if suffix == ".json":
            from models.ir import load_model
            return load_model(spec)
        if suffix == ".csv":
            from models.importers.scalesim import load_topology
            return load_topology(spec, batch=batch)
        if suffix == ".onnx":
            from models.importers.onnx_import import load_onnx
            return load_onnx(spec)
        raise UserError(f"cannot tell the format of '{spec}'", source=spec,
                        fix="use .json (IR), .csv (SCALE-Sim topology) or .onnx")
    if looks_like_path:
        raise UserError("no such file", source=spec,
                        fix="check the path, or give a zoo name (see `hwsim models`)")
    from models import zoo
    return zoo.build(spec, dataset=dataset, input_size=input_size, batch=batch)
