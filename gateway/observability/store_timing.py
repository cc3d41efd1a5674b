"""A store that times every call it passes on, and counts the calls that got no answer."""

from __future__ import annotations

import time
from typing import Any, Awaitable, TypeVar

from prometheus_client import Counter, Histogram

from gateway.store import Admission, DailyUsage, Hold, KeyRecord, LeaseAsk, Limits, Store, StoreUnavailable, UsageRecord
from gateway.store.base import SETTLED_GRACE_S

T = TypeVar("T")
STORE_OPERATIONS = ("admit", "release", "settle", "spend", "usage", "records", "add_key", "lookup_key",
                    "revoke_key", "keys", "keys_version", "put_response", "get_response",
                    "delete_response", "publish_config", "config_version", "published_config", "ping")


class MeteredStore:
    """A `Store` in front of another: the same answers, plus latency and failures by operation.

    Attributes outside the Store protocol reach the store behind, untimed.
    """

    def __init__(self, store: Store, duration: Histogram, failures: Counter) -> None:
        self.backend = store
        self._duration = duration
        self._failures = failures
        # Children bound once, on first use: admit and settle pay for no label lookup.
        self._timers: dict[str, tuple[Any, Any]] = {}

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        timers = self._timers.get(operation)
        if timers is None:
            timers = self._timers[operation] = (self._duration.labels(operation), self._failures.labels(operation))
        duration, failures = timers
        started = time.perf_counter()
        try:
            return await call
        except StoreUnavailable:
            failures.inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)

    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        return await self._timed("admit", self.backend.admit(hold, limits, lease))

    async def release(self, team: str, reservation_id: str, ttl_s: float, unused: tuple[int, int] = (1, 1)) -> bool:
        return await self._timed("release", self.backend.release(team, reservation_id, ttl_s, unused))

    async def settle(self, reservation_id: str, usage: UsageRecord, ttl_s: float = SETTLED_GRACE_S,
                     lease_id: str = "") -> bool:
        return await self._timed("settle", self.backend.settle(reservation_id, usage, ttl_s, lease_id))

    async def spend(self, team: str, day: str, month: str) -> tuple[int, int]:
        return await self._timed("spend", self.backend.spend(team, day, month))

    async def usage(self, team: str, first_day: str, last_day: str) -> list[DailyUsage]:
        return await self._timed("usage", self.backend.usage(team, first_day, last_day))

    async def records(self, team: str | None = None, count: int = 100, since_ms: int = 0) -> list[UsageRecord]:
        return await self._timed("records", self.backend.records(team, count, since_ms))

    async def find_record(self, request_id: str, team: str | None = None, since_ms: int = 0,
                          max_scanned: int = 100_000) -> UsageRecord | None:
        return await self._timed("records", self.backend.find_record(request_id, team, since_ms, max_scanned))

    async def add_key(self, record: KeyRecord) -> None:
        await self._timed("add_key", self.backend.add_key(record))

    async def lookup_key(self, key_hash: str) -> KeyRecord | None:
        return await self._timed("lookup_key", self.backend.lookup_key(key_hash))

    async def revoke_key(self, key_id: str) -> bool:
        return await self._timed("revoke_key", self.backend.revoke_key(key_id))

    async def keys(self, team: str | None = None) -> list[KeyRecord]:
        return await self._timed("keys", self.backend.keys(team))

    async def keys_version(self) -> int:
        return await self._timed("keys_version", self.backend.keys_version())

    async def put_response(self, team: str, response_id: str, record: bytes, ttl_s: float) -> None:
        await self._timed("put_response", self.backend.put_response(team, response_id, record, ttl_s))

    async def get_response(self, team: str, response_id: str) -> bytes | None:
        return await self._timed("get_response", self.backend.get_response(team, response_id))

    async def delete_response(self, team: str, response_id: str) -> bool:
        return await self._timed("delete_response", self.backend.delete_response(team, response_id))

    async def publish_config(self, text: str) -> int:
        return await self._timed("publish_config", self.backend.publish_config(text))

    async def config_version(self) -> int:
        return await self._timed("config_version", self.backend.config_version())

    async def published_config(self) -> tuple[int, str] | None:
        return await self._timed("published_config", self.backend.published_config())

    async def ping(self) -> None:
        await self._timed("ping", self.backend.ping())

    async def close(self) -> None:
        await self.backend.close()

    def __getattr__(self, name: str) -> Any:
        if name == "backend":  # not set yet: no store to ask
            raise AttributeError(name)
        return getattr(self.backend, name)
