"""A redis-py client for each deployment shape an address names: one server, a unix socket,
the primary a Sentinel names, or a Redis Cluster.

Every socket wait is bounded by the store's timeout. A call on a pooled connection that turns
out broken (Redis restarted since it was last used) is tried once more on a new one, and a
Cluster's client follows MOVED and ASK and refreshes its slot map after a failover: both safe
because every script is idempotent by its id. (Admissions and settlements do not go through
the pool: gateway.store.batch.)
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from gateway.store.address import RedisAddress

CLUSTER_ATTEMPTS = 3  # a MOVED after a failover, then the new primary: a few tries cover it
ONCE_MORE = Retry(NoBackoff(), 1)  # a stale pooled connection costs one more try, not an error


def connect(address: RedisAddress, timeout_s: float, max_connections: int = 64) -> Redis | RedisCluster:
    """The client the address calls for; it connects on first use."""
    if address.mode == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in address.hosts],
                            cluster_error_retry_attempts=CLUSTER_ATTEMPTS, max_connections=max_connections,
                            **_auth(address), **_tls(address), **_timeouts(timeout_s))
    if address.mode == "sentinel":
        sentinel = Sentinel(list(address.hosts), sentinel_kwargs={**_tls(address), **_timeouts(timeout_s)},
                            **_timeouts(timeout_s))
        return sentinel.master_for(address.service or "", redis_class=Redis, db=address.db,
                                   retry=ONCE_MORE, **_auth(address), **_tls(address),
                                   **_timeouts(timeout_s))
    pool = BlockingConnectionPool(connection_class=_connection_class(address), max_connections=max_connections,
                                  timeout=timeout_s, db=address.db, retry=ONCE_MORE,
                                  **_where(address), **_auth(address), **_tls(address, for_pool=True),
                                  **_timeouts(timeout_s))
    return Redis.from_pool(pool)


def _connection_class(address: RedisAddress) -> type[Connection] | type[UnixDomainSocketConnection]:
    if address.mode == "unix":
        return UnixDomainSocketConnection
    return SSLConnection if address.tls is not None else Connection


def _where(address: RedisAddress) -> dict[str, Any]:
    if address.mode == "unix":
        return {"path": address.path}
    host, port = address.hosts[0]
    return {"host": host, "port": port}


def _auth(address: RedisAddress) -> dict[str, Any]:
    return {"username": address.username, "password": address.password}


def _tls(address: RedisAddress, *, for_pool: bool = False) -> dict[str, Any]:
    """TLS settings; a pool is given its connection class instead of `ssl`."""
    tls = address.tls
    if tls is None:
        return {}
    files = {"ssl_ca_certs": tls.ca_certs, "ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile}
    return files if for_pool else {"ssl": True, **files}


def _timeouts(timeout_s: float) -> dict[str, Any]:
    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
