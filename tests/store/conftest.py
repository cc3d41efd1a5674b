"""Real Redis deployment shapes for the store's tests: every way platform teams run Redis.

    acl_redis       (test)   `default` off; ACL user `gateway`, password `p@ss:w/rd`
                             .url redis://gateway:p%40ss%3Aw%2Frd@127.0.0.1:PORT/0, .username, .password
    tls_redis       (test)   TLS only, a server certificate from a private CA
                             .url rediss://127.0.0.1:PORT/0?ssl_ca_certs=CA, .ca_path
    unix_redis      (test)   a unix socket only (mode 700)
                             .url unix:///…/redis.sock?db=2, .socket_path

Without redis-server, redis-cli or openssl a test skips; GATEWAY_REQUIRE_REAL=1 makes it fail.
Each fixture stops every process it started, whole process groups, however the test ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.store.deployments import OneServer, start_acl_redis, start_tls_redis, start_unix_redis


def _one_server(start: Callable[[Path], OneServer], directory: Path) -> Iterator[OneServer]:
    deployment = start(directory)
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[OneServer]:
    yield from _one_server(start_acl_redis, tmp_path)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[OneServer]:
    yield from _one_server(start_tls_redis, tmp_path)


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[OneServer]:
    yield from _one_server(start_unix_redis, tmp_path)
