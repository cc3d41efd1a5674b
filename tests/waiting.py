"""Waiting in tests: for a condition, with a deadline; never for a fixed time.

`wait_until` and `eventually` return the condition's first true value, or fail naming
what never happened. `holds_for` is the one time-based check: that something stays
true (nothing more arrives, a count stays put) over a stated window.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float = 5.0, what: str = "the condition",
               interval_s: float = 0.02) -> T:
    """Poll `condition` until it is truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s (last seen: {value!r})")
        time.sleep(interval_s)


async def eventually(condition: Callable[[], Any], timeout_s: float = 5.0, what: str = "the condition",
                     interval_s: float = 0.01) -> Any:
    """`wait_until` for the event loop; `condition` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s (last seen: {value!r})")
        await asyncio.sleep(interval_s)


def holds_for(condition: Callable[[], object], seconds: float, what: str = "the condition",
              interval_s: float = 0.02) -> None:
    """Fail as soon as `condition` is false within the next `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"{what} stopped holding"
        time.sleep(interval_s)


async def keeps_holding(condition: Callable[[], Awaitable[object] | object], seconds: float,
                        what: str = "the condition", interval_s: float = 0.01) -> None:
    """`holds_for` for the event loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        assert value, f"{what} stopped holding"
        await asyncio.sleep(interval_s)
