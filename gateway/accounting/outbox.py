"""Store writes that must happen and got no answer: retried until the store answers.

An admission whose answer never came (a timeout while Redis was paused, a cut connection,
a client gone while it ran) may still run on Redis later and hold a reservation nobody
owns; a settlement whose answer never came may not have run at both. Both are idempotent
by reservation id (the store keeps a tombstone), so the outbox sends each again until the
store answers: a release of the admission, the settlement itself. Nothing here is on the
request path: the first try is made at once, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.background import Periodic
from gateway.store import Store, StoreUnavailable, UsageRecord

log = logging.getLogger("gateway.accounting")
RETRY_S = 1.0


@dataclass(slots=True)
class _Write:
    kind: str  # "release" or "settle"
    team: str
    reservation_id: str
    ttl_s: float
    record: UsageRecord | None
    give_up_at: float  # monotonic; past it the store has forgotten the reservation anyway
    unused: tuple[int, int] = (1, 1)  # a release of a lease: the slots it gives back
    lease_id: str = ""  # a settlement of a request admitted from this lease


class Outbox:
    """Pending releases and settlements of one process, each retried every `retry_s`.

    A write is given up (and logged with what it carried) once its reservation's ttl has
    passed: by then the store has let the reservation go by itself, and only a settlement's
    record is lost, as the log line says.
    """

    def __init__(self, store: Store, retry_s: float = RETRY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._pending: dict[str, _Write] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._retries = Periodic("store outbox", retry_s, self.flush)

    def __len__(self) -> int:
        return len(self._pending)

    def release(self, team: str, reservation_id: str, ttl_s: float, unused: tuple[int, int] = (1, 1)) -> None:
        """Give back an admission whose answer the gateway did not get or no longer wants, or a lease."""
        self._add(_Write("release", team, reservation_id, ttl_s, None, self._clock() + ttl_s, unused=unused))

    def settle(self, reservation_id: str, record: UsageRecord, ttl_s: float, lease_id: str = "") -> None:
        """Record a settlement whose answer never came (it may have run: the store counts it once)."""
        self._add(_Write("settle", record.team, reservation_id, ttl_s, record, self._clock() + ttl_s,
                         lease_id=lease_id))

    def start(self) -> None:
        self._retries.start()

    async def stop(self, timeout_s: float) -> None:
        """One last try of everything pending, bounded; what is left is logged."""
        await self._retries.stop()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout_s)
        if self._pending:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.flush()
            except TimeoutError:
                pass
        for write in self._pending.values():
            self._abandon(write, "the gateway stopped")

    async def flush(self) -> None:
        """Try every pending write once, in order; stop at the first the store does not answer."""
        for write in list(self._pending.values()):
            if self._clock() >= write.give_up_at:
                self._abandon(write, "its reservation expired in the store meanwhile")
            elif not await self._send(write):
                return

    def _add(self, write: _Write) -> None:
        key = f"{write.kind}:{write.reservation_id}"
        self._pending[key] = write
        task = asyncio.get_running_loop().create_task(self._send(write))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, write: _Write) -> bool:
        key = f"{write.kind}:{write.reservation_id}"
        try:
            if write.kind == "release":
                await self._store.release(write.team, write.reservation_id, write.ttl_s, write.unused)
            else:
                assert write.record is not None
                await self._store.settle(write.reservation_id, write.record, write.ttl_s, write.lease_id)
        except StoreUnavailable:
            return False
        except Exception:  # a bug, not an outage: retrying will not help
            log.exception("store %s of reservation %s failed", write.kind, write.reservation_id)
        self._pending.pop(key, None)
        return True

    def _abandon(self, write: _Write, why: str) -> None:
        self._pending.pop(f"{write.kind}:{write.reservation_id}", None)
        if write.kind == "settle":
            log.error("gave up settling reservation %s (%s); unrecorded usage: %s", write.reservation_id, why,
                      write.record)
        else:
            log.warning("gave up releasing reservation %s of team %s (%s)", write.reservation_id, write.team, why)

