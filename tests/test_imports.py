"""The package dependency rule of ARCHITECTURE.md, checked on every import statement
(module level and inside functions), and every module importable on its own.

    models   imports none of hwsim, codegen, targets, cli
    targets  imports models only
    hwsim    no codegen, except hwsim/cpu reading codegen's kernel modules (KERNEL_MODULES)
    codegen  no hwsim
    nothing  imports cli (but cli itself)
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "hwsim", "codegen", "targets")
# What hwsim/cpu may read of codegen: the kernels, their ISA vocabulary and their defaults,
# the build's flavour rule, and the tuning log's schedules (ARCHITECTURE.md: the cost and the
# code come from one description)
KERNEL_MODULES = ("codegen.render", "codegen.isa", "codegen.layer", "codegen.build",
                  "codegen.plan", "codegen.kernels")
FORBIDDEN = {"models": ("hwsim", "codegen", "targets", "cli", "explore"),
             "targets": ("hwsim", "codegen", "cli", "explore"),
             "hwsim": ("codegen", "cli", "explore"),
             "codegen": ("hwsim", "cli", "explore")}


def _modules(package: str) -> list[Path]:
    return sorted(path for path in (ROOT / package).rglob("*.py") if "__pycache__" not in path.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _allowed(importer: str, imported: str) -> bool:
    top = imported.split(".")[0]
    package = importer.split(".")[0]
    if top not in FORBIDDEN[package]:
        return True
    if importer.startswith("hwsim.cpu") and top == "codegen":
        return imported == "codegen" or imported.startswith(KERNEL_MODULES)
    return False


ALL = [path for package in PACKAGES for path in _modules(package)]


def test_every_import_follows_the_package_rule():
    broken = []
    for path in ALL:
        importer = _module_name(path)
        for line, imported in _imports(path):
            if imported.split(".")[0] in FORBIDDEN and not _allowed(importer, imported):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not broken, "\n".join(broken)


def test_no_bench_imports_the_cli():
    broken = [f"{path.name}:{line} imports {name}" for path in sorted((ROOT / "bench").glob("*.py"))
              for line, name in _imports(path) if name.split(".")[0] == "cli"]
    assert not broken, "\n".join(broken)


@pytest.mark.slow
@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_alone_in_a_fresh_interpreter(package):
    """Each module first in its own interpreter: an import circle shows as an ImportError."""
    names = [_module_name(path) for path in _modules(package)]
    script = ("import importlib, subprocess, sys\n"
              f"names = {names!r}\n"
              "bad = []\n"
              "for name in names:\n"
              "    code = f'import importlib; importlib.import_module({name!r})'\n"
              "    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
              "    if done.returncode:\n"
              "        bad.append(name + ': ' + done.stderr.strip().splitlines()[-1])\n"
              "print('\\n'.join(bad))\n"
              "sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
