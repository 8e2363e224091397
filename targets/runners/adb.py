"""Run a static aarch64 program on an Android phone over adb (USB debugging).

The working directory's files are pushed to /data/local/tmp/hwsim/work, the program
runs there under toybox ``timeout`` (so it dies on the phone too), and the directory
is pulled back into ``workdir``: outputs land where the local runners put them.
"""
from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import Completed, RunError, RunnerSpec, RunResult, finish, run_process
from targets.toolchains import require_tool

REMOTE_DIR = "/data/local/tmp/hwsim"
NO_DEVICE_FIX = ("connect a phone with USB debugging enabled and accept the prompt "
                 "(see README, 'Running on a phone'), then check `adb devices`")


def adb_devices(adb_path: str) -> list[str]:
    """Returns the serials that `adb devices` lists as ready ('device' state)."""
    try:
        listing = subprocess.run([adb_path, "devices"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    serials = []
    for line in listing.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "device":
            serials.append(parts[0])
    return serials


@dataclass(frozen=True)
class AdbRunner:
    """Runs programs on the first (or the named) adb device."""
    target: str
    serial: str | None = None
    adb: str = "adb"
    name: str = "adb"

    def _device(self) -> tuple[str, str]:
        adb_path = require_tool(self.adb, "adb")
        serials = adb_devices(adb_path)
        if not serials:
            raise UserError("no device: adb lists no phone", field="runner", fix=NO_DEVICE_FIX)
        if self.serial and self.serial not in serials:
            raise UserError(f"no device '{self.serial}' (adb lists {', '.join(serials)})",
                            field="runner", fix=NO_DEVICE_FIX)
        return adb_path, self.serial or serials[0]

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        adb_path, serial = self._device()
        executable = Path(executable).resolve()
        workdir = Path(workdir).resolve()
        program = executable.name
        base = [adb_path, "-s", serial]

        def adb(*command: str, limit_s: float = 120.0) -> Completed:
            done = run_process([*base, *command], workdir, limit_s, target=self.target,
                               runner=self.name, program=program)
            if done.returncode != 0:
                raise UserError(f"adb {command[0]} failed: {(done.stderr or done.stdout).strip()}",
                                field="runner", fix=NO_DEVICE_FIX)
            return done

        work = f"{REMOTE_DIR}/work"
        adb("shell", f"rm -rf {work} && mkdir -p {work}")
        adb("push", str(executable), f"{REMOTE_DIR}/{program}")
        adb("shell", f"chmod 755 {REMOTE_DIR}/{program}")
        for item in sorted(workdir.iterdir()):
            adb("push", str(item), f"{work}/")
        remote = (f"cd {work} && timeout -s KILL {max(1, int(timeout_s))} "
                  f"{REMOTE_DIR}/{program} {' '.join(shlex.quote(arg) for arg in args)}")
        completed = run_process([*base, "shell", remote], workdir, timeout_s + 30,
                                target=self.target, runner=self.name, program=program)
        if completed.returncode == 137:
            raise RunError(f"timed out after {timeout_s:g} s and was killed on the phone",
                           target=self.target, runner=self.name, program=program,
                           stdout=completed.stdout, stderr=completed.stderr)
        adb("pull", f"{work}/.", str(workdir))
        # adb shell reports a signal as exit code 128 + signal number.
        returncode = completed.returncode
        if returncode > 128:
            returncode = -(returncode - 128)
        return finish(Completed(returncode, completed.stdout, completed.stderr, completed.wall_s),
                      target=self.target, runner=self.name, program=program, check=check)


def adb_problems(runner: AdbRunner) -> list[str]:
    """Returns why adb cannot run here: no adb on PATH, or no phone listed."""
    import shutil
    adb_path = shutil.which(runner.adb)
    if adb_path is None:
        return ["'adb' not found (apt-get install adb)"]
    if not adb_devices(adb_path):
        return ["no device: adb lists no phone"]
    return []


SPEC = RunnerSpec(name="adb", isas=("aarch64",), timing_real=True,
                  summary="a static aarch64 program on an Android phone over adb",
                  needs=("adb (apt adb)", "a phone with USB debugging enabled"),
                  make=AdbRunner, problems=adb_problems)
