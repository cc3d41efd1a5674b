"""Each Redis deployment shape, started for real and reached with plain redis-py.

These prove the fixtures in conftest.py do what they say, so that a failure in the gateway's
own store tests against them is the gateway's. Each URL is also read by the gateway's parser.
"""

from __future__ import annotations

import os
import stat

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.store.address import parse_address
from tests.store.deployments import OneServer

# A refused client is told at once: by default redis-py retries a refusal for seconds.
NO_RETRY = {"retry": Retry(NoBackoff(), 0)}


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
