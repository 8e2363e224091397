"""The chromium runner: a wasm build runs in headless Debian chromium and matches numpy."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from targets.cpu import load_cpu_target
from targets.runners import get_runner, runner_problems
from targets.runners.chromium import _inside


def _require_chromium() -> None:
    problems = runner_problems("chromium", load_cpu_target("wasm32-simd128"))
    problems += runner_problems("node", load_cpu_target("wasm32-simd128"))
    if problems:
        if os.environ.get("CI"):
            pytest.fail("chromium runner unavailable in CI: " + "; ".join(problems))
        pytest.skip("; ".join(problems))


def test_chromium_runner_is_wasm_only():
    from models.errors import UserError
    with pytest.raises(UserError):
        get_runner("chromium", load_cpu_target("host"))


def test_served_paths_stay_inside_the_workdir(tmp_path):
    root = tmp_path.resolve()
    assert _inside(root, "a.bin") == root / "a.bin"
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        assert _inside(root, bad) is None


def _hwsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          timeout=900)


@pytest.mark.slow
def test_mobilenet_v1_2of8_in_chromium_matches_numpy(tmp_path):
    _require_chromium()
    out = tmp_path / "B"
    built = _hwsim("codegen", "--target", "wasm32-simd128", "--model", "mobilenet_v1",
                   "--sparsity", "2:8", "--out", str(out))
    assert built.returncode == 0, built.stderr[-3000:]
    ran = _hwsim("run", str(out), "--runner", "chromium", "--repeats", "2", "--format", "json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    document = json.loads(ran.stdout)
    assert document["runner"] == "chromium"
    assert len(document["kernels"]) >= 28          # every layer of MobileNet-v1
    for kernel in document["kernels"]:
        assert kernel["relative_error"] <= 1e-3, kernel
        assert kernel["median_s"] > 0
