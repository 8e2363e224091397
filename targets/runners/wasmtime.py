"""Run a WASI .wasm under the PyPI ``wasmtime`` package, in a child Python process.

The child exists so that a trap, a crash of the engine or an endless loop can be
killed at the timeout without taking the caller down. ``Config.target`` is never
set: setting it in-process aborts the whole interpreter.

Run as a module, this file is that child:
``python -m targets.runners.wasmtime MODULE.wasm WORKDIR STDOUT STDERR [ARGS...]``.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import (TRAP_MARKER, Completed, RunnerSpec, RunResult, finish,
                                  python_module_command, run_process)

WASM_MAGIC = b"\0asm"


def check_wasm(executable: Path) -> Path:
    """Returns the resolved path of a .wasm module; UserError if it is missing or not wasm."""
    executable = Path(executable).resolve()
    if not executable.is_file():
        raise UserError("program not found", source=str(executable), field="executable",
                        fix="build it first (targets.toolchains.build_executable)")
    if executable.read_bytes()[:4] != WASM_MAGIC:
        raise UserError("not a WebAssembly module", source=str(executable), field="executable",
                        fix="build it for the wasm32-simd128 target")
    return executable


@dataclass(frozen=True)
class WasmtimeRunner:
    """Runs a WASI command module with ``workdir`` preopened as '.'."""
    target: str
    python: str = sys.executable
    name: str = "wasmtime"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        executable = check_wasm(executable)
        workdir = Path(workdir).resolve()
        with tempfile.TemporaryDirectory(prefix="hwsim-wasmtime-") as capture_dir:
            stdout_path = Path(capture_dir) / "stdout"
            stderr_path = Path(capture_dir) / "stderr"
            command = python_module_command("targets.runners.wasmtime", self.python) + [
                str(executable), str(workdir), str(stdout_path), str(stderr_path), *args]
            completed = run_process(command, workdir, timeout_s, target=self.target,
                                    runner=self.name, program=executable.name)
            program_stdout = stdout_path.read_text(errors="replace") if stdout_path.exists() else ""
            program_stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        completed = Completed(completed.returncode, program_stdout + completed.stdout,
                              program_stderr + completed.stderr, completed.wall_s)
        return finish(completed, target=self.target, runner=self.name, program=executable.name,
                      check=check)


def _child_main(argv: list[str]) -> int:
    """Instantiates the module with WASI and calls _start; returns the program's exit code."""
    import wasmtime

    wasm_path, workdir, stdout_path, stderr_path, *program_args = argv
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [Path(wasm_path).name, *program_args]
    wasi.preopen_dir(workdir, ".")
    wasi.stdout_file = stdout_path
    wasi.stderr_file = stderr_path
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    try:
        module = wasmtime.Module.from_file(engine, wasm_path)
        instance = linker.instantiate(store, module)
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as exit_trap:
        return exit_trap.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "trap"
        print(f"{TRAP_MARKER} {first_line}\n{error}", file=sys.stderr)
        return 70
    return 0


def wasmtime_problems(runner: WasmtimeRunner) -> list[str]:
    """Returns why wasmtime cannot run here: the Python package is missing."""
    import importlib.util
    if importlib.util.find_spec("wasmtime") is None:
        return ["the Python package wasmtime is not installed (pip install wasmtime)"]
    return []


SPEC = RunnerSpec(name="wasmtime", isas=("wasm32",), timing_real=True,
                  summary="a WASI .wasm under the wasmtime engine (PyPI), in a child Python",
                  needs=("the Python package wasmtime",),
                  make=WasmtimeRunner, problems=wasmtime_problems)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
