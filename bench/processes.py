"""Child processes of a benchmark run: started in their own session, awaited on a port, stopped.

Every server the benchmark starts is a `Service`; stopping one signals its whole process
group, so uvicorn's or LiteLLM's workers and nginx's worker go with their parent.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    A port from the ephemeral range (what binding port 0 gives) can be taken as the local
    end of some other program's outgoing connection before our server binds it.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(low - 12_000, 1024), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class ServiceError(RuntimeError):
    """A service that exited or never listened; the message ends with its log."""


class Service:
    """One server process (and its children), its output in `<directory>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], port: int, directory: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = directory / f"{name}.log"
        self._env = env
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not started"
        return self._process.pid

    def start(self, timeout_s: float = 30.0) -> Service:
        """Start, and return once the port accepts connections."""
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                                             cwd=self._cwd, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not port_answers(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} did not listen on port {self.port} within {timeout_s:g} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        time.sleep(0.1)
        self._check_alive()  # something else may have answered on the port while ours failed to bind
        return self

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self._process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass

    def pids(self) -> list[int]:
        """The process and every descendant of it, parents first."""
        return [self.pid, *descendants(self.pid)]

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def descendants(pid: int) -> list[int]:
    """Children, grandchildren... of `pid`, read from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields resume after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in sorted(children.get(queue.pop(0), [])):
            found.append(child)
            queue.append(child)
    return found


def run_client(argv: list[str], timeout_s: float | None = None) -> tuple[int, bytes, bytes, float]:
    """Run a load generator to its end: (exit code, stdout, stderr, its CPU seconds).

    Load generators run one at a time, so the growth of this process's reaped-children
    CPU time over the call is the generator's own.
    """
    before = os.times()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    after = os.times()
    cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return process.returncode, out, err, cpu


def raise_open_files_limit() -> int:
    """Lift this process's soft limit on open files to the hard one; children inherit it.

    A thousand relayed streams hold two sockets each in one gateway worker.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
