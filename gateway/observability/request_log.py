"""Request lines: one JSON object a line on stdout for every request, written off the event loop.

A line is a few hundred bytes of orjson appended to a buffer; a timer hands the buffer to a
writer thread a few times a second, so the event loop never waits on stdout. When stdout
does not keep up (a pipe nobody reads), the buffer stops growing at its bound and the lines
that do not fit are dropped and counted (`gateway_request_log_dropped_total`): a log that
blocks would stop the gateway with it.

The fields are the README's "Logs" table; the admin API's request records use the same names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from gateway.store import UsageRecord

if TYPE_CHECKING:
    from gateway.accounting.settlement import Outcome
    from gateway.auth import Identity
    from gateway.call import Call
    from gateway.errors import GatewayError

log = logging.getLogger("gateway.request_log")
FLUSH_S = 0.2
MAX_BUFFER_BYTES = 8 << 20  # about 25,000 lines: seconds of traffic at full speed
PIPE_BUF = 4096  # a write up to this size reaches a pipe whole, so workers sharing stdout never split a line
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class UtcClock:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, epoch_ms: int) -> str:
        second, milli = divmod(epoch_ms, 1000)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}Z"


def record_fields(record: UsageRecord, clock: UtcClock) -> dict[str, Any]:
    """A settled request as a log line and as the admin API shows it."""
    return {
        "time": clock.iso(record.time_ms), "request_id": record.request_id, "team": record.team or None,
        "key_id": record.key_id or None, "endpoint": record.endpoint or None, "model": record.model or None,
        "provider": record.provider or None, "attempts": record.attempts, "status": record.status,
        "error_code": record.error_code, "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens, "cost_nano": record.cost_nano, "ttfb_ms": record.ttfb_ms,
        "duration_ms": record.latency_ms, "stream": record.stream, "client_left": record.client_left,
        "usage_estimated": record.usage_estimated,
    }


class RequestLog:
    """The request lines of one worker; `settled` is a Settler observer, `refused` the proxy's."""

    def __init__(self, registry: CollectorRegistry, fd: int = 1, flush_s: float = FLUSH_S,
                 max_bytes: int = MAX_BUFFER_BYTES) -> None:
        self._fd = fd
        self._flush_s = flush_s
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._clock = UtcClock()
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._idle = threading.Event()  # the writer has written all it was given
        self._idle.set()
        self._writer: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.dropped = Counter("gateway_request_log_dropped_total",
                               "Request log lines dropped because stdout did not keep up", registry=registry)

    def settled(self, outcome: Outcome, record: UsageRecord) -> None:
        self._add(record_fields(record, self._clock))

    def refused(self, request_id: str, error: GatewayError, identity: Identity | None, call: Call | None,
                started: float) -> None:
        """A request answered before admission: what is known of it."""
        duration_ms = int((time.monotonic() - started) * 1000)
        self._add({
            "time": self._clock.iso(int(time.time() * 1000)), "request_id": request_id,
            "team": identity.team.name or None if identity else None,
            "key_id": identity.key_id or None if identity else None,
            "endpoint": call.api if call else None, "model": call.model if call else None, "provider": None,
            "attempts": 0, "status": error.status, "error_code": error.code or error.type, "prompt_tokens": 0,
            "completion_tokens": 0, "cost_nano": 0, "ttfb_ms": duration_ms, "duration_ms": duration_ms,
            "stream": call.stream if call else False, "client_left": False, "usage_estimated": None,
        })

    def _add(self, line: dict[str, Any]) -> None:
        if len(self._buffer) >= self._max_bytes:
            self.dropped.inc()
            return
        self._buffer += orjson.dumps(line, option=_NEWLINE)

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_chunks, name="request-log", daemon=True)
        self._writer.start()
        self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._tick)

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Write what is buffered, waiting at most `timeout_s` for stdout."""
        if self._timer is not None:
            self._timer.cancel()
        if self._writer is None:
            return
        await asyncio.to_thread(self._idle.wait, timeout_s)
        self._flush()
        self._chunks.put(None)
        await asyncio.to_thread(self._writer.join, timeout_s)
        self._writer = None

    def _tick(self) -> None:
        self._flush()
        self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._tick)

    def _flush(self) -> None:
        # One chunk at a time: while the writer is busy, lines gather here, up to the bound.
        if self._buffer and self._idle.is_set():
            self._idle.clear()
            self._chunks.put(bytes(self._buffer))
            self._buffer.clear()

    def _write_chunks(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            try:
                write_lines(self._fd, chunk)
            except OSError as error:  # stdout closed: nothing to tell but the gateway's own log
                log.warning("request lines could not be written: %s", error)
            finally:
                self._idle.set()


def write_lines(fd: int, chunk: bytes) -> None:
    """Write whole lines, each write at most PIPE_BUF bytes where the lines allow it."""
    view = memoryview(chunk)
    start = 0
    while start < len(chunk):
        end = start + PIPE_BUF
        if end < len(chunk):
            cut = chunk.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else chunk.find(b"\n", end) + 1 or len(chunk)
        else:
            end = len(chunk)
        while start < end:
            start += os.write(fd, view[start:end])
