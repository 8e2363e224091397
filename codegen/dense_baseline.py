"""The dense baseline every sparse kernel is compared with: a GEMM built by TVM for the target.

Y[cout x p] = W[cout x k] * X[k x p] (the layout of the sparse kernels), expressed in TE,
scheduled by hand (register tile, vectorised pixels, unrolled rows, k-split; threads on the
host) or, when a trial budget is given, tuned with ``tvm.s_tir.meta_schedule``.

Where it runs:
- host: in this process through TVM's runtime (``measure_host``);
- any other target: TVM's LLVM object for that triple is linked with a small C wrapper that
  hands DLTensors to TVM's packed function, and the usual harness (templates/harness.c.j2)
  times it through the target's runner (``build_for_target``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen.render import Abi, Buffer, OutputBuffer, RenderedKernel
from targets.cpu import CpuTarget
from targets.engines.blas import time_calls
from targets.engines.timing import let_pools_sleep


@dataclass(frozen=True)
class DenseSchedule:
    """Hand schedule of the TVM dense GEMM: ``rows`` x ``cols`` register tile, k split by
    ``k_split``, ``threads`` over row tiles (host only; 1 elsewhere)."""
    rows: int = 8
    cols: int = 32
    k_split: int = 4
    threads: int = 1


def dense_prim_func(cout: int, k: int, p: int, symbol: str):
    """Returns the TE-made PrimFunc Y = W X for one shape, exported as ``symbol``."""
    from tvm import te

    w = te.placeholder((cout, k), name="W", dtype="float32")
    x = te.placeholder((k, p), name="X", dtype="float32")
    reduce_k = te.reduce_axis((0, k), name="k")
    y = te.compute((cout, p), lambda i, j: te.sum(w[i, reduce_k] * x[reduce_k, j], axis=reduce_k),
                   name="Y")
    return te.create_prim_func([w, x, y]).with_attr("global_symbol", symbol)


def register_tile(sch, block, column_tile, rows, columns, lanes: int):
    """Accumulates ``block``'s (rows x columns) tile in a local buffer written back once per
    ``column_tile`` iteration, with the columns vectorised by ``lanes`` and everything else of
    the tile unrolled: the register block every CPU GEMM kernel wants. Returns the write-back
    block. (Shared by the dense baseline and the sparse scheduler.)"""
    local = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(local, column_tile)
    vector_groups, vector_lanes = sch.split(columns, [None, lanes])
    sch.vectorize(vector_lanes)
    sch.unroll(vector_groups)
    sch.unroll(rows)
    return local


def hand_schedule(func, schedule: DenseSchedule, lanes: int):
    """Returns the IRModule of ``func`` with a register tile accumulated in a local buffer.

    Before: for i, j, k: Y[i, j] += W[i, k] * X[k, j]
    After:  for io (parallel), jo: Y_local = 0; for ko, ki, ii (unrolled), jv_outer (unrolled),
            jv (vectorised): Y_local[ii, jv] += W[.., k] * X[k, ..]; Y[tile] = Y_local"""
    import tvm
    import tvm.s_tir as s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    block = sch.get_sblock("Y")
    i, j, k = sch.get_loops(block)
    cols = max(lanes, schedule.cols // lanes * lanes)
    io, ii = sch.split(i, [None, schedule.rows])
    jo, ji = sch.split(j, [None, cols])
    ko, ki = sch.split(k, [None, schedule.k_split])
    sch.reorder(io, jo, ko, ki, ii, ji)
    local = register_tile(sch, block, jo, ii, ji, lanes)
    if schedule.threads > 1:
        sch.parallel(io)
    sch.decompose_reduction(block, ko)
    write_back = sch.get_loops(local)[-1]
    _, write_lanes = sch.split(write_back, [None, lanes])
    sch.vectorize(write_lanes)
    return sch.mod


def tvm_target(target: CpuTarget) -> dict:
    """Returns the TVM target dict of a CPU target (TVM 0.27 takes JSON dicts)."""
    return dict(target.tvm_target)


def build_dense(cout: int, k: int, p: int, target: CpuTarget, schedule: DenseSchedule | None = None,
                trials: int = 0, work_dir: Path | None = None, symbol: str | None = None):
    """Returns (TVM module, symbol): the dense GEMM for ``target``, hand-scheduled, or tuned by
    meta_schedule for ``trials`` trials when ``trials`` > 0 (logs in ``work_dir``).

    Known problem: in the apache-tvm 0.27.0.post1 wheel checked here, ``tune_tir`` segfaults in
    tvm::ffi::ToJSONGraph before its first trial (with the json and the memory database, xgb
    and random cost models), so every figure in bench/ uses the hand schedule."""
    import tvm

    symbol = symbol or f"tvm_dense_{cout}x{k}x{p}"
    func = dense_prim_func(cout, k, p, symbol)
    if trials > 0:
        from tvm.s_tir import meta_schedule as ms

        work_dir = Path(work_dir or f"tvm-tune-{symbol}")
        # meta_schedule wants the core count in the target
        tune_target = tvm.target.Target({**tvm_target(target), "num-cores": target.cores})
        database = ms.tune_tir(mod=tvm.IRModule({"main": func}), target=tune_target,
                               work_dir=str(work_dir), max_trials_global=trials,
                               num_trials_per_iter=min(trials, 16))
        scheduled = ms.tir_integration.compile_tir(database, tvm.IRModule({"main": func}),
                                                   tune_target)
        mod = scheduled.mod if hasattr(scheduled, "mod") else scheduled
    else:
        threads = target.cores if target.isa == "x86_64" else 1
        schedule = schedule or DenseSchedule(rows=8, cols=2 * target.vector_lanes_f32,
                                             threads=threads)
        mod = hand_schedule(func, schedule, target.vector_lanes_f32)
    return tvm.tirx.build(mod, target=tvm_target(target)), symbol


def measure_host(lib, w: np.ndarray, x: np.ndarray, repeats: int = 5) -> tuple[float, np.ndarray]:
    """Returns (best seconds of ``repeats``, Y) of a host-built dense module run in this process."""
    import tvm

    device = tvm.cpu()
    w_t = tvm.runtime.tensor(np.ascontiguousarray(w, np.float32), device)
    x_t = tvm.runtime.tensor(np.ascontiguousarray(x, np.float32), device)
    y_t = tvm.runtime.tensor(np.zeros((w.shape[0], x.shape[1]), np.float32), device)
    lib(w_t, x_t, y_t)
    timer = lib.time_evaluator("main", device, number=1, repeat=repeats)
    seconds = float(np.min(timer(w_t, x_t, y_t).results))
    return seconds, y_t.numpy()


# ---------------------------------------------------------------- other targets: object + wrapper


WRAPPER = """/* {name}: calls TVM's packed function {symbol} (a {cout}x{k}x{p} dense GEMM built by TVM for
 * this target) with DLTensors, so the common harness can time it. Generated by
 * codegen/dense_baseline.py. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <tvm/ffi/c_api.h>

int32_t __tvm_ffi_{symbol}(void* self, void* args, int32_t num_args, void* result);

/* The only runtime symbol TVM's code calls: its error path. */
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t num_parts)
{{
  fprintf(stderr, "TVM error %s:", kind);
  for (int32_t i = 0; i < num_parts; i++) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\\n");
}}

/* TVM's code allocates scratch through these pointers, which its runtime fills in when it
 * loads a module; these strong definitions take the place of the object's weak null ones. */
static void* workspace_alloc(int device_type, int device_id, uint64_t bytes, int code, int bits)
{{
  (void) device_type; (void) device_id; (void) code; (void) bits;
  return aligned_alloc(64, (bytes + 63) / 64 * 64);
}}
static int workspace_free(int device_type, int device_id, void* ptr)
{{
  (void) device_type; (void) device_id;
  free(ptr);
  return 0;
}}
void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = workspace_alloc;
int (*__TVMBackendFreeWorkspace)(int, int, void*) = workspace_free;

static DLTensor tensor2d(float* data, int64_t* shape)
{{
  DLTensor t = {{0}};
  t.data = data; t.device.device_type = kDLCPU; t.ndim = 2;
  t.dtype.code = kDLFloat; t.dtype.bits = 32; t.dtype.lanes = 1; t.shape = shape;
  return t;
}}

void {name}(size_t cout, size_t k, size_t p, const float* w, const float* x, float* y)
{{
  int64_t w_shape[2] = {{(int64_t) cout, (int64_t) k}}, x_shape[2] = {{(int64_t) k, (int64_t) p}};
  int64_t y_shape[2] = {{(int64_t) cout, (int64_t) p}};
  DLTensor tensors[3] = {{tensor2d((float*) w, w_shape), tensor2d((float*) x, x_shape),
                          tensor2d(y, y_shape)}};
  TVMFFIAny args[3], result;
  for (int i = 0; i < 3; i++) {{
    args[i].type_index = kTVMFFIDLTensorPtr; args[i].zero_padding = 0; args[i].v_ptr = &tensors[i];
  }}
  result.type_index = kTVMFFINone; result.zero_padding = 0; result.v_int64 = 0;
  if (__tvm_ffi_{symbol}(NULL, args, 3, &result) != 0) fprintf(stderr, "{symbol} failed\\n");
}}
"""


def tvm_ffi_include() -> Path:
    import tvm_ffi

    return Path(tvm_ffi.__file__).parent / "include"


def wrapper_kernel(symbol: str, cout: int, k: int, p: int) -> RenderedKernel:
    """Returns the C wrapper (as a kernel the harness can call) around TVM's function."""
    name = f"{symbol}_wrapper"
    abi = Abi(ints=("cout", "k", "p"), inputs=(Buffer("w", "float"), Buffer("x", "float")),
              output=OutputBuffer("y", "float", "cout * p"), restrict=False)
    source = WRAPPER.format(name=name, symbol=symbol, cout=cout, k=k, p=p)
    return RenderedKernel(name, source, abi, "tvm", DenseSchedule())


def build_for_target(cout: int, k: int, p: int, target: CpuTarget, outdir: Path,
                     schedule: DenseSchedule | None = None) -> tuple[Path, RenderedKernel]:
    """Returns (executable, wrapper kernel): TVM's dense GEMM linked into the common harness.

    The executable reads <case>.w.bin and <case>.x.bin and writes <case>.y.bin."""
    from codegen.render import render_harness
    from targets.toolchains import build_executable

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if target.isa == "x86_64":
        schedule = schedule or DenseSchedule(rows=8, cols=2 * target.vector_lanes_f32)
    lib, symbol = build_dense(cout, k, p, target, schedule=schedule)
    obj = outdir / f"{symbol}-{target.name}.o"
    lib.write_to_file(str(obj))
    wrapper = wrapper_kernel(symbol, cout, k, p)
    wrapper_path = outdir / wrapper.filename
    wrapper_path.write_text(wrapper.source)
    harness_path = outdir / f"harness_{wrapper.name}.c"
    harness_path.write_text(render_harness(wrapper))
    suffix = ".wasm" if target.isa == "wasm32" else ""
    executable = outdir / f"{symbol}-{target.name}{suffix}"
    build_executable(target, [wrapper_path, harness_path, obj], executable,
                     extra_cflags=("-std=gnu11", f"-I{tvm_ffi_include()}"))
    return executable, wrapper


# ---------------------------------------------------------------- hwsim run: the best dense per layer


BASELINES = ("codegen", "blas", "tvm")   # what `hwsim run --baselines` may name


@dataclass(frozen=True)
class Spread:
    """Median and spread of one thing's timed runs (seconds)."""
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.times_s)) if self.times_s else float("nan")

    @property
    def iqr_s(self) -> float:
        if not self.times_s:
            return float("nan")
        low, high = np.percentile(self.times_s, [25, 75])
        return float(high - low)

    def as_dict(self) -> dict:
        return {"median_s": self.median_s, "iqr_s": self.iqr_s,
                "min_s": min(self.times_s) if self.times_s else None,
                "max_s": max(self.times_s) if self.times_s else None, "n": len(self.times_s)}


def gemm_shape(case: dict) -> tuple[int, int, int] | None:
    """Returns (cout, k, pixels) of a dense-build layer's GEMM (None: no GEMM, e.g. a pool).

    A KxK convolution's GEMM is its im2col product (cout x cin*kh*kw x out pixels); a BLAS
    baseline is timed on the GEMM alone, the im2col not counted (in its favour)."""
    ints = case["ints"]
    if case["kind"] in ("nmgemm", "chgemm"):
        return int(ints[0]), int(ints[1]), int(ints[2])
    if case["kind"] in ("nmconv", "chconv", "winograd"):
        cout, cin, _, _, kh, kw = (int(v) for v in ints[:6])
        pixels = int(np.prod(case["output_shape"][1:]))
        return cout, cin * kh * kw, pixels
    return None


class _TvmHostGemm:
    """TVM's hand-scheduled dense GEMM of one shape, built once, timed in this process."""

    def __init__(self, shape: tuple[int, int, int], target: CpuTarget, threads: int):
        import tvm

        cout, k, p = shape
        schedule = DenseSchedule(rows=8, cols=2 * target.vector_lanes_f32, threads=threads)
        self.lib, _ = build_dense(cout, k, p, target, schedule=schedule)
        rng = np.random.default_rng(0)
        device = tvm.cpu()
        self.args = [tvm.runtime.tensor(rng.standard_normal(s, dtype=np.float32), device)
                     for s in ((cout, k), (k, p))]
        self.args.append(tvm.runtime.tensor(np.zeros((cout, p), np.float32), device))
        self.timer = self.lib.time_evaluator("main", device, number=1, repeat=1)

    def times(self, repeats: int) -> list[float]:
        self.lib(*self.args)
        return [float(self.timer(*self.args).results[0]) for _ in range(repeats)]


@dataclass(frozen=True)
class ModelBaselines:
    """What `hwsim run` prints: per layer the sparse, codegen-dense and baseline spreads;
    whole-model engines (ONNX Runtime) on the same architecture; notes on what was skipped."""
    layers: tuple[dict, ...]       # {"layer", "sparse": Spread, "dense": {name: Spread}, ...}
    engines: dict                  # whole-model engine label -> Spread
    notes: tuple[str, ...]
    threads: int
    rounds: int
    blas_info: str | None


def best_dense(dense: dict[str, Spread]) -> tuple[str, Spread]:
    """Returns (name, spread) of the fastest dense baseline by median."""
    name = min(dense, key=lambda label: dense[label].median_s)
    return name, dense[name]


def measure_build(directory: Path, manifest: dict, target: CpuTarget, runner_name: str | None, *,
                  rounds: int, repeats: int, warmup: int, timeout_s: float, threads: int,
                  baselines: tuple[str, ...] = ("codegen", "blas"), engines: bool = True,
                  progress: bool = False) -> tuple[dict[str, list], ModelBaselines]:
    """Runs the sparse build, the dense build and each dense baseline in ``rounds``
    interleaved rounds (``repeats`` runs each per round, so a burst of machine load slows
    them alike), and, on the host, ONNX Runtime on the same model (when installed).

    Returns ({"sparse": [LayerRun], "dense": [LayerRun]} with every round's times merged,
    ModelBaselines). BLAS and TVM are host-only (they run in this process)."""
    import dataclasses as _dc

    from codegen.model_build import run_build

    host = target.isa == "x86_64" and (runner_name in (None, "local"))
    notes = []
    dense_cases = manifest["builds"]["dense"]["layers"]
    shapes = {case["case"]: gemm_shape(case) for case in dense_cases}
    blas_calls, tvm_gemms = {}, {}
    blas_lib = None
    if "blas" in baselines:
        from targets.engines import blas
        if not host:
            notes.append("BLAS baseline: host builds only (numpy runs in this process)")
        elif blas.problems():
            notes.append("BLAS baseline skipped: " + "; ".join(blas.problems()))
        else:
            blas_lib = blas
            blas_calls = {shape: blas.gemm_call(*shape) for shape in set(shapes.values()) if shape}
    if "tvm" in baselines:
        if not host:
            notes.append("TVM baseline: host builds only in `hwsim run` (bench/kernels.py "
                         "times it on other targets)")
        else:
            tvm_gemms = {shape: _TvmHostGemm(shape, target, threads)
                         for shape in set(shapes.values()) if shape}
            notes.append("TVM baseline is the hand schedule; meta_schedule tuning is not run "
                         "(tune_tir segfaults in this apache-tvm 0.27 wheel, see build_dense)")
    engine_calls = {}
    if engines and host:
        engine_calls, engine_notes = _model_engines(manifest, threads, directory)
        notes += engine_notes
    merged: dict[str, dict[str, list]] = {"sparse": {}, "dense": {}}
    records: dict[str, list] = {}
    blas_times: dict[tuple, list[float]] = {shape: [] for shape in blas_calls}
    tvm_times: dict[tuple, list[float]] = {shape: [] for shape in tvm_gemms}
    engine_times: dict[str, list[float]] = {label: [] for label in engine_calls}
    for call in engine_calls.values():
        call()
    import os

    saved_omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)   # the kernels' team (at most their own count)
    from codegen.build import omp_wait_environment

    wait_policy = {name: value for name, value in omp_wait_environment(os.environ).items()
                   if name not in os.environ}              # what this run sets (and unsets)
    os.environ.update(wait_policy)
    try:
        for _ in range(rounds):
            for label in ("sparse", "dense"):
                runs = run_build(directory, manifest, label, target, runner_name, repeats, warmup,
                                 timeout_s, progress=progress)
                # keep each layer's worst error over the rounds (every round is checked)
                kept = records.setdefault(label, runs)
                records[label] = [run if run.relative_error > old.relative_error else old
                                  for old, run in zip(kept, runs)]
                for run in runs:
                    merged[label].setdefault(run.layer, []).extend(run.times_s)
                _interleaved_baselines(blas_lib, blas_calls, blas_times, tvm_gemms, tvm_times,
                                       engine_calls, engine_times, threads, repeats, label)
                if blas_lib is not None or tvm_gemms or engine_calls:
                    let_pools_sleep()   # the next build's kernels get the cores, not their spin
                if threads > 1:
                    # BLAS's and ORT's pools spin a while after their runs: a 2-thread OpenMP
                    # loop started right after 10 ORT inferences took 264 us, 0.3 s later 102 us
                    import time
                    time.sleep(0.3)
    finally:
        for name in wait_policy:
            os.environ.pop(name, None)
        if saved_omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_omp
    runs = {label: [_dc.replace(run, times_s=tuple(merged[label][run.layer])) for run in records[label]]
            for label in ("sparse", "dense")}
    dense_by_layer = {run.layer: (run, case) for run, case in zip(runs["dense"], dense_cases)}
    layers = []
    for run in runs["sparse"]:
        dense_run, case = dense_by_layer.get(run.layer, (None, None))
        dense: dict[str, Spread] = {}
        if dense_run is not None:
            dense["codegen"] = Spread(dense_run.times_s)
            shape = shapes.get(case["case"])
            if shape in blas_times:
                dense["blas"] = Spread(tuple(blas_times[shape]))
            if shape in tvm_times:
                dense["tvm"] = Spread(tuple(tvm_times[shape]))
        layers.append({"layer": run.layer, "sparse": Spread(run.times_s), "dense": dense,
                       "gemm": shapes.get(case["case"]) if case else None})
    engine_spreads = {label: Spread(tuple(times)) for label, times in engine_times.items()}
    info = None
    if blas_lib is not None:
        with blas_lib.threads(threads):
            info = blas_lib.info()
    return runs, ModelBaselines(tuple(layers), engine_spreads, tuple(notes), threads, rounds, info)


def _interleaved_baselines(blas_lib, blas_calls, blas_times, tvm_gemms, tvm_times, engine_calls,
                           engine_times, threads: int, repeats: int, after: str) -> None:
    """One round's baselines, run after the sparse build (BLAS, TVM) and after the dense one
    (the whole-model engines), so that no two things of one kind run back to back."""
    if after == "sparse":
        if blas_lib is not None:
            with blas_lib.threads(threads):
                for shape, call in blas_calls.items():
                    blas_times[shape] += blas_lib.time_calls(call, repeats, warmup=1)
        for shape, gemm in tvm_gemms.items():
            tvm_times[shape] += gemm.times(repeats)
    else:
        for label, call in engine_calls.items():
            engine_times[label] += time_calls(call, repeats, warmup=0)


def _model_engines(manifest: dict, threads: int, directory: Path | None = None
                   ) -> tuple[dict, list[str]]:
    """Returns ({label: call}, notes): ONNX Runtime on the build's model, dense: the build's
    own model.onnx when it was built from an ONNX file, else the zoo model written by
    targets/engines/onnx_file.py (same architecture, random weights)."""
    import tempfile

    from models.loading import load
    from targets.engines import onnxruntime_host
    from targets.engines.onnx_file import write_onnx

    if onnxruntime_host.problems():
        return {}, ["whole-model ONNX Runtime ratio skipped: " + "; ".join(onnxruntime_host.problems())]
    label = f"onnxruntime {onnxruntime_host.version()} ({threads} thread{'s' if threads > 1 else ''})"
    index = None
    if directory is not None:
        from targets.engines.ort_compare import read_index
        index = read_index(directory)
    if index is not None:
        import onnx

        path = Path(directory) / index["files"]["original"]
        try:
            graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
            shape = tuple(int(dim.dim_value) or 1
                          for dim in graph_input.type.tensor_type.shape.dim)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            return {label: onnxruntime_host.prepare(path, x, threads)}, []
        except Exception as error:  # noqa: BLE001 - say why, go on without the ratio
            return {}, [f"whole-model ONNX Runtime ratio skipped: {path.name}: {error}"]
    first = manifest["builds"]["dense"]["layers"][0]
    size = {"input_size": int(first["ints"][2])} if first["kind"] in ("nmconv", "chconv", "winograd") \
        else {}
    try:
        model = load(manifest["model"], **size)
        shape = tuple(next(iter(model.ops())).shape)
        if size and shape[2:] != (size["input_size"], int(first["ints"][3])):
            return {}, [f"whole-model ONNX Runtime ratio skipped: the zoo's {manifest['model']} "
                        f"takes {shape}, not this build's input"]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="hwsim-run-onnx-") as folder:
            path = write_onnx(model, Path(folder) / f"{model.name}.onnx")
            call = onnxruntime_host.prepare(path, x, threads)   # the session holds the model
    except Exception as error:  # noqa: BLE001 - a model the writer cannot express: say so, go on
        return {}, [f"whole-model ONNX Runtime ratio skipped: {error}"]
    return {label: call}, []
