"""Resolves a model argument: a zoo name, an IR .json, a SCALE-Sim .csv or an .onnx file."""
from __future__ import annotations

import os

from models.errors import UserError
from models.ir import Model

FILE_SUFFIXES = (".json", ".csv", ".onnx")
FORMATS_FIX = "use .json (IR), .csv (SCALE-Sim topology) or .onnx, or a zoo name (`hwsim models`)"


def load(spec: str, *, dataset: str | None = None, input_size: int | None = None,
         batch: int = 1) -> Model:
    """Returns the model ``spec`` names: files are read by their suffix, anything else
    that does not look like a path is a zoo name.

    ``dataset`` and ``input_size`` size zoo models only (files carry their own
    shapes: giving them for a file is an error, except ``input_size`` for an ONNX file
    whose H, W or sequence axis is symbolic); ``batch`` sets a zoo model's batch and a SCALE-Sim topology's (JSON and
    ONNX models keep the batch they were saved with: ``lowering.lower`` rescales it)."""
    from models import zoo

    suffix = os.path.splitext(spec)[1].lower()
    looks_like_path = "/" in spec or os.sep in spec or suffix in FILE_SUFFIXES
    if not looks_like_path and spec in zoo.names():     # even if a file of that name is here
        return zoo.build(spec, dataset=dataset, input_size=input_size, batch=batch)
    if os.path.isdir(spec):
        raise UserError("is a folder, not a model file", source=spec, fix=FORMATS_FIX)
    if os.path.isfile(spec):
        for value, flag in ((dataset, "--dataset"), (input_size, "--input-size")):
            if value is not None and not (flag == "--input-size" and suffix == ".onnx"):
                raise UserError(f"{flag} sizes zoo models only; a file has its own shapes",
                                source=spec, field=flag, fix=f"leave {flag} out for files")
        if suffix == ".json":
            from models.ir import load_model
            return load_model(spec)
        if suffix == ".csv":
            from models.importers.scalesim import load_topology
            return load_topology(spec, batch=batch)
        if suffix == ".onnx":
            from models.importers.onnx_import import load_onnx
            return load_onnx(spec, input_size=input_size)   # fills symbolic H, W / length
        raise UserError(f"cannot tell the format of a '{suffix or 'suffix-less'}' file",
                        source=spec, fix=FORMATS_FIX)
    if looks_like_path:
        raise UserError("no such file", source=spec,
                        fix="check the path, or give a zoo name (see `hwsim models`)")
    return zoo.build(spec, dataset=dataset, input_size=input_size, batch=batch)
