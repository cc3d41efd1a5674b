"""The UTC calendar periods that budgets and usage reports count in."""

from __future__ import annotations

import time


def utc_periods(now: float | None = None) -> tuple[str, str]:
    """The UTC day and month ("YYYY-MM-DD", "YYYY-MM") that spend at `now` counts against."""
    second = int(time.time() if now is None else now)
    if second != _last[0]:  # every request asks: the strings are made once a second
        t = time.gmtime(second)
        _last[:] = [second, (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", f"{t.tm_year:04d}-{t.tm_mon:02d}")]
    return _last[1]


_last: list = [None, None]  # [the UTC second, its periods]
