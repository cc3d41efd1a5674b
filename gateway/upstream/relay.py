"""Relaying an upstream SSE stream to the client: bytes in, bytes out, disconnect cancels.

Starlette's StreamingResponse applied to an upstream: it sends what arrives as it
arrives, closes the upstream as soon as the client goes away (or, for a provider that
bills abandoned requests anyway, reads on to its usage), and ends a stream that times
out after its first byte with an error event the OpenAI SDK raises.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import orjson
from starlette.types import Receive, Scope, Send

from gateway.config import Timeouts
from gateway.upstream.client import Opened
from gateway.upstream.tap import StreamTap


@dataclass(slots=True)
class StreamEnd:
    """How a relayed stream ended, for settlement."""

    status: int  # 200, 499 when the client went away, 504/502 when the upstream failed mid-stream
    tap: StreamTap
    ended_at: float


class RelayResponse:
    def __init__(self, opened: Opened, tap: StreamTap, timeouts: Timeouts, headers: dict[str, str],
                 on_end: Callable[[StreamEnd], Awaitable[None]], finish_abandoned: bool = False) -> None:
        self._opened = opened
        self._tap = tap
        self._timeouts = timeouts
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._on_end = on_end
        self._finish_abandoned = finish_abandoned
        self._client_gone = False
        self._delivering = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        watcher = asyncio.create_task(self._watch_disconnect(receive, relay))
        try:
            status = await self._deliver(send, relay)
            if status == 499:
                await self._read_abandoned()
        finally:
            watcher.cancel()
            self._opened.response.close()
        await self._on_end(StreamEnd(status, self._tap, time.monotonic()))

    async def _deliver(self, send: Send, relay: asyncio.Task) -> int:
        """The stream to the client: its status, 499 when the client left before the end."""
        self._delivering = True
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"), *self._headers]})
            return await self._pump(send)
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            relay.uncancel()
            return 499
        except OSError:  # the client's socket broke under a send
            return 499
        finally:
            self._delivering = False  # from here on a disconnect must not cancel the reading of the rest

    async def _read_next(self) -> bytes:
        """The upstream's next bytes (b"" at its end), within the idle and total timeouts."""
        t = self._timeouts
        deadline = self._opened.started + t.total_s
        async with asyncio.timeout(min(t.idle_s, max(deadline - time.monotonic(), 0.001))):
            return await self._opened.response.content.readany()

    async def _pump(self, send: Send) -> int:
        chunk = self._opened.first
        while chunk:
            out = self._tap.feed(chunk)
            if out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
            try:
                chunk = await self._read_next()
            except TimeoutError:
                past_total = time.monotonic() >= self._opened.started + self._timeouts.total_s
                which = "total" if past_total else "idle"
                await self._send_error(send, f"the upstream stream hit its {which} timeout", "upstream_timeout")
                return 504
            except Exception as exc:  # the upstream connection broke mid-stream
                await self._send_error(send, f"the upstream stream broke: {type(exc).__name__}", "upstream_error")
                return 502
        rest = self._tap.flush()
        await send({"type": "http.response.body", "body": rest, "more_body": False})
        return 200

    async def _read_abandoned(self) -> None:
        """Take in what the upstream sent that the client will never get: it is billed.

        Closing, that is what already arrived; finishing, the rest of the stream up to its
        usage, within the stream's own idle and total timeouts.
        """
        await asyncio.sleep(0)  # let bytes already read off the socket reach the stream reader
        try:
            arrived = self._opened.response.content.read_nowait()
        except Exception:
            return
        if arrived:
            self._tap.feed(arrived)
        if not self._finish_abandoned:
            return
        while self._tap.usage is None:
            try:
                chunk = await self._read_next()
            except Exception:  # timed out or broke: what was counted is what is billed
                return
            if not chunk:
                return
            self._tap.feed(chunk)

    async def _send_error(self, send: Send, message: str, kind: str) -> None:
        error = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
        body = b"data: " + orjson.dumps(error) + b"\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _watch_disconnect(self, receive: Receive, relay: asyncio.Task) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_gone = True
                if self._delivering:
                    relay.cancel()
                return
