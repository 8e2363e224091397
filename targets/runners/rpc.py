"""Run TVM-built modules on a remote device through a TVM RPC server (e.g. a phone's tvm_rpc app).

TVM RPC runs TVM modules, not programs: ``run_tvm_module`` uploads an exported
module (.so), calls one function on the remote CPU and times it with TVM's
time_evaluator. Start a server on the device with
``python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090`` (or TVM's Android app).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.errors import UserError
from targets.runners.base import RunError, RunResult

ADDRESS_PATTERN = re.compile(r"rpc://(?P<host>[^:/\s]+):(?P<port>\d{1,5})/?")


def parse_rpc_address(name: str) -> tuple[str, int]:
    """Returns (host, port) of 'rpc://HOST:PORT'; UserError otherwise."""
    match = ADDRESS_PATTERN.fullmatch(name.strip())
    if not match or not 0 < int(match.group("port")) < 65536:
        raise UserError(f"bad RPC address '{name}'", field="runner",
                        fix="write rpc://HOST:PORT, e.g. rpc://192.168.1.20:9090")
    return match.group("host"), int(match.group("port"))


@dataclass(frozen=True)
class RpcRunner:
    """A TVM RPC session factory for one server; each call opens its own session."""
    target: str
    host: str
    port: int
    session_timeout_s: float = 600.0
    name: str = "rpc"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        raise UserError("the rpc runner runs TVM modules, not programs", field="runner",
                        fix="use RpcRunner.run_tvm_module(lib_path, func_name, arrays, repeats), "
                            "or the adb runner for programs")

    def _connect(self, timeout_s: float):
        from tvm import rpc

        try:
            # The server ends the session (and the remote call) after session_timeout.
            return rpc.connect(self.host, self.port, session_timeout=timeout_s)
        except Exception as error:         # TVM raises TVMError / RPCError / OSError subclasses
            raise UserError(f"cannot reach the TVM RPC server at {self.host}:{self.port}: "
                            f"{str(error).strip().splitlines()[-1] if str(error).strip() else error}",
                            field="runner",
                            fix="start one: python -m tvm.exec.rpc_server --host 0.0.0.0 "
                                f"--port {self.port} (or TVM's Android RPC app)") from None

    def run_tvm_module(self, lib_path: Path, func_name: str, arrays: Sequence[np.ndarray],
                       repeats: int, *, number: int = 1,
                       timeout_s: float | None = None) -> tuple[list[np.ndarray], tuple[float, ...]]:
        """Returns (every argument after one call, seconds per repeat) of ``func_name`` run remotely.

        ``arrays`` are all the function's tensor arguments, outputs included (TVM's
        destination-passing style); the caller picks its outputs from the returned
        list. Each repeat runs the function ``number`` times and reports the mean.
        """
        import tvm

        lib_path = Path(lib_path)
        if not lib_path.is_file():
            raise UserError("TVM module not found", source=str(lib_path), field="lib_path",
                            fix="export it with lib.export_library(path)")
        if repeats < 1:
            raise UserError(f"repeats must be >= 1, got {repeats}", field="repeats")
        session = self._connect(timeout_s or self.session_timeout_s)
        program = lib_path.name
        try:
            session.upload(str(lib_path))
            remote_lib = session.load_module(lib_path.name)
            device = session.cpu()
            remote_arrays = [tvm.runtime.tensor(np.ascontiguousarray(array), device)
                             for array in arrays]
            remote_lib[func_name](*remote_arrays)
            device.sync()
            outputs = [remote.numpy() for remote in remote_arrays]
            timer = remote_lib.time_evaluator(func_name, device, number=number, repeat=repeats)
            times_s = tuple(float(seconds) for seconds in timer(*remote_arrays).results)
        except UserError:
            raise
        except Exception as error:
            message = str(error).strip().splitlines()
            raise RunError(f"failed remotely: {message[-1] if message else type(error).__name__}",
                           target=self.target, runner=self.name, program=program,
                           stderr=str(error),
                           fix="check that the module was built for the remote's target") from None
        return outputs, times_s
