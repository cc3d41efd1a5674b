"""Leases: blocks of admissions a worker hands out in memory, without a store round trip.

While a team is far from its limits, an admission that reaches the store asks for a lease
instead of one request's reservation: `slots` requests and their worst-case tokens and cost,
held in the store at once like one reservation (granted only while the team, lease included,
stays within half of every limit; nearer, every request is decided there, one by one). The
worker then admits the team's next requests from the lease; each settles under its own id,
moving what it used out of the lease's holds. A lease admits for `life_s` and is renewed in
the background before it runs out; closed and drained, it is given back (what it still holds,
and its requests nobody used leave the rpm window). A worker that dies leaves its leases to
expire in the store like any reservation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.accounting.outbox import Outbox
from gateway.store import Hold, LeaseAsk, Limits, Store, StoreUnavailable

log = logging.getLogger("gateway.admission")
FIRST_SLOTS = 8  # a team's first lease; the next ones follow how fast the last was used
MIN_SLOTS, MAX_SLOTS = 2, 64
MAX_AMOUNT = 2**53 - 1  # what the store takes as an amount


@dataclass(slots=True, eq=False)
class Lease:
    """One lease of one team, as this worker hands it out."""

    id: str  # its reservation in the store
    team: str
    limits: Limits  # what it was granted under: a reload that changes them retires it
    day: str
    month: str
    slots: int  # requests granted
    tokens: int  # left to hand out
    cost_nano: int
    headers: dict[str, str]  # the x-ratelimit-* figures as the store gave them at the grant
    granted_at: float  # monotonic
    life_s: float
    used: int = 0  # requests handed out
    in_flight: int = 0  # handed out and not settled yet
    open: bool = True  # still admitting
    renewing: bool = False  # its successor asked for

    def fits(self, hold: Hold, limits: Limits, now: float) -> bool:
        return (self.open and self.used < self.slots and hold.tokens <= self.tokens
                and hold.cost_nano <= self.cost_nano and now - self.granted_at < self.life_s
                and hold.day == self.day and hold.month == self.month and limits == self.limits)

    def running_low(self, now: float) -> bool:
        """Time to ask for the next: three quarters of its requests or of its life are gone."""
        return 4 * self.used >= 3 * self.slots or 4 * (now - self.granted_at) >= 3 * self.life_s


class Leases:
    """This worker's leases: the open one of each team, and those closed but not given back yet."""

    def __init__(self, store: Store, outbox: Outbox, ttl_s: float, life_s: float) -> None:
        self._store = store
        self._outbox = outbox
        self._ttl_s = ttl_s
        self.life_s = life_s
        self._open: dict[str, Lease] = {}
        self._slots: dict[str, int] = {}  # the size of each team's next lease
        self._held: set[Lease] = set()  # every lease not given back yet
        self._asking: dict[str, asyncio.Future[None]] = {}  # a team's lease on its way from the store
        self._tasks: set[asyncio.Task] = set()

    @property
    def enabled(self) -> bool:
        return self.life_s > 0

    def take(self, hold: Hold, limits: Limits) -> Lease | None:
        """Admit `hold` from its team's open lease, if that has room for it."""
        lease = self._open.get(hold.team)
        if lease is None:
            return None
        now = time.monotonic()
        if not lease.fits(hold, limits, now):
            return None
        lease.used += 1
        lease.in_flight += 1
        lease.tokens -= hold.tokens
        lease.cost_nano -= hold.cost_nano
        return lease

    def on_its_way(self, team: str) -> asyncio.Future[None] | None:
        """Done when the lease the team asked for has come (or not): requests that found none wait
        for it rather than each asking the store for one."""
        return self._asking.get(team)

    def ask(self, hold: Hold, *, only: bool = False) -> LeaseAsk | None:
        """The lease to ask for beside `hold`'s admission: its size, that of `hold` times the slots;
        None when leases are off or one is on its way already. `answered` must follow."""
        if not self.enabled or hold.team in self._asking:
            return None
        slots = self._slots.get(hold.team, FIRST_SLOTS)
        if hold.tokens * slots > MAX_AMOUNT or hold.cost_nano * slots > MAX_AMOUNT:
            return None
        self._asking[hold.team] = asyncio.get_running_loop().create_future()
        return LeaseAsk(slots, hold.tokens * slots, hold.cost_nano * slots, self.life_s, only)

    def answered(self, team: str) -> None:
        """The store answered the team's ask (or did not): those waiting for it look again."""
        waiting = self._asking.pop(team, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def granted(self, lease_id: str, hold: Hold, ask: LeaseAsk, slots: int, limits: Limits,
                headers: dict[str, str], *, first: Hold | None = None) -> Lease:
        """A lease the store granted, made the team's open one; `first`: a request it admits at once."""
        lease = Lease(lease_id, hold.team, limits, hold.day, hold.month, slots, ask.tokens, ask.cost_nano,
                      headers, time.monotonic(), self.life_s)
        if first is not None:
            lease.used = lease.in_flight = 1
            lease.tokens -= first.tokens
            lease.cost_nano -= first.cost_nano
        previous = self._open.get(hold.team)
        if previous is not None:
            self._close(previous, replaced=True)
        self._open[hold.team] = lease
        self._held.add(lease)
        asyncio.get_running_loop().call_later(self.life_s, self._close, lease)
        return lease

    def settled(self, lease: Lease, hold: Hold, tokens: int, cost_nano: int) -> None:
        """A request admitted from `lease` is settled: what it did not use can be handed out again."""
        lease.in_flight -= 1
        lease.tokens = max(lease.tokens + hold.tokens - tokens, 0)
        lease.cost_nano = max(lease.cost_nano + hold.cost_nano - cost_nano, 0)
        if not lease.open and lease.in_flight == 0:
            self._give_back(lease)

    def renew(self, lease: Lease, hold: Hold, admit: Callable[[Hold, LeaseAsk], Awaitable[None]]) -> None:
        """Ask for the team's next lease in the background (`admit` does), once per lease."""
        if lease.renewing or not lease.open:
            return
        ask = self.ask(hold, only=True)
        if ask is not None:
            lease.renewing = True
            self._spawn(admit(hold, ask))

    def _close(self, lease: Lease, *, replaced: bool = False) -> None:
        if not lease.open:
            return
        lease.open = False
        if self._open.get(lease.team) is lease:
            del self._open[lease.team]
        self._resize(lease, replaced)
        if lease.in_flight == 0:
            self._give_back(lease)

    def _resize(self, lease: Lease, replaced: bool) -> None:
        """Next time, a lease that lasts about its life: twice the size if this one ran out in under
        half of it, half if it lived out its life handing out under a quarter."""
        age = time.monotonic() - lease.granted_at
        slots = self._slots.get(lease.team, FIRST_SLOTS)
        if 4 * lease.used >= 3 * lease.slots and 2 * age < lease.life_s:
            self._slots[lease.team] = min(2 * slots, MAX_SLOTS)
        elif 4 * lease.used < lease.slots and not replaced:
            self._slots[lease.team] = max(slots // 2, MIN_SLOTS)

    def _give_back(self, lease: Lease) -> None:
        if lease not in self._held:
            return
        self._held.discard(lease)
        self._spawn(self._release(lease.team, lease.id, (lease.used + 1, lease.slots)))

    async def _release(self, team: str, lease_id: str, unused: tuple[int, int]) -> None:
        try:
            await self._store.release(team, lease_id, self._ttl_s, unused)
        except (StoreUnavailable, asyncio.CancelledError):
            self._outbox.release(team, lease_id, self._ttl_s, unused)
        except Exception:  # a bug: the lease expires in the store by itself
            log.exception("giving back lease %s of team %s failed", lease_id, team)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, timeout_s: float) -> None:
        """Close every lease, and give back those drained (the rest are left to expire)."""
        for _ in range(2):  # a renewal answered meanwhile opens one more
            for lease in list(self._open.values()):
                self._close(lease)
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=timeout_s)
        if self._held:
            log.warning("%d lease(s) still had requests in flight at shutdown; they expire in the store",
                        len(self._held))
