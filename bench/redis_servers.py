"""Throwaway Redis servers on free loopback ports for the benches: one (plain or TLS with a
private CA), one with a replica, or a cluster of primaries; none persists, so disk never paces them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: what a managed Redis hands out."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    for command in (
        (f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout {ca_key} -out {ca}"
         " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"),
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {csr}",
        f"x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 -out {cert} -extfile {ext}",
    ):
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True)
    return ca, cert, key


@contextlib.asynccontextmanager
async def replicated(directory: Path, url: str) -> AsyncIterator[None]:
    """A replica of the server at `url`, in sync before the measuring starts."""
    port = _free_port()
    primary = urlsplit(url)
    (directory / "replica").mkdir()
    process = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(directory / "replica"),
                                "--replicaof", primary.hostname or "127.0.0.1", str(primary.port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        deadline = time.monotonic() + 10
        while await _link_status(port) != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync within 10 s")
            await asyncio.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


async def _link_status(port: int) -> str:
    client = Redis(port=port)
    try:
        return str((await client.info("replication")).get("master_link_status", ""))
    finally:
        await client.aclose()


@contextlib.contextmanager
def redis_cluster(directory: Path, primaries: int = 3) -> Iterator[str]:
    """Throwaway cluster-mode servers joined by `redis-cli --cluster create` (primaries only), as a
    redis+cluster:// URL; the bench's eight teams spread over their slots."""
    ports = [_free_port() for _ in range(primaries)]
    processes = []
    try:
        for port in ports:
            (directory / str(port)).mkdir()
            processes.append(subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", str(directory / str(port)), "--cluster-enabled", "yes", "--cluster-config-file",
                 "nodes.conf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port, process in zip(ports, processes, strict=True):
            _wait_listening(port, process)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 20
        while not all(_cluster_ok(port) for port in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up within 20 s")
            time.sleep(0.1)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True,
                          check=False).stdout
    return "cluster_state:ok" in info


def node_urls(url: str) -> list[str]:
    """Each server behind the bench's URL, as a plain URL an admin client can reach."""
    if not url.startswith("redis+cluster://"):
        return [url]
    return [f"redis://{node}/0" for node in url.removeprefix("redis+cluster://").split(",")]


@contextlib.contextmanager
def redis_server(directory: Path, tls: bool) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, as the gateway's URL: no persistence, so disk never paces it."""
    port = _free_port()
    args = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)]
    if tls:
        ca, cert, key = _make_certs(directory)
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    else:
        args += ["--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not listen within 10 s")
