"""Measured cost of data-dependent (indexed) row loads on the machine running hwsim.

llvm-mca schedules every load as an L1 hit at the port model's rate. The per-row N:M
kernels (codegen nmgemm, per-row indices) and the block-sparse spmm kernel fetch rows of
activations whose address comes from a loaded index: each pick is an index load, address
arithmetic, a weight broadcast, ``row_vectors`` vector loads and as many FMAs. When the
rows a sweep touches outlive L1 (a 48 KB avx2 panel on a 32 KB L1), the loads miss and
the core waits on L2 refills that a random subset of rows cannot hide; measured
kernels run up to 2x slower than llvm-mca's figure.

This module measures that cost once per host and shape of access: a small C program
(compiled with the host compiler, cached in the caller's cache dir by CPU model and
parameters) walks a panel of ``panel_rows`` rows of ``row_vectors`` vectors in groups of
``group_rows`` rows, makes ``picks_per_group`` random picks per group (the kernel's
mr x n; every row in order when it equals ``group_rows``: a kept block), in a
``group_density`` share of the groups, with rows ``row_stride_bytes`` apart (spmm reads
rows of X in place: a stride of M floats, which on a power-of-two M maps rows onto few
cache sets), and FMAs each picked row into ``slots`` independent accumulator rows (the
kernel's register tile). It reports cycles per pick: best-of-trials wall time (noise
only ever slows a run) times the clock measured by a chain of dependent imuls in the
same program (not adds: Golden Cove-class Intel cores fold add-immediate chains at rename,
which read 4x the real clock on a Xeon here). cpu_model uses it as a lower bound on the hot loop's cycles per iteration
(picks per iteration x cycles per pick), max'd with llvm-mca's figure. Only the host can
be measured; other targets keep llvm-mca's figure.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

from codegen.kernels.work import GatherShape, MemoryOps, PackShape   # as the family modules state them
from models.fileio import write_atomic
from targets.features import CLOCK_C, detect_host_features   # the probes time themselves in cycles
from targets.simd import x86_cflags_for_vector_bytes

PROGRAM = CLOCK_C + r"""
typedef float vf __attribute__((vector_size(VB)));
enum { LANES = VB / 4, ROWF = RV * LANES };
static unsigned rng = 2463534242u;
static unsigned next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
int main(int argc, char** argv) {
  long rows = atol(argv[1]); int m = atoi(argv[2]), picks = atoi(argv[3]);
  long stride = atol(argv[4]) > ROWF ? atol(argv[4]) : ROWF;   /* floats between rows */
  int keep = atoi(argv[5]);                                   /* groups kept, per mille */
  long groups = rows / m, total = 0;
  float* panel = aligned_alloc(64, ((size_t)groups * m * stride * 4 + 63) / 64 * 64);
  for (long i = 0; i < groups * m * stride; i++) panel[i] = (next() % 100) * 0.01f;
  uint32_t* row = malloc(sizeof(uint32_t) * groups * picks + 4); float* w = malloc(sizeof(float) * groups * picks + 4);
  for (long g = 0; g < groups; g++) {
    if ((int)(next() % 1000) >= keep) continue;
    for (int q = 0; q < picks; q++, total++) { row[total] = g * m + (picks == m ? q : next() % m); w[total] = 1e-3f; }
  }
  if (total == 0) { row[0] = 0; w[0] = 1e-3f; total = 1; }
  vf acc[SLOTS][RV]; for (int s = 0; s < SLOTS; s++) for (int v = 0; v < RV; v++) acc[s][v] = (vf){0};
  long sweeps = 1 + 400000 / (total + 1); double best = 1e9;
  for (int trial = -2; trial < 25; trial++) {
    double t0 = now();
    for (long sweep = 0; sweep < sweeps; sweep++) {
      long j = 0;
      for (; j + SLOTS <= total; j += SLOTS) {
        _Pragma("GCC unroll 8") for (int s = 0; s < SLOTS; s++) {
          const float* r = panel + (size_t)row[j + s] * stride; const float ws = w[j + s];
          _Pragma("GCC unroll 16") for (int v = 0; v < RV; v++) { vf x; __builtin_memcpy(&x, r + v * LANES, VB); acc[s][v] += ws * x; }
        }
      }
      for (; j < total; j++) {
        const float* r = panel + (size_t)row[j] * stride; const float ws = w[j];
        _Pragma("GCC unroll 16") for (int v = 0; v < RV; v++) { vf x; __builtin_memcpy(&x, r + v * LANES, VB); acc[0][v] += ws * x; }
      }
    }
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
  }
  float sum = 0; for (int s = 0; s < SLOTS; s++) for (int v = 0; v < RV; v++) for (int l = 0; l < LANES; l++) sum += acc[s][v][l];
  printf("%.4f %g\n", best * clock_hz() / ((double)sweeps * total), sum);
  return 0;
}
"""

def can_measure(target) -> bool:
    """True when ``target``'s code runs on this machine's x86 core (the host, or wasm costed on it)."""
    isa = getattr(target, "core_isa", None) or target.isa
    return (isa == "x86_64" and platform.machine() in ("x86_64", "AMD64") and shutil.which("gcc") is not None
            and (getattr(target, "host_features", None) is not None or getattr(target, "name", "").endswith("-host")))


# Each probe runs in this many separate processes and the lowest result is kept (and cached):
# on a shared VM a whole run can be slowed (another tenant, a clock dip), never sped up, and
# a single slowed run, once cached, would bias every later prediction on this machine.
PROBE_RUNS = 3


def cycles_per_pick(shape: GatherShape, cache_dir: Path) -> float:
    """Returns the measured core cycles one indexed row pick takes (cached per host and shape)."""
    flags = x86_cflags_for_vector_bytes(shape.vector_bytes)     # ValueError: no x86 vectors that wide
    defines = (f"-DVB={shape.vector_bytes}", f"-DRV={shape.row_vectors}", f"-DSLOTS={max(1, shape.slots)}")
    rows = max(shape.panel_rows // shape.group_rows, 1) * shape.group_rows
    return _cached_probe("gather", PROGRAM, cache_dir, cflags=("-std=gnu11", *flags, *defines),
                         arguments=(rows, shape.group_rows, shape.picks_per_group,
                                    shape.row_stride_bytes // 4, round(1000 * shape.group_density)),
                         optimize="-O3")


PACK_PROGRAM = CLOCK_C + r"""
int main(int argc, char** argv) {   /* rows row_bytes stride_bytes tiles: copy tile t of every row */
  long rows = atol(argv[1]), row = atol(argv[2]), stride = atol(argv[3]), tiles = atol(argv[4]);
  char* x = aligned_alloc(64, (rows * stride + 63) / 64 * 64); memset(x, 1, rows * stride);
  char* panel = aligned_alloc(64, (rows * row + 63) / 64 * 64);
  double best = 1e9; long copies = rows * tiles;
  long repeat = 1 + 200000 / copies;
  for (int trial = -2; trial < 15; trial++) {
    double t0 = now();
    for (long r = 0; r < repeat; r++)
      for (long t = 0; t < tiles; t++)
        for (long k = 0; k < rows; k++) {
          memcpy(panel + k * row, x + k * stride + t * row, row);
          __asm__ volatile("" : : "r"(panel) : "memory");
        }
    double s = now() - t0; if (trial >= 0 && s < best) best = s;
  }
  printf("%.4f %d\n", best * clock_hz() / ((double)repeat * copies), panel[rows]);
  return 0;
}
"""


def pack_cycles(shape: PackShape, cache_dir: Path) -> float:
    """Returns the measured core cycles of the whole packing (memcpy per row; cached per host).

    llvm-mca sees only the call; the copy's cost (call, short-copy dispatch, a row per
    page when X rows are far apart) is what this host measurably takes. Runs at most
    64 tiles and scales: every tile copies the same rows at the same strides."""
    tiles = min(shape.tiles, 64)
    stride = max(shape.stride_bytes, shape.row_bytes * tiles)
    per_row = _cached_probe("pack", PACK_PROGRAM, cache_dir,
                            arguments=(shape.rows, shape.row_bytes, stride, tiles))
    return per_row * shape.rows * shape.tiles


MEMORY_OPS_PROGRAM = CLOCK_C + r"""
int main(void) {   /* BODY: the loop's loads and stores as asm, %1 = loads' base, %2 = stores' base */
  char* loads = aligned_alloc(64, 65536); char* stores = aligned_alloc(64, 65536);
  memset(loads, 0, 65536); memset(stores, 0, 65536);
  long reps = 1 + 2000000 / (OPS + 1); double best = 1e9;
  for (int trial = -2; trial < 25; trial++) {
    long i = reps; double t0 = now();
    __asm__ volatile("1:\n\t" BODY "sub $1, %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(i) : "r"(loads), "r"(stores)
                     : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
  }
  printf("%.4f\n", best * clock_hz() / ((double) reps * ITERATIONS));
  return 0;
}
"""

_REGISTER = {16: "xmm", 32: "ymm", 64: "zmm"}


def _memory_ops_body(ops: MemoryOps) -> str:
    """Returns the probe's loop body: each load into its own register (0-14, no dependences),
    each store from register 15, every access in its own 128-byte slot at its line offset."""
    lines = []
    for number, (size, offset) in enumerate(ops.loads):
        register = _REGISTER[max(16, min(64, size))]
        lines.append(f"vmovups {128 * (number % 256) + offset}(%1), %%{register}{number % 15}")
    for number, (size, offset) in enumerate(ops.stores):
        register = _REGISTER[max(16, min(64, size))]
        lines.append(f"vmovups %%{register}15, {128 * (number % 256) + offset}(%2)")
    return "".join(line + "\\n\\t" for line in lines)


def memory_ops_cycles(ops: MemoryOps, cache_dir: Path) -> float:
    """Returns the measured core cycles of one loop iteration doing ``ops``' loads and stores
    (L1-resident, nothing else in the loop; cached per host and mix).

    llvm-mca's Zen 4 model (znver4, LLVM 19) issues two 512-bit loads and one 512-bit store
    per cycle and takes every access as aligned; Zen 4 moves 512-bit data as two 256-bit
    halves (measured here: a zmm load 1.07 cycles, a zmm store 2.0; a load whose 32-byte
    half crosses a line 1.6, a ymm store across a line 2.0-2.5), so a loop bound by its
    memory accesses (codegen's depthwise taps at column offsets 1 and 2) runs slower than
    llvm-mca says. cpu_model takes this as a lower bound, like the gather probe's."""
    if not ops.loads and not ops.stores:
        return 0.0
    widest = max(size for size, _ in ops.loads + ops.stores)
    flags = x86_cflags_for_vector_bytes(max(16, min(64, widest)))
    defines = (f"-DBODY=\"{_memory_ops_body(ops)}\"", f"-DOPS={len(ops.loads) + len(ops.stores)}",
               f"-DITERATIONS={ops.iterations}")
    return _cached_probe("memops", MEMORY_OPS_PROGRAM, cache_dir, cflags=(*flags, *defines))


def _cached_probe(name: str, program: str, cache_dir: Path, *, cflags=(), arguments=(),
                  fastest=min, optimize: str = "-O2") -> float:
    """Returns a probe's figure on this host: ``program`` built with gcc ``optimize``
    ``cflags`` (once per program and flags), run PROBE_RUNS times with ``arguments``, the
    ``fastest`` of the first numbers it prints (min of cycles, max of a rate: noise only
    slows a run); cached per host, program, flags and arguments."""
    cache_dir = Path(cache_dir) / "gather"
    cache_dir.mkdir(parents=True, exist_ok=True)
    build = [program, optimize, list(cflags)]
    key = hashlib.sha256(json.dumps([detect_host_features().identity, *build, list(arguments),
                                     PROBE_RUNS]).encode()).hexdigest()[:20]
    result = cache_dir / f"{name}-{key}.json"
    if not result.exists():
        binary = cache_dir / f"{name}-{hashlib.sha256(json.dumps(build).encode()).hexdigest()[:12]}"
        if not binary.exists():
            source = binary.with_suffix(".c")
            write_atomic(str(source), program)
            temporary = binary.with_suffix(".tmp")
            subprocess.run(["gcc", optimize, *cflags, str(source), "-o", str(temporary)], check=True,
                           capture_output=True)
            temporary.replace(binary)
        value = fastest(float(subprocess.run([str(binary), *map(str, arguments)], capture_output=True,
                                             text=True, check=True, timeout=120).stdout.split()[0])
                        for _ in range(PROBE_RUNS))
        write_atomic(str(result), json.dumps({"cpu": detect_host_features().model_name, "probe": name,
                                              "arguments": list(arguments), "value": value}))
    return float(json.loads(result.read_text())["value"])


FMA_PROGRAM = CLOCK_C + r"""
int main(void) {   /* 12 independent FMAs of REG registers a loop trip: their issue rate */
  long reps = 1000000; double best = 1e9;
  for (int trial = -2; trial < 25; trial++) {
    long i = reps; double t0 = now();
#define F(r) "vfmadd231ps %%" REG "14, %%" REG "15, %%" REG #r "\n\t"
    __asm__ volatile("vxorps %%xmm14, %%xmm14, %%xmm14\n\tvxorps %%xmm15, %%xmm15, %%xmm15\n\t1:\n\t"
                     F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)
                     "sub $1, %0\n\tjnz 1b" : "+r"(i) : : "memory", "cc", "xmm0", "xmm1", "xmm2",
                     "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                     "xmm14", "xmm15");
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
  }
  printf("%.4f\n", best * clock_hz() / (12.0 * reps));
  return 0;
}
"""


def fma_cycles(vector_bytes: int, cache_dir: Path) -> float:
    """Returns the host's measured cycles (of the clock CLOCK_C times) per independent FMA of
    ``vector_bytes`` registers, cached per host and width.

    Why: llvm-mca counts cycles of a core running at its scalar clock; Intel cores lower the
    clock while they run 512-bit (and, less, 256-bit) FMAs (the AVX frequency licenses of
    Intel's optimization manual), so their FMAs issue slower per scalar-clock cycle than the
    model's ports say (seen here on a Xeon: zmm 1.87 a cycle, ymm 2.0, of two pipes)."""
    register = _REGISTER[vector_bytes]
    return _cached_probe("fma", FMA_PROGRAM, cache_dir,
                         cflags=(*x86_cflags_for_vector_bytes(vector_bytes), "-mfma", f"-DREG=\"{register}\""))


FMA_LOAD_PROGRAM = CLOCK_C + r"""
typedef float vf __attribute__((vector_size(VB)));
int main(void) {   /* 12 independent FMAs a trip, each of a vector loaded from a 12 KB buffer */
  enum { BYTES = 12288, N = BYTES / VB };
  vf* x = aligned_alloc(64, BYTES);
  for (int i = 0; i < BYTES / 4; i++) ((float*) x)[i] = 1e-3f * (float) (i % 7);
  const long sweeps = 20000; double best = 1e9; vf sum = {0};
  vf w; for (int i = 0; i < VB / 4; i++) w[i] = 1e-3f;
  for (int trial = -2; trial < 9; trial++) {
    vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0}, s8 = {0},
       s9 = {0}, s10 = {0}, s11 = {0};
    double t0 = now();
    for (long r = 0; r < sweeps; r++) {
      const vf* restrict v = x;
      __asm__ volatile("" : "+r"(v));   /* the buffer is re-read each sweep */
      for (long i = 0; i < N; i += 12) {
        s0 += w * v[i]; s1 += w * v[i + 1]; s2 += w * v[i + 2]; s3 += w * v[i + 3];
        s4 += w * v[i + 4]; s5 += w * v[i + 5]; s6 += w * v[i + 6]; s7 += w * v[i + 7];
        s8 += w * v[i + 8]; s9 += w * v[i + 9]; s10 += w * v[i + 10]; s11 += w * v[i + 11];
      }
    }
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
    sum += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11;
  }
  printf("%.4f %g\n", (double) N * sweeps / (best * clock_hz()), sum[0]);
  return 0;
}
"""


def fma_load_rate(vector_bytes: int, cache_dir: Path) -> float:
    """Returns the host's measured FMAs a cycle when each one multiplies a vector it loads
    from L1 (a 12 KB buffer streamed, 12 independent sums), cached per host and width.

    Why: a kernel that picks rows of X by index (N:M per row, unstructured) loads one vector
    for every FMA, so this rate, not the FMA pipes', bounds it (on the Xeon here zmm:
    about 1.1 a cycle against 1.9 without the loads)."""
    return _cached_probe("fmaload", FMA_LOAD_PROGRAM, cache_dir,
                         cflags=(*x86_cflags_for_vector_bytes(vector_bytes), "-mfma", f"-DVB={vector_bytes}"),
                         fastest=max)


READ_PROGRAM = CLOCK_C + r"""
typedef float vf __attribute__((vector_size(32)));
int main(int argc, char** argv) {   /* bytes: sum a buffer of that size over and over */
  long bytes = atol(argv[1]) / 256 * 256, n = bytes / 32;
  vf* x = aligned_alloc(64, bytes); memset(x, 0, bytes);
  long sweeps = 1 + (256L << 20) / bytes; double best = 1e9; vf sum = {0};
  for (int trial = -2; trial < 9; trial++) {
    vf s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};
    double t0 = now();
    for (long r = 0; r < sweeps; r++)
      for (long i = 0; i < n; i += 8) {
        s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3];
        s4 += x[i + 4]; s5 += x[i + 5]; s6 += x[i + 6]; s7 += x[i + 7];
      }
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
    sum += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
  }
  printf("%.4f %g\n", (double)bytes * sweeps / (best * clock_hz()), sum[0]);
  return 0;
}
"""


def read_bytes_per_cycle(buffer_bytes: int, cache_dir: Path) -> float:
    """Returns the host's measured bytes per cycle of one core reading a buffer of that size
    over and over (256-bit loads, 8 independent sums), cached per host and size."""
    return _cached_probe("read", READ_PROGRAM, cache_dir, cflags=x86_cflags_for_vector_bytes(32),
                         arguments=(buffer_bytes,), fastest=max)


FORWARDING_PROGRAM = CLOCK_C + r"""
int main(void) {   /* a value stored to a slot and loaded back, a chain of ROUNDS round trips */
  char* slot = aligned_alloc(64, 64); memset(slot, 0, 64);
  long reps = 2000000; double best = 1e9;
  for (int trial = -2; trial < 25; trial++) {
    long i = reps; double t0 = now();
    __asm__ volatile("vxorps %%xmm0, %%xmm0, %%xmm0\n\t1:\n\t"
                     "vmovdqu %%xmm0, (%1)\n\tvmovdqu (%1), %%xmm0\n\t"
                     "vmovdqu %%xmm0, (%1)\n\tvmovdqu (%1), %%xmm0\n\t"
                     "sub $1, %0\n\tjnz 1b" : "+r"(i) : "r"(slot) : "memory", "xmm0", "cc");
    double t = now() - t0; if (trial >= 0 && t < best) best = t;
  }
  printf("%.4f\n", best * clock_hz() / (2.0 * reps));
  return 0;
}
"""


def forwarding_cycles(cache_dir: Path) -> float:
    """Returns the host's store-to-load forwarding latency of a 16-byte vector (cycles from a
    store's data to the dependent load's result; measured as a chain of round trips through
    one slot, cached per host)."""
    return _cached_probe("forward", FORWARDING_PROGRAM, cache_dir)
