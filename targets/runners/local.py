"""Run a native program directly (the host target)."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import RunnerSpec, RunResult, finish, run_process

# platform.machine() spellings of each ISA, for "can local run this?".
MACHINE_ISAS = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


@dataclass(frozen=True)
class LocalRunner:
    """Runs ``executable args...`` as a child process in ``workdir``."""
    target: str
    name: str = "local"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        executable = Path(executable).resolve()
        if not executable.is_file():
            raise UserError("program not found", source=str(executable), field="executable",
                            fix="build it first (targets.toolchains.build_executable)")
        completed = run_process([str(executable), *args], Path(workdir), timeout_s,
                                target=self.target, runner=self.name, program=executable.name)
        return finish(completed, target=self.target, runner=self.name, program=executable.name,
                      check=check)


def host_refusal(target) -> UserError | None:
    """Returns why this machine cannot run the target's programs natively (None: it can)."""
    machine_isa = MACHINE_ISAS.get(platform.machine().lower())
    if machine_isa != target.isa:
        return UserError(f"this machine ({platform.machine()}) cannot run {target.isa} programs "
                         f"natively", field="runner",
                         fix="use runner qemu (emulation) or adb (a phone)")
    return None


SPEC = RunnerSpec(name="local", isas=("aarch64", "x86_64"), timing_real=True,
                  summary="a native program run directly on this machine",
                  needs=("a machine of the target's ISA",),
                  make=LocalRunner, refuses=host_refusal)
