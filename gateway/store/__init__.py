"""The shared state of the gateway: quotas, reservations, usage records and API keys.

One protocol (`Store`), two backends picked once from `store.url`: Redis (one server, TLS,
a unix socket, Sentinel or Cluster) for anything shared between processes, `memory://` for
a single process.
"""

from gateway.store.address import RedisAddress, parse_address
from gateway.store.base import (
    Admission,
    DailyUsage,
    Hold,
    KeyRecord,
    LeaseAsk,
    Limits,
    Store,
    StoreUnavailable,
    UsageRecord,
)


def open_store(url: str, *, timeout_s: float = 0.5, max_records: int = 100_000,
               address: RedisAddress | None = None, replicas: int = 0) -> Store:
    """Build the backend named by `url` (`memory://`, or a Redis address; see gateway.store.address)."""
    if url.startswith("memory://"):
        from gateway.store.memory import MemoryStore

        return MemoryStore(max_records=max_records)
    from gateway.store.redis import RedisStore

    return RedisStore(address or parse_address(url), timeout_s=timeout_s, max_records=max_records, replicas=replicas)


__all__ = [
    "Admission",
    "DailyUsage",
    "Hold",
    "KeyRecord",
    "LeaseAsk",
    "Limits",
    "Store",
    "StoreUnavailable",
    "UsageRecord",
    "open_store",
]
