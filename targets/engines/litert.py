"""LiteRT with its XNNPACK delegate on the host: XNNPACK's own dense path (issue 15).

TensorFlow (for the converter) and the interpreter live in .venv-tf (mk/torch.mk), never
in the main venv, so everything runs in targets/engines/litert_worker.py by subprocess.
The .tflite is made from the same ONNX file ONNX Runtime and MNN run: the worker rebuilds
the zoo CNNs' ops as tf.nn ops (NHWC) with the file's weights and converts them with TF's
converter (fp32, no quantization), so every engine runs one network with one set of
weights. ``keras_pair`` gives the other direction: a keras.applications MobileNet as
.tflite and, through tf2onnx, as ONNX for ORT/MNN/codegen.

An inference session is a worker process (``Session``); calling it runs one inference
there and waits for its reply, so a caller's timer includes one pipe round trip
(``Session.round_trip_s`` measures it; tens of microseconds against milliseconds), which
counts against LiteRT. ``time`` uses the worker's own timer (targets/engines/timing.py,
imported there). A session whose log lacks TFLite's "Created TensorFlow Lite XNNPACK
delegate for CPU" line, or whose graph has no DELEGATE node, is refused: no figure is
reported for an interpreter XNNPACK did not run.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from targets.engines.timing import Timing, time_one

NAME = "litert"
ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
WORKER = Path(__file__).with_name("litert_worker.py")
CONVERT_TIMEOUT_S = 900.0


def _python(venv_python: Path | None = None) -> Path:
    return Path(venv_python) if venv_python else VENV_PYTHON


def _worker(args: list[str], timeout_s: float, venv_python: Path | None = None) -> dict:
    """Runs one worker command; returns its last stdout line as JSON (one-line error else)."""
    completed = subprocess.run([str(_python(venv_python)), str(WORKER), *args],
                               capture_output=True, text=True, timeout=timeout_s)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"litert worker '{args[0]}' failed (exit {completed.returncode}): "
                           f"{last[:300]}")
    return json.loads(lines[-1])


def problems(venv_python: Path | None = None) -> list[str]:
    """Why LiteRT cannot run here (empty when it can), one line each."""
    python = _python(venv_python)
    if not python.exists():
        return [f"no {python.parent.parent.name} (TensorFlow's venv): run "
                f"`make {python.parent.parent.name}/.installed` (mk/torch.mk)"]
    try:
        _worker(["probe"], 120.0, venv_python)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
        return [f"no TFLite interpreter in {python.parent.parent.name}: {error}"]
    return []


def version(venv_python: Path | None = None) -> str:
    probe = _worker(["probe"], 120.0, venv_python)
    return f"{probe['runtime']} {probe['version']}"


def convert(onnx_file: Path, venv_python: Path | None = None) -> Path:
    """Returns the .tflite beside the ONNX file (converted when missing or older)."""
    onnx_file = Path(onnx_file)
    target = onnx_file.with_suffix(".tflite")
    if not target.exists() or target.stat().st_mtime < onnx_file.stat().st_mtime:
        _worker(["convert", str(onnx_file), str(target)], CONVERT_TIMEOUT_S, venv_python)
    return target


def keras_pair(name: str, alpha: float, size: int, out_dir: Path,
               venv_python: Path | None = None) -> tuple[Path, Path]:
    """Writes keras.applications ``name`` ("mobilenet" = v1, "mobilenet_v2"; random weights)
    at ``size`` px as .tflite and .onnx (tf2onnx) in ``out_dir``; returns (tflite, onnx).
    The ONNX input is NHWC (1, size, size, 3), as Keras takes it."""
    stem = Path(out_dir) / f"keras_{name}_{alpha:g}_{size}"
    made = _worker(["keras", name, str(alpha), str(size), str(stem)], CONVERT_TIMEOUT_S,
                   venv_python)
    return Path(made["tflite"]), Path(made["onnx"])


class Session:
    """One interpreter in a worker process, input set once; ``session()`` runs one inference."""

    def __init__(self, tflite: Path, x_nhwc: np.ndarray, threads: int,
                 venv_python: Path | None = None, default_delegates: bool = True):
        self._scratch = tempfile.TemporaryDirectory(prefix="hwsim-litert-")
        input_path = Path(self._scratch.name) / "x.npy"
        self._stderr = open(Path(self._scratch.name) / "stderr.txt", "w+")   # never fills a pipe
        np.save(input_path, np.ascontiguousarray(x_nhwc, dtype=np.float32))
        self.process = subprocess.Popen(
            [str(_python(venv_python)), str(WORKER), "serve", str(tflite), str(threads),
             str(input_path), *([] if default_delegates else ["--no-default-delegates"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1)
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            error = self._last_error()
            self.close()
            raise RuntimeError(f"litert worker did not start: {error}")
        self.info = json.loads(line)
        if not self.info["xnnpack"]:
            self.close()
            raise RuntimeError(f"LiteRT did not apply its XNNPACK delegate to "
                               f"{Path(tflite).name} (log: {self.info['log'][:200] or 'empty'}; "
                               f"ops {self.info['ops']})")

    def _last_error(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        lines = self._stderr.read().strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def _ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"litert worker exited: {self._last_error()}")
        return reply.strip()

    def __call__(self) -> None:
        self._ask("call")

    def output(self) -> np.ndarray:
        path = Path(self._scratch.name) / "y.npy"
        self._ask(f"output {path}")
        return np.load(path)

    def times_s(self, repeats: int) -> list[float]:
        """The worker's own timer: ``repeats`` inferences after 2 warm-ups."""
        return json.loads(self._ask(f"time {repeats}"))

    def round_trip_s(self, repeats: int = 20) -> float:
        """Median seconds of a pipe round trip with no inference (what a caller's timer adds)."""
        return time_one(lambda: self._ask("noop"), repeats, warmup=0).median_s

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self._stderr):
            try:
                stream.close()
            except OSError:        # a pipe to a worker that died: nothing left to flush
                pass
        self._scratch.cleanup()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


def _tflite_and_input(model_file: Path, x: np.ndarray, venv_python: Path | None):
    """An ONNX file takes NCHW ``x`` (converted, transposed to NHWC); a .tflite takes it as is."""
    model_file = Path(model_file)
    if model_file.suffix == ".tflite":
        return model_file, x
    return convert(model_file, venv_python), np.transpose(x, (0, 2, 3, 1))


def prepare(model_file: Path, x: np.ndarray, threads: int,
            venv_python: Path | None = None) -> Session:
    """Returns a Session on ``model_file`` (ONNX: converted beside it; or a .tflite)."""
    tflite, x_nhwc = _tflite_and_input(model_file, x, venv_python)
    return Session(tflite, x_nhwc, threads, venv_python)


def run(model_file: Path, x: np.ndarray, threads: int,
        venv_python: Path | None = None) -> np.ndarray:
    session = prepare(model_file, x, threads, venv_python)
    try:
        return session.output()
    finally:
        session.close()


def time(model_file: Path, x: np.ndarray, threads: int, repeats: int,
         venv_python: Path | None = None) -> Timing:
    session = prepare(model_file, x, threads, venv_python)
    try:
        return Timing(tuple(session.times_s(repeats)))
    finally:
        session.close()


# ---------------------------------------------------------------- side by side on the host


def compare(models: list[str], threads_list: list[int], repeats: int, work: Path,
            log=print) -> list[dict]:
    """Times LiteRT, ONNX Runtime and MNN interleaved (targets/engines/timing.py) on the same
    network: a zoo model (our ONNX file, 224 px) or ``keras:NAME`` (keras.applications at
    224 px: its .tflite and its tf2onnx ONNX; MNN left out, its runner takes NCHW "x"/"y")."""
    import os

    from models.loading import load
    from targets.engines import mnn_host, onnxruntime_host
    from targets.engines.onnx_file import write_onnx
    from targets.engines.timing import interleaved

    results = []
    for name in models:
        if name.startswith("keras:"):
            tflite, onnx_file = keras_pair(name.split(":", 1)[1], 1.0, 224, work)
            x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
            files = {"litert": (tflite, None), "onnxruntime": (onnx_file, onnxruntime_host)}
        else:
            model = load(name)
            onnx_file = write_onnx(model, Path(work) / f"{name}.onnx")
            shape = tuple(model.output_spec(next(iter(model.ops())).name).shape)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            files = {"litert": (onnx_file, None), "onnxruntime": (onnx_file, onnxruntime_host)}
            if not mnn_host.problems():
                files["mnn"] = (onnx_file, mnn_host)
        for threads in threads_list:
            calls = {label: (module.prepare if module else prepare)(path, x, threads)
                     for label, (path, module) in files.items()}
            session = calls["litert"]
            timings = interleaved(calls, repeats)
            own = Timing(tuple(session.times_s(repeats)))
            row = {"model": name, "threads": threads, "load_1min": os.getloadavg()[0],
                   "litert": session.info, "pipe_round_trip_s": session.round_trip_s(),
                   "litert_own_timer": own.as_dict(),
                   "engines": {label: timing.as_dict() for label, timing in timings.items()}}
            session.close()
            results.append(row)
            log(f"{name}, {threads} thread(s), load {row['load_1min']:.2f}; XNNPACK applied "
                f"{session.info['xnnpack']}, whole graph {session.info['whole_graph_delegated']}, "
                f"pipe round trip {row['pipe_round_trip_s'] * 1e6:.0f} us (in litert's time)")
            for label, timing in sorted(timings.items(), key=lambda item: item[1].median_s):
                log(f"  {label:<14} {timing.median_s * 1e3:8.2f} ms  IQR {timing.iqr_s * 1e3:6.2f}"
                    f"  min {min(timing.times_s) * 1e3:7.2f}  max {max(timing.times_s) * 1e3:7.2f}"
                    f"  n {len(timing.times_s)}")
            log(f"  litert alone (worker's timer, back to back) {own.median_s * 1e3:.2f} ms "
                f"IQR {own.iqr_s * 1e3:.2f}")
    return results


def main(argv=None) -> int:
    import argparse
    import os

    parser = argparse.ArgumentParser(
        description="LiteRT (XNNPACK) vs ONNX Runtime vs MNN on the same network, interleaved",
        epilog="example: .venv/bin/python -m targets.engines.litert --models "
               "mobilenet_v1,keras:mobilenet --threads 1,2 --repeats 20")
    parser.add_argument("--models", default="mobilenet_v1,mobilenet_v2,keras:mobilenet,"
                                            "keras:mobilenet_v2")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    missing = problems()
    if missing:
        print(f"litert: {missing[0]}")
        return 2
    print(f"{version()}; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="hwsim-litert-cmp-") as work:
        compare(args.models.split(","), [int(t) for t in args.threads.split(",")], args.repeats,
                Path(work))
    print(f"load at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
