// Wasm baseline engines in node (issue 15): onnxruntime-web (wasm SIMD, 1 thread) on an ONNX
// file, TensorFlow.js's wasm backend (XNNPACK inside) on the same network given as a layer
// list (tfjs cannot read ONNX; bench/e2e.py writes the list from the IR with the ONNX file's
// shapes). Prints one JSON line: {"engine": {"times_ms": [...], "version": ...}, ...}.
//
//   node targets/web/engines_bench.mjs --onnx m.onnx --layers m.layers.json --repeats 20
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const version = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version;
const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, value, index, all) =>
  (index % 2 === 0 ? [...pairs, [value.replace(/^--/, ""), all[index + 1]]] : pairs), []));
const repeats = Number(args.repeats || 20);
const warmup = Number(args.warmup || 3);
const only = (args.engines || "onnxruntime-web,tfjs-wasm").split(",");
const result = {};

async function timeIt(run) {
  for (let i = 0; i < warmup; i++) await run();
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  return times;
}

if (args.onnx && only.includes("onnxruntime-web")) {
  const ort = require("onnxruntime-web");
  ort.env.wasm.numThreads = 1;      // the codegen wasm build is single-threaded
  ort.env.wasm.simd = true;
  const session = await ort.InferenceSession.create(readFileSync(args.onnx),
    { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const name = session.inputNames[0];
  const shape = JSON.parse(args.shape);
  const size = shape.reduce((a, b) => a * b, 1);
  const data = Float32Array.from({ length: size }, (_, i) => Math.sin(i));
  const feeds = { [name]: new ort.Tensor("float32", data, shape) };
  result["onnxruntime-web"] = {
    version: version("onnxruntime-web"),
    times_ms: await timeIt(() => session.run(feeds)),
  };
}

if (args.layers && only.includes("tfjs-wasm")) {
  const tf = require("@tensorflow/tfjs-core");
  const wasm = require("@tensorflow/tfjs-backend-wasm");
  wasm.setThreadsCount(1);
  await tf.setBackend("wasm");
  await tf.ready();
  const spec = JSON.parse(readFileSync(args.layers, "utf8"));
  // weights: deterministic values (a dense engine's time does not depend on them)
  const fill = (shape) => tf.tensor(Float32Array.from(
    { length: shape.reduce((a, b) => a * b, 1) }, (_, i) => 0.01 * Math.sin(i)), shape);
  const weights = spec.layers.map((layer) => layer.weight ? fill(layer.weight) : null);
  const biases = spec.layers.map((layer) => layer.bias ? fill([layer.bias]) : null);
  const input = fill(spec.input);     // NHWC
  const forward = () => tf.tidy(() => {
    const values = {};
    values[spec.input_name] = input;
    spec.layers.forEach((layer, index) => {
      const src = layer.inputs.map((name) => values[name]);
      let out;
      if (layer.op === "conv") {
        out = tf.conv2d(src[0], weights[index], layer.stride, layer.pad);
      } else if (layer.op === "dwconv") {
        out = tf.depthwiseConv2d(src[0], weights[index], layer.stride, layer.pad);
      } else if (layer.op === "dense") {
        out = tf.matMul(tf.reshape(src[0], [1, -1]), weights[index]);
      } else if (layer.op === "maxpool" || layer.op === "avgpool") {
        const pool = layer.op === "maxpool" ? tf.maxPool : tf.avgPool;
        out = pool(src[0], layer.kernel, layer.stride, layer.pad);
      } else if (layer.op === "gavg") {
        out = tf.mean(src[0], [1, 2], true);
      } else if (layer.op === "add") {
        out = tf.add(src[0], src[1]);
      } else if (layer.op === "relu") {
        out = tf.relu(src[0]);
      } else if (layer.op === "relu6") {
        out = tf.relu6(src[0]);
      } else if (layer.op === "identity") {
        out = src[0];
      } else {
        throw new Error(`engines_bench: no tfjs rule for ${layer.op}`);
      }
      if (biases[index]) out = tf.add(out, biases[index]);
      if (layer.act === "relu") out = tf.relu(out);
      if (layer.act === "relu6") out = tf.relu6(out);
      values[layer.name] = out;
    });
    return values[spec.output];
  });
  result["tfjs-wasm"] = {
    version: version("@tensorflow/tfjs-backend-wasm"),
    times_ms: await timeIt(async () => { const y = forward(); await y.data(); y.dispose(); }),
  };
}
console.log(JSON.stringify(result));
