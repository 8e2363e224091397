"""A JSONL tuning log per target: one JSON object per line, appended durably.

A tuning run appends an entry after every candidate (``models.fileio.append_line_durably``
fsyncs it), so a crash loses at most the candidate in flight. On resume, entries already in
the log are skipped (``TuningLog.has``) and a torn last line, the trace of a crash in the
middle of a write, is ignored and cut off before the next append.

    log = TuningLog("tuning/host.jsonl")
    if not log.has(key):
        log.append({"key": key, ...})
    log.best(op_key)       # the fastest entry of one op (measured beats predicted)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from models.errors import UserError
from models.fileio import append_line_durably


def read_entries(path: str | Path) -> list[dict]:
    """Returns the log's entries; a torn (unparseable, unterminated) last line is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, without its newline: a torn write
                break
            raise UserError(f"line {number} is not JSON", source=str(path), field=f"line {number}",
                            fix="delete that line (or the log) and tune again") from None
    return entries


def _cut_torn_tail(path: Path) -> None:
    """Truncates an unterminated last line so the next append starts on a line of its own."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as stream:
        data = stream.read()
        if data.endswith(b"\n"):
            return
        stream.truncate(data.rfind(b"\n") + 1)
        stream.flush()
        os.fsync(stream.fileno())


@dataclass
class TuningLog:
    """The log of one target; ``keys`` holds what is already there (read once on open)."""
    path: Path

    def __init__(self, path: str | Path):
        self.path = Path(path)
        _cut_torn_tail(self.path)
        self.entries = read_entries(self.path)
        self.keys = {entry.get("key") for entry in self.entries}

    def has(self, key: str) -> bool:
        return key in self.keys

    def append(self, entry: dict) -> None:
        """Appends one entry (it must carry a "key") durably."""
        if "key" not in entry:
            raise ValueError("a tuning log entry needs a key")
        append_line_durably(str(self.path), json.dumps(entry, sort_keys=True))
        self.entries.append(entry)
        self.keys.add(entry["key"])

    def for_op(self, op_key: str) -> list[dict]:
        return [entry for entry in self.entries if entry.get("op_key") == op_key]

    def best(self, op_key: str) -> dict | None:
        """Returns the fastest valid entry of one op: measured entries by seconds when there are
        any, else predicted ones by cycles."""
        valid = [entry for entry in self.for_op(op_key) if entry.get("ok", True)]
        measured = [entry for entry in valid if entry.get("method") == "measured"]
        if measured:
            return min(measured, key=lambda entry: entry["seconds"])
        predicted = [entry for entry in valid if entry.get("method") == "predicted"]
        return min(predicted, key=lambda entry: entry["predicted_cycles"]) if predicted else None
