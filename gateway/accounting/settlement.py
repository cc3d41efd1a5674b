"""Settlement: replace a request's reservation with what it actually used, in one store call.

Runs once however the request ended (success, upstream error, client gone mid-stream,
an exception, a shutdown): `gateway.exchange` sees to that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.accounting.admission import Reservation
from gateway.accounting.leases import Leases
from gateway.accounting.outbox import Outbox
from gateway.accounting.usage import Usage
from gateway.call import Call
from gateway.config import Price
from gateway.money import MAX_NANO, token_cost
from gateway.store import Store, StoreUnavailable, UsageRecord

log = logging.getLogger("gateway.settlement")


@dataclass(slots=True)
class Outcome:
    """What one request came to, as the client saw it."""

    team: str
    key_id: str
    model: str
    provider: str  # "" when no upstream was reached
    status: int
    usage: Usage
    price: Price | None
    started: float  # monotonic
    request_id: str = ""
    attempts: int = 1  # upstream attempts made; more than one means a retry or a fallback
    stream: bool = False
    # When the upstream that answered was sent the request, sent its first byte, and was done
    # (time.monotonic); 0.0 when none answered.
    upstream_started: float = 0.0
    first_byte_at: float = 0.0
    upstream_ended: float = 0.0
    ended: float = 0.0  # monotonic; set at settlement, when the client has had the whole answer
    # Why the usage billed is the gateway's own count: "absent" (the upstream sent none), "invalid"
    # (what it sent could not be billed), "cut" (a stream ended before its usage came); None when it is
    # the upstream's.
    usage_estimated: str | None = None
    error_code: str | None = None  # the OpenAI error `code` the client got, if any
    call: Call | None = None  # the client's request, for observers that describe it
    # Every upstream attempt in order (gateway.routing.attempt.Attempt: routing sits above accounting).
    tries: tuple[Any, ...] = ()


def charge(usage: Usage, price: Price | None) -> tuple[int, int | None]:
    """(cost charged to the team, price-table cost) in nano-dollars.

    The provider's own figure wins when it sends one: it is what the invoice will say.
    """
    table = None
    if price is not None:
        table = min(token_cost(usage.prompt_tokens, price.input_per_mtok_nano)
                    + token_cost(usage.completion_tokens, price.output_per_mtok_nano), MAX_NANO)
    if usage.provider_cost_nano is not None:
        return usage.provider_cost_nano, table
    return table or 0, table


class Settler:
    """Turns an outcome into its usage record and settles it, once; the outbox carries a settlement
    the store did not answer."""

    def __init__(self, store: Store, outbox: Outbox, leases: Leases | None = None) -> None:
        self._store = store
        self._outbox = outbox
        self._leases = leases
        self.observers: list = []  # called with (outcome, record) after each settlement

    async def settle(self, reservation: Reservation, outcome: Outcome) -> UsageRecord:
        cost, table = charge(outcome.usage, outcome.price)
        now = outcome.ended = time.monotonic()
        record = UsageRecord(
            team=outcome.team, key_id=outcome.key_id, model=outcome.model, provider=outcome.provider,
            prompt_tokens=outcome.usage.prompt_tokens, completion_tokens=outcome.usage.completion_tokens,
            cost_nano=cost, provider_cost_nano=outcome.usage.provider_cost_nano,
            status=outcome.status, latency_ms=int((now - outcome.started) * 1000),
            time_ms=int(time.time() * 1000), day=reservation.hold.day, month=reservation.hold.month,
            request_id=outcome.request_id, table_cost_nano=table,
            endpoint=outcome.call.api if outcome.call else "", attempts=outcome.attempts,
            error_code=outcome.error_code, ttfb_ms=_ttfb_ms(outcome, now), stream=outcome.stream,
            usage_estimated=outcome.usage_estimated,
        )
        ttl_s = reservation.hold.ttl_s
        lease = reservation.lease
        lease_id = lease.id if lease is not None else ""
        try:
            await self._store.settle(reservation.id, record, ttl_s, lease_id)
        except StoreUnavailable:
            self._outbox.settle(reservation.id, record, ttl_s, lease_id)
        except asyncio.CancelledError:  # the answer is lost, not the settlement: it may have run, or not
            self._outbox.settle(reservation.id, record, ttl_s, lease_id)
            raise
        except Exception:  # a bug: the request is answered already; what it held must still go back
            log.exception("settling reservation %s failed; unrecorded usage: %s", reservation.id, record)
            if lease is None:  # a lease's part goes back with the lease
                self._outbox.release(record.team, reservation.id, ttl_s)
        finally:
            if lease is not None and self._leases is not None:
                self._leases.settled(lease, reservation.hold, record.prompt_tokens + record.completion_tokens,
                                     record.cost_nano)
            for observe in self.observers:
                try:
                    observe(outcome, record)
                except Exception:  # runs after the response: a failure here must not reach the client
                    log.exception("a settlement observer failed")
        return record


def _ttfb_ms(outcome: Outcome, now: float) -> int | None:
    """Until the client's first byte: an upstream's first byte is relayed as it comes (a whole body
    is read first), and an error answer is the whole response; a client gone before either got none."""
    if outcome.first_byte_at:
        return int((outcome.first_byte_at - outcome.started) * 1000)
    if outcome.status == 499:
        return None
    return int((now - outcome.started) * 1000)
