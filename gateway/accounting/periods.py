"""The UTC calendar periods that budgets and usage reports count in."""

from __future__ import annotations

import time


def utc_periods(now: float | None = None) -> tuple[str, str]:
    """The UTC day and month ("YYYY-MM-DD", "YYYY-MM") that spend at `now` counts against."""
    t = time.gmtime(now)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"{t.tm_year:04d}-{t.tm_mon:02d}"
