"""A whole codegen build against ONNX Runtime on the model file it was built from.

``hwsim run`` checks every layer on its own (each kernel fed numpy's input). Here the
build runs as a model: each layer's kernel reads the previous kernels' outputs (the
case's input buffers rewritten, one case at a time, in a copy of the build's data),
so errors carry through as they would in deployment, and the build's final output
is compared with ONNX Runtime running the file on the same input: the original file
for the dense build, the masked file (models.weights) for the sparse build.

Figures per build, over a handful of seeded inputs: the max relative error
(max |build - ORT| / max |ORT|, over all inputs) and top-1 agreement (argmax equal).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError

INDEX = "onnx.json"                    # written by models.weights.write_build_onnx
TOLERANCE = 1e-3                       # max relative error of a whole float32 build
INPUT_BUFFERS = {"eltwise": ("a", "b")}    # every other kernel kind reads "x"


@dataclass(frozen=True)
class WholeModelCheck:
    build: str                 # sparse | dense
    reference: str             # the ONNX file ORT ran
    inputs: int
    max_relative_error: float
    top1_agreement: int        # inputs whose argmax matches ORT's

    @property
    def ok(self) -> bool:
        return self.max_relative_error <= TOLERANCE

    def as_dict(self) -> dict:
        return {"build": self.build, "reference": self.reference, "inputs": self.inputs,
                "max_relative_error": self.max_relative_error,
                "top1_agreement": self.top1_agreement, "ok": self.ok}


def read_index(directory: Path) -> dict | None:
    """Returns the build's onnx.json, or None for a build not made from an ONNX file
    (no index, or one written for another manifest than the folder's)."""
    import hashlib

    path = Path(directory) / INDEX
    if not path.exists():
        return None
    manifest = Path(directory) / "manifest.json"
    try:
        current = hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError:
        return None
    try:
        index = json.loads(path.read_text())
        files = {key: str(index["files"][key]) for key in ("original", "masked")}
        if index.get("manifest_sha256") != current:
            return None         # left by an earlier build into this folder
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"unreadable ONNX index ({type(error).__name__})", source=str(path),
                        fix="run `hwsim codegen --model FILE.onnx` again") from None
    for name in files.values():
        if "/" in name or "\\" in name or name.startswith(".") or \
                not (Path(directory) / name).is_file():
            raise UserError(f"names '{name}', which is not a file of the build",
                            source=str(path), fix="run `hwsim codegen` again")
    return {**index, "files": files}


def ort_outputs(model_file: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Returns ONNX Runtime's first output (flattened) for each (C, H, W) input."""
    from targets.engines import onnxruntime_host

    problems = onnxruntime_host.problems()
    if problems:
        raise UserError(problems[0], field="onnxruntime", fix="pip install onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [np.asarray(session.run(None, {name: x[None].astype(np.float32)})[0],
                       np.float32).ravel() for x in inputs]


def _output_op(model) -> str:
    sinks = [name for name in model.graph.nodes if model.graph.out_degree(name) == 0]
    if len(sinks) != 1:
        raise UserError(f"the model has {len(sinks)} outputs", field="--model",
                        fix="compare a model with one output")
    return sinks[0]


def chained_outputs(directory: Path, manifest: dict, label: str, model, inputs: list,
                    runner, timeout_s: float) -> list[np.ndarray]:
    """Runs build ``label`` as a whole model on each input; returns its final outputs."""
    from models.ir import Input

    directory = Path(directory)
    build = manifest["builds"][label]
    cases = build["layers"]
    owner = {}
    for index, case in enumerate(cases):
        for name in (*case["ops"], case["layer"]):
            owner[name] = index
    output = _output_op(model)
    results = []
    with tempfile.TemporaryDirectory(prefix=".chain-", dir=directory) as scratch:
        data = Path(scratch) / label
        shutil.copytree(directory / label / "data", data)
        for x in inputs:
            values: dict[int, np.ndarray] = {}

            def value(name: str) -> np.ndarray:
                if name in owner:
                    return values[owner[name]]
                if isinstance(model.op(name), Input):
                    return x
                sources = model.input_names(name)
                if len(sources) != 1:       # a view (flatten/reshape) runs no kernel
                    raise UserError(f"op '{name}' has no kernel in the build", source=str(
                        directory), fix="rebuild with `hwsim codegen`")
                return value(sources[0])

            for index, case in enumerate(cases):
                sources = model.input_names(case["ops"][0])
                for buffer, source in zip(INPUT_BUFFERS.get(case["kind"], ("x",)), sources):
                    array = np.ascontiguousarray(value(source), np.float32)
                    path = data / f"{case['case']}.{buffer}.bin"
                    if not path.exists() or path.stat().st_size != array.nbytes:
                        raise UserError(f"layer {case['layer']}: input buffer '{buffer}' "
                                        f"does not hold {array.size} floats",
                                        source=str(path), fix="rebuild with `hwsim codegen`")
                    path.write_bytes(array.tobytes())
                (data / "chain.txt").write_text(
                    " ".join([case["case"], *map(str, case["ints"])]) + "\n")
                executable = directory / build["executables"][case["kernel"]]
                runner.run(executable, ["chain.txt", "1", "0"], data, timeout_s=timeout_s)
                values[index] = np.fromfile(data / f"{case['case']}.y.bin", dtype=np.float32)
            results.append(value(output).ravel().copy())
    return results


def compare(got: list[np.ndarray], expected: list[np.ndarray]) -> tuple[float, int]:
    """Returns (max relative error over all inputs, inputs whose argmax agrees)."""
    worst, agree = 0.0, 0
    for a, b in zip(got, expected):
        if a.size != b.size:
            raise UserError(f"the build gives {a.size} outputs, ONNX Runtime {b.size}",
                            field="outputs", fix="rebuild with `hwsim codegen`")
        scale = max(float(np.abs(b).max()), 1e-12) if b.size else 1.0
        worst = max(worst, float(np.abs(a - b).max()) / scale if b.size else 0.0)
        agree += int(np.argmax(a) == np.argmax(b))
    return worst, agree


def sample_inputs(shape: tuple[int, ...], count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def compare_build(directory: Path, manifest: dict, target, runner_name: str | None,
                  inputs: int = 4, seed: int = 1, timeout_s: float = 600.0
                  ) -> list[WholeModelCheck] | None:
    """Returns the dense and sparse builds' whole-model checks against ONNX Runtime
    (None when the build was not made from an ONNX file)."""
    from models.importers.onnx_import import load_onnx
    from models.ir import Input
    from targets.runners import get_runner

    directory = Path(directory)
    index = read_index(directory)
    if index is None:
        return None
    original = directory / index["files"]["original"]
    model = load_onnx(str(original), input_size=index.get("input_size"))
    first = next((op for op in model.ops() if isinstance(op, Input)), None)
    if first is None:
        raise UserError("the model has no input", source=str(original), fix="check the file")
    samples = sample_inputs(tuple(first.shape[1:]), inputs, seed)
    runner = get_runner(runner_name, target)
    checks = []
    for label, reference in (("dense", "original"), ("sparse", "masked")):
        path = directory / index["files"][reference]
        expected = ort_outputs(path, samples)
        got = chained_outputs(directory, manifest, label, model, samples, runner, timeout_s)
        worst, agree = compare(got, expected)
        checks.append(WholeModelCheck(label, path.name, inputs, worst, agree))
    return checks


def pruning_agreement(directory: Path, inputs: int = 4, seed: int = 1) -> tuple[float, int]:
    """Returns ORT's (max relative change, top-1 agreement) of the masked file against the
    original on the sample inputs: what the mask costs the model itself."""
    from models.importers.onnx_import import load_onnx
    from models.ir import Input

    directory = Path(directory)
    index = read_index(directory)
    original = directory / index["files"]["original"]
    model = load_onnx(str(original), input_size=index.get("input_size"))
    first = next(op for op in model.ops() if isinstance(op, Input))
    samples = sample_inputs(tuple(first.shape[1:]), inputs, seed)
    return compare(ort_outputs(directory / index["files"]["masked"], samples),
                   ort_outputs(original, samples))


def describe(checks: list[WholeModelCheck]) -> str:
    """Returns the lines `hwsim run` prints under its per-layer table."""
    lines = []
    for check in checks:
        lines.append(f"whole {check.build} build vs ONNX Runtime on {check.reference}: max "
                     f"relative error {check.max_relative_error:.1e} (tolerance "
                     f"{TOLERANCE:.0e}), top-1 agreement {check.top1_agreement}/{check.inputs}"
                     + ("" if check.ok else "  MISMATCH"))
    return "\n".join(lines)
