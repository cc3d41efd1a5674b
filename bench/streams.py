"""Streaming measurements with an aiohttp client that timestamps the first byte and every chunk.

wrk and hey see only whole responses; a stream's figures are its time to first byte
(TTFB: from sending the request to the first body bytes), the gaps between chunks,
and whether it ended with `data: [DONE]`. Two loads: streams started at a fixed rate
(open loop: each start is scheduled, whatever the earlier ones are doing), and a number
of streams all held open at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import uvloop

from bench.fixed_rate import percentile

_MAX_ERRORS_KEPT = 5


@dataclass(slots=True)
class StreamRecord:
    ok: bool
    ttfb_s: float
    duration_s: float
    gaps_s: list[float]
    events: int
    error: str = ""


@dataclass(slots=True)
class StreamRun:
    """Figures of a set of streams; times in milliseconds."""

    streams: int
    ok: int
    errors: int
    error_samples: list[str]
    ttfb_p50_ms: float
    ttfb_p90_ms: float
    ttfb_p99_ms: float
    gap_p50_ms: float
    gap_p99_ms: float
    duration_p50_ms: float
    most_open: int  # the most streams open at one moment
    offered_per_s: float = 0.0
    extra: dict = field(default_factory=dict)


class _Counter:
    """Streams whose first bytes have arrived and whose end has not: those the server holds open."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0

    def flowing(self) -> None:
        self.open += 1
        self.most = max(self.most, self.open)

    def ended(self) -> None:
        self.open -= 1


async def _one_stream(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                      expect_events: int, counter: _Counter) -> StreamRecord:
    started = time.perf_counter()
    arrivals: list[float] = []
    events = 0
    done = False
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                text = (await response.read())[:200].decode(errors="replace")
                return StreamRecord(False, 0.0, time.perf_counter() - started, [], 0, f"{response.status} {text}")
            async for chunk in response.content.iter_any():
                arrivals.append(time.perf_counter())
                if len(arrivals) == 1:
                    counter.flowing()
                events += chunk.count(b"data:")
                if b"data: [DONE]" in chunk:
                    done = True
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return StreamRecord(False, 0.0, time.perf_counter() - started, [], events, f"{type(exc).__name__} {exc}")
    finally:
        if arrivals:
            counter.ended()
    ended = time.perf_counter()
    if not arrivals:
        return StreamRecord(False, 0.0, ended - started, [], 0, "no body")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    ok = done and (expect_events <= 0 or events >= expect_events)
    error = "" if ok else f"ended after {events} events{' without [DONE]' if not done else ''}"
    return StreamRecord(ok, arrivals[0] - started, ended - started, gaps, events, error)


def _summarise(records: list[StreamRecord], most_open: int, offered: float = 0.0) -> StreamRun:
    good = [r for r in records if r.ok]
    ttfb = sorted(r.ttfb_s * 1000 for r in good)
    gaps = sorted(g * 1000 for r in good for g in r.gaps_s)
    durations = sorted(r.duration_s * 1000 for r in good)
    errors = [r.error for r in records if not r.ok]
    return StreamRun(
        streams=len(records), ok=len(good), errors=len(errors), error_samples=errors[:_MAX_ERRORS_KEPT],
        ttfb_p50_ms=percentile(ttfb, 50), ttfb_p90_ms=percentile(ttfb, 90), ttfb_p99_ms=percentile(ttfb, 99),
        gap_p50_ms=percentile(gaps, 50), gap_p99_ms=percentile(gaps, 99),
        duration_p50_ms=percentile(durations, 50), most_open=most_open, offered_per_s=offered)


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300),
                                 auto_decompress=False)


def _headers(key: str) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


async def _at_rate(url: str, body: bytes, key: str, rate: float, seconds: float, expect_events: int) -> StreamRun:
    counter = _Counter()
    async with _session(0) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i in range(max(int(rate * seconds), 1)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one_stream(session, url, body, _headers(key), expect_events,
                                                         counter)))
        records = await asyncio.gather(*tasks)
    return _summarise(list(records), counter.most, rate)


def streams_at_rate(url: str, body: bytes, key: str, *, rate: float, seconds: float,
                    expect_events: int = 0) -> StreamRun:
    """Start `rate` streams a second for `seconds` and wait for all of them to end."""
    return uvloop.run(_at_rate(url, body, key, rate, seconds, expect_events))


async def _hold(url: str, body: bytes, key: str, count: int, ramp_s: float, expect_events: int,
                when_all_open: Callable[[], dict]) -> StreamRun:
    counter = _Counter()
    async with _session(0) as session:
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(_one_stream(session, url, body, _headers(key), expect_events,
                                                         counter)))
            if ramp_s > 0:
                await asyncio.sleep(ramp_s / count)
        # Give the last streams time to be answered before measuring them all open.
        deadline = asyncio.get_running_loop().time() + 10
        while counter.open < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        seen_open = counter.open
        measured = await asyncio.get_running_loop().run_in_executor(None, when_all_open)
        records = await asyncio.gather(*tasks)
    run = _summarise(list(records), counter.most)
    run.extra = {"open_when_measured": seen_open, **measured}
    return run


def hold_streams(url: str, body: bytes, key: str, *, count: int, ramp_s: float, expect_events: int,
                 when_all_open: Callable[[], dict]) -> StreamRun:
    """Open `count` streams over `ramp_s`, call `when_all_open` while all are open, wait for their ends."""
    return uvloop.run(_hold(url, body, key, count, ramp_s, expect_events, when_all_open))
