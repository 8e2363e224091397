"""Atomic writes: a reader never sees a half-written output, a file or a folder of them.

- ``write_atomic(path, content)``: one file through a temporary file and a rename.
- ``atomic_folder(directory)``: a folder of outputs (summary + report + plots) written into a
  staging folder beside it and swapped in at the end, so a kill leaves the old set or the new
  set, never a new summary beside old plots.
- ``check_output_path`` / ``check_output_dir``: an output path that cannot be written is
  refused in one line before any work starts.
- ``safe_member_path(folder, relative)``: a path a file (a build manifest) names, resolved
  only when it stays inside the folder.
- ``remove_matching(folder, pattern)``: stale files a rebuild replaces.
- ``json_text(document)``: strict JSON (no NaN/Infinity: non-finite numbers become null).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from models.errors import UserError

# Filesystems whose files are not data a tool should write: kernel interfaces.
_SPECIAL_ROOTS = ("/proc", "/sys", "/dev")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(path: str, content: str | bytes) -> None:
    """Writes ``content`` to ``path`` through a temporary file and a rename.

    A path that cannot be written (a directory, a file where a folder should be, no
    permission, a kernel filesystem) is a UserError naming it, not an OSError."""
    check_output_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                             suffix=os.path.basename(path))
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        with os.fdopen(handle, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())     # mkstemp makes 0600; outputs are for everyone
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise


def append_line_durably(path: str, line: str) -> None:
    """Appends one line and fsyncs it, so a log survives a crash up to its last line."""
    check_output_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(line.rstrip("\n") + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        raise _write_error(path, error) from None


def _write_error(path: str, error: OSError) -> UserError:
    return UserError(f"cannot write: {error.strerror or error}", source=str(path),
                     fix="give a writable path (a file inside a folder you own)")


# ---------------------------------------------------------------- output checks


def _special(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root + "/") for root in _SPECIAL_ROOTS)


def check_output_path(path: str | os.PathLike, *, what: str = "output file") -> None:
    """Raises a UserError when ``path`` cannot become a regular file: it is a directory or
    a device, a parent is a file, the parent is not writable, or it lies under /proc, /sys, /dev."""
    path = str(path)
    if not path or "\x00" in path:
        raise UserError(f"'{path}' is not a path", field=what, fix="give a file name")
    if _special(path):
        raise UserError(f"is on a kernel filesystem, not a place for an {what}", source=path,
                        fix="write under your own folder")
    if os.path.lexists(path):
        info = os.stat(path) if os.path.exists(path) else os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"is a directory, not an {what}", source=path,
                            fix="name a file inside it")
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
            raise UserError(f"is a device, pipe or socket, not an {what}", source=path,
                            fix="name a regular file")
    _check_parent(os.path.dirname(os.path.abspath(path)), path)


def _check_parent(parent: str, path: str) -> None:
    """Walks up to the first existing ancestor: it must be a writable directory."""
    while not os.path.exists(parent):
        if os.path.lexists(parent):          # a dangling link
            raise UserError(f"'{parent}' is a broken link", source=path, fix="fix or remove the link")
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"'{parent}' is a file, not a folder", source=path,
                        fix="choose a path whose folders are folders")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"no permission to write in '{parent}'", source=path,
                        fix="choose a folder you can write")


def check_output_dir(path: str | os.PathLike, *, what: str = "output folder") -> None:
    """Raises a UserError when ``path`` cannot be (or become) a folder of outputs."""
    path = str(path)
    if not path or "\x00" in path:
        raise UserError(f"'{path}' is not a path", field=what, fix="give a folder name")
    if _special(path):
        raise UserError(f"is on a kernel filesystem, not a place for an {what}", source=path,
                        fix="write under your own folder")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UserError(f"exists and is not a folder, so not an {what}", source=path,
                            fix="give a new or existing folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"no permission to write in the {what}", source=path,
                            fix="choose a folder you can write")
        return
    _check_parent(os.path.dirname(os.path.abspath(path)), path)


# ---------------------------------------------------------------- paths a file names


def safe_member_path(folder: str | os.PathLike, relative: Any, *, source: str | None = None,
                     field: str | None = None) -> Path:
    """Returns ``folder/relative`` when ``relative`` is a relative path that stays inside
    ``folder`` (symlinks resolved); a manifest naming '/usr/bin/x' or '../../x' is refused."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise UserError(f"expected a relative file name, got {str(relative)[:60]!r}",
                        source=source, field=field, fix="rebuild the folder with hwsim")
    parts = Path(relative).parts
    if os.path.isabs(relative) or ".." in parts:
        raise UserError(f"'{relative[:200]}' points outside the build folder", source=source,
                        field=field, fix="a build runs only files inside its own folder; rebuild it")
    root = Path(folder).resolve()
    resolved = (root / relative).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(f"'{relative[:200]}' resolves outside the build folder (a link)",
                        source=source, field=field, fix="rebuild the folder with hwsim")
    return resolved


def remove_matching(folder: str | os.PathLike, pattern: str) -> list[str]:
    """Deletes the regular files of ``folder`` whose names match ``pattern`` (a glob);
    returns their names. A missing folder holds nothing."""
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        path = os.path.join(folder, name)
        if fnmatch.fnmatchcase(name, pattern) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            removed.append(name)
    return removed


# ---------------------------------------------------------------- folders


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: str, second: str) -> bool:
    """Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), second)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_prefix(directory: str) -> str:
    return f".tmp-{os.path.basename(directory)}-"


def _remove_dead(folder: str, prefix: str) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def remove_dead_staging(directory: str) -> None:
    """Removes staging folders left by a killed writer (dead pid): beside ``directory``
    and, for in-place updates, inside it."""
    _remove_dead(os.path.dirname(directory) or ".", _staging_prefix(directory))
    _remove_dead(directory, _staging_prefix(directory))


def _fsync_tree(folder: str) -> None:
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as stream:
                os.fsync(stream.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _swappable(directory: str) -> bool:
    """True when ``directory`` can be replaced whole: its parent is writable, it is not the
    working directory (or above it), and it holds no subfolders (only files are carried)."""
    parent = os.path.dirname(directory)
    cwd = os.getcwd()
    if cwd == directory or cwd.startswith(directory + os.sep) or not os.access(parent, os.W_OK):
        return False
    if not os.path.exists(directory):
        return True
    return not any(os.path.isdir(os.path.join(directory, name)) and not name.startswith(".tmp-")
                   for name in os.listdir(directory))


@contextlib.contextmanager
def atomic_folder(directory: str | os.PathLike, *, replaces: tuple[str, ...] = ("*",)
                  ) -> Iterator[str]:
    """Yields a staging folder to write a set of outputs into; on a clean exit the set
    replaces ``directory`` in one step (an atomic exchange where Linux has it).

    Files already in ``directory`` that no pattern of ``replaces`` matches (a user's
    notes) are carried over (hard links). A folder that cannot be swapped (it holds
    subfolders, it is the working directory, its parent is not writable) is updated in
    place instead, staged in a hidden folder inside it: its files matching ``replaces``
    are removed first and the staged files moved in one by one, the first one written
    last, so no stale file survives beside a new one and the summary a reader looks for
    appears only with the rest. A kill leaves either the old set or the new one (in place:
    at worst a set without its first file), plus at most a hidden staging folder that the
    next write removes."""
    directory = os.path.abspath(str(directory))
    check_output_dir(directory)
    try:
        swap = _swappable(directory)
        os.makedirs(directory if not swap else os.path.dirname(directory), exist_ok=True)
        remove_dead_staging(directory)
        staging = tempfile.mkdtemp(dir=os.path.dirname(directory) if swap else directory,
                                   prefix=f"{_staging_prefix(directory)}{os.getpid()}-")
    except OSError as error:
        raise _write_error(directory, error) from None
    try:
        yield staging
        _fsync_tree(staging)
        if swap:
            _swap_in(staging, directory, replaces)
        else:
            _move_in(staging, directory, replaces)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replaced(name: str, staged: set[str], replaces: tuple[str, ...]) -> bool:
    return name in staged or name.startswith(".tmp-") or any(
        fnmatch.fnmatchcase(name, pattern) for pattern in replaces)


def _swap_in(staging: str, directory: str, replaces: tuple[str, ...]) -> None:
    if not os.path.exists(directory):
        os.chmod(staging, 0o777 & ~_umask())
        os.rename(staging, directory)
        return
    staged = set(os.listdir(staging))
    for name in os.listdir(directory):
        if not _replaced(name, staged, replaces):
            os.link(os.path.join(directory, name), os.path.join(staging, name))
    os.chmod(staging, stat.S_IMODE(os.stat(directory).st_mode))
    if _exchange(staging, directory):
        return          # the old set is now at ``staging``, removed by the caller
    old = staging + ".old"
    os.rename(directory, old)
    os.rename(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def _move_in(staging: str, directory: str, replaces: tuple[str, ...]) -> None:
    names = os.listdir(staging)
    staged = set(names)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if _replaced(name, staged, replaces) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
    first = min(names, key=lambda name: os.stat(os.path.join(staging, name)).st_mtime_ns) \
        if names else None
    for name in sorted(names, key=lambda name: name == first):
        os.replace(os.path.join(staging, name), os.path.join(directory, name))


# ---------------------------------------------------------------- JSON out


def finite_only(value: Any) -> Any:
    """Returns ``value`` with every NaN/Infinity float replaced by None (JSON null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_only(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_only(item) for item in value]
    return value


def json_text(document: Any, indent: int | None = 1) -> str:
    """Returns strict JSON: a non-finite number becomes null (strict readers reject NaN)."""
    return json.dumps(finite_only(document), indent=indent, allow_nan=False)


# ---------------------------------------------------------------- hashes


def file_sha256(path: str | os.PathLike) -> str:
    """Returns the hex SHA-256 of a file (recorded at build time, checked before a run)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike, expected: Any, *, source: str | None = None) -> None:
    """Raises a UserError unless ``path`` is a regular file whose SHA-256 is ``expected``
    (a build's executable changed after the build, or never came from it)."""
    if not os.path.isfile(path):
        raise UserError("the executable the build names is missing", source=str(path),
                        fix="rebuild with `hwsim codegen`")
    if not isinstance(expected, str) or file_sha256(path) != expected:
        raise UserError("the executable differs from the one the build recorded (sha256)",
                        source=str(path), fix="rebuild with `hwsim codegen`; a build folder runs "
                                              "only the binaries it built")
