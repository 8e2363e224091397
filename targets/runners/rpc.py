"""Run TVM-built modules on a remote device through a TVM RPC server (e.g. a phone's tvm_rpc app).

TVM RPC runs TVM modules, not programs: ``run_tvm_module`` uploads an exported
module (.so, see targets.toolchains.export_tvm_module), calls one function on the
remote CPU and times it with TVM's time_evaluator. Start a server on the device with
``python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090`` (or TVM's Android app;
targets/runners/rpc_server.py starts one here without cloudpickle).

The client runs in a child Python so that a server that stops answering is killed
at the timeout instead of blocking the caller inside TVM's C++ socket code. Run as a
module, this file is that child:
``python -m targets.runners.rpc HOST PORT LIB FUNC IN.npz OUT.npz REPEATS NUMBER SESSION_S``.
"""
from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.errors import UserError
from targets.runners.base import (RunError, RunnerSpec, RunResult, python_module_command,
                                  run_process)

ADDRESS_PATTERN = re.compile(r"rpc://(?P<host>[^:/\s]+):(?P<port>\d{1,5})/?")
# How the child tells the parent what went wrong (one stderr line each).
CONNECT_FAILED = "HWSIM_RPC_CONNECT_FAILED:"
REMOTE_FAILED = "HWSIM_RPC_REMOTE_FAILED:"
EXIT_CONNECT, EXIT_REMOTE = 3, 4
# Room for the child's TVM import and the upload beyond the session itself.
STARTUP_MARGIN_S = 60.0


def parse_rpc_address(name: str) -> tuple[str, int]:
    """Returns (host, port) of 'rpc://HOST:PORT'; UserError otherwise."""
    match = ADDRESS_PATTERN.fullmatch(name.strip())
    if not match or not 0 < int(match.group("port")) < 65536:
        raise UserError(f"bad RPC address '{name}'", field="runner",
                        fix="write rpc://HOST:PORT, e.g. rpc://192.168.1.20:9090")
    return match.group("host"), int(match.group("port"))


@dataclass(frozen=True)
class RpcRunner:
    """Runs TVM modules on one RPC server; each call opens its own session."""
    target: str
    host: str
    port: int
    session_timeout_s: float = 600.0
    startup_margin_s: float = STARTUP_MARGIN_S
    python: str = sys.executable
    name: str = "rpc"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        raise UserError("the rpc runner runs TVM modules, not programs", field="runner",
                        fix="use RpcRunner.run_tvm_module(lib_path, func_name, arrays, repeats), "
                            "or the adb runner for programs")

    def run_tvm_module(self, lib_path: Path, func_name: str, arrays: Sequence[np.ndarray],
                       repeats: int, *, number: int = 1,
                       timeout_s: float | None = None) -> tuple[list[np.ndarray], tuple[float, ...]]:
        """Returns (every argument after one call, seconds per repeat) of ``func_name`` run remotely.

        ``arrays`` are all the function's tensor arguments, outputs included (TVM's
        destination-passing style); the caller picks its outputs from the returned
        list. Each repeat runs the function ``number`` times and reports the mean.
        The whole call, connection included, is killed after ``timeout_s``.
        """
        lib_path = Path(lib_path).resolve()
        if not lib_path.is_file():
            raise UserError("TVM module not found", source=str(lib_path), field="lib_path",
                            fix="export it with targets.toolchains.export_tvm_module")
        if repeats < 1 or number < 1:
            raise UserError(f"repeats and number must be >= 1, got {repeats}, {number}",
                            field="repeats")
        session_s = timeout_s or self.session_timeout_s
        with tempfile.TemporaryDirectory(prefix="hwsim-rpc-") as scratch:
            inputs, outputs = Path(scratch) / "in.npz", Path(scratch) / "out.npz"
            np.savez(inputs, *[np.ascontiguousarray(array) for array in arrays])
            command = python_module_command("targets.runners.rpc", self.python) + [
                self.host, str(self.port), str(lib_path), func_name, str(inputs), str(outputs),
                str(repeats), str(number), str(session_s)]
            done = run_process(command, Path(scratch), session_s + self.startup_margin_s,
                               target=self.target, runner=self.name, program=lib_path.name)
            if done.returncode == 0 and outputs.is_file():
                with np.load(outputs) as saved:
                    results = [saved[f"arr_{index}"] for index in range(len(arrays))]
                    times_s = tuple(float(seconds) for seconds in saved["times_s"])
                return results, times_s
        if CONNECT_FAILED in done.stderr:
            reason = done.stderr.split(CONNECT_FAILED, 1)[1].strip().splitlines()[0]
            raise UserError(f"cannot reach the TVM RPC server at {self.host}:{self.port}: {reason}",
                            field="runner",
                            fix="start one: python -m tvm.exec.rpc_server --host 0.0.0.0 "
                                f"--port {self.port} (or TVM's Android RPC app)")
        reason = (done.stderr.split(REMOTE_FAILED, 1)[1].strip().splitlines() or ["?"])[0] \
            if REMOTE_FAILED in done.stderr else f"client exited with code {done.returncode}"
        raise RunError(f"failed remotely: {reason}", target=self.target, runner=self.name,
                       program=lib_path.name, returncode=done.returncode, stderr=done.stderr,
                       fix="check that the module was built for the remote's target")


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _child_main(argv: list[str]) -> int:
    """Connects, uploads, runs and times; writes every argument and the times to OUT.npz."""
    host, port, lib_path, func_name, inputs, outputs, repeats, number, session_s = argv
    import tvm
    from tvm import rpc

    try:
        # The server also ends the session (and the remote call) after session_timeout.
        session = rpc.connect(host, int(port), session_timeout=float(session_s))
    except Exception as error:          # TVM raises TVMError / RPCError / OSError subclasses
        print(f"{CONNECT_FAILED} {_last_line(error)}", file=sys.stderr)
        return EXIT_CONNECT
    try:
        with np.load(inputs) as saved:
            arrays = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        session.upload(lib_path)
        remote_lib = session.load_module(Path(lib_path).name)
        device = session.cpu()
        remote_arrays = [tvm.runtime.tensor(array, device) for array in arrays]
        remote_lib[func_name](*remote_arrays)
        device.sync()
        results = [remote.numpy() for remote in remote_arrays]
        timer = remote_lib.time_evaluator(func_name, device, number=int(number), repeat=int(repeats))
        times_s = np.array([float(seconds) for seconds in timer(*remote_arrays).results])
    except Exception as error:
        print(f"{REMOTE_FAILED} {_last_line(error)}\n{error}", file=sys.stderr)
        return EXIT_REMOTE
    partial = Path(outputs).with_suffix(".partial.npz")
    np.savez(partial, *results, times_s=times_s)
    partial.replace(outputs)
    return 0


def make_rpc_runner(*, target: str, address: str, **options) -> RpcRunner:
    """Returns the RpcRunner of an 'rpc://HOST:PORT' address (UserError when malformed)."""
    host, port = parse_rpc_address(address)
    return RpcRunner(target=target, host=host, port=port, **options)


SPEC = RunnerSpec(name="rpc", isas=("aarch64", "x86_64"), timing_real=True,
                  summary="TVM modules on a TVM RPC server (e.g. a phone's tvm_rpc app)",
                  needs=("a TVM RPC server reachable at HOST:PORT",),
                  make=make_rpc_runner, address="rpc://HOST:PORT")


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
