"""Shared fixtures. Each block below is self-contained; add new blocks rather than editing others."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from gateway.store import Store
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore

# ---------------------------------------------------------------------------
# Store fixtures: a Redis to test against, and every store backend.
#
#   redis_url      session: GATEWAY_TEST_REDIS_URL (default redis://127.0.0.1:6379) if
#                  it answers PING, else a private redis-server; fails if neither.
#   redis_prefix   a fresh key prefix for one test, its keys deleted afterwards.
#   redis_process  a private redis-server the test may stop and start again.
#   make_store     builds stores of one backend (parametrised: memory, redis).
#   store          one store of that backend, so the same test runs against both.
# ---------------------------------------------------------------------------

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"


def _answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisProcess:
    """A redis-server of the tests' own on a free loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("no Redis answers and redis-server is not on PATH; install Redis or set GATEWAY_TEST_REDIS_URL")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self._directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers_ping(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("GATEWAY_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if _answers_ping(url):
        yield url
        return
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    # A prefix per test instead of FLUSHDB: a developer's Redis may hold other data.
    prefix = f"gwtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    built: list[Store] = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    async def make(**options: object) -> Store:
        if request.param == "memory":
            store: Store = MemoryStore(**options)
        else:
            store = RedisStore(url, timeout_s=2.0, prefix=prefix, **options)
        built.append(store)
        return store

    yield make
    for store in built:
        await store.close()


@pytest.fixture
async def store(make_store: Callable[..., Awaitable[Store]]) -> Store:
    return await make_store()


# --------------------------- end of store fixtures ---------------------------
