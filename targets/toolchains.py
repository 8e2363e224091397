"""Build C for a CpuTarget: find the compiler, add the target's flags, cache by content.

One function per job: ``build_executable`` (C sources -> program the target's runner
can run: native ELF, static aarch64 ELF, or a WASI .wasm), ``compile_to_assembly``
(-S with the same flags, for llvm-mca and for reading), ``build_cache_key``. A missing
tool is a UserError naming the Debian package that provides it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from models.errors import UserError
from targets.cpu import CpuTarget

# Where Debian's wasi-libc (and the wasi-sdk) put the sysroot; $WASI_SYSROOT wins.
WASI_SYSROOT_CANDIDATES = ("/usr", "/opt/wasi-sdk/share/wasi-sysroot", "/usr/share/wasi-sysroot")
BUILD_TIMEOUT_S = 300.0
# Suffixes hashed into the cache key but not passed to the compiler.
HEADER_SUFFIXES = (".h", ".inc")


def require_tool(name: str, debian_package: str, *, path: str | None = None) -> str:
    """Returns the full path of tool ``name``; UserError naming the Debian package when missing."""
    found = shutil.which(name, path=path)
    if found is None:
        raise UserError(f"'{name}' not found", field="toolchain",
                        fix=f"install the Debian package {debian_package} "
                            f"(apt-get install {debian_package})")
    return found


def find_wasi_sysroot(candidates: Iterable[str] = WASI_SYSROOT_CANDIDATES) -> Path:
    """Returns the sysroot that holds wasi-libc (a dir with lib/wasm32-wasi/libc.a)."""
    def has_libc(root: Path) -> bool:
        return (root / "lib" / "wasm32-wasi" / "libc.a").is_file()

    override = os.environ.get("WASI_SYSROOT")
    if override:
        if not has_libc(Path(override)):
            raise UserError(f"WASI_SYSROOT={override} has no lib/wasm32-wasi/libc.a",
                            field="toolchain", fix="point WASI_SYSROOT at a wasi-libc sysroot, or unset it")
        return Path(override)
    for root in candidates:
        if has_libc(Path(root)):
            return Path(root)
    raise UserError("no WASI sysroot (wasi-libc) found", field="toolchain",
                    fix="install the Debian package wasi-libc (apt-get install wasi-libc) "
                        "or set WASI_SYSROOT to a wasi-sdk sysroot")


def _clang_wasm_builtins(cc_path: str) -> None:
    """Raises a UserError naming the package when clang lacks the wasm32 compiler-rt builtins."""
    try:
        resource_dir = subprocess.run([cc_path, "-print-resource-dir"], capture_output=True,
                                      text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return
    builtins = Path(resource_dir) / "lib" / "wasi" / "libclang_rt.builtins-wasm32.a"
    if resource_dir and not builtins.is_file():
        major = Path(resource_dir).name.split(".")[0]
        raise UserError(f"clang has no wasm32 runtime ({builtins} is missing)", field="toolchain",
                        fix=f"install the Debian package libclang-rt-{major}-dev-wasm32 "
                            f"(apt-get install libclang-rt-{major}-dev-wasm32)")


def compiler_command(target: CpuTarget, *, link: bool, extra_cflags: Iterable[str] = (),
                     defines: Mapping[str, object] | None = None, openmp: bool = False) -> list[str]:
    """Returns [cc, flags...] for the target (without sources or -o); checks the tools exist."""
    toolchain = target.toolchain
    cc_path = require_tool(toolchain.cc, toolchain.debian_package)
    command = [cc_path, *toolchain.cflags]
    if target.isa == "wasm32":
        if not any(flag.startswith("--sysroot") for flag in toolchain.cflags):
            command.append(f"--sysroot={find_wasi_sysroot()}")
        if link:
            require_tool("wasm-ld", "lld")
            _clang_wasm_builtins(cc_path)
        if openmp:
            raise UserError("OpenMP is not available for wasm32", field="openmp",
                            fix="build wasm kernels single-threaded")
    if openmp:
        command.append("-fopenmp")
    command += list(extra_cflags)
    command += [f"-D{key}" if value is None else f"-D{key}={value}"
                for key, value in sorted((defines or {}).items())]
    return command


def compiler_version(cc: str) -> str:
    """Returns the first line of ``cc --version`` (part of the cache key)."""
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (result.stdout.splitlines() or ["unknown"])[0]


def build_cache_key(sources: Iterable[Path], command: Iterable[str], compiler_id: str,
                    output_suffix: str = "") -> str:
    """Returns a sha256 of the source contents (in order), the full command and the compiler version."""
    digest = hashlib.sha256()
    for part in (compiler_id, output_suffix, *command):
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(Path(source).name.encode() + b"\0")
        digest.update(Path(source).read_bytes() + b"\0")
    return digest.hexdigest()


def _run_compiler(command: list[str], target: CpuTarget) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"compiler ran over {BUILD_TIMEOUT_S:.0f} s", source=target.source,
                        field="toolchain", fix="simplify the kernel or check the compiler") from None
    if result.returncode != 0:
        diagnostics = (result.stderr or result.stdout).strip()
        raise UserError(f"build for {target.name} failed:\n{' '.join(command)}\n{diagnostics[-4000:]}",
                        source=target.source, field="toolchain",
                        fix="fix the C source or the flags shown above")


def _copy_atomic(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(handle)
    shutil.copy2(source, temporary)
    os.replace(temporary, destination)


def _build(target: CpuTarget, sources: list[Path], output: Path, command_flags: list[str],
           tail: list[str], cache_dir: Path | None) -> Path:
    """Runs cc on the compilable sources, through the content cache when a cache_dir is given."""
    sources = [Path(source) for source in sources]
    for source in sources:
        if not source.is_file():
            raise UserError("source file not found", source=str(source), field="sources",
                            fix="check the path")
    compiled = [str(source) for source in sources if source.suffix not in HEADER_SUFFIXES]
    output = Path(output)
    key = None
    if cache_dir is not None:
        key = build_cache_key(sources, command_flags[1:] + tail, compiler_version(command_flags[0]),
                              output.suffix)
        cached = Path(cache_dir) / f"{key}{output.suffix}"
        if cached.is_file():
            _copy_atomic(cached, output)
            return output
    output.parent.mkdir(parents=True, exist_ok=True)
    # Build to a temporary name and rename, so a reader never sees half a binary.
    partial = output.with_name(f".{output.name}.partial{os.getpid()}")
    try:
        _run_compiler(command_flags + compiled + ["-o", str(partial)] + tail, target)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    if key is not None:
        _copy_atomic(output, Path(cache_dir) / f"{key}{output.suffix}")
    return output


def build_executable(target: CpuTarget, sources: list[Path], output: Path, *,
                     extra_cflags: Iterable[str] = (), defines: Mapping[str, object] | None = None,
                     openmp: bool = False, cache_dir: Path | None = None) -> Path:
    """Returns ``output``, a program for the target built from C sources (headers only hashed).

    host: native ELF with the detected -m flags; aarch64: static ELF (runs under
    qemu-aarch64-static or on a phone); wasm32: a WASI command module (.wasm).
    With ``cache_dir``, a build whose sources, flags and compiler are unchanged is copied
    from there instead of recompiled.
    """
    command = compiler_command(target, link=True, extra_cflags=extra_cflags, defines=defines,
                               openmp=openmp)
    return _build(target, sources, output, command, list(target.toolchain.ldflags), cache_dir)


def compile_to_assembly(target: CpuTarget, source: Path, output: Path, *,
                        extra_cflags: Iterable[str] = (), defines: Mapping[str, object] | None = None,
                        cache_dir: Path | None = None) -> Path:
    """Returns ``output``, the assembly (-S) of one C source with the target's build flags.

    For wasm32 this is clang's WebAssembly text assembly (.s). Use ``extra_cflags``
    to add e.g. ``-fno-unroll-loops`` or llvm-mca region markers' defines.
    """
    command = compiler_command(target, link=False, extra_cflags=extra_cflags, defines=defines)
    return _build(target, [Path(source)], output, command + ["-S"], [], cache_dir)


def toolchain_problems(target: CpuTarget) -> list[str]:
    """Returns why the target's toolchain cannot build here (empty when it can)."""
    try:
        compiler_command(target, link=True)
    except UserError as error:
        return [error.one_line()]
    return []



def export_tvm_module(library, target: CpuTarget, output: Path) -> Path:
    """Returns ``output``: a TVM-built module linked by the target's compiler into a shared library.

    This is what the rpc runner uploads; the remote loads it with dlopen, so an
    aarch64 target gets an aarch64 .so (linked by aarch64-linux-gnu-gcc, i.e. for a
    glibc Linux board; an Android phone's tvm_rpc app needs the NDK's clang instead,
    passed as a target YAML whose toolchain.cc is that clang).
    """
    if target.isa == "wasm32":
        raise UserError("TVM modules for wasm32 are not exported as shared libraries",
                        field="target", fix="build wasm kernels from C with build_executable")
    cc_path = require_tool(target.toolchain.cc, target.toolchain.debian_package)
    from tvm.support import cc as tvm_cc

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.partial{os.getpid()}{output.suffix}")
    try:
        library.export_library(str(partial), fcompile=tvm_cc.cross_compiler(cc_path))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output
