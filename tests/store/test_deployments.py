"""Each Redis deployment shape, started for real and reached with plain redis-py.

These prove the fixtures in conftest.py do what they say, so that a failure in the gateway's
own store tests against them is the gateway's. Each URL is also read by the gateway's parser.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from gateway.store.address import parse_address
from tests.store.deployments import OneServer
from tests.store.replicated import ClusterRedis, SentinelRedis
from tests.waiting import eventually

TEAMS = 48  # enough {team-N} hash tags that each of three primaries gets some
# What a client sees while its primary is gone or has just become a replica.
FAILING_OVER = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.exceptions.ClusterDownError,
                redis.exceptions.TryAgainError)
# A refused client is told at once: by default redis-py retries a refusal for seconds.
NO_RETRY = {"retry": Retry(NoBackoff(), 0)}


async def _writes(client: Redis | RedisCluster, key: str, value: str) -> bool:
    try:
        return bool(await client.set(key, value))
    except FAILING_OVER:
        return False


async def test_only_the_acl_user_gets_in(acl_redis: OneServer) -> None:
    address = parse_address(acl_redis.url)
    assert (address.username, address.password) == ("gateway", "p@ss:w/rd")
    async with Redis.from_url(acl_redis.url, decode_responses=True) as client:
        assert await client.set("gw:k", "v")
        assert await client.get("gw:k") == "v"
        assert await client.acl_whoami() == "gateway"
    (host, port), = address.hosts
    async with Redis(host=host, port=port, **NO_RETRY) as anonymous:
        # NOAUTH to a RESP2 client; a RESP3 one is refused its HELLO.
        with pytest.raises(redis.AuthenticationError, match="Authentication required|already authenticated"):
            await anonymous.ping()
    async with Redis(host=host, port=port, username="gateway", password="p@ss", **NO_RETRY) as wrong:
        with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
            await wrong.ping()


async def test_tls_answers_only_clients_that_trust_its_ca(tls_redis: OneServer) -> None:
    assert parse_address(tls_redis.url).tls.ca_certs == str(tls_redis.ca_path)
    async with Redis.from_url(tls_redis.url, decode_responses=True) as client:
        assert await client.set("gw:k", "v")
        assert await client.get("gw:k") == "v"
    (host, port), = parse_address(tls_redis.url).hosts
    async with Redis.from_url(f"rediss://{host}:{port}/0", **NO_RETRY) as untrusting:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            await untrusting.ping()
    async with Redis(host=host, port=port, socket_timeout=2, **NO_RETRY) as plain:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            await plain.ping()


async def test_the_unix_socket_serves_db_2_to_its_owner_only(unix_redis: OneServer) -> None:
    assert parse_address(unix_redis.url).path == str(unix_redis.socket_path)
    assert stat.S_IMODE(os.stat(unix_redis.socket_path).st_mode) == 0o700
    async with Redis.from_url(unix_redis.url, decode_responses=True) as client:
        assert await client.set("gw:k", "v")
        assert (await client.client_info())["db"] == 2
    with unix_redis.server.client(db=2) as db2, unix_redis.server.client(db=0) as db0:
        assert (db2.get("gw:k"), db0.get("gw:k")) == ("v", None)


@pytest.fixture
async def sentinel_client(sentinel_redis: SentinelRedis) -> AsyncIterator[Redis]:
    sentinel = Sentinel(sentinel_redis.sentinels, socket_timeout=1)
    primary = sentinel.master_for(sentinel_redis.service_name, socket_timeout=1, decode_responses=True)
    yield primary
    await primary.aclose()
    for client in sentinel.sentinels:
        await client.aclose()


async def test_sentinel_writes_reach_the_primary_after_a_failover(sentinel_redis: SentinelRedis,
                                                                  sentinel_client: Redis) -> None:
    address = parse_address(sentinel_redis.url)
    assert (list(address.hosts), address.service) == (sentinel_redis.sentinels, sentinel_redis.service_name)
    assert await sentinel_client.set("gw:before", "1")
    old = sentinel_redis.primary()
    new = sentinel_redis.failover()
    assert new != old
    await eventually(lambda: _writes(sentinel_client, "gw:after", "2"), 10, "a write after the failover")
    with sentinel_redis.node(new).client() as direct:
        assert (direct.get("gw:before"), direct.get("gw:after")) == ("1", "2")


async def test_sentinel_promotes_the_replica_when_the_primary_dies(sentinel_redis: SentinelRedis,
                                                                   sentinel_client: Redis) -> None:
    assert await sentinel_client.set("gw:before", "1")
    assert await sentinel_client.wait(1, 2000) == 1  # the replica has it before the crash
    old = sentinel_redis.kill_primary()
    new = sentinel_redis.wait_for_new_primary(old)
    await eventually(lambda: _writes(sentinel_client, "gw:after", "2"), 10, "a write after the promotion")
    with sentinel_redis.node(new).client() as direct:
        assert (direct.get("gw:before"), direct.get("gw:after")) == ("1", "2")
    sentinel_redis.restart(old)  # back as the new primary's replica, with what it missed
    with sentinel_redis.node(old).client() as rejoined:
        assert (rejoined.role()[0], rejoined.get("gw:after")) == ("slave", "2")


@pytest.fixture
async def cluster_client(cluster_redis: ClusterRedis) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in cluster_redis.nodes],
                          decode_responses=True, socket_timeout=1)
    yield client
    await client.aclose()


async def test_cluster_spreads_team_keys_over_every_primary(cluster_redis: ClusterRedis,
                                                            cluster_client: RedisCluster) -> None:
    assert list(parse_address(cluster_redis.url).hosts) == cluster_redis.nodes[:3]
    for team in range(TEAMS):
        assert await cluster_client.set(f"gw:{{team-{team}}}:x", str(team))
    keys_per_primary = {}
    for address in cluster_redis.primaries():
        with cluster_redis.node(address).client() as direct:
            keys_per_primary[address] = direct.dbsize()
    assert len(keys_per_primary) == 3
    assert all(keys_per_primary.values()) and sum(keys_per_primary.values()) == TEAMS


async def test_a_cluster_client_keeps_working_when_a_primary_dies(cluster_redis: ClusterRedis,
                                                                  cluster_client: RedisCluster) -> None:
    key = "gw:{team-7}:x"
    assert await cluster_client.set(key, "before")
    with cluster_redis.node(cluster_redis.primary_of(key)).client() as direct:
        assert direct.wait(1, 2000) == 1  # the replica has it before the crash
    killed, promoted = cluster_redis.kill_primary_of(key)
    assert killed not in cluster_redis.primaries()
    await eventually(lambda: _writes(cluster_client, key, "after"), 10, "a write after the promotion")
    with cluster_redis.node(promoted).client() as direct:
        assert direct.get(key) == "after"
