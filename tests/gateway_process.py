"""A real gateway process for end-to-end tests: written config, `gateway serve`, loopback port."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """`python -m gateway serve` on a config dict, started and stopped by the test.

    Given a file instead, the process serves that file as it is (on `port`, through --port),
    in an environment without any variable the file reads: what a newcomer's shell has.
    """

    def __init__(self, config: dict[str, Any] | Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 port: int | None = None, max_open_files: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="gateway-test-")
        self.file = config if isinstance(config, Path) else None
        if isinstance(config, Path):
            self.config: dict[str, Any] = {}
            self.config_path = config
        else:
            server = dict(config.get("server") or {})
            server.update({"host": "127.0.0.1", "port": self.port})
            self.config = {**config, "server": server}
            self.config_path = Path(self._dir.name) / "config.yaml"
        self.workers = workers
        self.env = env or {}
        self.max_open_files = max_open_files  # the process's hard limit too, as on a host that sets one
        self.log_path = Path(self._dir.name) / "gateway.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client sets as OPENAI_BASE_URL."""
        return self.url + "/v1"

    def start(self, timeout_s: float = 20.0) -> "GatewayProcess":
        inherited = dict(os.environ)
        if self.file is None:
            self.config_path.write_text(yaml.safe_dump(self.config))
        else:
            for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", self.file.read_text()):
                inherited.pop(name, None)
        env = {**inherited, **self.env, "PYTHONPATH": str(ROOT),
               "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path),
             "--workers", str(self.workers), *(("--port", str(self.port)) if self.file else ())],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self._limit_files if self.max_open_files else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self._process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not answer /healthz within {timeout_s} s:\n{self.log()}")

    def _limit_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_open_files, self.max_open_files))

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def signal(self, signum: int) -> None:
        """Send `signum` to the gateway (and its workers, who share its process group)."""
        assert self._process is not None
        os.killpg(self._process.pid, signum)

    def wait(self, timeout_s: float) -> int:
        assert self._process is not None
        return self._process.wait(timeout_s)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    @property
    def metrics_dir(self) -> Path:
        """Where its workers write their metric files (read them after a stop: they outlive it)."""
        return Path(self._dir.name) / "metrics"

    def cleanup(self) -> None:
        self._dir.cleanup()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
