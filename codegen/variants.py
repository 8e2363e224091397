"""The kernel variants this package ships: every one is rendered and compiled in the tests.

Like XNNPACK's gen/ folders, each variant's file name is its parameters; ``write_variants``
renders them all into a folder (nothing generated is checked in).
"""
from __future__ import annotations

from pathlib import Path

from codegen.isa import ISAS
from codegen.render import (ELTWISE_OPS, POOL_KINDS, DwconvParams, EltwiseParams, NmGemmParams,
                            PoolParams, RenderedKernel, SpmmParams, render_dwconv, render_eltwise,
                            render_nmgemm, render_pool, render_spmm)

NMGEMM_PATTERNS: tuple[tuple[int, int], ...] = ((2, 4), (2, 8), (1, 8), (4, 16))


def shipped_nmgemm() -> list[NmGemmParams]:
    """Returns the shipped N:M GEMM variants: every flavour x tile x pattern, per-row and
    shared index sets, and the dense GEMM fallback (n == m) per flavour and tile."""
    variants = []
    for isa in ISAS:
        for mr, nr in ISAS[isa].shipped_nm_tiles:     # (mr, nr) within the register file
            for n, m in NMGEMM_PATTERNS:
                variants.append(NmGemmParams(n, m, isa, mr=mr, nr=nr, unroll=2))
                variants.append(NmGemmParams(n, m, isa, mr=mr, nr=nr, unroll=2, shared=True))
            variants.append(NmGemmParams(1, 1, isa, mr=mr, nr=nr, unroll=4))
    return variants


def shipped_spmm() -> list[SpmmParams]:
    """Returns the shipped block-sparse variants: NR = 1, 2, 4 output channels (XNNPACK's
    blocks) and 1x4 blocks along the input channels, per flavour and pixel tile."""
    return [SpmmParams(isa, mr=mr, nr=nr, kb=kb)
            for isa in ISAS for mr in ISAS[isa].shipped_spmm_pixels
            for nr, kb in ((1, 1), (2, 1), (4, 1), (1, 4))]


def shipped_nmconv() -> list[NmGemmParams]:
    """Returns the sparse KxK convolutions (implicit im2col) shipped: one tile per flavour."""
    return [NmGemmParams(n, m, isa, mr=ISAS[isa].shipped_nm_tiles[0][0],
                         nr=ISAS[isa].shipped_nm_tiles[0][1], unroll=2, conv=True)
            for isa in ISAS for n, m in ((2, 8), (8, 8))]


def shipped_dense_ops() -> list:
    """Returns the dense ops a whole model needs, per flavour: elementwise, pooling, depthwise."""
    found = []
    for isa in ISAS:
        found += [EltwiseParams(op, isa, unroll=2) for op in ELTWISE_OPS]
        found += [PoolParams(kind, isa) for kind in POOL_KINDS]
        found += [DwconvParams(isa, 3, stride, act) for stride in (1, 2) for act in ("none", "relu6")]
    return found


RENDERERS = {EltwiseParams: render_eltwise, PoolParams: render_pool, DwconvParams: render_dwconv}


def shipped_kernels() -> list[RenderedKernel]:
    """Returns every shipped variant rendered."""
    return ([render_nmgemm(params) for params in shipped_nmgemm() + shipped_nmconv()]
            + [render_spmm(params) for params in shipped_spmm()]
            + [RENDERERS[type(params)](params) for params in shipped_dense_ops()])


def write_variants(outdir: Path) -> list[Path]:
    """Renders every shipped variant into ``outdir`` (one .c per variant); returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kernel in shipped_kernels():
        path = outdir / kernel.filename
        path.write_text(kernel.source)
        paths.append(path)
    return paths
