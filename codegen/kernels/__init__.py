"""The kernel families: one module each (its Params, Abi, pack, default schedule, shipped
variants and what it runs for a workload), one template each beside it.

    >>> [family.name for family in FAMILIES]
    ['nmgemm', 'chgemm', 'winograd', 'spmm', 'dwconv', 'pool', 'eltwise']
    >>> family_of(NmGemmParams(2, 8, "avx2", mr=4, nr=24)).name
    'nmgemm'

Everything that walks every family reads ``FAMILIES``: the shipped variants (rendered and
compiled in CI), the equivalence test, ``render`` and the CPU cost model (``family_of``).

Adding a family:
    codegen/kernels/<name>.c.j2   the kernel (codegen.isa's vocabulary, ``{{ name }}`` from
                                    the Params; ``abi`` is passed for its prototype)
    codegen/kernels/<name>.py       Params (frozen, ``.name`` = its parameters, ``.isa``), its
                                    Abi, pack / buffers, default_schedule, shipped(), cases()
                                    (buffers + numpy answer), work() for the cost model (or
                                    None: hwsim.cpu costs it with its fallback kernels), run_layer;
                                    ends with ``FAMILY = Family(...)``
    here                            its FAMILY in ``FAMILIES``
    codegen/plan.py                 only if layers should get it: the rule that picks it
tests/test_kernel_families.py and the compile-every-variant test in tests/test_kernels.py then
cover it with no edit.
"""
from __future__ import annotations

from pathlib import Path

from codegen.kernels import chgemm, dwconv, eltwise, nmgemm, pool, spmm, winograd
from codegen.kernels.family import Case, Family
from codegen.render import RenderedKernel

FAMILIES: tuple[Family, ...] = (nmgemm.FAMILY, chgemm.FAMILY, winograd.FAMILY, spmm.FAMILY, dwconv.FAMILY,
                                pool.FAMILY, eltwise.FAMILY)


def family_named(name: str) -> Family:
    """Returns the family called ``name`` (KeyError names the known ones)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"no kernel family {name!r} (known: {', '.join(f.name for f in FAMILIES)})")


def family_of(params) -> Family:
    """Returns the family whose Params ``params`` is."""
    for family in FAMILIES:
        if isinstance(params, family.params_type):
            return family
    raise TypeError(f"{type(params).__name__} is no kernel family's Params")


def render(params) -> RenderedKernel:
    """Returns the C source of any family's variant ``params``."""
    return family_of(params).render(params)


def shipped_kernels() -> list[RenderedKernel]:
    """Returns every shipped variant of every family, rendered."""
    return [family.render(params) for family in FAMILIES for params in family.shipped()]


def write_variants(outdir: Path) -> list[Path]:
    """Renders every shipped variant into ``outdir`` (one .c per variant, nothing generated is
    checked in, like XNNPACK's gen/ folders); returns the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kernel in shipped_kernels():
        path = outdir / kernel.filename
        path.write_text(kernel.source)
        paths.append(path)
    return paths


__all__ = ["FAMILIES", "Case", "Family", "family_named", "family_of", "render", "shipped_kernels",
           "write_variants", "chgemm", "dwconv", "eltwise", "nmgemm", "pool", "spmm", "winograd"]
