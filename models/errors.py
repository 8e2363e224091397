"""The one exception type for mistakes a user can fix.

The CLI turns a ``UserError`` into one line on stderr and exit code 2; anything
else is an internal bug and keeps its traceback (STYLE.md, habit 4).
"""
from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input: names where it came from (``source``), what (``field``) and the ``fix``."""

    def __init__(self, message: str, *, source: str | None = None,
                 field: str | None = None, fix: str | None = None):
        self.message = message
        self.source = source
        self.field = field
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Returns 'source: field: message (fix: ...)' with the missing parts left out."""
        where = ": ".join(part for part in (self.source, self.field) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text

    def located(self, source: str) -> "UserError":
        """Returns a copy that names ``source`` when the error did not name one yet."""
        if self.source:
            return self
        return UserError(self.message, source=source, field=self.field, fix=self.fix)


def closest(name: str, known: Iterable[str]) -> str | None:
    """Returns the known name closest to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


def suggest(name: str, known: Iterable[str]) -> str:
    """Returns a fix text: 'did you mean X?' or the list of known names."""
    known = sorted(known)
    best = closest(name, known)
    if best:
        return f"did you mean '{best}'? known: {', '.join(known)}"
    return f"use one of: {', '.join(known)}"
