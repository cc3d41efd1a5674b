"""The store protocol and the values that cross it.

Admission and settlement are each one atomic call: the hot path never makes more
than one store round trip at either end of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
    """What one request asks to reserve at admission: its worst case."""

    team: str
    tokens: int
    cost_nano: int
    day: str  # UTC calendar day, "YYYY-MM-DD"
    month: str  # UTC calendar month, "YYYY-MM"
    ttl_s: float = 600.0  # a reservation left by a crashed gateway expires after this


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to `Store.admit`.

    When refused, `refused_by` is one of "rpm", "tpm", "budget_day", "budget_month"
    and nothing was reserved. Remaining/reset figures feed the x-ratelimit-* headers.
    """

    admitted: bool
    reservation_id: str | None = None
    refused_by: str | None = None
    retry_after_s: float = 0.0
    requests_remaining: int | None = None
    tokens_remaining: int | None = None
    requests_reset_s: float = 0.0
    tokens_reset_s: float = 0.0


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
    async def admit(self, hold: Hold, limits: Limits) -> Admission:
        """Reserve one request, `hold.tokens` and `hold.cost_nano` atomically, or nothing."""

    async def settle(self, reservation_id: str | None, usage: UsageRecord) -> bool:
        """Replace a reservation with actual usage, atomically; True the first time only.

        "First" holds within the reservation's lifetime (and a minute past it for a late
        settle); the store keeps no per-request key longer than that.

        With `reservation_id` None (admitted while the store was down) the usage is
        recorded without a reservation to release.
        """

    async def spend(self, team: str, day: str, month: str) -> tuple[int, int]:
        """Settled plus in-flight nano-dollars for the day and the month."""

    async def usage(self, team: str, first_day: str, last_day: str) -> list[DailyUsage]:
        """Daily totals for each day in the inclusive range that has any."""

    async def records(self, team: str | None = None, count: int = 100) -> list[UsageRecord]:
        """The newest per-request records, newest first."""

    async def add_key(self, record: KeyRecord) -> None: ...

    async def revoke_key(self, key_id: str) -> bool: ...

    async def keys(self, team: str | None = None) -> list[KeyRecord]: ...

    async def keys_version(self) -> int:
        """A number that changes whenever a key is added or revoked (cheap to poll)."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def close(self) -> None: ...
