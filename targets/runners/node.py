"""Run a WASI .wasm under node 20 (V8, the engine of Chrome) with targets/data/wasi_loader.mjs."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.errors import UserError
from targets.runners.base import RunnerSpec, RunResult, finish, run_process
from targets.runners.wasmtime import check_wasm
from targets.toolchains import require_tool

LOADER = Path(__file__).resolve().parent.parent / "data" / "wasi_loader.mjs"
MIN_NODE_MAJOR = 20      # node:wasi with version: "preview1"


def node_major(node_path: str) -> int | None:
    """Returns node's major version, or None when it cannot be read."""
    try:
        text = subprocess.run([node_path, "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", text.strip())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class NodeRunner:
    """Runs ``node wasi_loader.mjs MODULE.wasm WORKDIR args...``."""
    target: str
    node: str = "node"
    name: str = "node"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        node_path = require_tool(self.node, "nodejs")
        major = node_major(node_path)
        if major is not None and major < MIN_NODE_MAJOR:
            raise UserError(f"node {major} is too old for node:wasi preview1", field="runner",
                            fix=f"install node >= {MIN_NODE_MAJOR}")
        executable = check_wasm(executable)
        workdir = Path(workdir).resolve()
        # --no-warnings: node prints an ExperimentalWarning for WASI on every run.
        command = [node_path, "--no-warnings", str(LOADER), str(executable), str(workdir), *args]
        completed = run_process(command, workdir, timeout_s, target=self.target, runner=self.name,
                                program=executable.name)
        return finish(completed, target=self.target, runner=self.name, program=executable.name,
                      check=check)


def node_problems(runner: NodeRunner) -> list[str]:
    """Returns why node cannot run here: missing, or older than node:wasi preview1 needs."""
    import shutil
    node_path = shutil.which(runner.node)
    if node_path is None:
        return ["'node' not found (apt-get install nodejs)"]
    major = node_major(node_path)
    if major is None or major < MIN_NODE_MAJOR:
        return [f"node {major} found, node:wasi preview1 needs >= {MIN_NODE_MAJOR}"]
    return []


SPEC = RunnerSpec(name="node", isas=("wasm32",), timing_real=True,
                  summary="a WASI .wasm under node (V8, the engine of Chrome)",
                  needs=(f"node >= {MIN_NODE_MAJOR} (apt nodejs)",),
                  make=NodeRunner, problems=node_problems)
