"""The input layer: every file the CLI reads is checked here for size, type and range first.

One reader per format, each failing with a ``UserError`` (file, field, fix) and never
with a traceback or a hang:

- ``read_text(path, what=...)``: bounded size, UTF-8 ("not a text file" otherwise).
- ``read_yaml(path, what=...)``: a safe YAML loader that refuses duplicate keys (naming
  the key and its line), alias expansion beyond a node budget (billion laughs), nesting
  deeper than ``MAX_YAML_DEPTH``, integers beyond 2^63 and non-finite numbers.
- ``read_json(path, what=...)``: the same for JSON (no NaN/Infinity, bounded depth).
- ``Reader`` / ``Section``: the one schema-driven field reader behind both accelerator and
  CPU target files: known keys (the closest one suggested), whole numbers and numbers
  inside the physical ranges of ``LIMITS``, enums, booleans, strings.

``LIMITS`` is the one place that states what sizes are sane; the README's schema
tables quote it. A value outside it is refused with the range and its unit, so a
typo (``rows: 320000``) fails at load instead of allocating for an hour.
"""
from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from models.errors import UserError, printable, suggest

MAX_TEXT_BYTES = 8 * 1024 * 1024     # an IR JSON of a large zoo model is ~1 MB
MAX_YAML_BYTES = 1024 * 1024         # target files are ~2 KB; pure-Python YAML parses ~1 MB/s
MAX_YAML_DEPTH = 32                  # the deepest real file nests 3 levels
MAX_YAML_NODES = 100_000             # values after alias expansion (billion laughs: 10^9)
MAX_YAML_ALIASES = 1_000
MAX_JSON_DEPTH = 64
MAX_INT = 2 ** 63 - 1                # beyond this, int64 numpy arrays and float() misbehave


@dataclass(frozen=True)
class Range:
    """A sane physical range for one kind of value: ``low`` <= value <= ``high`` (in ``unit``)."""
    low: float
    high: float
    unit: str
    why: str = ""

    def describe(self) -> str:
        return f"{_number_text(self.low)}..{_number_text(self.high)} {self.unit}".strip()


def _number_text(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


# The sane ranges, one line each: the documentation of every size a file or flag may give.
LIMITS: dict[str, Range] = {
    # accelerators
    "array_dim": Range(1, 4096, "PEs", "the largest systolic arrays built have 256 x 256 PEs"),
    "word_bytes": Range(1, 16, "bytes", "int8 .. fp128"),
    "sram_kb": Range(1 / 1024, 16 * 1024 * 1024, "KiB", "up to 16 GiB of on-chip buffer"),
    "clock_mhz": Range(1e-3, 1e5, "MHz", "1 kHz .. 100 GHz"),
    "dram_gbps": Range(1e-6, 1e6, "GB/s", "up to 1 PB/s"),
    "energy_pj": Range(0, 1e9, "pJ", "per event (a MAC, a byte)"),
    "group_size": Range(1, 1024, "steps", "N:M groups"),
    "index_bits": Range(1, 32, "bits"),
    "select_groups_per_cycle": Range(1, 1 << 20, "groups/cycle"),
    # CPUs
    "vector_bits": Range(32, 4096, "bits", "scalar .. SVE's 2048"),
    "fma_units": Range(1, 64, "pipes"),
    "cores": Range(1, 1 << 16, "cores"),
    "cache_kb": Range(1, 1 << 30, "KiB", "up to 1 TiB"),
    "cache_line_bytes": Range(4, 4096, "bytes"),
    # workloads (IR JSON, SCALE-Sim CSV, --batch)
    "batch": Range(1, 1 << 16, "samples", "a training batch of 65536 images is already rare"),
    "channels": Range(1, 1 << 20, "channels"),
    "spatial": Range(1, 1 << 16, "pixels", "image height or width"),
    "kernel": Range(1, 1 << 12, "pixels", "filter height or width"),
    "dim": Range(1, 1 << 31, "elements", "one tensor dimension"),
    "tensor_elements": Range(1, 1 << 40, "elements", "one tensor (4 TiB in fp32)"),
    "gemm_macs": Range(1, 1 << 62, "MACs", "one layer's dense MACs"),
    "points": Range(1, 100_000, "points", "a sweep; at ~0.2 s a point, 100k points is 6 hours"),
}


def limit(name: str) -> Range:
    """Returns the named range of ``LIMITS`` (a KeyError is a bug in the caller)."""
    return LIMITS[name]


def check_range(value: float, range_: Range, *, source: str | None, field: str) -> None:
    """Raises a UserError naming the range when ``value`` lies outside it."""
    if not range_.low <= value <= range_.high:
        raise UserError(f"{_short(value)} is outside the sane range {range_.describe()}",
                        source=source, field=field,
                        fix=f"give a value in {range_.describe()}"
                            + (f" ({range_.why})" if range_.why else ""))


def _short(value: Any, width: int = 40) -> str:
    """Returns repr(value) cut to ``width`` characters (a 10^400 must not fill the screen)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 30 else \
        f"a {len(str(abs(value)))}-digit integer"
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------- files


def read_bytes(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """Returns a regular file's bytes, refusing directories, devices and files over ``max_bytes``."""
    source = str(path)
    try:
        info = os.stat(source)
    except FileNotFoundError:
        raise UserError(f"cannot read the {what}: no such file", source=source,
                        fix="check the path") from None
    except OSError as error:
        raise UserError(f"cannot read the {what}: {error.strerror}", source=source,
                        fix="check the path and its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"is a directory, not a {what}", source=source, fix=f"give the {what} itself")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"is not a regular file (a device, pipe or socket), not a {what}",
                        source=source, fix=f"give a {what} on disk")
    if info.st_size > max_bytes:
        raise UserError(f"{info.st_size} bytes is too large for a {what} (at most {max_bytes})",
                        source=source, fix=f"give a {what} smaller than {max_bytes // 1024} KiB")
    try:
        with open(source, "rb") as stream:
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise UserError(f"cannot read the {what}: {error.strerror}", source=source,
                        fix="check the path and its permissions") from None
    if len(data) > max_bytes:       # grew while we looked (or /proc-like size 0 lies)
        raise UserError(f"more than {max_bytes} bytes is too large for a {what}", source=source,
                        fix=f"give a {what} smaller than {max_bytes // 1024} KiB")
    return data


def read_text(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Returns a file's UTF-8 text; binary or non-UTF-8 content is 'not a text file'."""
    data = read_bytes(path, what=what, max_bytes=max_bytes)
    if b"\x00" in data:
        raise UserError(f"not a text file (it holds NUL bytes), so not a {what}", source=str(path),
                        fix=f"give a {what} (UTF-8 text)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"not a text file (byte {error.start} is not UTF-8), so not a {what}",
                        source=str(path), fix=f"give a {what} saved as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


# ---------------------------------------------------------------- YAML


class _YamlLimit(Exception):
    """A bound of the YAML reader was crossed (message, line or None)."""

    def __init__(self, message: str, line: int | None, fix: str):
        super().__init__(message)
        self.message, self.line, self.fix = message, line, fix


def _line(node_or_mark: Any) -> int | None:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1 if mark is not None and hasattr(mark, "line") else None


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader with bounds: nesting depth, aliases, expanded size, duplicate keys,
    integer magnitude, finite floats. Only plain data (no Python objects) is built."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    # Composer: depth and alias count are checked while the node tree is built, before any
    # value is constructed (an alias is a reference here; expanding it is what is budgeted).
    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlLimit(f"more than {MAX_YAML_ALIASES} aliases (*name)",
                                 _line(self.peek_event().start_mark),
                                 "write the values out; aliases are for a few repeats")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlLimit(f"nested deeper than {MAX_YAML_DEPTH} levels",
                             _line(self.peek_event().start_mark), "flatten the file")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key, 0)
                except TypeError:
                    continue        # unhashable: the base class names it
                if first != 0:
                    raise _YamlLimit(f"duplicate key '{printable(str(key))}' (first at line {first})",
                                     _line(key_node), "keep one of them; YAML keeps only the last")
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = sum(ch.isalnum() for ch in str(node.value))
        if digits > 64:             # 0b + 63 binary digits is the longest int64 spelling
            raise _YamlLimit(f"a {digits}-digit integer is too large (at most {MAX_INT})",
                             _line(node), "give a smaller number")
        value = super().construct_yaml_int(node)
        if abs(value) > MAX_INT:
            raise _YamlLimit(f"{_short(value)} is too large (at most {MAX_INT})", _line(node),
                             "give a smaller number")
        return value

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise _YamlLimit(f"'{printable(str(node.value))}' is not a finite number", _line(node),
                             "give a finite number")
        return value


BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", BoundedSafeLoader.construct_yaml_int)
BoundedSafeLoader.add_constructor("tag:yaml.org,2002:float", BoundedSafeLoader.construct_yaml_float)


def _check_expanded_size(root: Node) -> None:
    """Raises _YamlLimit when the node graph, aliases expanded, holds more than MAX_YAML_NODES
    values, or refers to itself. Sizes are memoised per node, so this is linear in the file."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _YamlLimit("an alias refers to the value that contains it", _line(node),
                             "remove the recursive alias")
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_YAML_NODES:
                    break
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise _YamlLimit(f"aliases expand to more than {MAX_YAML_NODES} values",
                             _line(root), "write the values out; do not nest aliases of aliases")
        return total

    size(root)


def parse_yaml(text: str, *, source: str, what: str = "YAML file") -> Any:
    """Returns the plain data of one YAML document, or raises a UserError naming the line."""
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{len(text)} characters is too large for a {what}", source=source,
                        fix=f"give a file under {MAX_YAML_BYTES // 1024} KiB")
    loader = None
    try:
        loader = BoundedSafeLoader(text)    # its reader already refuses control characters
        return loader.get_single_data()
    except _YamlLimit as error:
        where = f"line {error.line}" if error.line else None
        raise UserError(error.message, source=source, field=where, fix=error.fix) from None
    except ComposerError as error:
        raise UserError(f"malformed YAML: {printable(str(error.problem or error))}", source=source,
                        field=f"line {_line(error.problem_mark)}" if error.problem_mark else None,
                        fix="give one document; define an anchor (&name) before its alias") from None
    except ConstructorError as error:
        raise UserError(f"unsupported YAML value: {printable(str(error.problem))}", source=source,
                        field=f"line {_line(error.problem_mark)}" if error.problem_mark else None,
                        fix="use plain scalars, lists and mappings (no tags)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"malformed YAML: {printable(str(problem))}", source=source,
                        field=f"line {mark.line + 1}, column {mark.column + 1}" if mark else None,
                        fix="check the indentation and the ':' after every key; a file that is "
                            "not valid YAML cannot be loaded") from None
    except RecursionError:   # belt and braces: the depth bound should stop it first
        raise UserError("nested too deeply", source=source, fix="flatten the file") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: str | os.PathLike, *, what: str) -> Any:
    """Returns the plain data of a YAML file, checked by ``BoundedSafeLoader``.

    ``what`` names the file in errors ("accelerator description", "sweep file")."""
    text = read_text(path, what=what, max_bytes=MAX_YAML_BYTES)
    return parse_yaml(text, source=str(path), what=what)


# ---------------------------------------------------------------- JSON


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, *, source: str, what: str = "JSON file") -> Any:
    """Returns strict JSON data: no NaN/Infinity, integers within int64, bounded depth."""
    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > 19 or abs(int(digits)) > MAX_INT:
            raise ValueError(f"a {len(digits)}-digit integer is too large")
        return int(digits)

    def finite_float(digits: str) -> float:
        value = float(digits)
        if not math.isfinite(value):
            raise ValueError(f"{digits[:20]} overflows a float")
        return value

    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_int=bounded_int,
                              parse_float=finite_float)
    except json.JSONDecodeError as error:
        raise UserError(f"not valid JSON: {error.msg}", source=source,
                        field=f"line {error.lineno}, column {error.colno}",
                        fix=f"give a {what} as written by hwsim") from None
    except ValueError as error:
        raise UserError(f"not valid JSON: {printable(str(error))}", source=source,
                        fix=f"give a {what} as written by hwsim") from None
    except RecursionError:
        raise UserError("nested too deeply", source=source, fix=f"give a {what} as written by hwsim") \
            from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise UserError(f"nested deeper than {MAX_JSON_DEPTH} levels", source=source,
                        fix=f"give a {what} as written by hwsim")
    return document


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return depth
        level = [child for item in level if isinstance(item, (list, dict))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def read_json(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """Returns the data of a strict JSON file (see ``parse_json``)."""
    return parse_json(read_text(path, what=what, max_bytes=max_bytes), source=str(path), what=what)


# ---------------------------------------------------------------- field reader


_MISSING = object()


class Reader:
    """Checks values read from one file; every error names the file and the dotted field.

    Value-level (``integer(value, field, ...)``); ``Section`` adds the key-level view
    of one mapping. ``limits`` maps dotted field names to ``LIMITS`` names, so a schema
    states the range of each field once."""

    def __init__(self, source: str | None, limits: dict[str, str] | None = None):
        self.source = source
        self.limits = limits or {}

    def fail(self, field: str | None, message: str, fix: str | None = None) -> UserError:
        return UserError(message, source=self.source, field=field, fix=fix)

    def _range(self, field: str, range_: str | Range | None) -> Range | None:
        name = range_ if range_ is not None else self.limits.get(field)
        return LIMITS[name] if isinstance(name, str) else name

    def keys(self, mapping: Any, known: Iterable[str], where: str,
             required: Iterable[str] = ()) -> dict:
        """Returns ``mapping`` after checking it is a mapping of known keys with the required ones."""
        known = tuple(known)
        if not isinstance(mapping, dict):
            raise self.fail(where or "(top level)", f"expected a mapping, got {type(mapping).__name__}",
                            f"write it as key: value pairs with keys {', '.join(known)}")
        for key in mapping:
            if key not in known:
                name = f"{where}.{key}" if where else str(key)
                raise self.fail(printable(name), f"unknown key '{printable(str(key))}'",
                                suggest(str(key), known))
        for key in required:
            if key not in mapping or mapping[key] is None:
                name = f"{where}.{key}" if where else key
                raise self.fail(name, "missing required key", f"add '{key}:'")
        return mapping

    def string(self, value: Any, field: str, example: str | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string, got {_short(value)}",
                            f"e.g. {example}" if example else "write a word in quotes")
        if len(value) > 4096:
            raise self.fail(field, f"a {len(value)}-character string is too long", "shorten it")
        return value

    def choice(self, value: Any, field: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(field, f"'{printable(str(value))[:40]}' is not one of {', '.join(allowed)}",
                            suggest(str(value), allowed))
        return value

    def integer(self, value: Any, field: str, range_: str | Range | None = None,
                *, minimum: int = 1) -> int:
        """Returns a whole number >= ``minimum`` inside the field's range (when it has one)."""
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
                value = int(value)
            else:
                raise self.fail(field, f"expected a whole number (a positive integer), got {_short(value)}",
                                "e.g. 32")
        if value < minimum:
            raise self.fail(field, f"{value} must be {'positive' if minimum == 1 else f'>= {minimum}'}",
                            f"use a value >= {minimum}")
        if abs(value) > MAX_INT:
            raise self.fail(field, f"{_short(value)} is too large", f"at most {MAX_INT}")
        bounds = self._range(field, range_)
        if bounds is not None:
            check_range(value, bounds, source=self.source, field=field)
        return value

    def number(self, value: Any, field: str, range_: str | Range | None = None,
               *, positive: bool = True) -> float:
        """Returns a finite number inside the field's range (> 0, or >= 0 when not ``positive``)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"expected a {'positive' if positive else 'non-negative'} number, "
                                   f"got {_short(value)}", "e.g. 19.2")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise self.fail(field, f"{_short(value)} is too large", f"at most {MAX_INT}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(field, f"{value} is not a finite number", "give a finite number")
        if positive and value <= 0:
            raise self.fail(field, f"{_number_text(value)} must be positive", "use a value > 0")
        if not positive and value < 0:
            raise self.fail(field, f"{_number_text(value)} must be >= 0", "use a value >= 0")
        bounds = self._range(field, range_)
        if bounds is not None:
            check_range(value, bounds, source=self.source, field=field)
        return value

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(field, f"expected true or false, got {_short(value)}", "write true or false")
        return value

    def string_list(self, value: Any, field: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(field, f"expected a list of strings, got {_short(value)}",
                            "write it as [-O3, -flag]")
        return tuple(value)


class Section:
    """One mapping of a file, read key by key: ``section.integer("rows")`` checks
    ``array.rows`` against the schema's range and names it in errors."""

    def __init__(self, mapping: Any, reader: Reader, prefix: str, known: Iterable[str],
                 required: Iterable[str] = ()):
        self.reader, self.prefix, self.known = reader, prefix, tuple(known)
        self.mapping = reader.keys(mapping, self.known, prefix, required)

    @property
    def source(self) -> str | None:
        return self.reader.source

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str, fix: str | None = None) -> UserError:
        return self.reader.fail(self.path(key), message, fix)

    def get(self, key: str, default: Any = None, required: bool = False) -> Any:
        """Returns the raw value (None counts as absent), ``default`` when absent."""
        if self.mapping.get(key) is None:
            if required:
                raise self.error(key, "missing", f"add '{key}:'")
            return default
        return self.mapping[key]

    def _read(self, key: str, default: Any, check: Callable[[Any, str], Any]) -> Any:
        value = self.get(key, None, required=default is _MISSING)
        return default if value is None else check(value, self.path(key))

    def integer(self, key: str, default: Any = _MISSING, range_: str | Range | None = None) -> int:
        return self._read(key, default, lambda value, field: self.reader.integer(value, field, range_))

    def number(self, key: str, default: Any = _MISSING, range_: str | Range | None = None,
               *, positive: bool = True) -> float:
        return self._read(key, default, lambda value, field: self.reader.number(
            value, field, range_, positive=positive))

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        return self._read(key, default, self.reader.boolean)

    def text(self, key: str, default: Any = _MISSING) -> str:
        return self._read(key, default, self.reader.string)

    def choice(self, key: str, allowed: Iterable[str], default: Any = _MISSING) -> str:
        return self._read(key, default, lambda value, field: self.reader.choice(value, field, allowed))

    def section(self, key: str, known: Iterable[str], required: Iterable[str] = (),
                default: Any = _MISSING) -> "Section":
        value = self.get(key, None, required=default is _MISSING)
        return Section(default if value is None else value, self.reader, self.path(key), known,
                       required)


# ---------------------------------------------------------------- codegen build folders


_SAFE_FILE_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}"
_CASE_KEYS = {"layer": str, "ops": list, "kind": str, "kernel": str, "case": str, "ints": list,
              "output_shape": list, "macs": int, "sparse": bool, "pattern": (str, type(None))}


def check_build_manifest(document: Any, source: str) -> dict:
    """Returns a `hwsim codegen` manifest after checking its shape, so `hwsim run` reads no
    field it does not expect: names used as file names are plain names, executables are
    relative paths inside the folder (models.fileio.safe_member_path checks them again at
    run time), every case names a kernel of its build."""
    import re

    from models.fileio import safe_member_path

    reader = Reader(source)
    fix = "run `hwsim codegen` again"
    if not isinstance(document, dict) or document.get("format") != "hwsim-codegen":
        raise UserError("not a codegen manifest", source=source, field="format", fix=fix)
    for key in ("model", "target"):
        reader.string(document.get(key), key)
    if not re.fullmatch(_SAFE_FILE_NAME, document["target"]) or ".." in document["target"]:
        raise UserError(f"target '{printable(document['target'][:60])}' is not a target name",
                        source=source, field="target", fix=fix)
    builds = document.get("builds")
    if not isinstance(builds, dict) or not {"sparse", "dense"} <= set(builds):
        raise UserError("needs builds.sparse and builds.dense", source=source, field="builds",
                        fix=fix)
    folder = os.path.dirname(os.path.abspath(source))
    for label in ("sparse", "dense"):
        build = builds[label]
        where = f"builds.{label}"
        if not isinstance(build, dict) or not isinstance(build.get("executables"), dict) \
                or not isinstance(build.get("layers"), list):
            raise UserError("needs 'executables' (a mapping) and 'layers' (a list)", source=source,
                            field=where, fix=fix)
        for kernel, path in build["executables"].items():
            if not re.fullmatch(_SAFE_FILE_NAME, str(kernel)):
                raise UserError(f"kernel name '{printable(str(kernel)[:60])}' is not a file name",
                                source=source, field=f"{where}.executables", fix=fix)
            safe_member_path(folder, path, source=source, field=f"{where}.executables.{kernel}")
        for index, case in enumerate(build["layers"]):
            field = f"{where}.layers[{index}]"
            if not isinstance(case, dict) or set(case) != set(_CASE_KEYS):
                raise UserError(f"a layer needs exactly the keys {', '.join(_CASE_KEYS)}",
                                source=source, field=field, fix=fix)
            for key, kind in _CASE_KEYS.items():
                value = case[key]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise UserError(f"{key} has the wrong type ({type(value).__name__})",
                                    source=source, field=f"{field}.{key}", fix=fix)
            if not re.fullmatch(_SAFE_FILE_NAME, case["case"]):
                raise UserError(f"case '{printable(case['case'][:60])}' is not a file name",
                                source=source, field=f"{field}.case", fix=fix)
            if case["kernel"] not in build["executables"]:
                raise UserError(f"kernel '{printable(case['kernel'][:60])}' is not built",
                                source=source, field=f"{field}.kernel", fix=fix)
            for key in ("ints", "output_shape"):
                if not all(isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT
                           for v in case[key]):
                    raise UserError(f"{key} must be whole numbers", source=source,
                                    field=f"{field}.{key}", fix=fix)
            if not all(isinstance(v, str) for v in case["ops"]):
                raise UserError("ops must be names", source=source, field=f"{field}.ops", fix=fix)
    return document
