"""Run a WASI .wasm in headless Debian chromium, driven by puppeteer-core (targets/web/).

The runner serves a page on 127.0.0.1 (an ephemeral port, one run, stopped after):
``targets/web/index.html`` starts ``wasi_worker.mjs`` in a Worker, which instantiates
the module with a small WASI shim whose files are this run's ``workdir`` (read and
written over HTTP) and whose clock is ``performance.now()``; node runs
``targets/web/chromium_driver.mjs`` to launch the browser and read the program's
stdout, stderr and exit code back. So a program sees the same argv and files as under
``node`` or ``wasmtime`` and prints its own ``HWSIM_TIMES`` line, measured in the browser.

The page is served cross-origin isolated (COOP/COEP headers): chromium then gives
``performance.now()`` 5 us resolution instead of 100 us.
"""
from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import shutil
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from models.errors import UserError
from targets.runners.base import RunnerSpec, RunResult, finish, run_process
from targets.runners.node import MIN_NODE_MAJOR, node_major
from targets.runners.wasmtime import check_wasm
from targets.toolchains import require_tool

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DRIVER = WEB_DIR / "chromium_driver.mjs"
PUPPETEER = WEB_DIR / "node_modules" / "puppeteer-core" / "package.json"
PAGE_FILES = ("index.html", "wasi_worker.mjs")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                 ".wasm": "application/wasm"}
INSTALL_FIX = "run `make setup` (as root: apt chromium) and `make targets/web/node_modules/.installed`"


def chromium_problems(chromium: str = "chromium", node: str = "node") -> list[str]:
    """Returns why the chromium runner cannot run here (empty when it can)."""
    problems = []
    if shutil.which(chromium) is None:
        problems.append(f"'{chromium}' not found (apt-get install chromium)")
    node_path = shutil.which(node)
    if node_path is None:
        problems.append("'node' not found (apt-get install nodejs)")
    else:
        major = node_major(node_path)
        if major is None or major < MIN_NODE_MAJOR:
            problems.append(f"node {major} found, the driver needs >= {MIN_NODE_MAJOR}")
    if not PUPPETEER.is_file():
        problems.append(f"puppeteer-core is not installed under {WEB_DIR / 'node_modules'} "
                        f"(make targets/web/node_modules/.installed)")
    return problems


def _inside(root: Path, relative: str) -> Path | None:
    """Returns root/relative when it stays inside root (no '..', no absolute path), else None."""
    if not relative or relative.startswith("/") or ".." in relative.split("/"):
        return None
    path = (root / relative).resolve()
    return path if path == root or root in path.parents else None


def _handler(token: str, executable: Path, workdir: Path):
    """Returns the request handler class of one run: /TOKEN/page/..., /TOKEN/module.wasm,
    /TOKEN/fs/... (GET and PUT inside workdir); everything else is 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format, *args):   # no access log on stderr
            pass

        def _route(self) -> tuple[str, str]:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            prefix = f"/{token}/"
            if not path.startswith(prefix):
                return "", ""
            head, _, rest = path[len(prefix):].partition("/")
            return head, rest

        def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # Cross-origin isolation: finer performance.now() in chromium.
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            head, rest = self._route()
            if head == "page" and rest in PAGE_FILES:
                file = WEB_DIR / rest
            elif head == "module.wasm" and not rest:
                file = executable
            elif head == "fs":
                file = _inside(workdir, rest)
            else:
                file = None
            if file is None or not file.is_file():
                return self._send(404, b"not found")
            self._send(200, file.read_bytes(), CONTENT_TYPES.get(file.suffix,
                                                                 "application/octet-stream"))

        def do_PUT(self):
            head, rest = self._route()
            file = _inside(workdir, rest) if head == "fs" else None
            if file is None:
                return self._send(403, b"forbidden")
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
            self._send(204)

    return Handler


@contextlib.contextmanager
def serve_run(executable: Path, workdir: Path) -> Iterator[str]:
    """Serves one run on 127.0.0.1 (ephemeral port) while the block runs; yields the base URL
    (its path holds a random token, so no other local page can reach the working directory)."""
    token = secrets.token_hex(16)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             _handler(token, executable, workdir))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="hwsim-chromium-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{token}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def page_url(base_url: str, args: Sequence[str]) -> str:
    import json
    query = urllib.parse.urlencode({"wasm": base_url + "module.wasm", "fs": base_url + "fs/",
                                    "args": json.dumps(["module.wasm", *args])})
    return f"{base_url}page/index.html?{query}"


@dataclass(frozen=True)
class ChromiumRunner:
    """Runs a WASI module in headless chromium: ``node chromium_driver.mjs --url PAGE``."""
    target: str
    chromium: str = "chromium"
    node: str = "node"
    name: str = "chromium"

    def run(self, executable: Path, args: Sequence[str], workdir: Path, *,
            timeout_s: float, check: bool = True) -> RunResult:
        problems = chromium_problems(self.chromium, self.node)
        if problems:
            raise UserError("the chromium runner cannot run here: " + "; ".join(problems),
                            field="runner", fix=INSTALL_FIX)
        chromium_path = require_tool(self.chromium, "chromium")
        node_path = require_tool(self.node, "nodejs")
        executable = check_wasm(executable)
        workdir = Path(workdir).resolve()
        env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}
        with tempfile.TemporaryDirectory(prefix="hwsim-chromium-") as profile, \
                serve_run(executable, workdir) as base_url:
            command = [node_path, str(DRIVER), "--chromium", chromium_path,
                       "--user-data-dir", profile, "--url", page_url(base_url, args)]
            completed = run_process(command, workdir, timeout_s, target=self.target,
                                    runner=self.name, program=executable.name, env=env)
        return finish(completed, target=self.target, runner=self.name, program=executable.name,
                      check=check)


def _problems(runner: ChromiumRunner) -> list[str]:
    return chromium_problems(runner.chromium, runner.node)


# Target files name "browser" for a browser on the device; this one is driven from here.
SPEC = RunnerSpec(name="chromium", isas=("wasm32",), timing_real=True,
                  summary="a WASI .wasm in headless chromium (puppeteer-core), timed in the page",
                  needs=("chromium (apt)", f"node >= {MIN_NODE_MAJOR}",
                         "puppeteer-core in targets/web/node_modules"),
                  make=ChromiumRunner, problems=_problems, in_target_files=False)
