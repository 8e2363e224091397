"""Machine code for WebAssembly kernels: Cranelift's on this host, a documented proxy for ARM.

Host (x86-64): the wasm module is compiled by the PyPI ``wasmtime`` package
in-process for the host; ``Module.serialize()`` returns an ELF of Cranelift's
x86-64 code, which ``llvm-objdump -d`` disassembles (functions are named
``wasm[0]::function[i]::<export>``). The loops found there are the code
wasmtime really runs, modelled with llvm-mca's host model.
wasmtime's ``Config.target`` is never set: a cross target aborts the process.

ARM phone (proxy, not the engine's code): the same C kernel, written with
``wasm_simd128.h`` intrinsics, is compiled by clang for aarch64 against a shim
header (``SHIM_HEADER``) that implements each intrinsic with a 128-bit clang
vector operation, with ``-ffp-contract=off`` because wasm forbids fusing a
mul and an add. V8/Cranelift on arm64 also lower SIMD128 one-to-one to NEON
q-register ops; what the proxy misses is the engine's own code: heap base
additions and bounds checks on each access (guard pages make most free on
64-bit), and register allocation and scheduling weaker than LLVM's.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from models.errors import UserError
from models.fileio import write_atomic
from hwsim.cpu.mca import find_llvm_mca

SHIM_HEADER = r"""/* wasm_simd128.h shim for the aarch64 proxy of wasm kernels: 128-bit clang vectors,
   one NEON q-register operation per intrinsic (hwsim/cpu/wasm_native.py). */
#ifndef HWSIM_WASM_SIMD128_SHIM
#define HWSIM_WASM_SIMD128_SHIM
#include <stdint.h>
typedef int32_t v128_t __attribute__((__vector_size__(16), __aligned__(16)));
typedef float __f32x4 __attribute__((__vector_size__(16), __aligned__(16)));
typedef int32_t __i32x4 __attribute__((__vector_size__(16), __aligned__(16)));
#define __DEF static inline __attribute__((__always_inline__, __nodebug__))
__DEF v128_t wasm_v128_load(const void *p) { v128_t v; __builtin_memcpy(&v, p, 16); return v; }
__DEF void wasm_v128_store(void *p, v128_t v) { __builtin_memcpy(p, &v, 16); }
__DEF v128_t wasm_v128_load32_splat(const void *p) { int32_t x; __builtin_memcpy(&x, p, 4); return (v128_t)(__i32x4){x, x, x, x}; }
__DEF v128_t wasm_f32x4_splat(float x) { return (v128_t)(__f32x4){x, x, x, x}; }
__DEF v128_t wasm_f32x4_make(float a, float b, float c, float d) { return (v128_t)(__f32x4){a, b, c, d}; }
__DEF v128_t wasm_i32x4_splat(int32_t x) { return (v128_t)(__i32x4){x, x, x, x}; }
__DEF v128_t wasm_f32x4_add(v128_t a, v128_t b) { return (v128_t)((__f32x4)a + (__f32x4)b); }
__DEF v128_t wasm_f32x4_sub(v128_t a, v128_t b) { return (v128_t)((__f32x4)a - (__f32x4)b); }
__DEF v128_t wasm_f32x4_mul(v128_t a, v128_t b) { return (v128_t)((__f32x4)a * (__f32x4)b); }
__DEF v128_t wasm_f32x4_max(v128_t a, v128_t b) { return (v128_t)__builtin_elementwise_max((__f32x4)a, (__f32x4)b); }
__DEF v128_t wasm_f32x4_min(v128_t a, v128_t b) { return (v128_t)__builtin_elementwise_min((__f32x4)a, (__f32x4)b); }
__DEF v128_t wasm_f32x4_pmax(v128_t a, v128_t b) { v128_t m = (v128_t)((__f32x4)a < (__f32x4)b); return (m & b) | (~m & a); }
__DEF v128_t wasm_f32x4_pmin(v128_t a, v128_t b) { v128_t m = (v128_t)((__f32x4)b < (__f32x4)a); return (m & b) | (~m & a); }
__DEF float wasm_f32x4_extract_lane(v128_t a, int i) { return ((__f32x4)a)[i]; }
__DEF v128_t wasm_i32x4_add(v128_t a, v128_t b) { return a + b; }
__DEF v128_t wasm_v128_and(v128_t a, v128_t b) { return a & b; }
__DEF v128_t wasm_v128_or(v128_t a, v128_t b) { return a | b; }
#define wasm_i32x4_shuffle(a, b, c0, c1, c2, c3) ((v128_t)__builtin_shufflevector((__i32x4)(a), (__i32x4)(b), c0, c1, c2, c3))
#define wasm_i32x4_extract_lane(a, i) (((__i32x4)(a))[i])
#endif
"""

PROXY_CFLAGS = ("--target=aarch64-linux-gnu", "-O3", "-ffp-contract=off", "-fno-math-errno")


def _run(command: list[str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise UserError(f"{what} failed: {' '.join(command)}\n{result.stderr[-3000:]}", field="kernel",
                        fix="check the kernel source")
    return result


def _require(tool: str, package: str) -> str:
    from shutil import which
    path = which(tool)
    if path is None:
        raise UserError(f"'{tool}' not found on PATH", field=tool, fix=f"install the Debian package '{package}'")
    return path


def compile_wasm_module(c_source: str, function: str, work_dir: Path, compile_command: list[str]) -> Path:
    """Returns a .wasm (reactor, no libc start) exporting ``function``, built with ``compile_command``."""
    digest = hashlib.sha256((c_source + " ".join(compile_command) + function).encode()).hexdigest()[:20]
    wasm = work_dir / f"{digest}.wasm"
    if wasm.exists():
        return wasm
    source = work_dir / f"{digest}.c"
    write_atomic(str(source), c_source)
    partial = work_dir / f".{digest}.{os.getpid()}.wasm"
    _run([*compile_command, "-nostartfiles", "-Wl,--no-entry", f"-Wl,--export={function}",
          str(source), "-o", str(partial)], "wasm compile")
    os.replace(partial, wasm)
    return wasm


def cranelift_disassembly(wasm_path: Path, work_dir: Path) -> str:
    """Returns llvm-objdump -d of the host code wasmtime compiles ``wasm_path`` into."""
    import wasmtime                     # heavy; imported where used
    elf = work_dir / (wasm_path.stem + ".cwasm.elf")
    if not elf.exists():
        engine = wasmtime.Engine()       # host target: never set Config.target (see module doc)
        module = wasmtime.Module.from_file(engine, str(wasm_path))
        write_atomic(str(elf), bytes(module.serialize()))
    objdump = _require("llvm-objdump", "llvm")
    find_llvm_mca()
    return _run([objdump, "-d", str(elf)], "llvm-objdump").stdout


def cranelift_function_name(disassembly: str, function: str) -> str:
    """Returns the objdump symbol of an exported function ('wasm[0]::function[3]::name')."""
    for line in disassembly.splitlines():
        if line.endswith(f"::{function}>:"):
            return line.split("<", 1)[1][:-2]
    raise ValueError(f"function {function} not found in the Cranelift code")


def aarch64_proxy_assembly(c_source: str, work_dir: Path, clang: str = "clang") -> str:
    """Returns aarch64 assembly of a wasm_simd128 kernel compiled through the shim (the ARM proxy)."""
    clang_path = _require(clang, "clang")
    shim_dir = work_dir / "wasm_shim"
    header = shim_dir / "wasm_simd128.h"
    if not header.exists() or header.read_text() != SHIM_HEADER:
        write_atomic(str(header), SHIM_HEADER)
    digest = hashlib.sha256((c_source + SHIM_HEADER).encode()).hexdigest()[:20]
    source = work_dir / f"{digest}.proxy.c"
    write_atomic(str(source), c_source)
    output = work_dir / f"{digest}.proxy.s"
    if not output.exists():
        partial = work_dir / f".{digest}.{os.getpid()}.s"
        _run([clang_path, *PROXY_CFLAGS, f"-I{shim_dir}", "-S", str(source), "-o", str(partial)],
             "aarch64 proxy compile")
        os.replace(partial, output)
    return output.read_text()
