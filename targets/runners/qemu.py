"""Run a static aarch64 program under qemu-user (correctness only: its timing means nothing)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import RunnerSpec, RunResult, finish, run_process
from targets.toolchains import require_tool

ELF_MAGIC = b"\x7fELF"
EM_AARCH64 = 183


def elf_machine(path: Path) -> int | None:
    """Returns the e_machine field of a little-endian ELF file, or None if it is not ELF."""
    header = Path(path).read_bytes()[:20]
    if len(header) < 20 or header[:4] != ELF_MAGIC:
        return None
    return int.from_bytes(header[18:20], "little")


@dataclass(frozen=True)
class QemuRunner:
    """Runs ``qemu-aarch64-static -cpu max executable args...`` in ``workdir``."""
    target: str
    qemu: str = "qemu-aarch64-static"
    name: str = "qemu"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        qemu_path = require_tool(self.qemu, "qemu-user-static")
        executable = Path(executable).resolve()
        if not executable.is_file():
            raise UserError("program not found", source=str(executable), field="executable",
                            fix="build it first (targets.toolchains.build_executable)")
        if elf_machine(executable) != EM_AARCH64:
            raise UserError("not an aarch64 ELF program", source=str(executable), field="executable",
                            fix="build it for an aarch64 target (e.g. snapdragon855)")
        # -cpu max: every extension the core may use (-mcpu=cortex-a76 emits dotprod, fp16).
        completed = run_process([qemu_path, "-cpu", "max", str(executable), *args], Path(workdir),
                                timeout_s, target=self.target, runner=self.name,
                                program=executable.name)
        return finish(completed, target=self.target, runner=self.name, program=executable.name,
                      check=check)


def qemu_problems(runner: QemuRunner) -> list[str]:
    """Returns why qemu cannot run here: its binary is not on PATH."""
    import shutil
    if shutil.which(runner.qemu) is None:
        return [f"'{runner.qemu}' not found (apt-get install qemu-user-static)"]
    return []


SPEC = RunnerSpec(name="qemu", isas=("aarch64",), timing_real=False,
                  summary="a static aarch64 program under qemu-user (checks results; times are "
                          "emulated)",
                  needs=("qemu-aarch64-static (apt qemu-user-static)",),
                  make=QemuRunner, problems=qemu_problems, wrong_isa_fix="use runner local for the host")
