"""Runners: how a built program (or a TVM module) gets run on a target.

``get_runner(name, target)`` returns an object with ``run(executable, args, workdir,
*, timeout_s) -> RunResult``; names: local, qemu, wasmtime, node, chromium, adb, rpc://HOST:PORT.
Programs follow the protocol in targets/runners/base.py (files in workdir, an
``HWSIM_TIMES [...]`` line on stdout).

Each runner module describes itself in one ``SPEC`` record (``RunnerSpec``: name, ISAs,
whether its timing is real, what it needs here); this registry, target-file validation
(targets/cpu.py) and `hwsim targets` read those records. A new runner is one module with
its runner class and its ``SPEC``, and one entry in ``RUNNER_SPECS``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from models.errors import UserError, suggest
from targets.runners import adb, chromium, local, node, qemu, rpc, wasmtime
from targets.runners.base import RunError, RunnerSpec, RunResult, Runner, parse_times

if TYPE_CHECKING:
    from targets.cpu import CpuTarget

# "browser" in a target file: the page runs on the device (a phone's browser), which
# nothing here drives; chromium (below) is the browser this machine can drive.
BROWSER = RunnerSpec(name="browser", isas=("wasm32",), timing_real=True,
                     summary="a browser on the device (not driven from here)",
                     refusal=("no browser is driven from here",
                              "use runner node (V8, Chrome's engine) or wasmtime for the same .wasm"))

# Every runner, in the order messages list them (target files: local, qemu, wasmtime,
# node, browser, rpc, adb).
RUNNER_SPECS: tuple[RunnerSpec, ...] = (local.SPEC, qemu.SPEC, wasmtime.SPEC, node.SPEC,
                                        chromium.SPEC, BROWSER, rpc.SPEC, adb.SPEC)
# The names get_runner drives, as a user spells them.
RUNNER_NAMES = tuple(spec.spelling for spec in RUNNER_SPECS if spec.make is not None)

__all__ = ["RunError", "RunResult", "Runner", "RunnerSpec", "get_runner", "parse_times",
           "RUNNER_NAMES", "RUNNER_SPECS", "runner_spec", "runner_problems",
           "target_file_runners", "runners_for_isa", "timing_is_real"]


def runner_spec(name: str) -> RunnerSpec | None:
    """Returns the record of runner ``name`` ('rpc://HOST:PORT' finds rpc), None when unknown."""
    for spec in RUNNER_SPECS:
        if name == spec.name or (spec.address and name.startswith(spec.name + "://")):
            return spec
    return None


def timing_is_real(name: str) -> bool:
    """Returns True when runner ``name`` is driven from here and its measured times are the
    target's own: what a tuner may rank schedules by (qemu's emulated times are not)."""
    spec = runner_spec(name)
    return spec is not None and spec.timing_real and spec.make is not None


def target_file_runners() -> tuple[str, ...]:
    """Returns the runner names a ``kind: cpu`` file may give."""
    return tuple(spec.name for spec in RUNNER_SPECS if spec.in_target_files)


def runners_for_isa(isa: str) -> tuple[str, ...]:
    """Returns the runner names a target file of ``isa`` may give."""
    return tuple(spec.name for spec in RUNNER_SPECS if spec.in_target_files and isa in spec.isas)


def _isa_refusal(spec: RunnerSpec, target: CpuTarget) -> UserError | None:
    """Returns why ``spec`` cannot run the target's ISA (None: it can)."""
    wasm_only = spec.isas == ("wasm32",)
    native_only = "wasm32" not in spec.isas
    if wasm_only and target.isa != "wasm32" or native_only and target.isa == "wasm32":
        return UserError(f"runner '{spec.name}' cannot run {target.isa} programs", field="runner",
                         fix="wasm32 targets use wasmtime or node; native targets local, qemu or adb")
    if target.isa not in spec.isas:
        return UserError(f"the {spec.name} runner runs {' or '.join(spec.isas)} programs, not "
                         f"{target.isa}", field="runner", fix=spec.wrong_isa_fix)
    return None


def get_runner(name: str | None, target: CpuTarget, **options) -> Runner:
    """Returns the runner called ``name`` (the target's own runner when None) for ``target``.

    ``options`` go to the runner (e.g. ``serial=`` for adb, ``qemu=`` for another
    qemu binary). UserError when the runner cannot run the target's programs.
    """
    name = name or target.runner
    spec = runner_spec(name)
    if spec is None:
        raise UserError(f"unknown runner '{name}'", field="runner",
                        fix=suggest(name, RUNNER_NAMES + ("browser",)))
    if spec.address:
        if name == spec.name:
            raise UserError(f"the {spec.name} runner needs an address", field="runner",
                            fix=f"write {spec.address}, e.g. rpc://127.0.0.1:9090")
        # An address runner reaches a remote machine: its ISA is not checked here.
        return spec.make(target=target.name, address=name, **options)
    if spec.make is None:
        message, fix = spec.refusal
        raise UserError(message, field="runner", fix=fix)
    refusal = _isa_refusal(spec, target) or (spec.refuses(target) if spec.refuses else None)
    if refusal is not None:
        raise refusal
    return spec.make(target=target.name, **options)


def runner_problems(name: str | None, target: CpuTarget) -> list[str]:
    """Returns why runner ``name`` cannot run the target's programs here (empty when it can).

    Checks what can be checked without running anything remote (each runner's
    ``SPEC.problems``: the tool is on PATH, node is new enough, adb lists a device).
    An rpc server is not contacted.
    """
    name = name or target.runner
    try:
        runner = get_runner(name, target)
    except UserError as error:
        return [error.one_line()]
    spec = runner_spec(name)
    return spec.problems(runner) if spec.problems else []
