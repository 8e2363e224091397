"""Small C kernels the CPU model compiles when the caller brings none (codegen's are the real ones).

``simulate_cpu`` takes a ``kernel_source`` callable (hwsim.cpu.codegen_source renders the
kernel codegen.plan picks and its family module says what it runs); these kernels cost what
no codegen family describes, and they are the fixtures of the cost-model tests. Why they
cannot yet be derived from codegen.kernels (each would change predictions):

    grouped convolutions, attention (batched matmul), training BP/WU GEMMs, batch > 1
        depthwise layers: codegen.plan gives them no kernel (no family runs them)
    pooling / elementwise / norm layers (cpu_model.simulate_elementwise): codegen's pool
        and eltwise families have no cost description (``work`` None); costing their
        templates instead of render_elementwise's add + relu would change every stream
        layer's cycles
    the intrinsics below: codegen.isa's records would render other machine code (wasm's
        VMAX is f32x4.max where codegen.isa writes pmax, the scalar VMAX a compare where it
        writes fmaxf), and the model costs the machine code

Lanes come from targets.simd's record.
Layout is XNNPACK's sparse-inference layout (KERNELS.md): activations
CHW, so ``X`` is K x M (M = pixels, contiguous), output ``Y`` is N x M,
weights W are N x K.

    dense   for m-tile (MR pixels): for n-block (NR channels): for k: NR x MR FMAs
    sparse  for m-tile: for n-block: for each nonzero of the block (NR rows share
            one index set): broadcast NR values, load MR pixels, FMA, advance the
            input pointer by the next byte diff (XNNPACK's diff map)
    depthwise (3x3, stride 1, input padded by the caller) and elementwise: a loop
            over vectors of output pixels

Each is rendered for one SIMD flavour: neon, avx2, wasm_simd128 (no FMA in
SIMD128: mul + add) or scalar. ``MR`` counts pixels (a multiple of the lanes).
"""
from __future__ import annotations

from hwsim.cpu.kernel_source import KernelSchedule, KernelSource
from targets.simd import simd_level

_PRELUDES = {
    "neon": """#include <arm_neon.h>
typedef float32x4_t vf;
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VDUP(x) vdupq_n_f32(x)
#define VFMA(acc, a, b) vfmaq_f32(acc, a, b)
#define VMAX(a, b) vmaxq_f32(a, b)
""",
    "avx2": """#include <immintrin.h>
typedef __m256 vf;
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VDUP(x) _mm256_set1_ps(x)
#define VFMA(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#define VMAX(a, b) _mm256_max_ps(a, b)
""",
    "wasm_simd128": """#include <wasm_simd128.h>
typedef v128_t vf;
#define VLOAD(p) wasm_v128_load(p)
#define VSTORE(p, v) wasm_v128_store(p, v)
#define VDUP(x) wasm_f32x4_splat(x)
#define VFMA(acc, a, b) wasm_f32x4_add(acc, wasm_f32x4_mul(a, b))
#define VMAX(a, b) wasm_f32x4_max(a, b)
""",
    "scalar": """typedef float vf;
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VDUP(x) (x)
#define VFMA(acc, a, b) ((acc) + (a) * (b))
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
""",
}


def default_schedule(family: str, simd: str) -> KernelSchedule:
    """Returns a register tile that fits the ISA's vector registers (16 on AVX2, 32 on NEON)."""
    lanes = simd_level(simd).lanes
    if family == "dense":
        # wasm: 16 xmm registers on an x86 host, so 8 accumulators + 2 loads + 4 splats
        vectors = {"avx2": 2, "neon": 4, "wasm_simd128": 2}.get(simd, 4)
        return KernelSchedule(mr=vectors * lanes, nr=4)
    if family == "sparse":
        return KernelSchedule(mr=8 * lanes if simd == "neon" else 4 * lanes, nr=1)   # XNNPACK: 32x1
    return KernelSchedule(mr=2 * lanes, nr=1)


def _lines(template: str, count: int) -> str:
    return "\n".join(template.format(i=i) for i in range(count))


def _register_tile(simd: str, schedule: KernelSchedule, x_pointer: str, weight: str):
    """Returns the C lines of an MR x NR register tile: accumulator init, input vector loads,
    broadcast weights (``weight`` formatted with the row r), FMAs and stores."""
    lanes = simd_level(simd).lanes
    vectors, rows = schedule.mr // lanes, schedule.nr
    tile = [(r, v) for r in range(rows) for v in range(vectors)]
    acc_init = "\n".join(f"      vf acc{r}_{v} = VDUP(0.0f);" for r, v in tile)
    loads = "\n".join(f"        vf x{v} = VLOAD({x_pointer} + {v * lanes});" for v in range(vectors))
    weights = "\n".join(f"        vf w{r} = VDUP({weight.format(r=r)});" for r in range(rows))
    fmas = "\n".join(f"        acc{r}_{v} = VFMA(acc{r}_{v}, x{v}, w{r});" for r, v in tile)
    stores = "\n".join(f"      VSTORE(Y + (size_t)(n + {r}) * M + m + {v * lanes}, acc{r}_{v});"
                       for r, v in tile)
    return acc_init, loads, weights, fmas, stores


def render_dense(simd: str, schedule: KernelSchedule) -> KernelSource:
    """Returns Y[N][M] = W[N][K] . X[K][M] with an MR x NR register tile (M % MR == 0, N % NR == 0)."""
    rows = schedule.nr
    acc_init, loads, weights, fmas, stores = _register_tile(simd, schedule, "xk", "w[{r} * K + k]")
    function = f"gemm_dense_{schedule.mr}x{schedule.nr}_{simd}"
    source = f"""/* dense GEMM, CHW layout, tile MR={schedule.mr} pixels x NR={rows} channels, {simd} */
#include <stddef.h>
#include <stdint.h>
{_PRELUDES[simd]}
void {function}(int M, int N, int K, const float* restrict W, const float* restrict X, float* restrict Y) {{
  for (int m = 0; m < M; m += {schedule.mr}) {{
    for (int n = 0; n < N; n += {rows}) {{
{acc_init}
      const float* w = W + (size_t)n * K;
      const float* xk = X + m;
      for (int k = 0; k < K; k++) {{
{loads}
{weights}
{fmas}
        xk += M;
      }}
{stores}
    }}
  }}
}}
"""
    return KernelSource("dense", simd, schedule, function, source)


def render_sparse(simd: str, schedule: KernelSchedule) -> KernelSource:
    """Returns the XNNPACK-style sparse x dense kernel: NR rows of a block share one index set.

    ``nnz[b]`` nonzero positions of block b, ``values`` NR per position, ``diffs`` the byte
    step of the input pointer to the next position (the last one steps back to the first)."""
    rows = schedule.nr
    acc_init, loads, weights, fmas, stores = _register_tile(simd, schedule, "x", "w[{r}]")
    function = f"spmm_{schedule.mr}x{schedule.nr}_{simd}"
    source = f"""/* sparse (weights) x dense GEMM, CHW, tile MR={schedule.mr} pixels x NR={rows} channels, {simd} */
#include <stddef.h>
#include <stdint.h>
{_PRELUDES[simd]}
void {function}(int M, int N, const float* restrict values, const int32_t* restrict diffs,
    const int32_t* restrict nnz, int32_t first_offset, const float* restrict X, float* restrict Y) {{
  for (int m = 0; m < M; m += {schedule.mr}) {{
    const float* w = values;
    const int32_t* d = diffs;
    const float* x = (const float*)((const char*)(X + m) + first_offset);
    for (int n = 0; n < N; n += {rows}) {{
{acc_init}
      for (int32_t c = nnz[n / {rows}]; c > 0; c--) {{
{loads}
{weights}
        w += {rows};
        x = (const float*)((const char*)x + *d++);
{fmas}
      }}
{stores}
    }}
  }}
}}
"""
    return KernelSource("sparse", simd, schedule, function, source)


def render_depthwise(simd: str, schedule: KernelSchedule) -> KernelSource:
    """Returns a 3x3 stride-1 depthwise kernel over a padded CHW input (width Wp = Wo + 2)."""
    lanes = simd_level(simd).lanes
    vectors = max(1, schedule.mr // lanes)
    function = f"dwconv3x3_{vectors * lanes}_{simd}"
    taps = "\n".join(f"          vf t{t} = VDUP(w[{t}]);" for t in range(9))
    body = []
    for v in range(vectors):
        body.append(f"          vf acc{v} = VDUP(0.0f);")
        for t in range(9):
            dy, dx = divmod(t, 3)
            body.append(f"          acc{v} = VFMA(acc{v}, VLOAD(in + {dy} * Wp + ox + {v * lanes + dx}), t{t});")
        body.append(f"          VSTORE(out + ox + {v * lanes}, acc{v});")
    body_text = "\n".join(body)
    source = f"""/* depthwise 3x3 stride 1, CHW, padded input, {vectors * lanes} output pixels per step, {simd} */
#include <stddef.h>
{_PRELUDES[simd]}
void {function}(int C, int Ho, int Wo, const float* restrict W, const float* restrict X, float* restrict Y) {{
  const int Wp = Wo + 2, Hp = Ho + 2;
  for (int c = 0; c < C; c++) {{
    const float* w = W + 9 * c;
{taps}
    for (int oy = 0; oy < Ho; oy++) {{
      const float* in = X + ((size_t)c * Hp + oy) * Wp;
      float* out = Y + ((size_t)c * Ho + oy) * Wo;
      for (int ox = 0; ox < Wo; ox += {vectors * lanes}) {{
{body_text}
      }}
    }}
  }}
}}
"""
    return KernelSource("depthwise", simd, KernelSchedule(vectors * lanes, 1), function, source)


def render_elementwise(simd: str, schedule: KernelSchedule) -> KernelSource:
    """Returns y = max(a * scale + b, 0) over n floats (n a multiple of MR): a residual add + relu.

    ``scale`` is a run-time argument so that the compiler keeps one multiply per lane."""
    lanes = simd_level(simd).lanes
    vectors = max(1, schedule.mr // lanes)
    function = f"add_relu_{vectors * lanes}_{simd}"
    body = "\n".join(f"    VSTORE(y + i + {v * lanes}, VMAX(VFMA(VLOAD(b + i + {v * lanes}), VLOAD(a + i + {v * lanes}), s), zero));"
                     for v in range(vectors))
    source = f"""/* y = relu(a * scale + b): a streaming elementwise kernel, {simd} */
#include <stddef.h>
{_PRELUDES[simd]}
void {function}(int n, float scale, const float* restrict a, const float* restrict b, float* restrict y) {{
  const vf s = VDUP(scale), zero = VDUP(0.0f);
  for (int i = 0; i < n; i += {vectors * lanes}) {{
{body}
  }}
}}
"""
    return KernelSource("elementwise", simd, KernelSchedule(vectors * lanes, 1), function, source)


RENDERERS = {"dense": render_dense, "sparse": render_sparse, "depthwise": render_depthwise,
             "elementwise": render_elementwise}


def fallback_simd(simd: str) -> str:
    """Returns the flavour the fallback kernels are rendered in for SIMD level ``simd``: they
    have no AVX-512 prelude, so an avx512 target gets the AVX2 ones."""
    return "avx2" if simd == "avx512" else simd


def render_fallback(family: str, simd: str, schedule: KernelSchedule | None = None) -> KernelSource:
    """Returns the fallback kernel of ``family`` for ``simd`` with ``schedule`` (or the default)."""
    simd = fallback_simd(simd)
    return RENDERERS[family](simd, schedule or default_schedule(family, simd))
