"""The one exception type for mistakes a user can fix.

The CLI turns a ``UserError`` into one line on stderr and exit code 2; anything
else is an internal bug and keeps its traceback (STYLE.md, habit 4).
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable

# C0/C1 controls, DEL, and the bidi overrides/isolates a terminal or editor would act on.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def printable(text: str, limit: int = 2000) -> str:
    """Returns ``text`` with control characters shown as escapes (``\\x1b``), cut to ``limit``.

    Error lines and table cells echo what input files say; an escape sequence there
    must not reach the terminal raw (it could rewrite the screen or the title)."""
    text = _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"),
                            str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


# Everything of _UNPRINTABLE but the line breaks and tabs a table is made of.
_UNPRINTABLE_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e"
                                  "\u2066-\u2069\u2028\u2029]")


def printable_text(text: str) -> str:
    """Returns multi-line ``text`` (a table, a report) with control characters escaped
    like ``printable`` but its newlines and tabs kept: a layer name from an input file
    cannot move the cursor, clear the screen or reorder a line (bidi overrides)."""
    return _UNPRINTABLE_IN_TEXT.sub(
        lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))


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
        where = ": ".join(str(part) for part in (self.source, self.field) if part)
        text = f"{where}: {self.message}" if where else str(self.message)
        if self.fix:
            text += f" (fix: {self.fix})"
        return printable(text)

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
