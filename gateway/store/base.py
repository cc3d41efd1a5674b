"""The store protocol and the values that cross it.

Admission and settlement are each one atomic call: the hot path never makes more
than one store round trip at either end of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.ids import new_id
from gateway.store.windows import SETTLED_GRACE_MS, retry_after_s

SETTLED_GRACE_S = SETTLED_GRACE_MS / 1000


class StoreUnavailable(Exception):
    """The store did not answer in time or refused the connection."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A team's policy as the store enforces it; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    budget_day_nano: int | None = None
    budget_month_nano: int | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request asks to reserve at admission: its worst case, under an id the gateway chose."""

    team: str
    tokens: int
    cost_nano: int
    day: str  # UTC calendar day, "YYYY-MM-DD"
    month: str  # UTC calendar month, "YYYY-MM"
    ttl_s: float = 600.0  # a reservation left by a crashed gateway expires after this
    # The least `tokens` may shrink to against tpm when the minute has less left (the prompt's bound):
    # set when the output part is no client's limit, since tpm is a rate, not money. None: all of it.
    tpm_floor: int | None = None
    # Chosen before the call, so that a reservation whose answer was lost can still be released.
    reservation_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True)
class LeaseAsk:
    """A block of admissions asked for in place of one request's reservation: `slots` requests
    and `tokens`, `cost_nano` in all, handed out by the gateway for `life_s` without asking again.

    Granted only while the team, the lease included, is within half of every limit; else the
    request is reserved alone, as asked (or refused as "lease" when `only`).
    """

    slots: int
    tokens: int
    cost_nano: int
    life_s: float
    only: bool = False  # a renewal: the lease or nothing


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `Store.admit`.

    When refused, `refused_by` says why and nothing was reserved: "rpm", "tpm";
    "budget_day" or "budget_month" when what is spent leaves no room for this request;
    "budget_day_held" or "budget_month_held" when only requests in flight are in the way
    (they may settle for less); "released" when the id was released or settled before
    this admission ran. Remaining/reset figures feed the x-ratelimit-* headers.
    """

    admitted: bool
    reservation_id: str | None = None
    refused_by: str | None = None
    retry_after_s: float = 0.0
    requests_remaining: int | None = None
    tokens_remaining: int | None = None
    requests_reset_s: float = 0.0
    tokens_reset_s: float = 0.0
    lease_slots: int = 0  # a lease was granted, of this many requests (its id: reservation_id)


def refused(limit: str, wait_ms: float, limits: Limits, requests: int = 0, counted_tokens: int = 0) -> Admission:
    """A refusal, with the figures of the rate limit that refused for its x-ratelimit-* headers."""
    retry = retry_after_s(wait_ms)
    if limit == "rpm" and limits.rpm is not None:
        return Admission(False, refused_by=limit, retry_after_s=retry,
                         requests_remaining=max(limits.rpm - requests, 0), requests_reset_s=retry)
    if limit == "tpm" and limits.tpm is not None:
        return Admission(False, refused_by=limit, retry_after_s=retry,
                         tokens_remaining=max(limits.tpm - counted_tokens, 0), tokens_reset_s=retry)
    return Admission(False, refused_by=limit, retry_after_s=retry)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one request actually used, written once at settlement."""

    team: str
    key_id: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int  # what is charged to the team
    provider_cost_nano: int | None  # what the provider said it cost, when it says
    status: int  # HTTP status the client saw (499 for a client that went away)
    latency_ms: int
    time_ms: int  # UTC wall clock, milliseconds since the epoch
    day: str  # UTC day the spend counts against, "YYYY-MM-DD"
    month: str
    request_id: str = ""
    table_cost_nano: int | None = None  # tokens x the route's price, kept beside the provider's figure
    # What happened to the request, for a lookup by id; records written before these existed read
    # with the defaults.
    endpoint: str = ""  # "chat" | "completions" | "embeddings"
    attempts: int = 1  # upstream attempts; more than one means a retry or a fallback
    error_code: str | None = None  # the OpenAI error `code` the client got, when it got an error
    ttfb_ms: int | None = None  # until the client's first byte; None when it got none
    stream: bool = False
    usage_estimated: str | None = None  # "absent" | "invalid" | "cut": the gateway counted the tokens billed

    @property
    def client_left(self) -> bool:
        """The client went away before its answer was over (HTTP 499)."""
        return self.status == 499


@dataclass(slots=True)
class DailyUsage:
    """One team's totals for one UTC day, by model and provider."""

    day: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nano: int = 0
    provider_cost_nano: int = 0
    # "model|provider" -> {"requests", "prompt_tokens", "completion_tokens", "cost_nano", "provider_cost_nano"}
    by_route: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored: only its hash, never the key itself."""

    key_id: str
    key_hash: str
    team: str
    name: str
    created_ms: int
    revoked: bool = False


class Store(Protocol):
    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        """Reserve one request, `hold.tokens` and `hold.cost_nano` atomically, or nothing.

        Under `hold.reservation_id`: admitting a live reservation's id again holds nothing
        more; an id already released or settled is refused ("released"), so an admission
        that reaches the store after the gateway gave up on it reserves nothing. With
        `lease`, the store may reserve the lease instead (`Admission.lease_slots`); a store
        that does not lease ignores it.
        """

    async def release(self, team: str, reservation_id: str, ttl_s: float, unused: tuple[int, int] = (1, 1)) -> bool:
        """Give back a reservation the gateway gave up on (no answer came, or its client left
        while it was made), or a lease it is done with, recording nothing; True when it held something.

        The id is remembered for `ttl_s`, so an admission carrying it that runs later (it
        was still queued at the store) reserves nothing. `unused`: the first and last of a
        lease's slots no request took, which leave the rpm window.
        """

    async def settle(self, reservation_id: str, usage: UsageRecord, ttl_s: float = SETTLED_GRACE_S,
                     lease_id: str = "") -> bool:
        """Replace a reservation with actual usage, atomically; True the first time only.

        "First" holds within the reservation's lifetime; an id that is unknown (admitted
        while the store was down, or expired already) is recorded and remembered for
        `ttl_s`, so a retried settlement is not counted twice. The store keeps no
        per-request key longer than that. A request admitted from a lease settles under
        its own id and `lease_id`: what it used leaves the lease's holds.
        """

    async def spend(self, team: str, day: str, month: str) -> tuple[int, int]:
        """Settled plus in-flight nano-dollars for the day and the month."""

    async def usage(self, team: str, first_day: str, last_day: str) -> list[DailyUsage]:
        """Daily totals for each day in the inclusive range that has any."""

    async def records(self, team: str | None = None, count: int = 100, since_ms: int = 0) -> list[UsageRecord]:
        """The newest per-request records, newest first; none settled before `since_ms` (epoch ms)."""

    async def find_record(self, request_id: str, team: str | None = None, since_ms: int = 0,
                          max_scanned: int = 100_000) -> UsageRecord | None:
        """The record of one request, looked for newest first in `team`'s records or every team's.

        Records carry no index by id (that would be a second write per request): the search
        reads back to `since_ms` and gives up after `max_scanned` records.
        """

    async def add_key(self, record: KeyRecord) -> None: ...

    async def lookup_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this hash, unless revoked: one read, for a key this process does not know yet."""

    async def revoke_key(self, key_id: str) -> bool: ...

    async def keys(self, team: str | None = None) -> list[KeyRecord]: ...

    async def keys_version(self) -> int:
        """A number that changes whenever a key is added or revoked (cheap to poll)."""

    async def put_response(self, team: str, response_id: str, record: bytes, ttl_s: float) -> None:
        """Keep a Responses answer's record (gateway.responses.stored) for `ttl_s`, as the team's."""

    async def get_response(self, team: str, response_id: str) -> bytes | None:
        """The team's record of that response; None when absent, expired or another team's."""

    async def delete_response(self, team: str, response_id: str) -> bool: ...

    async def publish_config(self, text: str) -> int:
        """Make `text` the config every worker runs; its version, one above the last."""

    async def config_version(self) -> int:
        """The version of the last published config; 0 before any (cheap to poll)."""

    async def published_config(self) -> tuple[int, str] | None:
        """The last published config and its version; None before any."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def close(self) -> None: ...
