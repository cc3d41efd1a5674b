"""Admission: reserve a request's worst case against its team's limits, in one store call.

The worst case is the prompt's token bound plus every token the request may generate, as its
max_tokens or the routes' context windows bound them, priced at the dearest route it may
take; settlement later replaces it with what was used.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.accounting.leases import Lease, Leases
from gateway.accounting.outbox import Outbox
from gateway.accounting.periods import utc_periods
from gateway.call import Call
from gateway.config import Config, TeamConfig
from gateway.errors import GatewayError, bad_request
from gateway.ids import new_id
from gateway.store import Admission, Hold, LeaseAsk, Store, StoreUnavailable

log = logging.getLogger("gateway.admission")
MAX_QUOTA_RETRY_AFTER_S = 60


@dataclass(frozen=True, slots=True)
class Reservation:
    """What admission gave a request: its hold in the store, and the id its settlement goes under."""

    id: str  # the reservation's id; for one admitted unmetered (store down), an id the store never saw
    hold: Hold
    headers: dict[str, str]
    metered: bool = True
    lease: Lease | None = None  # admitted from this lease: `id` is the request's own, the hold the lease's


class Bounded(Protocol):
    """A way to serve a request that knows the most the request can use there (a routing.Route)."""

    def worst_case(self, call: Call) -> tuple[int, int]: ...

    def prompt_bound(self, call: Call) -> int: ...


def worst_case(call: Call, routes: Iterable[Bounded]) -> tuple[int, int]:
    """(tokens, cost in nano-dollars) the request can use at most, on any of `routes`."""
    tokens = cost = 0
    for route in routes:
        route_tokens, route_cost = route.worst_case(call)
        tokens, cost = max(tokens, route_tokens), max(cost, route_cost)
    return tokens, cost


class Admitter:
    def __init__(self, config: Config, store: Store, outbox: Outbox) -> None:
        self._store = store
        self._outbox = outbox
        self._allow_when_down = config.store.on_failure == "allow"
        self._ttl_s = config.store.reservation_ttl_s
        self.leases = Leases(store, outbox, self._ttl_s, config.store.lease_s)

    async def admit(self, call: Call, routes: Iterable[Bounded], team: TeamConfig) -> Reservation:
        """Hold the request's worst case over the routes it may take; a 429 or 503 GatewayError when refused."""
        routes = list(routes)
        if call.generates:
            _apply_caps(call, team)
        tokens, cost = worst_case(call, routes)
        # With no client's limit, the output part of the tpm hold may shrink to what the minute has left.
        floor = max(route.prompt_bound(call) for route in routes) if call.max_tokens is None else None
        day, month = utc_periods()
        hold = Hold(team=team.name, tokens=tokens, cost_nano=cost, day=day, month=month, ttl_s=self._ttl_s,
                    tpm_floor=None if floor is None or floor >= tokens else floor)
        lease = self.leases.take(hold, team.limits)
        if lease is None and (coming := self.leases.on_its_way(team.name)) is not None:
            await asyncio.shield(coming)  # as long as a round trip of this request's own
            lease = self.leases.take(hold, team.limits)
        if lease is not None:
            if lease.running_low(time.monotonic()):
                self.leases.renew(lease, hold, functools.partial(self._renew, team))
            return Reservation(hold.reservation_id, hold, lease.headers, lease=lease)
        ask = self.leases.ask(hold)
        try:
            admission = await self._store.admit(hold, team.limits, ask)
        except StoreUnavailable:
            # The call may still run on the store (it was queued there): whatever it holds is released.
            self._release(hold, ask)
            if self._allow_when_down:
                log.warning("store unavailable: admitting unmetered (store.on_failure: allow)")
                return Reservation(new_id(), hold, {}, metered=False)
            raise GatewayError(503, "The gateway cannot check quotas right now (store unavailable); "
                               "retry shortly.", type="service_unavailable", code="store_unavailable",
                               headers={"retry-after": "1"}) from None
        except asyncio.CancelledError:  # the client left while the store decided: nobody will settle it
            self._release(hold, ask)
            raise
        finally:
            if ask is not None:
                self.leases.answered(team.name)
        headers = rate_limit_headers(admission, team)
        if not admission.admitted:
            raise refusal(admission, headers)
        if ask is not None and admission.lease_slots:
            lease = self.leases.granted(hold.reservation_id, hold, ask, admission.lease_slots, team.limits, headers,
                                        first=hold)
            return Reservation(new_id(), hold, headers, lease=lease)
        return Reservation(hold.reservation_id, hold, headers)

    async def _renew(self, team: TeamConfig, hold: Hold, ask: LeaseAsk) -> None:
        """The team's next lease, asked for in the background; refused, requests go to the store again."""
        ahead = Hold(team=hold.team, tokens=hold.tokens, cost_nano=hold.cost_nano, day=hold.day, month=hold.month,
                     ttl_s=self._ttl_s)
        try:
            admission = await self._store.admit(ahead, team.limits, ask)
            if admission.admitted and admission.lease_slots:
                self.leases.granted(ahead.reservation_id, ahead, ask, admission.lease_slots, team.limits,
                                    rate_limit_headers(admission, team))
        except StoreUnavailable:
            self._release(ahead, ask)
        except asyncio.CancelledError:
            self._release(ahead, ask)
            raise
        except Exception:  # a bug: requests go to the store one by one meanwhile
            log.exception("asking for a lease of team %s failed", team.name)
        finally:  # whatever happened, the requests waiting for it look again
            self.leases.answered(team.name)

    def _release(self, hold: Hold, ask: LeaseAsk | None) -> None:
        unused = (1, ask.slots) if ask is not None else (1, 1)
        self._outbox.release(hold.team, hold.reservation_id, self._ttl_s, unused)


def _apply_caps(call: Call, team: TeamConfig) -> None:
    """A team's cap bounds every request; without one, a request naming no max_tokens is sent the
    team's default only where a route's window is unknown, so every reservation is a true worst case."""
    cap = team.max_tokens_cap
    if cap is not None:
        if call.max_tokens is None:
            call.max_tokens = cap
        elif call.max_tokens > cap:
            raise bad_request(f"max_tokens is {call.max_tokens}; team '{team.name}' allows at most {cap} per request",
                              param="max_tokens", code="invalid_value")
    if call.max_tokens is None:
        call.blind_max_tokens = team.max_tokens_default


def rate_limit_headers(admission: Admission, team: TeamConfig) -> dict[str, str]:
    """The x-ratelimit-* headers OpenAI sends, for the limits the team has."""
    headers = {}
    limits = team.limits
    if limits.rpm is not None and admission.requests_remaining is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(admission.requests_remaining, 0))
        headers["x-ratelimit-reset-requests"] = f"{admission.requests_reset_s:.3f}s"
    if limits.tpm is not None and admission.tokens_remaining is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(admission.tokens_remaining, 0))
        headers["x-ratelimit-reset-tokens"] = f"{admission.tokens_reset_s:.3f}s"
    return headers


def refusal(admission: Admission, headers: dict[str, str]) -> GatewayError:
    retry = str(max(1, math.ceil(admission.retry_after_s)))
    headers = {**headers, "retry-after": retry}
    reason = admission.refused_by or "quota"
    if reason.startswith("budget"):
        period = "daily" if reason.startswith("budget_day") else "monthly"
        if reason.endswith("_held"):
            return GatewayError(429, f"Your team's {period} budget is taken up by requests in flight; they "
                                f"settle in moments, usually for less than they hold. Please try again in "
                                f"{retry}s.", type="requests", code="budget_held_by_requests_in_flight",
                                headers=headers)
        unit = "day" if period == "daily" else "month"
        # Retrying cannot help until the period turns: the openai SDKs obey x-should-retry, and a
        # Retry-After of hours was seen to hold a client that long, so it stays at most a minute.
        headers.update({"x-should-retry": "false", "retry-after": str(min(int(retry), MAX_QUOTA_RETRY_AFTER_S))})
        return GatewayError(429, f"You exceeded your team's {period} budget. It resets at the start of the "
                            f"next UTC {unit}.", type="insufficient_quota", code="insufficient_quota",
                            headers=headers)
    if reason == "released":  # only a call the gateway already gave up on can see this
        return GatewayError(503, "The gateway cannot check quotas right now; retry shortly.",
                            type="service_unavailable", code="store_unavailable", headers={"retry-after": "1"})
    unit = "requests" if reason == "rpm" else "tokens"
    return GatewayError(429, f"Rate limit reached for {unit} per minute ({reason}). Please try again in "
                        f"{retry}s.", type="requests" if unit == "requests" else "tokens",
                        code="rate_limit_exceeded", headers=headers)
