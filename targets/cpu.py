"""CPU targets: a YAML description (kind: cpu) validated once into a frozen ``CpuTarget``.

A target says what the machine is (ISA, core, SIMD width, caches, clock), how to
build for it (``Toolchain``), how to run on it (``runner``) and what TVM should
generate for it (``tvm_target``, a TVM 0.27 JSON-dict target). The bundled files
live in targets/cpus/*.yaml; any other YAML file can be loaded by path.

Files are found, read and checked field by field by the one reader of target
descriptions (targets/descriptions.py, shared with accelerator files); this module
holds the CPU schema.

The ``host`` file says ``detect`` for what only the running machine knows (SIMD
level, llvm core, core count, caches, clock): those are read from /proc/cpuinfo
and sysfs (targets/features.py) when the file is loaded, never assumed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import UserError, printable, suggest
from targets.descriptions import BUNDLED_DIRS, SchemaReader, bundled_names, read_description_file
from targets.features import (HostFeatures, choose_llvm_core, detect_host_features, llvm_mca_cpus,
                              preferred_llvm_cores, vector_fma_units)
from targets.simd import SIMDS, simd_level

BUNDLED_DIR = BUNDLED_DIRS["cpu"]

ISAS = ("aarch64", "wasm32", "x86_64")
# Which runners a file may name, and for which ISA, each runner module says itself
# (its SPEC, read through targets.runners.target_file_runners / runners_for_isa).
# The triple a C compiler / llvm-mca uses for each ISA.
LLVM_TRIPLES = {"aarch64": "aarch64-linux-gnu", "wasm32": "wasm32-wasi", "x86_64": "x86_64-linux-gnu"}
DETECT = "detect"


@dataclass(frozen=True)
class Toolchain:
    """How to compile C for a target: compiler, flags, and the Debian package that has it."""
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    debian_package: str


@dataclass(frozen=True)
class CacheSizes:
    """Data-cache sizes in KiB seen by one core; ``l3_kb`` is None when there is no L3."""
    l1d_kb: int
    l2_kb: int
    l3_kb: int | None = None

    def __getitem__(self, level: str) -> int | None:
        """Returns the size of 'l1d', 'l2' or 'l3' in KiB (dict-like access)."""
        return self.as_dict()[level]

    def as_dict(self) -> dict[str, int | None]:
        return {"l1d": self.l1d_kb, "l2": self.l2_kb, "l3": self.l3_kb}


@dataclass(frozen=True)
class CpuTarget:
    """One CPU (or a wasm engine on one) as the simulator, kernels and runners see it."""
    name: str
    isa: str                       # aarch64 | wasm32 | x86_64
    core: str                      # llvm scheduling model (llvm-mca -mcpu=...)
    vector_bits: int
    simd: str                      # neon | wasm_simd128 | avx2 | avx512 | scalar
    fma_units: int                 # vector FMA pipes per core
    clock_mhz: float
    cores: int
    caches_kb: CacheSizes
    cache_line_bytes: int
    dram_gbps: float
    toolchain: Toolchain
    runner: str                    # one of targets.runners.runners_for_isa(isa)
    tvm_target: dict = field(hash=False)
    source: str
    description: str = ""
    core_isa: str = ""             # ISA of the physical core (aarch64 for a browser on a phone)
    host_features: HostFeatures | None = field(default=None, compare=False, hash=False)

    @property
    def llvm_triple(self) -> str:
        """Returns the triple the C toolchain compiles for (wasm32-wasi for wasm)."""
        return LLVM_TRIPLES[self.isa]

    @property
    def mca_triple(self) -> str:
        """Returns the triple of the physical core, for llvm-mca's scheduling model."""
        return LLVM_TRIPLES[self.core_isa or self.isa]

    @property
    def vector_lanes_f32(self) -> int:
        return self.vector_bits // 32

    @property
    def peak_gflops_f32(self) -> float:
        """Returns the FMA peak of all cores: lanes x 2 flops x FMA units x clock x cores."""
        return self.vector_lanes_f32 * 2 * self.fma_units * self.clock_mhz * self.cores / 1e3


# ---------------------------------------------------------------- schema

_TOP_KEYS = ("kind", "name", "description", "isa", "core", "core_isa", "vector_bits", "simd",
             "fma_units", "clock_mhz", "cores", "caches_kb", "cache_line_bytes", "dram_gbps",
             "toolchain", "runner", "tvm_target")
_REQUIRED = ("kind", "name", "isa", "core", "vector_bits", "simd", "fma_units", "clock_mhz",
             "cores", "caches_kb", "cache_line_bytes", "dram_gbps", "toolchain", "runner",
             "tvm_target")
_CACHE_KEYS = ("l1d", "l2", "l3")
_TOOLCHAIN_KEYS = ("cc", "cflags", "ldflags", "debian_package")
# Keys of TVM's "llvm" target kind that a CPU description may set.
_TVM_TARGET_KEYS = ("kind", "mtriple", "mcpu", "mattr", "mabi", "mfloat-abi", "num-cores",
                    "opt-level", "keys", "tag", "host")
# Fields the host file may leave to detection.
_DETECTABLE = ("core", "vector_bits", "simd", "fma_units", "clock_mhz", "cores", "caches_kb")


# Each numeric field's sane range (models/inputs.py LIMITS states them, with units).
_FIELD_LIMITS = {"vector_bits": "vector_bits", "fma_units": "fma_units", "clock_mhz": "clock_mhz",
                 "cores": "cores", "tvm_target.num-cores": "cores", "caches_kb.l1d": "cache_kb",
                 "caches_kb.l2": "cache_kb", "caches_kb.l3": "cache_kb",
                 "cache_line_bytes": "cache_line_bytes", "dram_gbps": "dram_gbps"}


def _schema_reader(source: str) -> SchemaReader:
    """Returns the shared field reader (targets.descriptions) with the CPU schema's ranges."""
    return SchemaReader(source, _FIELD_LIMITS)


def _resolve_tvm_target(checker: SchemaReader, raw: Any, features: HostFeatures | None) -> dict:
    spec = dict(checker.keys(raw, _TVM_TARGET_KEYS, "tvm_target", required=("kind",)))
    checker.string(spec["kind"], "tvm_target.kind")
    for key, value in spec.items():
        if value == DETECT:
            if features is None:
                raise checker.fail(f"tvm_target.{key}", "'detect' works only for the x86_64 host",
                                   "write the value")
            if key == "mcpu":
                # TVM's LLVM knows the exact CPU even where llvm-mca needed an older model.
                spec[key] = preferred_llvm_cores(features)[0]
            elif key == "mattr":
                spec[key] = list(features.mattr())
            else:
                raise checker.fail(f"tvm_target.{key}", "only mcpu and mattr can be 'detect'")
        elif key == "mattr":
            spec[key] = list(checker.string_list(value, "tvm_target.mattr"))
        elif key == "num-cores":
            spec[key] = checker.positive(value, "tvm_target.num-cores", int)
    return spec


def cpu_target_from_dict(raw: Any, source: str, *,
                         host_features: HostFeatures | None = None,
                         llvm_cpus: frozenset[str] | None = None) -> CpuTarget:
    """Returns the validated CpuTarget described by a parsed ``kind: cpu`` YAML mapping.

    ``host_features`` and ``llvm_cpus`` replace detection (for tests); they are
    read from this machine only when the file says ``detect`` somewhere.
    """
    check = _schema_reader(source)
    check.keys(raw, _TOP_KEYS, "", required=_REQUIRED)
    if raw["kind"] != "cpu":
        raise check.fail("kind", f"expected 'cpu', got {raw['kind']!r}",
                         "accelerator files are loaded by hwsim, not as CPU targets")
    name = _target_name(check, raw["name"])
    isa = check.choice(raw["isa"], "isa", ISAS)

    detected = [key for key in _DETECTABLE if raw.get(key) == DETECT]
    features = None
    if detected or DETECT in (raw.get("tvm_target") or {}).values():
        if isa != "x86_64":
            first = detected[0] if detected else "tvm_target"
            raise check.fail(first, "'detect' works only for an x86_64 host (it reads /proc/cpuinfo)",
                             "write the value")
        features = host_features or detect_host_features(measure_clock=raw.get("clock_mhz") == DETECT)

    def detectable(key: str, read_value, detect_value):
        return detect_value() if raw[key] == DETECT else read_value(raw[key], key)

    simd = detectable("simd", lambda v, k: check.choice(v, k, SIMDS), lambda: features.simd)
    vector_bits = detectable("vector_bits", lambda v, k: check.positive(v, k, int),
                             lambda: features.vector_bits)
    core = detectable("core", check.string, lambda: choose_llvm_core(
        features, llvm_mca_cpus("x86_64") if llvm_cpus is None else llvm_cpus))
    cores = detectable("cores", lambda v, k: check.positive(v, k, int), lambda: features.logical_cpus)
    clock_mhz = detectable("clock_mhz", check.positive, lambda: _detected_mhz(check, features))
    caches = detectable("caches_kb", lambda v, k: _caches(check, v),
                        lambda: _detected_caches(check, features))
    expected_bits = simd_level(simd).vector_bits      # targets/simd.py (None: scalar, any width)
    if expected_bits and vector_bits != expected_bits:
        raise check.fail("vector_bits", f"{simd} registers have {expected_bits} bits, not {vector_bits}",
                         f"set vector_bits: {expected_bits}")

    from targets.runners import runners_for_isa, target_file_runners  # they import this module
    runner = check.choice(raw["runner"], "runner", target_file_runners())
    if runner not in runners_for_isa(isa):
        raise check.fail("runner", f"runner '{runner}' cannot run {isa} programs",
                         f"use one of: {', '.join(runners_for_isa(isa))}")
    # A wasm engine runs on some physical core; llvm-mca models that core's ISA.
    core_isa = raw.get("core_isa", "" if isa == "wasm32" else isa)
    if core_isa:
        check.choice(core_isa, "core_isa", ("aarch64", "x86_64"))
    toolchain = _toolchain(check, raw["toolchain"], features)
    return CpuTarget(
        name=name, isa=isa, core=core, vector_bits=vector_bits, simd=simd,
        fma_units=detectable("fma_units", lambda v, k: check.positive(v, k, int),
                             lambda: vector_fma_units(features)),
        clock_mhz=float(clock_mhz),
        cores=cores, caches_kb=caches,
        cache_line_bytes=check.positive(raw["cache_line_bytes"], "cache_line_bytes", int),
        dram_gbps=check.positive(raw["dram_gbps"], "dram_gbps"),
        toolchain=toolchain, runner=runner,
        tvm_target=_resolve_tvm_target(check, raw["tvm_target"], features),
        source=source, description=str(raw.get("description", "")).strip(),
        core_isa=core_isa, host_features=features)


def _caches(check: SchemaReader, raw: Any) -> CacheSizes:
    check.keys(raw, _CACHE_KEYS, "caches_kb", required=("l1d", "l2"))
    l3 = raw.get("l3")
    return CacheSizes(l1d_kb=check.positive(raw["l1d"], "caches_kb.l1d", int),
                      l2_kb=check.positive(raw["l2"], "caches_kb.l2", int),
                      l3_kb=None if l3 is None else check.positive(l3, "caches_kb.l3", int))


def _detected_caches(check: SchemaReader, features: HostFeatures) -> CacheSizes:
    found = dict(features.caches_kb)
    if "l1d" not in found or "l2" not in found:
        raise check.fail("caches_kb", "this machine's sysfs does not list its caches",
                         "write caches_kb: {l1d: ..., l2: ..., l3: ...} in KiB")
    return CacheSizes(l1d_kb=found["l1d"], l2_kb=found["l2"], l3_kb=found.get("l3"))


def _detected_mhz(check: SchemaReader, features: HostFeatures) -> float:
    """Returns the measured clock where there is one, else cpuinfo's (nominal under a hypervisor)."""
    if features.measured_mhz:
        return features.measured_mhz
    if not features.mhz:
        raise check.fail("clock_mhz", "/proc/cpuinfo has no 'cpu MHz'", "write clock_mhz")
    return features.mhz


# ---------------------------------------------------------------- what a target file may run
#
# A target file is data: loading it, or compiling with it, must run nothing but a C compiler
# found by name on PATH with flags that only tune code generation. A shared or downloaded
# file cannot name another program (``cc: /tmp/x``), a wrapper (``-wrapper``), a plugin
# (``-fplugin=``), another tool directory (``-B``), a specs or response file (``-specs=``,
# ``@file``) or a linker of its choice. Flags are allowed by pattern (an allow-list); a user who
# trusts a file that needs more sets HWSIM_TRUST_TOOLCHAIN=1 in their own environment.

TRUST_ENV = "HWSIM_TRUST_TOOLCHAIN"
# gcc / clang / cc, optionally versioned (gcc-12) or prefixed by a cross triple
# (aarch64-linux-gnu-gcc, wasm32-wasi-clang), and emscripten's emcc.
_COMPILER_NAME = re.compile(r"(?:[a-z0-9_]+(?:-[a-z0-9_]+){0,4}-)?(?:gcc|clang|cc)(?:-[0-9]+(?:\.[0-9]+)*)?"
                            r"|emcc")
_SAFE_VALUE = r"[A-Za-z0-9_.+,=-]*"
_SAFE_CFLAGS = re.compile("|".join([
    r"-O[0-3sgz]?|-Ofast",
    r"-m(?!llvm)[a-z0-9][a-z0-9_.+-]*(?:=[A-Za-z0-9_.+,-]+)?",     # -mcpu=, -mavx2, -msimd128
    r"-f(?!plugin|pass-plugin|use-ld|load|dump|profile|debug-prefix|record|crash|save)"
    r"[a-z0-9][a-z0-9-]*(?:=[A-Za-z0-9_.+,-]+)?",                  # -ffast-math, -fopenmp
    r"-W(?![lap],)[a-z0-9][a-z0-9=-]*|-w",                          # warnings, not -Wl/-Wa/-Wp
    r"-D[A-Za-z_][A-Za-z0-9_]*(?:=[A-Za-z0-9_.+-]*)?|-U[A-Za-z_][A-Za-z0-9_]*",
    r"-std=[a-z0-9+]+|-g[0-3]?|-pthread|-pipe|-static|-s|-DNDEBUG",
    r"--target=[a-z0-9_.-]+",
    r"--sysroot=/(?:usr|opt)/[A-Za-z0-9_./+-]+",                   # a system sysroot only
    DETECT,
]))
_SAFE_LDFLAGS = re.compile("|".join([
    r"-l[A-Za-z0-9_+.-]+", r"-static|-s|-pthread|-nostartfiles|-nostdlib|-rdynamic",
    r"-Wl(?:,(?![-]*(?:plugin|dynamic-linker|rpath|script|T$|wrap))[A-Za-z0-9_=.-]+)+",
    r"-O[0-3sz]?|-m(?!llvm)[a-z0-9][a-z0-9_.+-]*(?:=[A-Za-z0-9_.+,-]+)?",
    r"-fuse-ld=(?:lld|gold|bfd|mold)|-fopenmp|-flto",
]))


def _trusted() -> bool:
    return os.environ.get(TRUST_ENV, "") == "1"


def _compiler(check: SchemaReader, value: Any) -> str:
    cc = check.string(value, "toolchain.cc")
    if _COMPILER_NAME.fullmatch(cc) or (_trusted() and os.path.isabs(cc)):
        return cc
    raise check.fail("toolchain.cc", f"'{printable(cc[:80])}' is not a C compiler name",
                     "name a compiler found on PATH: gcc, clang, aarch64-linux-gnu-gcc, emcc, "
                     f"clang-15, ... (a path only with {TRUST_ENV}=1 in your environment)")


def _flags(check: SchemaReader, value: Any, field: str, allowed: re.Pattern) -> tuple[str, ...]:
    flags = check.string_list(value, field)
    if _trusted():
        return flags
    for index, flag in enumerate(flags):
        if not allowed.fullmatch(flag):
            raise check.fail(f"{field}[{index}]", f"'{printable(flag[:80])}' is not allowed in a "
                             "target file (it could run or load other programs)",
                             "use optimisation, -m/-f code-generation, -D and warning flags; "
                             f"set {TRUST_ENV}=1 in your environment to trust this file")
    return flags


def _toolchain(check: SchemaReader, raw: Any, features: HostFeatures | None) -> Toolchain:
    check.keys(raw, _TOOLCHAIN_KEYS, "toolchain", required=("cc", "debian_package"))
    cflags = _flags(check, raw.get("cflags"), "toolchain.cflags", _SAFE_CFLAGS)
    if features is not None and DETECT in cflags:
        # The host's -march=native, spelled out from the flags the CPU reports.
        cflags = tuple(flag for item in cflags
                       for flag in (features.compiler_flags() if item == DETECT else (item,)))
    package = check.string(raw["debian_package"], "toolchain.debian_package")
    if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", package):
        raise check.fail("toolchain.debian_package", f"'{printable(package[:80])}' is not a "
                         "Debian package name", "e.g. gcc-aarch64-linux-gnu")
    return Toolchain(cc=_compiler(check, raw["cc"]), cflags=cflags,
                     ldflags=_flags(check, raw.get("ldflags"), "toolchain.ldflags", _SAFE_LDFLAGS),
                     debian_package=package)


# A target's name becomes part of file names (tuning-NAME.jsonl, cache folders).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def _target_name(check: SchemaReader, value: Any) -> str:
    name = check.string(value, "name")
    if not _NAME.fullmatch(name) or ".." in name:
        raise check.fail("name", f"'{printable(name[:80])}' cannot name files (letters, digits, "
                         "'.', '_', '+', '-' only; no '/' or '..')", "e.g. name: my-board")
    return name


# ---------------------------------------------------------------- loading

def bundled_cpu_targets() -> list[str]:
    """Returns the names of the CPU targets shipped in targets/cpus/."""
    return bundled_names("cpu")


def load_cpu_target(name_or_path: str | Path, *, host_features: HostFeatures | None = None,
                    llvm_cpus: frozenset[str] | None = None) -> CpuTarget:
    """Returns the CpuTarget of a bundled name (host, snapdragon855, ...) or of a YAML file path."""
    text = str(name_or_path)
    path = Path(text)
    # A bare word is a bundled name even when a file of that name sits in the working directory.
    looks_like_path = text.endswith((".yaml", ".yml")) or "/" in text or isinstance(name_or_path, Path)
    if not looks_like_path:
        known = bundled_cpu_targets()
        if text not in known:
            raise UserError(f"unknown CPU target '{text}'", field="target",
                            fix=suggest(text, known) + " (or give a .yaml path)")
        path = BUNDLED_DIR / f"{text}.yaml"
    raw = read_description_file(path, what="CPU target description",
                                missing_fix="check the path; bundled targets: "
                                            + ", ".join(bundled_cpu_targets()))
    return cpu_target_from_dict(raw, str(path), host_features=host_features, llvm_cpus=llvm_cpus)
