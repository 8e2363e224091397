"""Runners: one small C program built for every target and run by every runner gives the
same answer as numpy; endless loops are killed at the timeout; crashes and traps are
reported; TVM modules run through a real TVM RPC server."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from models.errors import UserError
from targets.cpu import load_cpu_target
from targets.runners import RunError, get_runner, parse_times, runner_problems
from targets.toolchains import build_executable, export_tvm_module
from tests.conftest import in_ci, require_tools

# Program protocol (targets/runners/base.py): files in the workdir, HWSIM_TIMES on stdout.
AFFINE_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: in.f32 out.f32 repeats\n"); return 2; }
  FILE *in = fopen(argv[1], "rb");
  if (!in) { perror(argv[1]); return 2; }
  fseek(in, 0, SEEK_END); long n = ftell(in) / 4; fseek(in, 0, SEEK_SET);
  float *x = malloc(n * 4), *y = malloc(n * 4);
  if (fread(x, 4, n, in) != (size_t)n) return 3;
  fclose(in);
  int repeats = atoi(argv[3]);
  printf("elements %ld\nHWSIM_TIMES [", n);
  for (int r = 0; r < repeats; r++) {
    double start = now_s();
    for (long i = 0; i < n; i++) y[i] = x[i] * x[i] + 3.0f * x[i] - 1.0f;
    printf(r ? ", %.9f" : "%.9f", now_s() - start);
  }
  printf("]\n");
  FILE *out = fopen(argv[2], "wb");
  fwrite(y, 4, n, out); fclose(out);
  return 0;
}
"""
LOOP_PROGRAM = "int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n"
CRASH_PROGRAM = "int main(void) { volatile int *p = 0; return *p; }\n"
TRAP_PROGRAM = "int main(void) { __builtin_trap(); }\n"
EXIT_PROGRAM = '#include <stdio.h>\nint main(void) { fprintf(stderr, "bad input\\n"); return 3; }\n'

# runner -> (target, suffix of the built program, system tools it needs)
RUNNERS = {
    "local": ("host", "", ("gcc",)),
    "qemu": ("snapdragon855", "", ("aarch64-linux-gnu-gcc", "qemu-aarch64-static")),
    "wasmtime": ("wasm32-simd128", ".wasm", ("clang", "wasm-ld")),
    "node": ("wasm32-simd128", ".wasm", ("clang", "wasm-ld", "node")),
}


def require_runner(runner_name: str):
    """Returns the target for a runner; skips (fails in CI) when a tool it needs is missing."""
    target_name, _, tools = RUNNERS[runner_name]
    require_tools(*tools)
    target = load_cpu_target(target_name)
    problems = runner_problems(runner_name, target)
    if problems:
        if in_ci():
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))
    return target


def build(runner_name: str, tmp_path, source_text: str, stem: str):
    target = require_runner(runner_name)
    suffix = RUNNERS[runner_name][1]
    source = tmp_path / f"{stem}.c"
    source.write_text(source_text)
    executable = build_executable(target, [source], tmp_path / "bin" / f"{stem}{suffix}",
                                  cache_dir=tmp_path / "cache")
    return target, executable


@pytest.fixture(scope="module")
def affine_input() -> np.ndarray:
    values = np.arange(-500, 524, dtype=np.float32) / 4     # x*x + 3x - 1 is exact in float32
    return values


@pytest.mark.toolchain
@pytest.mark.parametrize("runner_name", sorted(RUNNERS))
def test_program_matches_numpy_on_every_runner(tmp_path, runner_name, affine_input):
    target, executable = build(runner_name, tmp_path, AFFINE_PROGRAM, "affine")
    workdir = tmp_path / "work"
    workdir.mkdir()
    affine_input.tofile(workdir / "x.f32")
    result = get_runner(runner_name, target).run(executable, ["x.f32", "y.f32", "3"], workdir,
                                                 timeout_s=60)
    assert (result.target, result.runner, result.returncode) == (target.name, runner_name, 0)
    assert len(result.times_s) == 3 and all(seconds >= 0 for seconds in result.times_s)
    assert result.wall_s > 0 and f"elements {affine_input.size}" in result.stdout
    produced = np.fromfile(workdir / "y.f32", dtype=np.float32)
    expected = affine_input * affine_input + np.float32(3) * affine_input - np.float32(1)
    np.testing.assert_array_equal(produced, expected)


@pytest.mark.toolchain
@pytest.mark.parametrize("runner_name", sorted(RUNNERS))
def test_endless_loop_is_killed_at_the_timeout(tmp_path, runner_name):
    target, executable = build(runner_name, tmp_path, LOOP_PROGRAM, "loop")
    start = time.monotonic()
    with pytest.raises(RunError) as caught:
        get_runner(runner_name, target).run(executable, [], tmp_path, timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed < 15
    message = str(caught.value)
    assert "timed out after 1.5 s" in message
    assert f"target '{target.name}'" in message and f"runner {runner_name}" in message
    assert executable.name in message


@pytest.mark.toolchain
@pytest.mark.parametrize("runner_name,source_text,expected", [
    ("local", CRASH_PROGRAM, "crashed with SIGSEGV"),
    ("qemu", CRASH_PROGRAM, "crashed with SIGSEGV"),
    ("wasmtime", TRAP_PROGRAM, "trapped"),
    ("node", TRAP_PROGRAM, "trapped"),
])
def test_crash_is_reported(tmp_path, runner_name, source_text, expected):
    target, executable = build(runner_name, tmp_path, source_text, "crash")
    with pytest.raises(RunError, match=expected) as caught:
        get_runner(runner_name, target).run(executable, [], tmp_path, timeout_s=30)
    assert caught.value.runner == runner_name and caught.value.program == executable.name


@pytest.mark.toolchain
@pytest.mark.parametrize("runner_name", ["local", "wasmtime"])
def test_nonzero_exit(tmp_path, runner_name):
    target, executable = build(runner_name, tmp_path, EXIT_PROGRAM, "exit3")
    runner = get_runner(runner_name, target)
    with pytest.raises(RunError, match="exited with code 3.*bad input"):
        runner.run(executable, [], tmp_path, timeout_s=30)
    result = runner.run(executable, [], tmp_path, timeout_s=30, check=False)
    assert result.returncode == 3 and "bad input" in result.stderr


def test_parse_times():
    assert parse_times("x\nHWSIM_TIMES [0.5, 1]\nHWSIM_TIMES [2e-3]\n") == (0.5, 1.0, 0.002)
    assert parse_times("no times here") == ()
    for bad in ('HWSIM_TIMES {"a": 1}', "HWSIM_TIMES [-1]", "HWSIM_TIMES [true]",
                "HWSIM_TIMES [1,"):
        with pytest.raises(ValueError):
            parse_times(bad)


def test_runner_target_mismatches_are_user_errors():
    sd855, wasm = load_cpu_target("snapdragon855"), load_cpu_target("wasm32-simd128")
    with pytest.raises(UserError, match="cannot run aarch64"):
        get_runner("wasmtime", sd855)
    with pytest.raises(UserError, match="cannot run wasm32"):
        get_runner("qemu", wasm)
    with pytest.raises(UserError, match="did you mean 'qemu'"):
        get_runner("qemux", sd855)
    with pytest.raises(UserError, match="rpc://HOST:PORT"):
        get_runner("rpc://nohost", sd855)
    with pytest.raises(UserError, match="node"):
        get_runner("browser", wasm)
    assert get_runner(None, wasm).name == "wasmtime"


# ---------------------------------------------------------------- TVM RPC

@pytest.mark.slow
def test_tvm_module_over_a_real_rpc_server(tmp_path):
    import tvm
    from tvm import te

    from targets.runners.rpc_server import start_local_rpc_server

    require_tools("gcc")
    host = load_cpu_target("host")
    rows, cols, inner = 32, 48, 64
    a = te.placeholder((rows, inner), name="A")
    b = te.placeholder((inner, cols), name="B")
    k = te.reduce_axis((0, inner), name="k")
    c = te.compute((rows, cols), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    library = tvm.tirx.build(tvm.IRModule({"main": te.create_prim_func([a, b, c])}),
                             target=tvm.target.Target(host.tvm_target))
    library_path = export_tvm_module(library, host, tmp_path / "matmul.so")

    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((rows, inner), dtype=np.float32)
    b_np = rng.standard_normal((inner, cols), dtype=np.float32)
    c_np = np.zeros((rows, cols), dtype=np.float32)
    port = 20000 + int(rng.integers(0, 20000))
    with start_local_rpc_server("127.0.0.1", port, port + 200) as server:
        runner = get_runner(server.address, host)
        outputs, times_s = runner.run_tvm_module(library_path, "main", [a_np, b_np, c_np],
                                                 repeats=4)
        np.testing.assert_allclose(outputs[2], a_np @ b_np, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(outputs[0], a_np)
        assert len(times_s) == 4 and all(seconds > 0 for seconds in times_s)
        with pytest.raises(RunError, match="no function 'missing'"):
            runner.run_tvm_module(library_path, "missing", [a_np, b_np, c_np], repeats=1)
    with pytest.raises(UserError, match="cannot reach the TVM RPC server"):
        runner.run_tvm_module(library_path, "main", [a_np, b_np, c_np], repeats=1)
    with pytest.raises(UserError, match="TVM modules, not programs"):
        runner.run(library_path, [], tmp_path, timeout_s=5)


@pytest.mark.slow
def test_rpc_server_that_never_answers_is_cut_off(tmp_path):
    import socket

    host = load_cpu_target("host")
    library_path = tmp_path / "never.so"
    library_path.write_bytes(b"not loaded: the handshake never completes")
    with socket.socket() as silent:              # accepts TCP connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        runner = get_runner(f"rpc://127.0.0.1:{port}", host, startup_margin_s=8)
        start = time.monotonic()
        with pytest.raises(RunError, match="timed out"):
            runner.run_tvm_module(library_path, "main", [np.zeros(4, np.float32)], repeats=1,
                                  timeout_s=1)
        assert time.monotonic() - start < 20


# ---------------------------------------------------------------- adb

@pytest.mark.phone
def test_adb_on_a_phone(tmp_path, affine_input):
    """`make test-phone` runs it with a phone attached; `make test` (and CI, which has no phone)
    leaves it out by marker, so a run that selects it and finds no phone fails, never skips."""
    adb_path = shutil.which("adb")
    assert adb_path, "no phone here: 'adb' is not installed (apt install adb; connect a phone)"
    from targets.runners.adb import adb_devices
    assert adb_devices(adb_path), "`adb devices` lists no device (connect one with USB debugging)"
    target, executable = build("qemu", tmp_path, AFFINE_PROGRAM, "affine")
    workdir = tmp_path / "work"
    workdir.mkdir()
    affine_input.tofile(workdir / "x.f32")
    result = get_runner("adb", target).run(executable, ["x.f32", "y.f32", "3"], workdir,
                                           timeout_s=60)
    assert len(result.times_s) == 3
    np.testing.assert_array_equal(np.fromfile(workdir / "y.f32", dtype=np.float32),
                                  affine_input * affine_input + 3 * affine_input - 1)


def test_adb_without_device_says_so(tmp_path, monkeypatch):
    fake_adb = tmp_path / "adb"
    fake_adb.write_text("#!/bin/sh\necho 'List of devices attached'\n")
    fake_adb.chmod(0o755)
    target = load_cpu_target("snapdragon855")
    runner = get_runner("adb", target, adb=str(fake_adb))
    with pytest.raises(UserError, match="no device") as caught:
        runner.run(tmp_path / "x", [], tmp_path, timeout_s=5)
    assert "USB debugging" in str(caught.value)


@pytest.mark.toolchain
def test_openmp_programs_use_every_core(tmp_path):
    source_text = (
        "#include <stdio.h>\n#include <omp.h>\n"
        "int main(void) { int threads = 0;\n#pragma omp parallel\n"
        "{\n#pragma omp atomic\nthreads++;\n}\n"
        "printf(\"threads %d\\n\", threads); return 0; }\n")
    for runner_name in ("local", "qemu"):
        target = require_runner(runner_name)
        source = tmp_path / "omp.c"
        source.write_text(source_text)
        executable = build_executable(target, [source], tmp_path / f"omp-{runner_name}",
                                      openmp=True)
        result = get_runner(runner_name, target).run(executable, [], tmp_path, timeout_s=60)
        expected = len(__import__("os").sched_getaffinity(0))
        assert f"threads {expected}" in result.stdout
    with pytest.raises(UserError, match="OpenMP"):
        build_executable(load_cpu_target("wasm32-simd128"), [source], tmp_path / "omp.wasm",
                         openmp=True)


# A stand-in for `adb` whose "phone" is a folder on this machine: it checks the adb
# runner's push / shell / pull sequence and exit-code handling without a device.
FAKE_ADB = r"""#!{python}
import os, shutil, subprocess, sys
PHONE = {phone!r}
def local(path):
    return PHONE + path if path.startswith("/data/") else path
args = sys.argv[1:]
if args[:1] == ["-s"]:
    args = args[2:]
command, rest = args[0], args[1:]
if command == "devices":
    print("List of devices attached\nFAKE01\tdevice")
elif command == "push":
    source, destination = rest[0], local(rest[1])
    if destination.endswith("/"):
        destination = os.path.join(destination, os.path.basename(source.rstrip("/")))
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, destination)
elif command == "pull":
    shutil.copytree(local(rest[0]), rest[1], dirs_exist_ok=True)
elif command == "shell":
    code = subprocess.run(["sh", "-c", rest[0].replace("/data/", PHONE + "/data/")]).returncode
    sys.exit(128 - code if code < 0 else code)     # like adb: a signal becomes 128 + number
else:
    sys.exit("fake adb: unsupported " + command)
"""


@pytest.fixture
def fake_adb(tmp_path):
    import sys
    phone = tmp_path / "phone"
    phone.mkdir()
    script = tmp_path / "fake-adb"
    script.write_text(FAKE_ADB.format(python=sys.executable, phone=str(phone)))
    script.chmod(0o755)
    return script


@pytest.mark.toolchain
def test_adb_runner_push_run_pull_with_a_fake_device(tmp_path, fake_adb, affine_input):
    from targets.runners.adb import AdbRunner

    require_tools("gcc", "timeout")
    _, executable = build("local", tmp_path, AFFINE_PROGRAM, "affine")    # the "phone" is this host
    workdir = tmp_path / "work"
    workdir.mkdir()
    affine_input.tofile(workdir / "x.f32")
    runner = AdbRunner(target="fake-phone", adb=str(fake_adb))
    result = runner.run(executable, ["x.f32", "y.f32", "2"], workdir, timeout_s=30)
    assert len(result.times_s) == 2 and result.runner == "adb"
    np.testing.assert_array_equal(np.fromfile(workdir / "y.f32", dtype=np.float32),
                                  affine_input * affine_input + 3 * affine_input - 1)
    _, looping = build("local", tmp_path, LOOP_PROGRAM, "loop")
    with pytest.raises(RunError, match="timed out after 1 s"):
        runner.run(looping, [], workdir, timeout_s=1)
    _, crashing = build("local", tmp_path, CRASH_PROGRAM, "crash")
    with pytest.raises(RunError, match="crashed with SIGSEGV"):
        runner.run(crashing, [], workdir, timeout_s=30)


# ---------------------------------------------------------------- runners describe themselves

def test_every_runner_module_describes_itself():
    """Each module that defines a runner declares its SPEC, and the registry lists it."""
    import importlib
    import pkgutil

    import targets.runners as package
    from targets.runners import RUNNER_SPECS
    helpers = {"base", "rpc_server"}           # the protocol, and a server for tests
    modules = [info.name for info in pkgutil.iter_modules(package.__path__) if info.name not in helpers]
    specs = {spec.name: spec for spec in RUNNER_SPECS}
    assert len(specs) == len(RUNNER_SPECS)
    for module_name in modules:
        spec = importlib.import_module(f"targets.runners.{module_name}").SPEC
        assert specs[spec.name] is spec, module_name
        assert spec.make is not None and spec.isas and spec.summary


@pytest.mark.parametrize("target_name", ["host", "snapdragon855", "wasm32-simd128"])
def test_registry_follows_the_records(target_name):
    """get_runner builds a spec's runner exactly for the ISAs the spec names (local: the
    machine's own), refuses the others, and target files accept the same pairs."""
    import platform

    from targets.runners import RUNNER_SPECS, runner_spec, runners_for_isa, target_file_runners
    from targets.runners.local import MACHINE_ISAS
    target = load_cpu_target(target_name)
    assert target.runner in runners_for_isa(target.isa)
    assert set(runners_for_isa(target.isa)) <= set(target_file_runners())
    for spec in RUNNER_SPECS:
        name = "rpc://127.0.0.1:9090" if spec.address else spec.name
        runs_here = spec.make is not None and (spec.address or (
            target.isa in spec.isas and (spec.name != "local"
                                         or MACHINE_ISAS.get(platform.machine().lower()) == target.isa)))
        if runs_here:
            runner = get_runner(name, target)
            assert runner.name == spec.name and runner_spec(name) is spec
        else:
            with pytest.raises(UserError):
                get_runner(name, target)
        if spec.in_target_files and not spec.address:
            assert (spec.name in runners_for_isa(target.isa)) == (target.isa in spec.isas)


def test_only_emulation_has_unreal_timing():
    from targets.runners import RUNNER_SPECS
    assert [spec.name for spec in RUNNER_SPECS if not spec.timing_real] == ["qemu"]


def test_problems_come_from_the_runner_module(monkeypatch):
    """runner_problems asks the spec's own check: a missing qemu binary is named with its package."""
    target = load_cpu_target("snapdragon855")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    problems = runner_problems("qemu", target)
    assert problems == ["'qemu-aarch64-static' not found (apt-get install qemu-user-static)"]


def test_timing_is_real_where_a_tuner_may_measure():
    """Measured times rank schedules only on a runner driven from here that is not emulated."""
    from targets.runners import target_file_runners, timing_is_real
    real = {name for name in target_file_runners() if timing_is_real(name)}
    assert real == {"local", "wasmtime", "node", "rpc", "adb"}      # not qemu, not browser
    assert timing_is_real("rpc://10.0.0.2:9090") and not timing_is_real("no-such-runner")
