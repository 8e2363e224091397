"""Converts Keras CNNs to ONNX with tf2onnx, as a TensorFlow team exports them.

Runs in the TensorFlow environment (`make .venv-tf/.installed`), not the main one:

    .venv-tf/bin/python tests/onnx_tf_exports.py OUT_DIR

and writes OUT_DIR/*.onnx plus OUT_DIR/manifest.json with, per file, Keras's own
figures: parameters (``count_params``; and after folding each batch norm into the conv
before it, as tf2onnx does), forward MACs from each layer's kernel and output shape,
and the weight layers in order, in the IR's weight layouts. The tests
(tests/test_onnx_tf_exports.py) import each file with our importer and compare.

Every weight is set to seeded random values first (Keras initialises biases and batch
norm shifts to zero, which tf2onnx then drops as no-ops). keras.applications models
are built with ``weights=None``: nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

keras = tf.keras


def small_cnn():
    """The ops a Keras mobile CNN converts to: 'same' stride-2 convs (asymmetric pads),
    batch norm, relu6, depthwise, a residual add, max pool, global pool, dense."""
    inputs = keras.Input((32, 32, 3), batch_size=1)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(16, 1)(y)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="small_cnn")


MODELS = {
    "small_cnn": (small_cnn, (1, 32, 32, 3)),
    "keras_mobilenet": (lambda: keras.applications.MobileNet(
        weights=None, input_shape=(224, 224, 3)), (1, 224, 224, 3)),
    "keras_mobilenet_v2": (lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(224, 224, 3)), (1, 224, 224, 3)),
}
EXPORTS = [("small_cnn.tf2onnx13", "small_cnn", 13), ("small_cnn.tf2onnx17", "small_cnn", 17),
           ("keras_mobilenet.tf2onnx17", "keras_mobilenet", 17),
           ("keras_mobilenet_v2.tf2onnx17", "keras_mobilenet_v2", 17)]
STEMS = [stem for stem, *_ in EXPORTS]


def randomize(model, rng) -> None:
    for layer in model.layers:
        values = layer.get_weights()
        if not values:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = values
            values = [rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.1, 0.1, beta.shape),
                      rng.uniform(-0.1, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)]
        else:
            values = [rng.standard_normal(v.shape) * (0.1 if v.ndim == 1 else
                                                     np.sqrt(2.0 / max(1, np.prod(v.shape[:-1]))))
                      for v in values]
        layer.set_weights([v.astype(np.float32) for v in values])


def count(model) -> dict:
    """Returns Keras's params, MACs and weight layers (IR layouts) in layer order."""
    layers, macs, folded = [], 0, model.count_params()
    previous = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.kernel.shape
            _, h, w, cout = layer.output.shape
            macs += h * w * cout * kh * kw
            layers.append(["conv2d", [cin * mult, 1, kh, kw]])
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin_g, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            macs += h * w * cout * cin_g * kh * kw
            layers.append(["conv2d", [cout, cin_g, kh, kw]])
        elif isinstance(layer, keras.layers.Dense):
            cin, units = layer.kernel.shape
            macs += units * cin
            layers.append(["dense", [units, cin]])
        elif isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            folded -= 4 * channels
            if isinstance(previous, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) \
                    and not previous.use_bias:
                folded += channels
        if layer.get_weights():
            previous = layer
    return {"params": int(model.count_params()), "params_bn_folded": int(folded),
            "macs": int(macs), "layers": [[kind, [int(v) for v in shape]]
                                          for kind, shape in layers]}


def main(out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    manifest = {}
    only = set(sys.argv[2:])
    for stem, name, opset in EXPORTS:
        if only and stem not in only:
            continue
        build, shape = MODELS[name]
        keras.utils.set_random_seed(0)
        model = build()
        randomize(model, np.random.default_rng(0))
        started = time.perf_counter()
        spec = (tf.TensorSpec(shape, tf.float32, name="input"),)
        path = os.path.join(out_dir, f"{stem}.onnx")
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=path)
        manifest[stem] = {"file": f"{stem}.onnx", "model": name, "exporter": "tf2onnx",
                          "options": {"opset": opset}, "input_shape": list(shape),
                          "tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                          **count(model)}
        print(f"exported {stem} in {time.perf_counter() - started:.1f} s", flush=True)
    with open(os.path.join(out_dir, "manifest.json.tmp"), "w") as handle:
        json.dump(manifest, handle, indent=1)
    os.replace(os.path.join(out_dir, "manifest.json.tmp"), os.path.join(out_dir, "manifest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
