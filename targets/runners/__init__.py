"""Runners: how a built program (or a TVM module) gets run on a target.

``get_runner(name, target)`` returns an object with ``run(executable, args, workdir,
*, timeout_s) -> RunResult``; names: local, qemu, wasmtime, node, chromium, adb, rpc://HOST:PORT.
Programs follow the protocol in targets/runners/base.py (files in workdir, an
``HWSIM_TIMES [...]`` line on stdout).
"""
from __future__ import annotations

import platform

from models.errors import UserError, suggest
from targets.cpu import CpuTarget
from targets.runners.base import RunError, RunResult, Runner, parse_times

RUNNER_NAMES = ("local", "qemu", "wasmtime", "node", "chromium", "adb", "rpc://HOST:PORT")
# platform.machine() spellings of each ISA, for "can local run this?".
MACHINE_ISAS = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}

__all__ = ["RunError", "RunResult", "Runner", "get_runner", "parse_times", "RUNNER_NAMES"]


def get_runner(name: str | None, target: CpuTarget, **options) -> Runner:
    """Returns the runner called ``name`` (the target's own runner when None) for ``target``.

    ``options`` go to the runner (e.g. ``serial=`` for adb, ``qemu=`` for another
    qemu binary). UserError when the runner cannot run the target's programs.
    """
    name = name or target.runner
    if name.startswith("rpc://"):
        from targets.runners.rpc import RpcRunner, parse_rpc_address
        host, port = parse_rpc_address(name)
        return RpcRunner(target=target.name, host=host, port=port, **options)
    if name == "rpc":
        raise UserError("the rpc runner needs an address", field="runner",
                        fix="write rpc://HOST:PORT, e.g. rpc://127.0.0.1:9090")
    wasm_runners = ("wasmtime", "node", "chromium")
    if name in wasm_runners and target.isa != "wasm32" or \
            name not in wasm_runners and name in ("local", "qemu", "adb") and target.isa == "wasm32":
        raise UserError(f"runner '{name}' cannot run {target.isa} programs", field="runner",
                        fix="wasm32 targets use wasmtime or node; native targets local, qemu or adb")
    if name == "local":
        machine_isa = MACHINE_ISAS.get(platform.machine().lower())
        if machine_isa != target.isa:
            raise UserError(f"this machine ({platform.machine()}) cannot run {target.isa} programs "
                            f"natively", field="runner",
                            fix="use runner qemu (emulation) or adb (a phone)")
        from targets.runners.local import LocalRunner
        return LocalRunner(target=target.name, **options)
    if name == "qemu":
        if target.isa != "aarch64":
            raise UserError(f"the qemu runner runs aarch64 programs, not {target.isa}",
                            field="runner", fix="use runner local for the host")
        from targets.runners.qemu import QemuRunner
        return QemuRunner(target=target.name, **options)
    if name == "wasmtime":
        from targets.runners.wasmtime import WasmtimeRunner
        return WasmtimeRunner(target=target.name, **options)
    if name == "node":
        from targets.runners.node import NodeRunner
        return NodeRunner(target=target.name, **options)
    if name == "chromium":
        from targets.runners.chromium import ChromiumRunner
        return ChromiumRunner(target=target.name, **options)
    if name == "adb":
        if target.isa != "aarch64":
            raise UserError(f"the adb runner runs aarch64 programs, not {target.isa}", field="runner")
        from targets.runners.adb import AdbRunner
        return AdbRunner(target=target.name, **options)
    if name == "browser":
        raise UserError("no browser is driven from here", field="runner",
                        fix="use runner node (V8, Chrome's engine) or wasmtime for the same .wasm")
    raise UserError(f"unknown runner '{name}'", field="runner",
                    fix=suggest(name, RUNNER_NAMES + ("browser",)))


def runner_problems(name: str | None, target: CpuTarget) -> list[str]:
    """Returns why runner ``name`` cannot run the target's programs here (empty when it can).

    Checks what can be checked without running anything remote: the tool is on
    PATH, node is new enough, adb lists a device. An rpc server is not contacted.
    """
    import importlib.util
    import shutil

    name = name or target.runner
    try:
        runner = get_runner(name, target)
    except UserError as error:
        return [error.one_line()]
    if name == "qemu" and shutil.which(runner.qemu) is None:
        return [f"'{runner.qemu}' not found (apt-get install qemu-user-static)"]
    if name == "wasmtime" and importlib.util.find_spec("wasmtime") is None:
        return ["the Python package wasmtime is not installed (pip install wasmtime)"]
    if name == "node":
        from targets.runners.node import MIN_NODE_MAJOR, node_major
        node_path = shutil.which(runner.node)
        if node_path is None:
            return ["'node' not found (apt-get install nodejs)"]
        major = node_major(node_path)
        if major is None or major < MIN_NODE_MAJOR:
            return [f"node {major} found, node:wasi preview1 needs >= {MIN_NODE_MAJOR}"]
    if name == "chromium":
        from targets.runners.chromium import chromium_problems
        return chromium_problems(runner.chromium, runner.node)
    if name == "adb":
        from targets.runners.adb import adb_devices
        adb_path = shutil.which(runner.adb)
        if adb_path is None:
            return ["'adb' not found (apt-get install adb)"]
        if not adb_devices(adb_path):
            return ["no device: adb lists no phone"]
    return []
