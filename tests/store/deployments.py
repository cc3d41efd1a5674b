"""Real Redis servers shaped as platform teams run them, for the store's tests.

Every server is Debian's `redis-server` on a free loopback port (or a unix socket), configured
by a file in a temp dir, in a process group of its own so that a stop also takes any child it
forked (a replication snapshot). Readiness is polled with a deadline, never slept for.

    Server           one redis-server or Sentinel process
    start_acl_redis  `default` disabled, an ACL user whose password needs URL quoting
    start_tls_redis  TLS only, with a CA and a server certificate made by openssl
    start_unix_redis a unix socket only, db 2 in the URL

Sentinel and Cluster deployments are in `tests.store.replicated`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from tests.waiting import wait_until

Address = tuple[str, int]
HOST = "127.0.0.1"
ACL_USER = "gateway"
ACL_PASSWORD = "p@ss:w/rd"  # '@', ':' and '/' all break a URL unless quoted
UNIX_DB = 2
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
# Long enough for the shortest path plus its file name in sockaddr_un (108 bytes on Linux).
MAX_SOCKET_DIR_CHARS = 80


def require_binary(name: str) -> str:
    """The binary's path; a skip without it, or a failure when real servers are required."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not on PATH (Debian: apt-get install redis-server openssl)"
        if os.environ.get("GATEWAY_REQUIRE_REAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: all probes stay bound until all are chosen."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((HOST, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def run_tool(command: list[str], cwd: Path, timeout_s: float = 60) -> str:
    """Run a short-lived tool (openssl, redis-cli); fail with its output when it fails."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


class Server:
    """One redis-server (a data node, or a Sentinel) configured by a file in a directory of its own.

    `connect` holds the redis.Redis arguments that reach it: readiness is a PING through them,
    so a server that refuses the unauthenticated or plain-text client is still seen as up.
    """

    def __init__(self, directory: Path, name: str, config: list[str], connect: dict[str, Any],
                 sentinel: bool = False) -> None:
        self.name = name
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "redis.conf"
        self.log_path = self.directory / "redis.log"
        self.connect = connect
        self._sentinel = sentinel
        self._process: subprocess.Popen[bytes] | None = None
        # `dir` first: each node keeps its own snapshot and cluster/sentinel state apart.
        self.config_path.write_text("\n".join([f"dir {self.directory}", *config]) + "\n")

    @property
    def address(self) -> Address:
        return self.connect["host"], self.connect["port"]

    @property
    def alive(self) -> bool:
        return self._process is not None and not self._exited()

    def start(self, *extra: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start it (again), `extra` overriding its file, and wait until it answers PING."""
        command = [require_binary("redis-server"), str(self.config_path), *extra]
        if self._sentinel:
            command.append("--sentinel")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, process_group=0)
        try:
            wait_until(self._answers, timeout_s, f"{self.name} answering PING")
        except BaseException:
            self.stop()
            raise

    def client(self, **options: Any) -> redis.Redis:
        """A plain client to this one server, strings decoded; the caller closes it."""
        settings = {"socket_timeout": 2, "socket_connect_timeout": 1, "decode_responses": True, **options}
        return redis.Redis(**self.connect, **settings)

    def call(self, *command: Any) -> Any:
        """One command on a short-lived connection, for the harness's own checks."""
        with self.client() as client:
            return client.execute_command(*command)

    def kill(self) -> None:
        """SIGKILL the whole group, as a crashed or OOM-killed server dies: no shutdown, no goodbye."""
        if self._process is not None and self._process.returncode is None:
            _signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.returncode is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.kill()  # also a snapshot child, which outlives its parent's SIGTERM
        self._process = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def _exited(self) -> bool:
        """Whether the server has exited, without reaping it: until reaped, its pid stays its
        group's id, so a signal to the group cannot reach another program that got the number."""
        assert self._process is not None
        if self._process.returncode is not None:
            return True
        return os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _answers(self) -> bool:
        if self._exited():
            raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone already
        os.killpg(pgid, signum)


def data_node_config(port: int) -> list[str]:
    """What every data node has: loopback only, nothing persisted, no wait for replicas at shutdown.

    A full resync starts at once: by default a primary waits 5 s for more replicas to share it.
    """
    return [f"port {port}", f"bind {HOST}", 'save ""', "appendonly no", "shutdown-timeout 0",
            "repl-diskless-sync-delay 0"]


@dataclass
class OneServer:
    """One server and the URL the gateway is given for it; the fields a shape has, filled."""

    url: str
    server: Server
    username: str | None = None
    password: str | None = None
    ca_path: Path | None = None
    socket_path: Path | None = None
    remove_on_stop: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        self.server.stop()
        for directory in self.remove_on_stop:
            shutil.rmtree(directory, ignore_errors=True)


def start_acl_redis(directory: Path) -> OneServer:
    """`default` off, so every client must log in as the ACL user, as a hardened deployment has it."""
    port = free_ports(1)[0]
    config = [*data_node_config(port), "user default off",
              f"user {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all"]
    connect = {"host": HOST, "port": port, "username": ACL_USER, "password": ACL_PASSWORD}
    server = Server(directory, "acl", config, connect)
    server.start()
    url = f"redis://{quote(ACL_USER, safe='')}:{quote(ACL_PASSWORD, safe='')}@{HOST}:{port}/0"
    return OneServer(url, server, username=ACL_USER, password=ACL_PASSWORD)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1 it signed, as an internal PKI issues them.

    EC keys: generating them takes milliseconds where RSA takes a noticeable part of a second.
    """
    openssl = require_binary("openssl")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run_tool([openssl, "req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
              "-subj", "/CN=gateway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], directory)
    run_tool([openssl, "req", *new_key, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={HOST}"],
             directory)
    # Clients check the IP SAN, not the CN; the key identifiers let strict verifiers chain it.
    (directory / "server.ext").write_text(
        f"subjectAltName=IP:{HOST}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run_tool([openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"], directory)
    return {"ca": directory / "ca.crt", "cert": directory / "server.crt", "key": directory / "server.key"}


def start_tls_redis(directory: Path) -> OneServer:
    """TLS only (`port 0`): a client that does not trust the CA has no way in."""
    files = make_certificates(directory)
    port = free_ports(1)[0]
    config = [*data_node_config(0), f"tls-port {port}", f"tls-cert-file {files['cert']}",
              f"tls-key-file {files['key']}", f"tls-ca-cert-file {files['ca']}", "tls-auth-clients no"]
    connect = {"host": HOST, "port": port, "ssl": True, "ssl_ca_certs": str(files["ca"])}
    server = Server(directory, "tls", config, connect)
    server.start()
    return OneServer(f"rediss://{HOST}:{port}/0?ssl_ca_certs={quote(str(files['ca']))}", server,
                     ca_path=files["ca"])


def start_unix_redis(directory: Path) -> OneServer:
    """A socket only, readable by its owner alone, as a Redis beside the gateway on one host is run."""
    remove_on_stop: list[Path] = []
    socket_dir = directory
    if len(str(directory)) > MAX_SOCKET_DIR_CHARS:  # a deep TMPDIR would overflow sockaddr_un
        socket_dir = Path(tempfile.mkdtemp(prefix="gw-redis-"))
        remove_on_stop.append(socket_dir)
    path = socket_dir / "redis.sock"
    config = [*data_node_config(0), f"unixsocket {path}", "unixsocketperm 700"]
    server = Server(directory, "unix", config, {"unix_socket_path": str(path)})
    try:
        server.start()
    except BaseException:
        for leftover in remove_on_stop:
            shutil.rmtree(leftover, ignore_errors=True)
        raise
    return OneServer(f"unix://{path}?db={UNIX_DB}", server, socket_path=path, remove_on_stop=remove_on_stop)
