"""A local TVM RPC server for tests and development, started without TVM's PopenWorker.

``python -m tvm.exec.rpc_server`` needs the ``cloudpickle`` package (apache-tvm's
``popen-pool`` extra) just to start; this module runs the same server loop
(tvm.rpc.server.PopenRPCServerState) directly, and prints the port it bound:

    python -m targets.runners.rpc_server --host 127.0.0.1 --port 9090 --port-end 9199
    -> HWSIM_RPC_PORT 9090
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from models.errors import UserError
from targets.runners.base import python_module_command

PORT_PREFIX = "HWSIM_RPC_PORT "


@dataclass
class LocalRpcServer:
    """A running server process; ``stop()`` kills its process group (sessions included)."""
    process: subprocess.Popen
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"rpc://{self.host}:{self.port}"

    def kill(self) -> None:
        """Kills the server and its session processes (safe to call from another thread)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> "LocalRpcServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_local_rpc_server(host: str = "127.0.0.1", port: int = 9090, port_end: int = 9199,
                           *, start_timeout_s: float = 60.0) -> LocalRpcServer:
    """Returns a TVM RPC server running in a child process group, once it listens."""
    process = subprocess.Popen(
        python_module_command("targets.runners.rpc_server") + [
            "--host", host, "--port", str(port), "--port-end", str(port_end)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True)
    server = LocalRpcServer(process, host, 0)
    # The child prints its port only after the socket listens; reading blocks until then
    # or until the child dies (EOF). The watchdog kills a child that hangs before that.
    watchdog = threading.Timer(start_timeout_s, server.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            if line.startswith(PORT_PREFIX):
                server.port = int(line[len(PORT_PREFIX):])
                return server
    finally:
        watchdog.cancel()
    server.stop()
    raise UserError(f"the TVM RPC server did not start on {host}:{port}-{port_end}",
                    field="runner", fix="check that apache-tvm imports and the ports are free")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--port-end", type=int, default=9199)
    args = parser.parse_args(argv)
    from tvm.rpc.server import PopenRPCServerState

    state = PopenRPCServerState(args.host, args.port, args.port_end, silent=True)
    print(f"{PORT_PREFIX}{state.port}", flush=True)
    state.thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
