"""Build a rendered kernel with its harness for a target, run it on .bin files, read results.

Compiling and running go through targets/: ``targets.toolchains.build_executable`` (host cc
with the detected -m flags, aarch64-linux-gnu-gcc -static, clang --target=wasm32-wasi) and
``targets.runners.get_runner`` (local, qemu, wasmtime, node, adb, rpc).

One layer, end to end::

    kernel = nmgemm.render(NmGemmParams(2, 8, "avx2", mr=4, nr=24))   # codegen.kernels.nmgemm
    exe = build(kernel, "host", workdir)
    write_case(workdir, "c0", {"values": ..., "indices": ..., "bias": ..., "x": ...}, (cout, k, p))
    result = run(exe, "host", workdir, repeats=5)      # result.times_s
    y = read_output(workdir, "c0", "y", (cout, p))
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from codegen.isa import get_isa
from codegen.render import RenderedKernel, render_harness
from targets.cpu import CpuTarget, load_cpu_target
from targets.runners import RunResult, get_runner, runner_problems
from targets.toolchains import build_executable, compiler_command, toolchain_problems

def as_target(target: str | CpuTarget) -> CpuTarget:
    return target if isinstance(target, CpuTarget) else load_cpu_target(target)


def target_problems(target: str | CpuTarget) -> list[str]:
    """Returns why kernels cannot be built and run for ``target`` here (empty when they can)."""
    target = as_target(target)
    return toolchain_problems(target) + runner_problems(None, target)


def runnable_flavours(target: str | CpuTarget) -> tuple[str, ...]:
    """Returns the kernel flavours this target runs: the scalar reference plus its detected SIMD.

    On the host AVX-512 is offered only when /proc/cpuinfo lists avx512f (never assumed)."""
    target = as_target(target)
    simd = get_isa(target.simd).name
    flavours = ["scalar"]
    if target.isa == "x86_64" and simd in ("avx2", "avx512"):
        flavours.append("avx2")
    if simd and simd not in flavours:
        flavours.append(simd)
    return tuple(flavours)


def best_flavour(target: str | CpuTarget) -> str:
    """Returns the widest kernel flavour the target runs (AVX-512 only when detected)."""
    return runnable_flavours(target)[-1]


def default_threads(target: str | CpuTarget) -> int:
    """Returns the OpenMP threads an untuned kernel starts: the cores on x86 hosts, else 1."""
    target = as_target(target)
    return target.cores if target.isa == "x86_64" else 1


def omp_wait_environment(environ: dict[str, str]) -> dict[str, str]:
    """Returns the OpenMP wait settings the kernels run with: the user's when ``environ`` sets
    any, else a short spin (GOMP_SPINCOUNT=3000, libgomp's pause loop: about 35 us here;
    it overrides PASSIVE's 0) before an idle worker sleeps. Why: a sleeping worker takes
    15-75 us to wake on a 2-vCPU KVM guest (a 23 us parallel loop: 12 us spinning, 28-88 us
    passive), paid by every layer's parallel region; an unbounded spin takes the CPU a loaded
    machine's other thread needs (under load 12 on 2 CPUs, MobileNet-v1 2:8 on 2 threads:
    235-315 ms spinning, 34-37 ms passive). Quiet, MobileNet-v1 2:8, 2 threads: 5.97 ms
    passive, 4.63 ms with this. ONNX Runtime's pool spins too, then sleeps."""
    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    if any(name in environ for name in names):
        return {name: environ[name] for name in names if name in environ}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def _openmp(kernel: RenderedKernel, target: CpuTarget) -> bool:
    return getattr(kernel.params, "threads", 1) > 1 and target.isa != "wasm32"


def build(kernel: RenderedKernel, target: str | CpuTarget, outdir: Path) -> Path:
    """Writes the kernel and its harness into ``outdir``, compiles them, returns the executable.

    The executable's name carries the kernel's source hash, so a rebuild of the same source
    into the same ``outdir`` (a pytest tmp dir, a bench dir) is skipped."""
    target = as_target(target)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    suffix = ".wasm" if target.isa == "wasm32" else ""
    executable = outdir / f"{kernel.name}-{target.name}-{kernel.source_hash}{suffix}"
    if executable.exists():
        return executable
    kernel_path = outdir / kernel.filename
    harness_path = outdir / f"harness_{kernel.name}.c"
    kernel_path.write_text(kernel.source)
    harness_path.write_text(render_harness(kernel))
    return Path(build_executable(target, [kernel_path, harness_path], executable,
                                 extra_cflags=("-std=gnu11", *get_isa(kernel.isa).cflags),
                                 openmp=_openmp(kernel, target)))


def compile_only(kernel: RenderedKernel, target: str | CpuTarget, outdir: Path) -> Path:
    """Compiles the kernel alone to an object file with -Wall -Werror (the every-variant check)."""
    target = as_target(target)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    source = outdir / kernel.filename
    source.write_text(kernel.source)
    obj = outdir / f"{kernel.name}-{target.name}.o"
    command = compiler_command(target, link=False, openmp=_openmp(kernel, target),
                               extra_cflags=("-std=gnu11", "-Wall", "-Werror",
                                             *get_isa(kernel.isa).cflags))
    completed = subprocess.run([*command, "-c", str(source), "-o", str(obj)],
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"compile of {kernel.filename} for {target.name} failed:\n"
                           f"{completed.stderr[-4000:]}")
    return obj


# ---------------------------------------------------------------- cases and runs


def write_case(workdir: Path, case: str, buffers: dict[str, np.ndarray | None],
               ints: tuple[int, ...], cases_file: str = "cases.txt") -> None:
    """Writes one case's input .bin files and appends its line to the cases file."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, array in buffers.items():
        data = b"" if array is None else np.ascontiguousarray(array).tobytes()
        (workdir / f"{case}.{name}.bin").write_bytes(data)
    with open(workdir / cases_file, "a", encoding="utf-8") as stream:
        stream.write(" ".join([case, *map(str, ints)]) + "\n")


def read_output(workdir: Path, case: str, name: str, shape: tuple[int, ...],
                dtype=np.float32) -> np.ndarray:
    return np.fromfile(Path(workdir) / f"{case}.{name}.bin", dtype=dtype).reshape(shape)


def run(executable: Path, target: str | CpuTarget, workdir: Path, repeats: int = 1,
        warmup: int = 0, cases_file: str = "cases.txt", timeout_s: float = 600.0) -> RunResult:
    """Runs a built harness on the cases in ``workdir`` with the target's runner
    (RunError, a UserError, on a crash or a nonzero exit); ``.times_s`` holds the timed runs."""
    target = as_target(target)
    return get_runner(None, target).run(Path(executable), [cases_file, str(repeats), str(warmup)],
                                        Path(workdir), timeout_s=timeout_s)


def compile_many(kernels: list[RenderedKernel], target: str | CpuTarget, outdir: Path
                 ) -> dict[str, str]:
    """Compiles many kernels for one target: every variant is written to its own file and the
    files are #included into one translation unit per flag set (AVX-512 apart from AVX2),
    compiled once with -c -Wall -Werror -O0 (this checks that every variant compiles; the
    optimised builds are the ones the equivalence tests run).

    Returns {kernel name: "" when it compiled, else the compiler's messages about it}."""
    target = as_target(target)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, str] = {}
    by_flags: dict[tuple[tuple[str, ...], bool], list[RenderedKernel]] = {}
    for kernel in kernels:
        key = (get_isa(kernel.isa).cflags, _openmp(kernel, target))
        by_flags.setdefault(key, []).append(kernel)
    for number, ((isa_flags, openmp), group) in enumerate(by_flags.items()):
        for kernel in group:
            (outdir / kernel.filename).write_text(kernel.source)
        bundle = outdir / f"bundle{number}.c"
        bundle.write_text("".join(f'#include "{kernel.filename}"\n' for kernel in group))
        command = compiler_command(target, link=False, openmp=openmp,
                                   extra_cflags=("-std=gnu11", "-Wall", "-Werror", *isa_flags))
        completed = subprocess.run([*command, "-O0", "-c", bundle.name, "-o", f"bundle{number}.o"],
                                   cwd=outdir, capture_output=True, text=True)
        for kernel in group:
            messages = "\n".join(line for line in completed.stderr.splitlines()
                                  if kernel.filename in line)
            if completed.returncode != 0 and not messages and "error" in completed.stderr:
                messages = completed.stderr[-2000:]
            results[kernel.name] = messages
    return results
