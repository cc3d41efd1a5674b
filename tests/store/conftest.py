"""Real Redis deployment shapes for the store's tests: every way platform teams run Redis.

    acl_redis       (test)   `default` off; ACL user `gateway`, password `p@ss:w/rd`
                             .url redis://gateway:p%40ss%3Aw%2Frd@127.0.0.1:PORT/0, .username, .password
    tls_redis       (test)   TLS only, a server certificate from a private CA
                             .url rediss://127.0.0.1:PORT/0?ssl_ca_certs=CA, .ca_path
    unix_redis      (test)   a unix socket only (mode 700)
                             .url unix:///…/redis.sock?db=2, .socket_path
    sentinel_redis  (module) a primary, its replica, three Sentinels watching `gwprimary`
                             .url redis+sentinel://S1,S2,S3/gwprimary/0, .sentinels, .service_name,
                             .primary(), .failover(), .kill_primary(), .wait_for_new_primary(old), .restart(node)
    cluster_redis   (module) six nodes, three primaries with a replica each
                             .url redis+cluster://N1,N2,N3, .nodes, .primaries(), .primary_of(key),
                             .kill_primary_of(key)

The replicated two start once per module (seconds each) and are reset before every test: nodes a
test killed come back as replicas and the data is flushed. Their helpers block; a test whose
event loop also runs the gateway calls them through asyncio.to_thread.

Without redis-server, redis-cli or openssl a test skips; GATEWAY_REQUIRE_REAL=1 makes it fail.
Each fixture stops every process it started, whole process groups, however the test ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.store.deployments import OneServer, start_acl_redis, start_tls_redis, start_unix_redis
from tests.store.replicated import ClusterRedis, SentinelRedis


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


def _started(deployment: SentinelRedis | ClusterRedis) -> Iterator[SentinelRedis | ClusterRedis]:
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="module")
def sentinel_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRedis]:
    yield from _started(SentinelRedis(tmp_path_factory.mktemp("sentinel")))


@pytest.fixture
def sentinel_redis(sentinel_deployment: SentinelRedis) -> SentinelRedis:
    sentinel_deployment.reset()
    return sentinel_deployment


@pytest.fixture(scope="module")
def cluster_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRedis]:
    yield from _started(ClusterRedis(tmp_path_factory.mktemp("cluster")))


@pytest.fixture
def cluster_redis(cluster_deployment: ClusterRedis) -> ClusterRedis:
    cluster_deployment.reset()
    return cluster_deployment
