"""Target description files (``kind: accelerator`` and ``kind: cpu``): one reader for both.

Both kinds are YAML files under targets/ (``accelerators/*.yaml``, ``cpus/*.yaml``) or
anywhere on disk, read the same way:

1. found: a path, or a bundled name ('sat', 'snapdragon855'): ``resolve_target_path``;
2. parsed by the bounded YAML reader (``models.inputs.read_yaml``: duplicate keys, alias
   bombs, deep nesting, huge numbers refused with the line): ``read_target``;
3. checked field by field against its schema with ``SchemaReader`` (values) and
   ``Fields`` (one mapping, key by key): unknown keys name the closest known key,
   numbers must lie in the sane ranges of ``models.inputs.LIMITS``, and every error is a
   ``UserError`` naming the file, the dotted field and the fix (the CLI: one line, exit 2).

The schemas themselves live with what they describe: ``hwsim/arch.py`` (accelerators)
and ``targets/cpu.py`` (CPUs); each states its keys and its fields' ranges once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.errors import UserError, suggest
from models.inputs import Range, Reader, Section, read_yaml

KINDS = ("accelerator", "cpu")
TARGETS_DIR = Path(__file__).resolve().parent
# Where the bundled files of each kind live.
BUNDLED_DIRS = {"accelerator": TARGETS_DIR / "accelerators", "cpu": TARGETS_DIR / "cpus"}


def bundled_dirs() -> list[Path]:
    """Returns the folders searched for bundled target names (targets/accelerators, targets/cpus)."""
    return list(BUNDLED_DIRS.values())


def bundled_names(kind: str | None = None) -> list[str]:
    """Returns the bundled names of one kind (every kind when None), sorted."""
    folders = bundled_dirs() if kind is None else [BUNDLED_DIRS[kind]]
    return sorted(path.stem for folder in folders if folder.is_dir()
                  for path in folder.glob("*.yaml"))


def bundled_paths(kind: str) -> list[Path]:
    """Returns the bundled files of one kind, sorted by name."""
    return sorted(BUNDLED_DIRS[kind].glob("*.yaml"))


def resolve_target_path(path_or_name: str) -> Path:
    """Returns the YAML file a path or a bundled name ('sat') refers to (``--arch``)."""
    candidate = Path(path_or_name)
    if candidate.is_file():
        return candidate
    if candidate.suffix not in (".yaml", ".yml") and os.sep not in path_or_name:
        for folder in bundled_dirs():
            bundled = folder / f"{path_or_name}.yaml"
            if bundled.is_file():
                return bundled
        raise UserError(f"no such file or bundled target '{path_or_name}'", field="--arch",
                        fix=suggest(path_or_name, bundled_names()))
    raise UserError(f"no such file '{path_or_name}'", field="--arch",
                    fix=f"give a YAML file or a bundled name ({', '.join(bundled_names())})")


def target_kind(document: dict[str, Any]) -> str:
    """Returns the document's kind (a file without ``kind:`` is an accelerator)."""
    return document.get("kind", "accelerator")


def read_target(path_or_name: str) -> tuple[str, dict[str, Any]]:
    """Returns (source path, parsed mapping) of a target YAML of either kind.

    Malformed YAML names its line; a document that is not a mapping, or names an
    unknown kind, is refused here, before either schema reads it."""
    path = resolve_target_path(path_or_name)
    source = str(path)
    document = read_yaml(path, what="accelerator description")
    if not isinstance(document, dict):
        raise UserError("the file must be a mapping of keys to values", source=source,
                        fix="start with 'kind: accelerator' and 'name: ...'")
    kind = target_kind(document)
    if kind not in KINDS:
        raise UserError(f"unknown kind '{kind}'", source=source, field="kind",
                        fix=suggest(str(kind), KINDS))
    return source, document


def read_description_file(path: Path, *, what: str, missing_fix: str) -> Any:
    """Returns the parsed YAML of one file; a missing file says ``missing_fix``."""
    try:
        return read_yaml(path, what=what)
    except UserError:
        if not path.exists():
            raise UserError("cannot read: no such file", source=str(path), fix=missing_fix) from None
        raise


class SchemaReader(Reader):
    """The field reader of one description file (``models.inputs.Reader``) with its schema's
    sane ranges: ``limits`` maps dotted fields ('array.rows') to ``LIMITS`` names."""

    def __init__(self, source: str | None, limits: dict[str, str]):
        super().__init__(source, limits)

    def positive(self, value: Any, name: str, kind: type = float) -> float | int:
        """Returns a positive whole number (``kind`` int) or number inside the field's range."""
        return self.integer(value, name) if kind is int else self.number(value, name)

    def fields(self, mapping: Any, prefix: str, known: tuple[str, ...],
               required: tuple[str, ...] = ()) -> "Fields":
        """Returns the key-by-key view of one mapping of the file (``prefix``: its dotted path)."""
        return Fields(mapping, self, prefix, known, required)


class Fields(Section):
    """One mapping of a description, read key by key; absent keys take their default,
    a missing required one is 'missing' with the fix 'add KEY:'."""

    def __init__(self, mapping: Any, reader: SchemaReader, prefix: str, known: tuple[str, ...],
                 required: tuple[str, ...] = ()):
        super().__init__(mapping, reader, prefix, known, required)

    def positive_int(self, key: str, default: int | None = None, required: bool = True,
                     range_: str | Range | None = None) -> int:
        value = self.get(key, default, required and default is None)
        return self.reader.integer(value, self.path(key), range_)

    def positive_number(self, key: str, default: float | None = None, required: bool = True) -> float:
        value = self.get(key, default, required and default is None)
        return self.reader.number(value, self.path(key))

    def non_negative_number(self, key: str, default: float | None = None) -> float:
        return self.reader.number(self.get(key, default, default is None), self.path(key),
                                  positive=False)

    def boolean(self, key: str, default: bool) -> bool:
        return self.reader.boolean(self.get(key, default, False), self.path(key))

    def text(self, key: str, default: str | None = None, example: str | None = None) -> str:
        return self.reader.string(self.get(key, default, default is None), self.path(key), example)
