"""Run a native program directly (the host target)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import RunResult, finish, run_process


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
