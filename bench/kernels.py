"""Sparse CPU kernels against dense baselines measured in the same run.

    python bench/kernels.py                       # host + wasm32, all shapes
    python bench/kernels.py --targets host --shapes gemm1024 --repeats 7
    python bench/kernels.py --json results.json   # also write the rows as JSON
    python bench/kernels.py --tuning-log tuning/  # use the scheduler's best tiles

Shapes: MobileNet-v1 1x1 convolutions (CHW: cout x cin x pixels), BERT-base GEMMs
(tokens=128 as the pixel axis), 1024^3 (1024 x 1024 x 1008 pixels, a multiple of no tile).
Patterns: 2:4, 2:8, 1:8 (N:M along the reduction axis, one index set per output row),
2:8 with one index set per 8 output rows ("2:8/rows8", N:M on 8x1 row blocks), and
block 1x4 at 80% sparsity (1 output x 4 input channels, XNNPACK-style kernel); on the host
also XNNPACK's 4x1 blocks. Baselines: numpy (OpenBLAS) on the host, TVM's dense GEMM built
for the same target (hand schedule), and our own dense kernel (the N:M template at n = m);
"vs best" divides by the fastest dense of the three (TVM's hand schedule is weak on pixel
tails such as 49 or 196). Every baseline is timed before and after the
sparse kernels of its shape, and the faster of the two is used (conservative ratios); every
time is the best of --repeats runs (the machines here are shared: the best run is the one
least disturbed, for baselines and kernels alike).
On an x86 host each shape also gets the ceiling of the per-row N:M kernels measured here: a
picked row of X costs one loaded vector per FMA (plus the weight's broadcast a pick), so the
host's rate of FMAs that load their operand from L1 (hwsim.cpu.gather_bench.fma_load_rate),
against the FMA rate BLAS reached on the same shape, bounds their speedup.
Timing never gates CI: this prints a table of ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen import build as kernel_build  # noqa: E402
from codegen import dense_baseline  # noqa: E402
from codegen.isa import get_isa  # noqa: E402
from codegen.kernels import nmgemm, spmm  # noqa: E402
from codegen.kernels.nmgemm import mask_nm, mask_nm_shared  # noqa: E402
from codegen.kernels.spmm import mask_blocks  # noqa: E402
from hwsim.cpu import gather_bench  # noqa: E402
from targets.cpu import load_cpu_target  # noqa: E402
from targets.features import detect_host_features, measure_clock_mhz  # noqa: E402

SHAPES = {  # name: (cout, k, pixels)
    "mbv1-pw2": (128, 64, 3136),
    "mbv1-pw4": (256, 128, 784),
    "mbv1-pw6": (512, 256, 196),
    "mbv1-pw8": (512, 512, 196),
    "mbv1-pw13": (1024, 1024, 49),
    "bert-qkv": (768, 768, 128),
    "bert-ffn1": (3072, 768, 128),
    "gemm1024": (1024, 1024, 1008),
}
PROBE_CACHE = Path(__file__).resolve().parent.parent / ".hwsim-cache"   # gather_bench's figures, per host
PATTERNS = ("2:4", "2:8", "1:8", "2:8/rows8", "block1x4@0.2")
HOST_EXTRA = ("block4x1@0.2",)


def masked_weights(w: np.ndarray, pattern: str) -> np.ndarray:
    """Returns w pruned to ``pattern`` by magnitude (models/patterns.py where it has the mask)."""
    if pattern.startswith("block"):
        dims, density = pattern[len("block"):].split("@")
        rows, cols = map(int, dims.split("x"))
        try:
            from models.patterns import Block
            return np.where(Block(rows, cols, float(density)).mask(w), w, 0).astype(np.float32)
        except NotImplementedError:
            return mask_blocks(w, rows, cols, float(density))
    spec, _, rows = pattern.partition("/rows")
    n, m = map(int, spec.split(":"))
    if rows:
        return mask_nm_shared(w, n, m, int(rows))
    try:
        from models.patterns import NM
        return np.where(NM(n, m, axis=1).mask(w), w, 0).astype(np.float32)
    except NotImplementedError:
        return mask_nm(w, n, m)


def tuned_params(tuning_dir: Path | None, target, pattern: str, shape: tuple[int, int, int]):
    """Returns the tuning log's best N:M parameters for this op (None: untuned or no log)."""
    if tuning_dir is None:
        return None
    from codegen.schedule import SparseOp, best_params
    from codegen.tuning_log import TuningLog

    path = Path(tuning_dir) / f"{target.name}.jsonl"
    if not path.exists():
        return None
    spec, _, rows = pattern.partition("/rows")
    n, m = map(int, spec.split(":"))
    return best_params(TuningLog(path), SparseOp(*shape, n, m, int(rows) if rows else 1))


def run_pattern(pattern: str, w: np.ndarray, x: np.ndarray, target, workdir: Path, repeats: int,
                tuning_dir: Path | None = None, flavour: str | None = None):
    """Returns the KernelRun of the sparse kernel for ``pattern`` (the tuning log's best
    schedule when there is one, else the default tile)."""
    masked = masked_weights(w, pattern)
    if pattern.startswith("block"):
        rows, cols = map(int, pattern[len("block"):].split("@")[0].split("x"))
        return spmm.run_layer(masked, x, None, spmm.default_schedule(target, nr=rows, kb=cols, flavour=flavour),
                              target, workdir, repeats=repeats)
    spec, _, rows = pattern.partition("/rows")
    n, m = map(int, spec.split(":"))
    params = tuned_params(tuning_dir, target, pattern, (w.shape[0], w.shape[1], x.shape[1]))
    if params is None or (flavour and params.isa != flavour):
        params = nmgemm.default_schedule(n, m, target, shared=bool(rows), flavour=flavour,
                                         rows=int(rows) if rows else None)
    return nmgemm.run_layer(masked, x, None, params, target, workdir, repeats=repeats)


def warm_up_cpu(seconds: float = 1.5) -> None:
    """Keeps both cores busy for a moment: the first second of load after idle runs slow on
    the VMs seen here (clock ramp / vCPU scheduling), which would skew whatever runs first."""
    a = np.ones((512, 512), np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a @ a


def time_numpy(w: np.ndarray, x: np.ndarray, repeats: int) -> float:
    w @ x
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        w @ x
        times.append(time.perf_counter() - start)
    return min(times)


class TvmDense:
    """TVM's dense GEMM for one shape on one target, timeable more than once."""

    def __init__(self, target, w, x, workdir: Path):
        self.target, self.w, self.x = target, w, x
        cout, k = w.shape
        p = x.shape[1]
        if target.isa == "x86_64":
            self.lib, _ = dense_baseline.build_dense(cout, k, p, target)
        else:
            self.workdir = workdir / "tvm-dense"
            self.executable, _ = dense_baseline.build_for_target(cout, k, p, target, self.workdir)
            kernel_build.write_case(self.workdir, "dense", {"w": w, "x": x}, (cout, k, p))

    def time(self, repeats: int) -> tuple[float, float]:
        """Returns (median seconds, max abs error against numpy)."""
        reference = self.w @ self.x
        if self.target.isa == "x86_64":
            seconds, y = dense_baseline.measure_host(self.lib, self.w, self.x, repeats)
        else:
            result = kernel_build.run(self.executable, self.target, self.workdir, repeats=repeats,
                                      warmup=1)
            seconds = min(result.times_s)
            y = kernel_build.read_output(self.workdir, "dense", "y", reference.shape)
        return seconds, float(np.abs(y - reference).max())


def per_row_ceiling(n: int, m: int, vectors: int, load_rate: float, blas_rate: float) -> float:
    """Returns the most a per-row N:M kernel can gain over BLAS: it keeps n of m MACs, and
    each pick loads ``vectors`` vectors of X (one a FMA) and broadcasts one weight, so it
    issues at most load_rate x vectors / (vectors + 1) FMAs a cycle where BLAS issued
    ``blas_rate`` (both per core)."""
    return m / n * load_rate * vectors / (vectors + 1) / blas_rate


def ceiling_line(target, cout: int, k: int, p: int, blas_s: float, flavour: str | None) -> str | None:
    """Returns the printed per-row ceiling of 2:8 on this shape (None off x86 hosts)."""
    if not gather_bench.can_measure(target):
        return None
    params = nmgemm.default_schedule(2, 8, target, flavour=flavour)
    isa = get_isa(params.isa)
    vector_bytes, vectors = isa.lanes * 4, params.nr // isa.lanes
    load_rate = gather_bench.fma_load_rate(vector_bytes, PROBE_CACHE)
    fma_rate = 1.0 / gather_bench.fma_cycles(vector_bytes, PROBE_CACHE)
    mhz = measure_clock_mhz(runs=15)
    if not mhz:
        return None
    cores = max(1, target.cores)
    blas_rate = cout * k * p / isa.lanes / (blas_s * mhz * 1e6 * cores)
    ceiling = per_row_ceiling(2, 8, vectors, load_rate, blas_rate)
    return (f"{'':10s} ceiling of 2:8 per row here: FMAs loading their {8 * vector_bytes}-bit operand "
            f"{load_rate:.2f}/cycle (without the load {fma_rate:.2f}), {vectors} loads + 1 broadcast a "
            f"pick; BLAS {blas_rate:.2f} FMAs/cycle/core ({cores} cores, {mhz:.0f} MHz measured): "
            f"2:8 <= {ceiling:.2f}x BLAS")


def vs_blas(blas_s: float | None, seconds: float) -> str:
    """Returns the 'vs BLAS' column: '-' where there is no BLAS to compare with (wasm)."""
    return f"{blas_s / seconds:8.2f}" if blas_s else f"{'-':>8s}"


def bench_target(target_name: str, shapes: list[str], repeats: int, workdir: Path,
                 tuning_dir: Path | None = None, flavour: str | None = None) -> list[dict]:
    target = load_cpu_target(target_name)
    if flavour and flavour not in kernel_build.runnable_flavours(target):
        flavour = None  # e.g. --flavour avx2 names the host; wasm keeps its own
    problems = kernel_build.target_problems(target)
    if problems:
        print(f"\n{target_name}: skipped ({'; '.join(problems)})")
        return []
    print(f"\n== target {target.name}: {target.isa}, SIMD {target.simd} "
          f"(kernel flavours {', '.join(kernel_build.runnable_flavours(target))}), "
          f"runner {target.runner}, kernel threads {nmgemm.default_schedule(2, 8, target).threads}")
    header = (f"{'shape':10s} {'cout x k x p':>18s} {'pattern':13s} {'kernel':44s} {'ms':>8s} "
              f"{'vs BLAS':>8s} {'vs TVM':>7s} {'vs best':>8s} {'err':>8s}")
    print(header)
    print("-" * len(header))
    rows = []
    rng = np.random.default_rng(0)
    patterns = PATTERNS + (HOST_EXTRA if target.isa == "x86_64" else ())
    for shape in shapes:
        cout, k, p = SHAPES[shape]
        w = rng.standard_normal((cout, k)).astype(np.float32)
        x = rng.standard_normal((k, p)).astype(np.float32)
        shape_dir = workdir / target.name / shape
        tvm_dense = TvmDense(target, w, x, shape_dir)
        warm_up_cpu()
        blas_s = [time_numpy(w, x, repeats)] if target.isa == "x86_64" else []
        tvm_first = tvm_dense.time(repeats)
        results = [(pattern, run_pattern(pattern, w, x, target, shape_dir, repeats, tuning_dir,
                                            flavour))
                   for pattern in patterns]
        ours = nmgemm.run_layer(w, x, None, nmgemm.default_schedule(1, 1, target, shared=True, flavour=flavour),
                                target, shape_dir, repeats=repeats)
        if blas_s:
            blas_s.append(time_numpy(w, x, repeats))
        tvm_s = min(tvm_first[0], tvm_dense.time(repeats)[0])
        blas = min(blas_s) if blas_s else None
        dims = f"{cout}x{k}x{p}"
        if blas:
            print(f"{shape:10s} {dims:>18s} {'dense':13s} {'numpy/OpenBLAS':44s} {blas * 1e3:8.3f} "
                  f"{1.0:8.2f} {tvm_s / blas:7.2f} {min(tvm_s, ours.best_s, blas) / blas:8.2f}")
        print(f"{shape:10s} {dims:>18s} {'dense':13s} {'TVM dense (hand schedule)':44s} "
              f"{tvm_s * 1e3:8.3f} {vs_blas(blas, tvm_s)} {1.0:7.2f} "
              f"{1.0 if tvm_s <= ours.best_s else ours.best_s / tvm_s:8.2f} {tvm_first[1]:8.1e}")
        best_dense = min(tvm_s, ours.best_s, blas or float("inf"))
        print(f"{shape:10s} {dims:>18s} {'dense':13s} {ours.kernel + ' (ours)':44s} "
              f"{ours.best_s * 1e3:8.3f} {vs_blas(blas, ours.best_s)} "
              f"{tvm_s / ours.best_s:7.2f} {best_dense / ours.best_s:8.2f} {ours.max_abs_error:8.1e}")
        for pattern, result in results:
            seconds = result.best_s
            print(f"{shape:10s} {dims:>18s} {pattern:13s} {result.kernel:44s} {seconds * 1e3:8.3f} "
                  f"{vs_blas(blas, seconds)} {tvm_s / seconds:7.2f} "
                  f"{best_dense / seconds:8.2f} {result.max_abs_error:8.1e}")
            rows.append({"target": target.name, "shape": shape, "cout": cout, "k": k, "p": p,
                         "pattern": pattern, "kernel": result.kernel, "seconds": seconds,
                         "numpy_seconds": blas, "tvm_dense_seconds": tvm_s,
                         "speedup_vs_numpy": (blas / seconds) if blas else None,
                         "our_dense_seconds": ours.best_s, "speedup_vs_tvm": tvm_s / seconds,
                         "speedup_vs_best_dense": best_dense / seconds,
                         "max_abs_error": result.max_abs_error})
        if blas:
            line = ceiling_line(target, cout, k, p, blas, flavour)
            if line:
                print(line)
        sys.stdout.flush()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: python bench/kernels.py --targets host --shapes gemm1024")
    parser.add_argument("--targets", default="host,wasm32-simd128")
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"from {', '.join(SHAPES)}")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--flavour", default=None,
                        help="force a kernel flavour where the target runs it (e.g. avx2 on an "
                             "AVX-512 host); default: the widest detected")
    parser.add_argument("--tuning-log", type=Path, default=None,
                        help="folder of <target>.jsonl logs (python -m codegen.schedule) whose "
                             "best schedules replace the default tiles")
    args = parser.parse_args(argv)
    shapes = [shape for shape in args.shapes.split(",") if shape]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    print(f"CPU: {detect_host_features().model_name}, {os.cpu_count()} logical CPUs")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hwsim-bench-kernels-"))
    rows = []
    for target in args.targets.split(","):
        rows += bench_target(target, shapes, args.repeats, workdir, args.tuning_log, args.flavour)
    if args.json:
        from models.fileio import write_atomic
        write_atomic(str(args.json), json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
