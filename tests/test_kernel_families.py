"""Every kernel family in the registry (codegen.kernels.FAMILIES), read from the registry:
a new family module is covered here without a line of this file changing.

    each shipped variant's file name is its parameters, and the C prototype its Abi
    declaration renders is the one the template defines (the harness calls that prototype)
    each family's cases fill exactly its Abi's inputs, and its kernels equal numpy on them
    (host flavours here; wasm32 and aarch64 when their tools are installed, marked slow)
    each family with a cost description describes a run the cost model can read
    codegen and hwsim.cpu import each other's modules without a circle
"""
from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from codegen import build as kernel_build
from codegen.kernels import FAMILIES, family_named, family_of, render, shipped_kernels
from codegen.kernels.work import KernelWork
from models.lowering import GemmWorkload
from tests.conftest import require_target

ROOT = Path(__file__).resolve().parent.parent
FAMILY_NAMES = [family.name for family in FAMILIES]
# (flavour, target): the flavours each runner executes
FLAVOURS = [("scalar", "host"), ("avx2", "host"), ("avx512", "host"),
            ("wasmsimd", "wasm32-simd128"), ("neon", "snapdragon855")]


def test_registry_names_each_family_once_and_finds_its_params():
    assert len(set(FAMILY_NAMES)) == len(FAMILY_NAMES)
    for family in FAMILIES:
        assert family_named(family.name) is family
        assert (ROOT / "codegen" / "kernels" / family.template).is_file()
        for params in family.shipped():
            assert family_of(params) is family
    with pytest.raises(TypeError):
        family_of(object())


def _definition(source: str, name: str) -> str:
    """Returns the C definition line(s) of function ``name`` in ``source``, whitespace
    normalised (the text from ``void name(`` to its closing parenthesis)."""
    match = re.search(r"void\s+" + re.escape(name) + r"\s*\(([^)]*)\)\s*\{", source)
    assert match, f"{name}: no definition found"
    return f"void {name}(" + " ".join(match.group(1).split()) + ")"


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_NAMES)
def test_abi_declaration_is_the_prototype_the_template_defines(family):
    """The one Abi declaration renders the prototype the harness calls; every shipped variant
    of the family defines exactly that function."""
    for params in family.shipped():
        kernel = family.render(params)
        assert kernel.name == params.name and kernel.filename == f"{params.name}.c"
        assert _definition(kernel.source, kernel.name) == kernel.abi.prototype(kernel.name)
        assert kernel.abi.call.count(",") == kernel.abi.params.count(",")


def test_every_shipped_variant_is_some_familys():
    kernels = shipped_kernels()
    assert len({kernel.name for kernel in kernels}) == len(kernels)
    assert {family_of(kernel.params).name for kernel in kernels} == set(FAMILY_NAMES)


def _variants(family, flavour: str) -> list:
    """The family's shipped variants in ``flavour``: the first and the last (two corners of
    its parameters, e.g. a per-row N:M GEMM and a dense KxK convolution)."""
    mine = [params for params in family.shipped() if params.isa == flavour]
    return mine[:1] + mine[-1:] if len(mine) > 1 else mine


def _check_family(family, flavour: str, target: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    for params in _variants(family, flavour):
        kernel = render(params)
        cases = family.cases(params, rng)
        assert cases, f"{family.name}: no cases"
        inputs = {buf.name for buf in kernel.abi.inputs}
        executable = kernel_build.build(kernel, target, tmp_path / "build")
        workdir = Path(tempfile.mkdtemp(prefix=f"run-{kernel.name}-", dir=tmp_path))
        for case in cases:
            assert set(case.buffers) == inputs, f"{kernel.name}: {sorted(case.buffers)} vs {sorted(inputs)}"
            assert len(case.ints) == len(kernel.abi.ints)
            kernel_build.write_case(workdir, case.name, case.buffers, case.ints)
        kernel_build.run(executable, target, workdir, timeout_s=120)
        for case in cases:
            y = kernel_build.read_output(workdir, case.name, kernel.abi.output.name, case.expected.shape)
            scale = max(1.0, float(np.abs(case.expected).max()))
            np.testing.assert_allclose(y, case.expected, atol=1e-4 * scale, rtol=1e-4,
                                       err_msg=f"{kernel.name} on {target}, {case.name}")


HOST = [(f, t) for f, t in FLAVOURS if t == "host"]
CROSS = [(f, t) for f, t in FLAVOURS if t != "host"]


@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_NAMES)
@pytest.mark.parametrize("flavour,target", HOST, ids=[f for f, _ in HOST])
def test_every_family_matches_numpy_on_the_host(family, flavour, target, tmp_path):
    require_target(target, flavour)
    _check_family(family, flavour, target, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES, ids=FAMILY_NAMES)
@pytest.mark.parametrize("flavour,target", CROSS, ids=[f for f, _ in CROSS])
def test_every_family_matches_numpy_cross(family, flavour, target, tmp_path):
    require_target(target, flavour)
    _check_family(family, flavour, target, tmp_path)


def _sample_workload(family) -> tuple[GemmWorkload, object]:
    """A workload each costed family runs, and the geometry it needs (depthwise: the plane)."""
    from codegen.kernels.dwconv import DepthwiseGeometry

    if family.name == "dwconv":
        return (GemmWorkload("dw", "FF", M=56 * 56, N=1, K=9, groups=64, op_kind="depthwise"),
                DepthwiseGeometry(64, 56, 56, 1))
    return GemmWorkload("g", "FF", M=196, N=128, K=256, sparse=True, pattern="2:8", density=0.25,
                        nm=(2, 8)), None


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.work], ids=[f.name for f in FAMILIES if f.work])
def test_costed_families_describe_their_work(family):
    """What a family says it runs is what the cost model reads: loops with work, streams, a
    register tile; hwsim.cpu's KernelSource carries it field for field."""
    from hwsim.cpu.codegen_source import from_rendered

    workload, geometry = _sample_workload(family)
    for params in family.shipped()[:6]:
        work = family.work(params, workload, geometry)
        assert isinstance(work, KernelWork)
        assert work.loops and work.loops[0].iterations > 0 and work.loops[0].mac_lanes > 0
        assert {stream.name for stream in work.streams} >= {"weights", "output"}
        assert work.threads >= 1 and work.parallel_units >= 1
        source = from_rendered(render(params), workload, geometry)
        assert (source.loops, source.streams, source.threads, source.pack) == \
            (work.loops, work.streams, work.threads, work.pack)
        assert (source.schedule.mr, source.schedule.nr) == (work.pixel_tile, work.row_tile)
        assert source.origin == "codegen" and source.family == family.name


def _module_imports(package: str) -> dict[str, set[str]]:
    """Returns {module: modules of ``package`` it imports at module level}."""
    graph = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.parse(path.read_text()).body:       # module level only
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = found
    return {name: {other for other in imports if other in graph and other != name}
            for name, imports in graph.items()}


@pytest.mark.parametrize("package", ["codegen", "hwsim"])
def test_no_import_circle(package):
    """No module of ``package`` reaches itself through module-level imports (e.g. the old
    codegen.layer <-> codegen.model_build)."""
    graph = _module_imports(package)

    def reaches(start: str) -> bool:
        seen, stack = set(), list(graph[start])
        while stack:
            module = stack.pop()
            if module == start:
                return True
            if module not in seen:
                seen.add(module)
                stack.extend(graph.get(module, ()))
        return False

    assert not [name for name in graph if reaches(name)]
