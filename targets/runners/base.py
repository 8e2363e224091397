"""What every runner returns and raises, and the one way they start processes.

The protocol with programs: a program reads and writes its files inside ``workdir``
(its arguments are paths relative to it) and prints lines to stdout; a line
``HWSIM_TIMES [0.0012, 0.0011]`` gives the seconds each repeat took, measured by the
program itself, and becomes ``RunResult.times_s``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from models.errors import UserError

TIMES_PREFIX = "HWSIM_TIMES "
# The folder that holds the targets/ and models/ packages (for child Python processes).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# A wasm trap is printed by our wasm loaders on stderr after this marker.
TRAP_MARKER = "HWSIM_WASM_TRAP:"
OUTPUT_TAIL_CHARS = 2000


@dataclass(frozen=True)
class RunResult:
    """One program run: what it printed, how long the whole run took, and its own per-repeat times."""
    target: str
    runner: str
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    times_s: tuple[float, ...]


class RunError(UserError):
    """A program crashed, trapped, timed out or exited non-zero; names target, runner and program."""

    def __init__(self, message: str, *, target: str, runner: str, program: str,
                 returncode: int | None = None, stdout: str = "", stderr: str = "",
                 fix: str | None = None):
        self.target, self.runner, self.program = target, runner, program
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        tail = stderr.strip()[-OUTPUT_TAIL_CHARS:]
        text = f"program '{program}' on target '{target}' (runner {runner}) {message}"
        if tail:
            text += f"; stderr: {tail}"
        super().__init__(text, field="run", fix=fix)


class Runner(Protocol):
    name: str

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float) -> RunResult: ...


@dataclass(frozen=True)
class RunnerSpec:
    """What one runner module says about itself (its ``SPEC``), so that the registry
    (targets/runners/__init__.py), target-file validation (targets/cpu.py) and
    `hwsim targets` read one record instead of each keeping a table of runner names.

    ``isas``: the ISAs whose programs it runs (the ones a target file may pair it with).
    ``timing_real``: its measured times are the target's own (False: emulation, e.g. qemu).
    ``needs``: what this machine must have, in words (`hwsim targets` prints them);
    ``problems(runner)`` checks them and returns why it cannot run here (empty: it can).
    ``make(target=NAME, **options)`` builds the runner (None: a name target files may use
    but nothing here drives; ``refusal`` says why). ``refuses(target)`` is a check beyond
    the ISA list (local: only the machine's own ISA) returning a UserError or None.
    ``wrong_isa_fix``: the fix printed when a native ISA it does not run is asked for.
    ``address``: the spelling with an address (rpc://HOST:PORT) when the name needs one."""
    name: str
    isas: tuple[str, ...]
    timing_real: bool
    summary: str
    needs: tuple[str, ...] = ()
    make: Callable[..., Runner] | None = None
    problems: Callable[[Runner], list[str]] | None = None
    refuses: Callable[..., UserError | None] | None = None
    wrong_isa_fix: str | None = None
    refusal: tuple[str, str] | None = None       # (message, fix) when make is None
    in_target_files: bool = True
    address: str | None = None

    @property
    def spelling(self) -> str:
        """Returns the name as a user writes it (rpc://HOST:PORT for the rpc runner)."""
        return self.address or self.name


def parse_times(stdout: str) -> tuple[float, ...]:
    """Returns the seconds of every ``HWSIM_TIMES [...]`` line, in order (ValueError when malformed)."""
    times: list[float] = []
    for line in stdout.splitlines():
        if not line.startswith(TIMES_PREFIX):
            continue
        values = json.loads(line[len(TIMES_PREFIX):])
        if not isinstance(values, list) or not all(
                isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                for value in values):
            raise ValueError(f"HWSIM_TIMES wants a JSON list of non-negative seconds, got {line!r}")
        times.extend(float(value) for value in values)
    return tuple(times)


def python_module_command(module: str, python: str = sys.executable) -> list[str]:
    """Returns the argv that runs ``module`` as __main__ in a child Python (append its args).

    Isolated (-I): neither the child's working directory (a workdir full of user files)
    nor PYTHON* variables can shadow a package; this checkout is put on the path
    explicitly, so it works installed or not.
    """
    bootstrap = (f"import runpy, sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); "
                 f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [python, "-I", "-c", bootstrap]


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float


def run_process(command: Sequence[str], cwd: Path, timeout_s: float, *, target: str, runner: str,
                program: str, env: dict | None = None) -> Completed:
    """Returns the finished process; RunError when it outlives ``timeout_s`` (its whole group is killed)."""
    start = time.perf_counter()
    try:
        process = subprocess.Popen(list(command), cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True, env=env)
    except OSError as error:
        raise RunError(f"could not start: {error.strerror}", target=target, runner=runner,
                       program=program, fix="check that the program was built for this runner") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise RunError(f"timed out after {timeout_s:g} s and was killed", target=target,
                       runner=runner, program=program, stdout=_text(stdout), stderr=_text(stderr),
                       fix="look for an endless loop, or raise the timeout") from None
    except BaseException:
        _kill_group(process)
        process.wait()
        raise
    return Completed(process.returncode, _text(stdout), _text(stderr), time.perf_counter() - start)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def finish(completed: Completed, *, target: str, runner: str, program: str,
           check: bool = True) -> RunResult:
    """Returns the RunResult of a finished process; RunError for a crash, a trap or (if check) exit != 0."""
    def fail(message: str, fix: str | None = None) -> RunError:
        return RunError(message, target=target, runner=runner, program=program,
                        returncode=completed.returncode, stdout=completed.stdout,
                        stderr=completed.stderr, fix=fix)

    if TRAP_MARKER in completed.stderr:
        trap = completed.stderr.split(TRAP_MARKER, 1)[1].strip().splitlines()[0:1]
        raise fail(f"trapped ({trap[0] if trap else 'wasm trap'})",
                   "a wasm trap is an out-of-bounds access, unreachable or a division by zero")
    if completed.returncode < 0:
        raise fail(f"crashed with {signal_name(completed.returncode)}",
                   "run it under a debugger, or check array bounds")
    if check and completed.returncode != 0:
        raise fail(f"exited with code {completed.returncode}")
    try:
        times_s = parse_times(completed.stdout)
    except ValueError as error:
        raise fail(f"printed a malformed times line: {error}") from None
    return RunResult(target=target, runner=runner, returncode=completed.returncode,
                     stdout=completed.stdout, stderr=completed.stderr, wall_s=completed.wall_s,
                     times_s=times_s)
