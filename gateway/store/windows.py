"""The rules both store backends apply alike: the rate window, calendar periods, amounts."""

from __future__ import annotations

import functools
import math
from datetime import date, datetime, timezone

from gateway.money import MAX_NANO

WINDOW_MS = 60_000  # rpm and tpm count what happened in the last minute
# A settled reservation id is remembered (so a second settle records nothing) until the
# reservation would have expired; an id settled after that, for this long.
SETTLED_GRACE_MS = 60_000
# A budget refused only because of requests in flight: they settle within seconds, usually for less.
HELD_RETRY_MS = 1_000
ROUTE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost_nano", "provider_cost_nano")


@functools.lru_cache(maxsize=64)
def next_day_ms(day: str) -> int:
    """Epoch milliseconds of the UTC midnight that ends `day` ("YYYY-MM-DD")."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=timezone.utc)
    return int(start.timestamp()) * 1000 + 86_400_000


@functools.lru_cache(maxsize=64)
def next_month_ms(month: str) -> int:
    """Epoch milliseconds of the UTC instant that ends `month` ("YYYY-MM")."""
    year, number = (int(part) for part in month.split("-"))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return int(datetime(year, number, 1, tzinfo=timezone.utc).timestamp()) * 1000


def check_amounts(*amounts: int) -> None:
    """Refuse what would corrupt held sums and windows: negative amounts, and amounts Redis's
    Lua (doubles) would not hold exactly."""
    for amount in amounts:
        if type(amount) is not int or not 0 <= amount <= MAX_NANO:
            raise ValueError(f"store: amount out of range in {amounts}")


def retry_after_s(wait_ms: float) -> float:
    """Whole seconds a client should wait, at least one (Retry-After takes integers)."""
    return float(max(1, math.ceil(wait_ms / 1000)))
