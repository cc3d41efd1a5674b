"""The shared state of the gateway: quotas, reservations, usage records and API keys.

One protocol (`Store`), two backends picked once from `store.url`: `redis://` for
anything shared between processes, `memory://` for a single process.
"""

from gateway.store.base import Admission, DailyUsage, Hold, KeyRecord, Limits, Store, StoreUnavailable, UsageRecord


def open_store(url: str, *, timeout_s: float = 0.5, max_records: int = 100_000) -> Store:
    """Build the backend named by `url` (`memory://` or `redis://...`)."""
    if url.startswith("memory://"):
        from gateway.store.memory import MemoryStore

        return MemoryStore(max_records=max_records)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import RedisStore

        return RedisStore(url, timeout_s=timeout_s, max_records=max_records)
    raise ValueError(f"store.url: unknown scheme in {url!r} (use memory:// or redis://host:port/db)")


__all__ = [
    "Admission",
    "DailyUsage",
    "Hold",
    "KeyRecord",
    "Limits",
    "Store",
    "StoreUnavailable",
    "UsageRecord",
    "open_store",
]
