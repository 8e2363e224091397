"""The results store: one JSON line per evaluated design point, appended and fsynced.

Like the tuning log, the file only grows; each line is a whole record
{"key", "context", "point", "status", "metrics", ...} keyed by the canonical hash
of the point under its run context (``explore.space.point_key``). A run that is
killed leaves at most one torn last line, which the next open cuts off; every
whole line is a point that is never evaluated again. Only the driver writes.
"""
from __future__ import annotations

import json
import os

from models.fileio import append_line_durably


class ResultsStore:
    """The records of one context in a JSONL file; ``add`` appends durably."""

    def __init__(self, path: str, context_key: str):
        self.path = path
        self.context_key = context_key
        self.records: dict[str, dict] = {}
        self.other_contexts = 0
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as handle:
            content = handle.read()
        whole = content[:content.rfind(b"\n") + 1]
        if len(whole) != len(content):
            # A torn last line from a killed run: cut it off before appending after it.
            os.truncate(self.path, len(whole))
        for line in whole.decode("utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("context") != self.context_key:
                self.other_contexts += 1
                continue
            self.records[record["key"]] = record

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def amend(self, record: dict) -> None:
        """Replaces a stored record in memory only (a field added since it was written,
        recomputed exactly); the file keeps its line, as an append-only log must."""
        if record["key"] not in self.records:
            raise KeyError(record["key"])
        self.records[record["key"]] = record

    def add(self, record: dict) -> None:
        """Appends a record (a key already stored is kept as it was)."""
        if record["key"] in self.records:
            return
        record = {**record, "context": self.context_key}
        append_line_durably(self.path, json.dumps(record, sort_keys=True, separators=(",", ":")))
        self.records[record["key"]] = record
