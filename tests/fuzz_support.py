"""Shared parts of the fuzz suite (tests/test_fuzz*.py, issue 16): hostile values, document
mutations, and the one contract every run of the CLI must keep.

The contract: exit 0 (and strict JSON when --format json), or exit 2 with exactly one line
on stderr that names the file (and the field where one applies); never exit 1, never a
traceback, never longer than ``TIME_LIMIT_S``.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import json
import resource
import signal
from typing import Any, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cli import main

TIME_LIMIT_S = 30
# Deterministic CI: the same examples every run, no example database between runs.
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                   HealthCheck.data_too_large, HealthCheck.filter_too_much])


def fuzz_settings(examples: int):
    return settings(max_examples=examples, **FUZZ)


# Values a careless or hostile file puts where a size, a name or a switch belongs.
HOSTILE_SCALARS = [0, -1, 1, 3, 2 ** 31, 2 ** 62, 2 ** 63, 2 ** 64, 10 ** 30, 10 ** 400, 1e308,
                   -0.0, 0.5, 1e-300, True, False, None, "", " ", "NaN", "inf", "1e999",
                   "\x1b[2J\x1b]0;owned\x07", "\u202eevil", "x" * 5000, "2:99999999999999999999",
                   "../../etc/passwd", "/usr/bin/env", "detect", "dense", "2:8", "0:0", "\x00"]
HOSTILE_VALUES = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([[], {}, [[1]], [1, 2, 3], {"a": 1}, [None], [2 ** 63], {"": {}}]),
)


def leaf_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Returns the paths (key/index tuples) of every node of a parsed document."""
    paths = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            paths += leaf_paths(value, prefix + (key,))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths += leaf_paths(value, prefix + (index,))
    return paths


def _parent(document: Any, path: tuple) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated(draw, base: Any, max_mutations: int = 3) -> Any:
    """Draws a copy of ``base`` with 1..max_mutations structural mutations: a node replaced
    by a hostile value, a key deleted, an unknown key added, a node wrapped in lists."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = leaf_paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(document, path)
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "nest"]))
        if action == "replace":
            parent[path[-1]] = draw(HOSTILE_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "rows ", "\x1b[31mkey", "kind"]))] = \
                draw(HOSTILE_VALUES)
        elif action == "nest":
            parent[path[-1]] = [[parent[path[-1]]]]
    return document


# Text-level damage: what no structural mutation produces.
def text_damage(text: str) -> st.SearchStrategy[bytes]:
    data = text.encode("utf-8")
    return st.one_of(
        st.integers(0, len(data)).map(lambda cut: data[:cut]),                      # truncated
        st.lists(st.integers(0, max(0, len(data) - 1)), min_size=1, max_size=8).map(
            lambda spots: bytes(byte ^ (0x40 if index in spots else 0)
                                for index, byte in enumerate(data))),              # flipped
        st.binary(max_size=64),                                                    # binary
        st.just(data + data),                                                      # doubled
        st.just(b"\xff\xfe" + data),                                               # bad BOM
    )


# ---------------------------------------------------------------- the contract


class Hang(Exception):
    """The CLI ran past TIME_LIMIT_S on one input."""


@contextlib.contextmanager
def time_limit(seconds: int = TIME_LIMIT_S) -> Iterator[None]:
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# Memory the CLI may add while it reads one input: a refusal must come before it allocates
# for a huge input, and a fuzz run must not take a shared machine down when one does not.
MEMORY_HEADROOM_BYTES = 4 * 1024 ** 3


def _virtual_bytes() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM_BYTES) -> Iterator[None]:
    """Caps this process's address space at its current size plus ``headroom`` (RLIMIT_AS):
    an allocation beyond it fails (MemoryError, std::bad_alloc) instead of swapping."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _virtual_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _strict(name: str):
    raise AssertionError(f"stdout JSON holds {name}")


class Outcomes:
    """Counts outcomes per file kind, for the closing note (printed at module teardown)."""

    def __init__(self):
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    def report(self) -> str:
        lines = []
        for kind, counter in sorted(self.counts.items()):
            total = sum(counter.values())
            lines.append(f"{kind:<14} {total:>5} cases: " +
                         ", ".join(f"{name} {count}" for name, count in sorted(counter.items())))
        return "\n".join(lines)


def check_contract(argv: list[str], capsys, *, names: str | None, outcomes: Outcomes | None = None,
                   kind: str = "") -> str:
    """Runs the CLI in-process and asserts the contract; returns 'ok' or 'refused'.

    ``names``: the text (a file path) that a refusal must mention; None when the command's
    refusals may name something else (a flag)."""
    capsys.readouterr()
    with time_limit(), memory_limit():
        code = main(argv)      # anything but a UserError propagates: a traceback fails the test
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 0:
        if "--format" in argv and argv[argv.index("--format") + 1] == "json":
            json.loads(out, parse_constant=_strict)
        outcome = "ok"
    else:
        assert code == 2, f"exit {code} (internal error) for {argv}: {err[-2000:]}"
        errors = [line for line in lines if line.startswith("hwsim: error:")]
        assert len(errors) == 1 and len(lines) == 1, f"not one line on stderr: {lines!r}"
        assert "\x1b" not in errors[0] and "\u202e" not in errors[0], errors[0]
        if names is not None:
            assert names in errors[0], f"the error does not name {names}: {errors[0]}"
        outcome = "refused"
    if outcomes is not None:
        outcomes.add(kind, outcome)
    return outcome
