"""Cycles per iteration of a loop body, from LLVM's own scheduling models (llvm-mca).

Every timing figure comes from the installed ``llvm-mca``: ``llvm-mca-19`` (Debian
package ``llvm-19``) when present, else ``llvm-mca`` (package ``llvm``, LLVM 14 on
bookworm); this module keeps no per-instruction table. It runs

    llvm-mca -mtriple=T -mcpu=C -iterations=N body.s

and reads: total cycles / N (cycles per iteration in steady state, with
dependencies and port pressure simulated), the block reciprocal throughput
(the port-pressure-only bound), the dispatch width, and the resource pressure
per iteration. Results are cached in a directory the caller passes, keyed by
the SHA-256 of (llvm-mca version, triple, cpu, iterations, body).

Which scheduling model a core name really gets (``model_core``):

* LLVM 14 (Debian bookworm): cortex-a72/a73/a75/a76/a77/a78 and neoverse-n1
  all use the Cortex-A57 model (128-bit FMLA occupies one 64-bit FP pipe for
  2 cycles); there is no Zen 4 model (znver3 is the nearest).
* LLVM 19: cortex-a55 has its own model and neoverse-n1 has the N1 model
  (``N1Unit*``), but the name cortex-a76 still maps to the A57 model. The
  Neoverse N1 *is* the Cortex-A76 microarchitecture ("Ares"; Arm's N1 and A76
  software optimization guides give the same pipelines and instruction
  timings), so ``SAME_MICROARCHITECTURE`` sends cortex-a76 to neoverse-n1 when
  the installed llvm-mca has a dedicated N1 model and not an A76 one. Checked,
  not assumed: ``model_core`` compares the resource-name prefixes llvm-mca
  reports for both names. cortex-a73 keeps the A57 model (no A73 model exists
  in LLVM 19 either); znver4 exists in LLVM 19.

``McaResult.model_resources`` says which model was really used; callers report it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from models.errors import UserError, suggest
from models.fileio import write_atomic

DEBIAN_PACKAGE = "llvm-19 or llvm"
PREFERRED_EXECUTABLES = ("llvm-mca-19", "llvm-mca")
# Core names whose microarchitecture has a dedicated model under another name (see module doc).
SAME_MICROARCHITECTURE = {"cortex-a76": "neoverse-n1", "cortex-a76ae": "neoverse-n1"}
ISA_TRIPLES = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
DEFAULT_ITERATIONS = 200


@dataclass(frozen=True)
class McaResult:
    """What llvm-mca said about one loop body."""
    cycles_per_iteration: float        # total cycles / iterations (steady state)
    block_rthroughput: float           # port-pressure bound per iteration
    total_cycles: int
    iterations: int
    instructions_per_iteration: int
    dispatch_width: int
    resource_pressure: dict = field(default_factory=dict)   # resource name -> cycles/iteration
    model_resources: tuple = ()        # resource names: which scheduling model was used

    def as_dict(self) -> dict:
        return asdict(self)


def default_executable() -> str:
    """Returns the newest llvm-mca on PATH (llvm-mca-19 over llvm-mca); 'llvm-mca' when none is."""
    for name in PREFERRED_EXECUTABLES:
        if shutil.which(name):
            return name
    return PREFERRED_EXECUTABLES[-1]


def find_llvm_mca(executable: str | None = None) -> str:
    """Returns the path of llvm-mca (default: ``default_executable()``), or raises UserError
    naming the Debian packages that have it."""
    executable = executable or default_executable()
    path = shutil.which(executable)
    if path is None:
        raise UserError(f"'{executable}' not found on PATH", field="llvm-mca",
                        fix="install the Debian package 'llvm-19' (apt-get install llvm-19) "
                            "or 'llvm' (apt-get install llvm)")
    return path


def triple_for_isa(isa: str) -> str:
    """Returns the llvm-mca triple of an ISA name (wasm32 runs as machine code of its host)."""
    if isa not in ISA_TRIPLES:
        raise UserError(f"llvm-mca cannot model ISA '{isa}' directly", field="isa",
                        fix=f"use one of {sorted(ISA_TRIPLES)} (wasm32 goes through hwsim.cpu.wasm_native)")
    return ISA_TRIPLES[isa]


@functools.lru_cache(maxsize=None)
def _known_cores_cached(executable: str, triple: str) -> tuple[str, ...]:
    empty = subprocess.run([executable, f"-mtriple={triple}", "-mcpu=help"], input="",
                           capture_output=True, text=True, timeout=60)
    text = empty.stdout + empty.stderr
    section = text.split("Available CPUs for this target:", 1)[-1]
    section = section.split("Available features for this target:", 1)[0]
    return tuple(match.group(1) for match in re.finditer(r"^\s+([\w.\-]+)\s+- Select", section, re.M))


def known_cores(triple: str, executable: str | None = None) -> tuple[str, ...]:
    """Returns the -mcpu names the installed llvm-mca knows for ``triple``."""
    return _known_cores_cached(find_llvm_mca(executable), triple)


def check_core(triple: str, core: str, executable: str | None = None) -> None:
    """Raises UserError listing the known cores when llvm-mca does not know ``core``.

    llvm-mca itself only warns and falls back to a generic model, which would
    silently give wrong cycles."""
    known = known_cores(triple, executable)
    if core not in known:
        raise UserError(f"llvm-mca does not know core '{core}' for {triple}", field="core",
                        fix=suggest(core, known))


@functools.lru_cache(maxsize=None)
def _mca_version(executable: str) -> str:
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    return result.stdout.strip()


def host_core(executable: str | None = None) -> str:
    """Returns LLVM's name of the host CPU ('znver3', ...): the model for code that runs here."""
    match = re.search(r"Host CPU:\s*(\S+)", _mca_version(find_llvm_mca(executable)))
    if not match:
        raise UserError("llvm-mca --version did not name the host CPU", field="core",
                        fix="pass an explicit core name")
    return match.group(1)


_PROBE_BODY = "fmla v0.4s, v1.4s, v2.4s\nldr q3, [x0]\n"


@functools.lru_cache(maxsize=None)
def _model_prefix_cached(executable: str, triple: str, core: str) -> str:
    probe = _PROBE_BODY if triple.startswith("aarch64") else "vfmadd231ps %xmm1, %xmm2, %xmm0\n"
    result = subprocess.run([executable, f"-mtriple={triple}", f"-mcpu={core}", "-iterations=1"],
                            input=probe, capture_output=True, text=True, timeout=60)
    names = re.findall(r"^\[[\d.]+\]\s+- (\S+)", result.stdout, re.M)
    return model_name(tuple(names)) or core


def fma_per_cycle(triple: str, core: str, vector_bits: int, executable: str | None = None) -> float:
    """Returns how many independent ``vector_bits``-wide FMAs per cycle ``core``'s model issues.

    Why: LLVM 19's sapphirerapids and icelake-server models put 512-bit FMAs on one port
    (p0, client Ice Lake's single FMA unit); Xeons have a second on p5 (skylake-avx512's
    model has both) and measure it (a 12-FMA zmm loop: 1.71 a cycle on this project's Xeon)."""
    if triple.startswith("aarch64"):
        body = "".join(f"fmla v{i}.4s, v30.4s, v31.4s\n" for i in range(12))
    else:
        register = {512: "zmm", 256: "ymm"}.get(vector_bits, "xmm")
        body = "".join(f"vfmadd231ps %{register}30, %{register}31, %{register}{i}\n" if register == "zmm"
                       else f"vfmadd231ps %{register}14, %{register}15, %{register}{i}\n"
                       for i in range(12))
    return 12 / run_mca(body, triple, core, executable=executable).cycles_per_iteration


def model_name(resources) -> str:
    """Returns the scheduling model's name from its resource names ('N1Unit', 'Zn4', 'A57Unit')."""
    prefix = os.path.commonprefix(list(resources))
    unit = prefix.find("Unit")
    return prefix[:unit + 4] if unit > 0 else prefix


def scheduling_model(triple: str, core: str, executable: str | None = None) -> str:
    """Returns the name of the scheduling model llvm-mca uses for ``core`` (resource prefix)."""
    return _model_prefix_cached(find_llvm_mca(executable), triple, core)


def model_core(triple: str, core: str, executable: str | None = None) -> str:
    """Returns the -mcpu name whose scheduling model best fits ``core`` in the installed llvm-mca.

    ``core`` itself, unless SAME_MICROARCHITECTURE names a core of the same design that has a
    dedicated model while ``core`` falls back to an older one (checked on the installed tool)."""
    alias = SAME_MICROARCHITECTURE.get(core)
    if alias is None or alias not in known_cores(triple, executable):
        return core
    own, other = scheduling_model(triple, core, executable), scheduling_model(triple, alias, executable)
    return alias if own != other and own.startswith("A57") else core


def parse_mca_output(text: str) -> McaResult:
    """Returns the McaResult of one llvm-mca report (single code region)."""
    def number(label: str) -> float:
        match = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
        if not match:
            raise ValueError(f"llvm-mca output has no '{label}' line:\n{text[:2000]}")
        return float(match.group(1))

    iterations = int(number("Iterations"))
    total_cycles = int(number("Total Cycles"))
    instructions = int(number("Instructions"))
    resources = re.findall(r"^\[([\d.]+)\]\s+- (\S+)", text, re.M)
    pressure: dict[str, float] = {}
    block = re.search(r"Resource pressure per iteration:\n(.*)\n(.*)\n", text)
    if block:
        keys = re.findall(r"\[([\d.]+)\]", block.group(1))
        values = block.group(2).split()
        names = dict(resources)
        for key, value in zip(keys, values):
            pressure[names.get(key, key)] = 0.0 if value == "-" else float(value)
    return McaResult(cycles_per_iteration=total_cycles / iterations,
                     block_rthroughput=number("Block RThroughput"),
                     total_cycles=total_cycles, iterations=iterations,
                     instructions_per_iteration=instructions // iterations,
                     dispatch_width=int(number("Dispatch Width")),
                     resource_pressure=pressure,
                     model_resources=tuple(sorted({name for _, name in resources})))


def run_mca(body: str, triple: str, core: str, *, iterations: int = DEFAULT_ITERATIONS,
            cache_dir: str | None = None, executable: str | None = None) -> McaResult:
    """Returns llvm-mca's estimate for ``body`` (assembly, one instruction per line) run in a loop.

    >>> run_mca("fmla v0.4s, v1.4s, v2.4s", "aarch64-linux-gnu", "cortex-a55").cycles_per_iteration  # doctest: +SKIP
    4.0
    """
    path = find_llvm_mca(executable)
    check_core(triple, core, executable)
    if not body.strip():
        raise ValueError("empty loop body")
    cache_file = _cache_file(cache_dir, [_mca_version(path), triple, core, iterations, body], ".json")
    if cache_file and os.path.exists(cache_file):
        with open(cache_file, encoding="utf-8") as stream:
            cached = json.load(stream)
        cached["model_resources"] = tuple(cached["model_resources"])
        return McaResult(**cached)
    parsed = parse_mca_output(_run_mca(path, triple, core, body, f"-iterations={iterations}",
                                       "-instruction-info=false"))
    if cache_file:
        write_atomic(cache_file, json.dumps(parsed.as_dict()))
    return parsed


def _cache_file(cache_dir: str | None, key_parts: list, suffix: str) -> str | None:
    """Returns the cache path of one llvm-mca answer (None without a cache)."""
    if not cache_dir:
        return None
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()
    return os.path.join(cache_dir, "mca", key[:2], key + suffix)


def _run_mca(path: str, triple: str, core: str, body: str, *options: str) -> str:
    """Runs llvm-mca on ``body`` with ``options`` (beyond the core and no summary stats);
    returns its report, RuntimeError with its stderr and the body when it fails."""
    result = subprocess.run([path, f"-mtriple={triple}", f"-mcpu={core}", "-all-stats=false", *options],
                            input=body if body.endswith("\n") else body + "\n",
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"llvm-mca failed ({result.returncode}):\n{result.stderr[:3000]}\n--- body:\n{body[:3000]}")
    return result.stdout


def instruction_latencies(body: str, triple: str, core: str, *, cache_dir: str | None = None,
                          executable: str | None = None) -> list[float]:
    """Returns llvm-mca's latency of each instruction of ``body``, in order (its instruction
    info table), for analyses llvm-mca does not do itself (hwsim.cpu.stack_forwarding)."""
    from hwsim.cpu.stack_forwarding import mca_latencies
    path = find_llvm_mca(executable)
    check_core(triple, core, executable)
    cache_file = _cache_file(cache_dir, [_mca_version(path), triple, core, "latencies", body], ".latencies.json")
    if cache_file and os.path.exists(cache_file):
        with open(cache_file, encoding="utf-8") as stream:
            return json.load(stream)
    latencies = mca_latencies(_run_mca(path, triple, core, body, "-iterations=1", "-resource-pressure=false"))
    if cache_file:
        write_atomic(cache_file, json.dumps(latencies))
    return latencies
