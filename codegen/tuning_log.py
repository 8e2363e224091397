"""A JSONL tuning log per target: one JSON object per line, appended durably.

A tuning run appends an entry after every candidate (``models.fileio.append_line_durably``
fsyncs it), so a crash loses at most the candidate in flight. On resume, entries already in
the log are skipped (``TuningLog.has``). A last line without its newline is kept when it is a
whole entry (the newline is added before the next append) and ignored when it is torn (cut
off before the next append); reading never changes the file.

Two tuners on one log meet at ``has``/``claim``: it takes an exclusive ``fcntl.flock`` on
``LOG.lock``, re-reads what the other tuner appended, and holds the lock until ``append``
(or ``release``), so each candidate is measured once, and never while the other tuner's
measurement shares the cores.

    log = TuningLog("tuning/host.jsonl")
    if not log.has(key):        # re-read under the lock; False holds the lock (a claim)
        log.append({"key": key, ...})       # appends and releases the claim
    log.best(op_key)       # the fastest entry of one op (measured beats predicted)
"""
from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path

from models.errors import UserError
from models.fileio import append_line_durably, check_output_path
from models.inputs import read_text

MAX_LOG_BYTES = 256 * 1024 * 1024     # ~1 KB an entry: a quarter of a million candidates
# The schedule fields a logged entry may carry (codegen.kernels.nmgemm.NmGemmParams).
_PARAM_FIELDS = {"n": int, "m": int, "isa": str, "mr": int, "nr": int, "unroll": int,
                 "shared": bool, "kc": int, "prefetch": int, "threads": int, "act": str,
                 "conv": bool}
_MAX_PARAM = 4096


def _split(text: str, source: str) -> tuple[list[dict], bool]:
    """Returns (entries, whether the last line is torn) of a log's text."""
    lines = text.split("\n")
    entries = []
    torn = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = number == len(lines)         # the last line has no newline after it
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if last:                        # a write cut short by a crash
                torn = True
                break
            raise UserError(f"line {number} is not JSON", source=source, field=f"line {number}",
                            fix="delete that line (or the log) and tune again") from None
        if not isinstance(entry, dict):
            raise UserError(f"line {number} is a JSON {type(entry).__name__}, not an entry",
                            source=source, field=f"line {number}",
                            fix="delete that line (or the log) and tune again")
        for key in ("key", "op_key"):
            if key in entry and not isinstance(entry[key], str):
                raise UserError(f"line {number}: '{key}' is not a string", source=source,
                                field=f"line {number}",
                                fix="delete that line (or the log) and tune again")
        entries.append(entry)
    return entries, torn


def read_entries(path: str | Path) -> list[dict]:
    """Returns the log's entries; a torn (unparseable, unterminated) last line is ignored,
    a whole last entry without its newline is kept."""
    path = Path(path)
    if not path.exists():
        return []
    text = read_text(path, what="tuning log", max_bytes=MAX_LOG_BYTES)
    return _split(text, str(path))[0]


def _mend_tail(path: Path) -> None:
    """Before an append: ends a whole last entry with its newline, cuts a torn last line off."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as stream:
        data = stream.read()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            whole = isinstance(json.loads(data[start:].decode("utf-8")), dict)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            whole = False
        if whole:
            stream.seek(0, os.SEEK_END)
            stream.write(b"\n")
        else:
            stream.truncate(start)
        stream.flush()
        os.fsync(stream.fileno())


def _number(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _usable_params(entry: dict) -> bool:
    """True when an entry's ``params`` could be a schedule (right keys, types, small ints)."""
    params = entry.get("params")
    if params is None:
        return entry.get("op") != "nmgemm"
    if not isinstance(params, dict) or not set(params) <= set(_PARAM_FIELDS) \
            or not {"n", "m", "isa"} <= set(params):
        return False
    for key, value in params.items():
        kind = _PARAM_FIELDS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                            or not 0 <= value <= _MAX_PARAM):
            return False
        if kind is not int and not isinstance(value, kind):
            return False
        if kind is str and len(value) > 64:
            return False
    return True


class TuningLog:
    """The log of one target; ``keys`` holds what is already there (read on open, and again
    under the lock by ``claim``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self.entries = read_entries(self.path)
        self.keys = {entry.get("key") for entry in self.entries}

    def has(self, key: str) -> bool:
        """True when ``key`` is logged, by this or another tuner (re-read under the lock).

        False is a claim: the caller holds the log's lock until its ``append`` of that key
        (or ``release``), the one way a tuner asks before measuring (codegen.schedule.tune)."""
        return not self.claim(key)

    # -- two writers
    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        lock_path = str(self.path) + ".lock"
        check_output_path(lock_path, what="tuning log lock")
        os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        self._lock_fd = descriptor

    def release(self) -> None:
        """Releases a claim (``append`` does it; call it when a claimed candidate is dropped)."""
        if self._lock_fd is not None:
            descriptor, self._lock_fd = self._lock_fd, None
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def refresh(self) -> None:
        """Re-reads the log (another tuner may have appended)."""
        self.entries = read_entries(self.path)
        self.keys = {entry.get("key") for entry in self.entries}

    def claim(self, key: str) -> bool:
        """Returns True, holding the log's lock, when ``key`` is not logged yet (measure it,
        then ``append``); False, without the lock, when this or another tuner logged it."""
        self._lock()
        self.refresh()
        if key in self.keys:
            self.release()
            return False
        return True

    def append(self, entry: dict) -> None:
        """Appends one entry (it must carry a "key") durably, then releases a claim."""
        if "key" not in entry:
            raise ValueError("a tuning log entry needs a key")
        self._lock()
        try:
            _mend_tail(self.path)
            append_line_durably(str(self.path), json.dumps(entry, sort_keys=True, allow_nan=False))
        finally:
            self.release()
        self.entries.append(entry)
        self.keys.add(entry["key"])

    def __del__(self):
        try:
            self.release()
        except Exception:     # interpreter shutdown: the OS drops the lock with the process
            pass

    # -- queries
    def for_op(self, op_key: str) -> list[dict]:
        return [entry for entry in self.entries if entry.get("op_key") == op_key]

    def best(self, op_key: str) -> dict | None:
        """Returns the fastest valid entry of one op: measured entries by seconds when there are
        any, else predicted ones by cycles. Entries with a missing or non-finite figure or
        unusable params (a hand-edited log) are skipped."""
        valid = [entry for entry in self.for_op(op_key)
                 if entry.get("ok", True) is not False and _usable_params(entry)]
        measured = [entry for entry in valid if entry.get("method") == "measured"
                    and _number(entry, "seconds") is not None]
        if measured:
            return min(measured, key=lambda entry: _number(entry, "seconds"))
        predicted = [entry for entry in valid if entry.get("method") == "predicted"
                     and _number(entry, "predicted_cycles") is not None]
        return min(predicted, key=lambda entry: _number(entry, "predicted_cycles")) \
            if predicted else None

