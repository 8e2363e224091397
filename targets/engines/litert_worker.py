"""Runs inside .venv-tf (TensorFlow must not enter the main venv): the LiteRT side of
targets/engines/litert.py.

    python litert_worker.py probe                      -> {"runtime": ..., "version": ...}
    python litert_worker.py convert MODEL.onnx OUT.tflite
    python litert_worker.py keras NAME ALPHA SIZE OUT_STEM   (OUT_STEM.tflite + OUT_STEM.onnx)
    python litert_worker.py serve MODEL.tflite THREADS INPUT.npy [--no-default-delegates]

``convert`` rebuilds the zoo CNNs' ONNX ops (what targets/engines/onnx_file.py writes:
Conv incl. depthwise, Gemm, BatchNormalization, pools, Relu, Clip, Add, Flatten) as
tf.nn ops in NHWC with the file's own weights, and hands them to TF's converter (fp32,
no quantization, no other optimisation flag): the same network and weights as the file
ONNX Runtime and MNN run. ``keras`` writes a keras.applications network (random weights,
nothing downloaded) both as .tflite and, through tf2onnx, as ONNX. ``serve`` loads the
interpreter with ``num_threads``, checks from its log that XNNPACK was applied, prints one
JSON line, then answers one line per command on stdin: ``call`` (one inference),
``time N`` (N timed inferences after 2 warm-ups, the seconds), ``output PATH`` (writes
the output as .npy), ``noop`` (a round trip only), ``quit``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
XNNPACK_LINE = "Created TensorFlow Lite XNNPACK delegate for CPU"


def _write_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(temporary, path)


def _interpreter_class():
    """Returns (Interpreter, runtime name): ai-edge-litert when installed, else tf.lite's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        from importlib.metadata import version
        return Interpreter, f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf
        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"


# ---------------------------------------------------------------- ONNX -> tf.nn (NHWC)


def _attributes(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _padding(pads: list[int], kernel: list[int], stride: list[int]):
    """Returns a tf padding for ONNX pads [top, left, bottom, right]: "VALID", "SAME" where it
    pads the same (stride 1, odd kernel, symmetric), else the explicit NHWC list."""
    top, left, bottom, right = pads
    if not any(pads):
        return "VALID"
    if stride == [1, 1] and all(k % 2 for k in kernel) and \
            [top, left, bottom, right] == [(kernel[0] - 1) // 2, (kernel[1] - 1) // 2] * 2:
        return "SAME"
    return [[0, 0], [top, bottom], [left, right], [0, 0]]


def onnx_to_function(path: Path):
    """Returns (tf.function of the ONNX file's graph in NHWC, NCHW input shape)."""
    import onnx
    import tensorflow as tf
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    graph_input = next(i for i in graph.input if i.name not in consts)
    shape = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    producers = {out: node.op_type for node in graph.node for out in node.output}

    def non_negative(name: str) -> bool:
        return producers.get(name) in ("Relu", "Clip")

    def body(x):
        values = {graph_input.name: x}
        for node in graph.node:
            attrs = _attributes(node)
            args = [values.get(name) for name in node.input]
            op = node.op_type
            if op == "Conv":
                w = consts[node.input[1]]                       # (Cout, Cin/g, R, S)
                kernel, stride = list(w.shape[2:]), list(attrs.get("strides", [1, 1]))
                padding = _padding(list(attrs.get("pads", [0, 0, 0, 0])), kernel, stride)
                group = attrs.get("group", 1)
                if group == 1:
                    y = tf.nn.conv2d(args[0], tf.constant(w.transpose(2, 3, 1, 0)),
                                     strides=[1, *stride, 1], padding=padding)
                elif w.shape[1] == 1 and group == w.shape[0]:
                    y = tf.nn.depthwise_conv2d(args[0], tf.constant(w.transpose(2, 3, 0, 1)),
                                               strides=[1, *stride, 1], padding=padding)
                else:
                    raise ValueError(f"grouped convolution {node.name}: no rule here")
                if len(node.input) > 2:
                    y = tf.nn.bias_add(y, tf.constant(consts[node.input[2]]))
            elif op == "Gemm":
                w = consts[node.input[1]]
                w = w.T if attrs.get("transB", 0) else w
                y = tf.matmul(args[0], tf.constant(w))
                if len(node.input) > 2:
                    y = y + tf.constant(consts[node.input[2]])
            elif op == "BatchNormalization":
                scale, shift, mean, var = (consts[name] for name in node.input[1:5])
                a = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
                y = args[0] * tf.constant(a.astype(np.float32)) + \
                    tf.constant((shift - mean * a).astype(np.float32))
            elif op in ("GlobalAveragePool", "GlobalMaxPool"):
                reduce = tf.reduce_mean if op == "GlobalAveragePool" else tf.reduce_max
                y = reduce(args[0], axis=[1, 2], keepdims=True)
            elif op in ("MaxPool", "AveragePool"):
                kernel, stride = list(attrs["kernel_shape"]), list(attrs.get("strides", [1, 1]))
                top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
                y = args[0]
                if op == "AveragePool" and any((top, left, bottom, right)) and \
                        not attrs.get("count_include_pad", 0):
                    raise ValueError(f"{node.name}: average pool without padded zeros counted")
                if any((top, left, bottom, right)):
                    # zeros for an average pool counting them, and for a max pool over a
                    # ReLU's output (>= 0: the same maxima); -inf otherwise
                    fill = 0.0 if op == "AveragePool" or non_negative(node.input[0]) else -np.inf
                    y = tf.pad(y, [[0, 0], [top, bottom], [left, right], [0, 0]],
                               constant_values=fill)
                pool = tf.nn.max_pool2d if op == "MaxPool" else tf.nn.avg_pool2d
                y = pool(y, kernel, [1, *stride, 1], "VALID")
            elif op == "Relu":
                y = tf.nn.relu(args[0])
            elif op == "Clip":
                low, high = (float(np.asarray(consts[name]).reshape(-1)[0])
                             for name in node.input[1:3])
                y = tf.nn.relu6(args[0]) if (low, high) == (0.0, 6.0) else \
                    tf.clip_by_value(args[0], low, high)
            elif op == "Add":
                y = args[0] + args[1]
            elif op == "Flatten":
                value = args[0]
                if value.shape.rank == 4 and (value.shape[1] != 1 or value.shape[2] != 1):
                    value = tf.transpose(value, [0, 3, 1, 2])      # ONNX flattens NCHW
                y = tf.reshape(value, [value.shape[0], -1])
            elif op == "Identity":
                y = args[0]
            else:
                raise ValueError(f"ONNX op {op} ({node.name}): no rule here")
            values[node.output[0]] = y
        out = values[graph.output[0].name]
        return tf.transpose(out, [0, 3, 1, 2]) if out.shape.rank == 4 else out

    n, c, h, w = shape
    function = tf.function(body, input_signature=[tf.TensorSpec([n, h, w, c], tf.float32)],
                           autograph=False)     # plain Python graph building, traced once
    return function, shape


def _tflite_of(function) -> bytes:
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    return converter.convert()


def convert(onnx_path: str, out_path: str) -> dict:
    function, shape = onnx_to_function(Path(onnx_path))
    _write_atomic(Path(out_path), _tflite_of(function))
    return {"tflite": out_path, "input_nchw": shape}


def keras_pair(name: str, alpha: float, size: int, stem: str) -> dict:
    """Writes keras.applications NAME (random weights) as STEM.tflite and STEM.onnx."""
    import keras
    import tensorflow as tf
    import tf2onnx

    builders = {"mobilenet": keras.applications.MobileNet,
                "mobilenet_v2": keras.applications.MobileNetV2}
    keras.utils.set_random_seed(0)
    model = builders[name](input_shape=(size, size, 3), alpha=alpha, weights=None,
                           classifier_activation=None)      # logits: a comparison that can fail
    signature = [tf.TensorSpec([1, size, size, 3], tf.float32, name="x")]
    function = tf.function(lambda x: model(x, training=False), input_signature=signature)
    _write_atomic(Path(f"{stem}.tflite"), _tflite_of(function))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                             opset=17)
    _write_atomic(Path(f"{stem}.onnx"), proto.SerializeToString())
    return {"tflite": f"{stem}.tflite", "onnx": f"{stem}.onnx", "input_nhwc": [1, size, size, 3]}


# ---------------------------------------------------------------- serving


def _load_with_log(model_path: str, threads: int, default_delegates: bool = True):
    """Builds the interpreter with fd 2 captured: TFLite's C++ writes the delegate line there.
    Without ``default_delegates`` XNNPACK is left out (how the refusal is tested)."""
    interpreter_class, runtime = _interpreter_class()
    options = {}
    if not default_delegates:
        resolver = sys.modules[interpreter_class.__module__].OpResolverType
        options["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            interpreter = interpreter_class(model_path=model_path, num_threads=threads,
                                            **options)
            interpreter.allocate_tensors()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return interpreter, runtime, text


def _delegate_covers_graph(interpreter) -> bool:
    """True when one DELEGATE node reads the graph's input and writes its output: XNNPACK runs
    the whole network (ops it rejected would stay outside as builtin nodes)."""
    native = interpreter._interpreter
    inputs, outputs = set(native.InputIndices()), set(native.OutputIndices())
    for node in range(native.NumNodes()):
        if native.NodeName(node) == "DELEGATE" and inputs <= set(native.NodeInputs(node)) \
                and outputs <= set(native.NodeOutputs(node)):
            return True
    return False


def serve(model_path: str, threads: int, input_path: str,
          default_delegates: bool = True) -> None:
    sys.path.insert(0, str(ROOT))
    from targets.engines.timing import time_one

    interpreter, runtime, log = _load_with_log(model_path, threads, default_delegates)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    delegated = XNNPACK_LINE in log and "DELEGATE" in ops
    whole = _delegate_covers_graph(interpreter)
    x = np.load(input_path)
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != x.shape:
        raise SystemExit(f"input {x.shape} does not match the model's {tuple(detail['shape'])}")
    interpreter.set_tensor(detail["index"], x.astype(np.float32))
    output = interpreter.get_output_details()[0]["index"]
    hello = {"runtime": runtime, "threads": threads, "xnnpack": delegated,
             "whole_graph_delegated": whole,
             "log": " | ".join(line.strip() for line in log.splitlines() if line.strip())[-400:],
             "ops": {name: ops.count(name) for name in sorted(set(ops))}}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "noop":
            print("ok", flush=True)
        elif words[0] == "call":
            interpreter.invoke()
            print("ok", flush=True)
        elif words[0] == "time":
            timing = time_one(interpreter.invoke, int(words[1]))
            print(json.dumps(list(timing.times_s)), flush=True)
        elif words[0] == "output":
            interpreter.invoke()
            np.save(words[1], interpreter.get_tensor(output))
            print("ok", flush=True)
        else:
            print(json.dumps({"error": f"unknown command {words[0]}"}), flush=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "probe":
        _, runtime = _interpreter_class()
        name, _, version = runtime.partition(" ")
        print(json.dumps({"runtime": name, "version": version}))
    elif command == "convert":
        print(json.dumps(convert(argv[1], argv[2])))
    elif command == "keras":
        print(json.dumps(keras_pair(argv[1], float(argv[2]), int(argv[3]), argv[4])))
    elif command == "serve":
        serve(argv[1], int(argv[2]), argv[3],
              default_delegates="--no-default-delegates" not in argv)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
