"""Real vLLM servers (the CPU build, via scripts/vllm-serve.sh) on loopback ports, for the `vllm` tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.gateway_process import ROOT, free_port

VLLM_START_TIMEOUT_S = 300.0
VLLM_MAX_NUM_SEQS = 2  # a small, fixed capacity, so that a handful of long requests saturates a server
# vLLM 0.32 answers any request with tools, even one naming its function in tool_choice, with a
# 400 unless the server has a tool parser, and it takes the parser only with auto tool choice on.
# "pythonic" looks for no model-specific markup: named and "required" tool_choice go through
# plain JSON-schema guided decoding, which the tiny model's one-line template can serve (its
# own call syntax only matters for tool_choice "auto"). --enforce-eager skips torch.compile:
# the server starts in about half the time, and a few requests do not need compiled graphs.
VLLM_TOOL_CALL_ARGS = ("--enable-auto-tool-choice", "--tool-call-parser", "pythonic", "--enforce-eager")


class VllmServer:
    """One real vLLM server started by scripts/vllm-serve.sh on a free loopback port.

    `extra_args` go to the vLLM server after the common ones (a tool parser, say).
    """

    def __init__(self, log_dir: Path, name: str, extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.name = name
        self.extra_args = tuple(extra_args)
        self.log_path = log_dir / f"vllm-{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def launch(self) -> None:
        with open(self.log_path, "ab") as log:
            # Niced: on a small machine a busy server would take both cores, and the gateway under
            # test, standing in for one on its own machine, must still get the CPU it needs.
            # A process group of its own (to kill it whole) but not a session: with the kernel's
            # autogroup scheduling each new session is a group that gets an equal share of the
            # CPU whatever its nice value, and a loaded server, in one, answered /metrics after
            # 28 s instead of 0.05 s.
            self._process = subprocess.Popen(
                ["nice", "-n", "15", "bash", str(ROOT / "scripts" / "vllm-serve.sh"), str(self.port),
                 "--max-num-seqs", str(VLLM_MAX_NUM_SEQS), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, process_group=0)

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"vLLM on port {self.port} exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM on port {self.port} did not answer /health in time:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


class VllmServers:
    """Real servers for the session, started together; `ensure` restarts one a test killed."""

    def __init__(self, servers: list[VllmServer]) -> None:
        self.servers = servers
        self.startup_s = 0.0

    def start(self) -> None:
        started = time.monotonic()
        for server in self.servers:
            server.launch()
        deadline = started + VLLM_START_TIMEOUT_S
        errors = []
        for server in self.servers:
            try:
                server.wait_ready(deadline)
            except RuntimeError as error:
                errors.append(str(error))
        self.startup_s = time.monotonic() - started
        if errors:
            self.stop()
            raise RuntimeError("\n".join(errors))

    def ensure(self) -> list[VllmServer]:
        dead = [s for s in self.servers if not s.alive]
        for server in dead:
            server.port = free_port()
            server.launch()
        deadline = time.monotonic() + VLLM_START_TIMEOUT_S
        for server in dead:
            server.wait_ready(deadline)
        return self.servers

    def stop(self) -> None:
        threads = [threading.Thread(target=s.stop) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def vllm_environment(required: bool) -> str | None:
    """Why a real vLLM cannot be had here, or None when scripts/vllm-env.sh provides one.

    Building the environment takes minutes and gigabytes: only a run that requires the
    real thing builds it; any other run uses it when it is already there.
    """
    home = Path(os.environ.get("GATEWAY_VLLM_HOME") or Path.home() / ".cache" / "gateway-vllm")
    if not required and not ((home / "venv" / ".ready").exists() and (home / "tiny-model" / ".ready").exists()):
        return f"no vLLM environment in {home}"
    try:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "vllm-env.sh")], capture_output=True, text=True,
                              timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"scripts/vllm-env.sh could not run: {error}"
    if done.returncode != 0:
        return f"scripts/vllm-env.sh failed ({done.returncode}): {done.stderr[-1500:]}"
    return None
