"""What the machine we run on is: x86-64 CPU features, vendor, caches, core count.

Only the bundled ``host`` target uses this, and it never assumes: the SIMD level
comes from the ``flags`` line of /proc/cpuinfo, caches from sysfs. Everything is
read by pure functions that take the file text, so tests can feed their own.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from targets.simd import host_simd, simd_level

CPUINFO_PATH = Path("/proc/cpuinfo")
SYSFS_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")

# x86 flags that decide which instructions the host toolchain may emit, with the
# gcc/clang option that enables each. Order matters only for readability.
X86_FLAG_OPTIONS = (
    ("avx", "-mavx"), ("avx2", "-mavx2"), ("fma", "-mfma"), ("f16c", "-mf16c"),
    ("avx512f", "-mavx512f"), ("avx512vl", "-mavx512vl"), ("avx512bw", "-mavx512bw"),
    ("avx512dq", "-mavx512dq"), ("avx512cd", "-mavx512cd"),
)
# SSE2 is part of x86-64 itself (AMD64 architecture manual, vol. 1, 1.1.3): 128-bit xmm registers.
X86_BASELINE_VECTOR_BITS = 128


@dataclass(frozen=True)
class HostFeatures:
    """The host CPU as /proc/cpuinfo and sysfs describe it."""
    vendor: str                    # AuthenticAMD | GenuineIntel | ...
    model_name: str
    family: int | None
    model: int | None
    flags: frozenset[str]
    logical_cpus: int              # CPUs this process may run on
    mhz: float | None              # cpuinfo's "cpu MHz" (nominal in VMs)
    caches_kb: tuple[tuple[str, int], ...]   # (("l1d", 48), ("l2", 1024), ...)
    measured_mhz: float | None = None        # timed by measure_clock_mhz(); None: not measured

    @property
    def identity(self) -> str:
        """Returns the CPU as exactly as cpuinfo and sysfs name it: a hypervisor may show
        every host as "Intel(R) Xeon(R) Processor", so the family, model, flags and caches
        tell apart machines whose measured figures (hwsim.cpu.gather_bench) must not mix."""
        flags = hashlib.sha256(" ".join(sorted(self.flags)).encode()).hexdigest()[:12]
        caches = ",".join(f"{level}={kb}" for level, kb in self.caches_kb)
        return f"{self.vendor}|{self.model_name}|{self.family}|{self.model}|{flags}|{caches}"

    @property
    def simd(self) -> str:
        """Returns avx512 when the CPU has avx512f, else avx2 (with fma), else scalar
        (the host flags of targets/simd.py's levels)."""
        return host_simd(self.flags)

    @property
    def vector_bits(self) -> int:
        """Returns the widest vector registers the kernels use (SSE2's 128 bits without AVX)."""
        return simd_level(self.simd).vector_bits or X86_BASELINE_VECTOR_BITS

    def compiler_flags(self) -> tuple[str, ...]:
        """Returns the -m options for every decisive x86 flag the CPU has (a portable -march=native)."""
        return tuple(option for flag, option in X86_FLAG_OPTIONS if flag in self.flags)

    def mattr(self) -> tuple[str, ...]:
        """Returns the same features as LLVM target attributes (+avx2, +fma, ...) for TVM."""
        return tuple("+" + option.removeprefix("-m") for option in self.compiler_flags())


def parse_cpuinfo(text: str) -> dict[str, str]:
    """Returns the key/value pairs of the first processor block of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cache_size_kb(text: str) -> int:
    """Returns the size in KiB of a sysfs cache size string like '32K' or '1M'."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)\s*", text)
    if not match:
        raise ValueError(f"unreadable cache size {text!r}")
    scale = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[match.group(2)]
    return int(int(match.group(1)) * scale)


def read_sysfs_caches_kb(cache_dir: Path = SYSFS_CACHE_DIR) -> tuple[tuple[str, int], ...]:
    """Returns ((l1d, KiB), (l2, KiB), (l3, KiB)) of cpu0 from sysfs; empty when not exposed."""
    found: dict[str, int] = {}
    for index in sorted(cache_dir.glob("index*")) if cache_dir.is_dir() else ():
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size_kb = parse_cache_size_kb((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        name = "l1d" if level == "1" else f"l{level}"
        found[name] = size_kb
    return tuple(sorted(found.items()))


def parse_host_features(cpuinfo_text: str, *, logical_cpus: int,
                        caches_kb: tuple[tuple[str, int], ...] = ()) -> HostFeatures:
    """Returns the HostFeatures described by a /proc/cpuinfo text."""
    fields = parse_cpuinfo(cpuinfo_text)

    def as_int(key: str) -> int | None:
        try:
            return int(fields[key])
        except (KeyError, ValueError):
            return None

    try:
        mhz = float(fields["cpu MHz"])
    except (KeyError, ValueError):
        mhz = None
    return HostFeatures(
        vendor=fields.get("vendor_id", "unknown"), model_name=fields.get("model name", "unknown"),
        family=as_int("cpu family"), model=as_int("model"),
        flags=frozenset(fields.get("flags", "").split()),
        logical_cpus=logical_cpus, mhz=mhz, caches_kb=caches_kb)


def detect_host_features(cpuinfo_path: Path = CPUINFO_PATH, *,
                         measure_clock: bool = False) -> HostFeatures:
    """Returns the features of the machine this runs on (reads /proc/cpuinfo and sysfs now);
    with ``measure_clock``, also the clock the core really runs at (measure_clock_mhz)."""
    try:
        text = cpuinfo_path.read_text()
    except OSError:
        text = ""
    features = parse_host_features(text, logical_cpus=len(os.sched_getaffinity(0)),
                                   caches_kb=read_sysfs_caches_kb())
    return replace(features, measured_mhz=measure_clock_mhz()) if measure_clock else features


# The core's clock, timed: cycles / seconds on a chain of dependent imuls (3 cycles each on
# every Intel core since Nehalem and every Zen: Intel's and AMD's optimization manuals).
# cpuinfo's "cpu MHz" is the nominal clock under a hypervisor (seen here: 2600 MHz on a Xeon
# whose chain ran at 4000). Not add with an immediate: Golden Cove and later fold it at
# rename (such a chain read 3x the clock here). The probes of hwsim/cpu/gather_bench.py
# include this text and time themselves with clock_hz().
CLOCK_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#ifndef CLOCK_ROUNDS             /* a program may sample longer: best of CLOCK_ROUNDS chains */
#define CLOCK_ROUNDS 60
#define CLOCK_CHAIN 1000000
#endif
static double clock_hz(void) {   /* dependent 3-cycle imuls: 3 x imuls / best seconds = clock */
  long n = CLOCK_CHAIN, x = 1, y = 3; double best = 1e9;
  for (int r = 0; r < CLOCK_ROUNDS; r++) {
    long i = n; double t0 = now();
    __asm__ volatile("1:\n\timul %2, %0\n\timul %2, %0\n\timul %2, %0\n\timul %2, %0\n\tsub $4, %1\n\tjnz 1b" : "+r"(x), "+r"(i) : "r"(y));
    double t = now() - t0; if (t < best) best = t;
  }
  return 3 * n / best;
}
"""
_CLOCK_MAIN = r"""
int main(void) { printf("%.1f\n", clock_hz() / 1e6); return 0; }
"""


@functools.lru_cache(maxsize=4)
def measure_clock_mhz(rounds: int = 60, chain: int = 1_000_000, runs: int = 7) -> float | None:
    """Returns the x86-64 host core's clock in MHz: the median over ``runs`` runs of the best
    of ``rounds`` chains of ``chain`` imuls each (a 0.75 ms chain, shorter than a time slice:
    on a shared VM a chain can only be slowed); None on another ISA or without a C compiler.
    Measured once per process (sample_clock_mhz measures it again).

    Why a median of bests: a turbo clock moves in 100 MHz steps with the machine's load
    (seen here: runs read 3792 to 4191 MHz minutes apart); the kernels run at the usual one,
    not at the highest a run ever saw."""
    return sample_clock_mhz(rounds, chain, runs)


def sample_clock_mhz(rounds: int = 60, chain: int = 1_000_000, runs: int = 7) -> float | None:
    """Returns the clock as measure_clock_mhz does, measured now (not cached): for a bench
    whose rows run minutes apart while the turbo clock moves."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if platform.machine() != "x86_64" or compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="hwsim-clock-") as folder:
        source, program = Path(folder) / "clock.c", Path(folder) / "clock"
        source.write_text(f"#define CLOCK_ROUNDS {rounds}\n#define CLOCK_CHAIN {chain}\n"
                          + CLOCK_C + _CLOCK_MAIN)
        try:
            subprocess.run([compiler, "-O1", str(source), "-o", str(program)], check=True,
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            readings = sorted(float(subprocess.run(
                [str(program)], check=True, capture_output=True, text=True, timeout=60,
                stdin=subprocess.DEVNULL).stdout.split()[0]) for _ in range(max(1, runs)))
        except (OSError, subprocess.SubprocessError):
            return None
    return readings[len(readings) // 2]


# Intel family-6 model numbers (Intel SDM vol. 4, table 2-1) -> llvm CPU names, best first.
# An llvm CPU name implies instruction sets, so a model that is not listed falls back to a
# name whose features every later part has (skylake-avx512, haswell): never more than the CPU.
INTEL_MODELS = {
    0x8F: ("sapphirerapids", "icelake-server", "skylake-avx512"),     # Sapphire Rapids
    0xCF: ("emeraldrapids", "sapphirerapids", "icelake-server", "skylake-avx512"),
    0xAD: ("graniterapids", "sapphirerapids", "icelake-server", "skylake-avx512"),
    0xAE: ("graniterapids", "sapphirerapids", "icelake-server", "skylake-avx512"),
    0xA7: ("rocketlake", "icelake-client", "skylake-avx512"),            # Rocket Lake
    0x6A: ("icelake-server", "skylake-avx512"), 0x6C: ("icelake-server", "skylake-avx512"),
    0x55: ("cascadelake", "skylake-avx512"),                          # Skylake/Cascade Lake-SP
    0x97: ("alderlake", "skylake", "haswell"), 0x9A: ("alderlake", "skylake", "haswell"),
    0xB7: ("raptorlake", "alderlake", "skylake", "haswell"),
    0xBA: ("raptorlake", "alderlake", "skylake", "haswell"),
    0x4E: ("skylake", "haswell"), 0x5E: ("skylake", "haswell"),
    0x8E: ("skylake", "haswell"), 0x9E: ("skylake", "haswell"),
}


def preferred_llvm_cores(features: HostFeatures) -> tuple[str, ...]:
    """Returns llvm CPU names for the host, the exact one first, then nearer-older ones.

    AMD family 0x17 is Zen 1/2, 0x19 Zen 3/4 (Zen 4 is the one with AVX-512), 0x1A
    Zen 5 (AMD's family/model tables); Intel by model number (INTEL_MODELS). The first
    name is what TVM's LLVM (22) compiles for; llvm-mca takes the first it knows.
    """
    has_avx512 = "avx512f" in features.flags
    has_avx2 = "avx2" in features.flags
    if features.vendor == "AuthenticAMD":
        if features.family == 0x1A:
            return ("znver5", "znver4", "znver3")
        if features.family == 0x19:
            return ("znver4", "znver3") if has_avx512 else ("znver3", "znver2")
        if features.family == 0x17:
            return ("znver2", "znver1") if features.model and features.model >= 0x30 else ("znver1",)
        return ("x86-64",)
    if features.vendor == "GenuineIntel" and "amx_tile" in features.flags:
        # Only Sapphire Rapids and later have AMX; a hypervisor may report another model
        # number (seen here: model 0xA7, Rocket Lake's, on a Xeon with AMX and AVX512-FP16).
        known = INTEL_MODELS.get(features.model, ())
        return known if "sapphirerapids" in known else INTEL_MODELS[0x8F]
    if features.vendor == "GenuineIntel" and features.family == 6 and features.model in INTEL_MODELS:
        return INTEL_MODELS[features.model]
    if has_avx512:
        return ("skylake-avx512",)
    if has_avx2 and "fma" in features.flags:
        return ("haswell",)
    return ("x86-64",)


def vector_fma_units(features: HostFeatures) -> int:
    """Returns how many full-width (``features.vector_bits``) FMAs a core issues per cycle.

    Zen 4 runs a 512-bit FMA on both of its 256-bit FMA pipes (AMD Zen 4 software
    optimization guide, 2.11), so it issues one per cycle; Zen 2/3/5, Skylake-SP
    and later Xeons issue two (Intel optimization manual; some low-end Xeons have one).
    """
    if features.vendor == "AuthenticAMD" and features.family == 0x19 and features.simd == "avx512":
        return 1
    return 2


def llvm_mca_cpus(triple: str = "x86_64", llvm_mca: str = "llvm-mca") -> frozenset[str]:
    """Returns the CPU names the installed llvm-mca knows for ``triple`` (empty when absent)."""
    path = shutil.which(llvm_mca)
    if path is None:
        return frozenset()
    try:
        listing = subprocess.run([path, f"-mtriple={triple}", "-mcpu=help"], capture_output=True,
                                 text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    text = listing.stdout + listing.stderr
    cpu_section = text.split("Available features")[0]
    return frozenset(re.findall(r"^\s+([a-z0-9][\w.-]*)\s+- Select the", cpu_section, re.M))


def choose_llvm_core(features: HostFeatures, known_cpus: frozenset[str]) -> str:
    """Returns the first preferred core that llvm-mca knows; the first preferred one when unknown."""
    preferred = preferred_llvm_cores(features)
    for core in preferred:
        if core in known_cpus:
            return core
    return preferred[0]
