"""Relaying an upstream SSE stream to the client: bytes in, bytes out, disconnect cancels.

Starlette's StreamingResponse applied to an upstream: it sends what arrives as it
arrives, closes the upstream as soon as the client goes away (or, for a provider that
bills abandoned requests anyway, reads on to its usage), and ends a stream that fails
after its first byte (a timeout, a broken connection, an event past its size, a
shutdown) with an error event the OpenAI SDK raises, never with a cut body.

A stream is over for the client at its last event (`data: [DONE]`, a Responses stream's
final event), not at the upstream's end of body: clients close on that event, often before
the upstream's last bytes arrive, and have had the whole answer; an upstream that lingers
after it is neither waited for nor relayed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import Receive, Send

from gateway.config import Timeouts
from gateway.upstream.client import Opened
from gateway.upstream.tap import EventTooLarge

SHUTDOWN = 503  # the status a stream cut by the gateway's own shutdown is settled under
# After the last event, what the upstream still sends (the end of a chunked body, mostly here
# already) is read so that its connection can carry the next request; this much, at most.
REST_S = 0.5
MAX_REST_BYTES = 64 << 10


class Tap(Protocol):
    """What the relay needs of a stream's reader (gateway.upstream.tap, or a translating one)."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def failure(self, message: str, kind: str) -> bytes: ...

    @property
    def complete(self) -> bool:
        """The stream's last event has passed: the client has the whole answer."""
        ...


@dataclass(slots=True)
class StreamEnd:
    """How a relayed stream ended, for settlement."""

    # 200; 499 when the client went away; 504/502 when the upstream failed mid-stream; 503 at shutdown
    status: int
    ended_at: float


class Relay:
    """One stream from an upstream to a client. `started` tells whether the client has a response."""

    def __init__(self, opened: Opened, tap: Tap, timeouts: Timeouts, headers: dict[str, str],
                 finish_abandoned: bool = False, before_end: Callable[[], Awaitable[None]] | None = None) -> None:
        self._opened = opened
        self._tap = tap
        self._timeouts = timeouts
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self._finish_abandoned = finish_abandoned
        self._before_end = before_end  # awaited before the stream's last bytes go out
        self._client_gone = False
        self._delivering = False
        self._delivered_last = False  # the client has the stream's last event
        self.started = False
        self.finished = False
        self.error_code: str | None = None  # the code of the error event that ended the stream, if any

    async def run(self, receive: Receive, send: Send) -> StreamEnd:
        """Deliver the stream; at a shutdown's cancellation, end it with an error event and re-raise."""
        relay = asyncio.current_task()
        assert relay is not None
        watcher = asyncio.create_task(self._watch_disconnect(receive, relay))
        try:
            status = await self._deliver(send, relay)
            if status == 499:
                await self._read_abandoned()
            elif status == 200 and self._tap.complete:
                await self._read_rest()
        finally:
            watcher.cancel()
            self._opened.response.close()
        return StreamEnd(status, time.monotonic())

    async def _deliver(self, send: Send, relay: asyncio.Task) -> int:
        """The stream to the client: its status, 499 when the client left before the end."""
        self._delivering = True
        try:
            self.started = True
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"), *self._headers]})
            return await self._pump(send)
        except asyncio.CancelledError:
            if not self._client_gone:
                # The gateway is shutting down (its grace period is over): the client gets an error
                # event, not a cut body, and what was delivered is settled.
                await self.fail(send, "the gateway is shutting down; the stream was cut", "gateway_shutdown")
                raise
            relay.uncancel()
            return self._left()
        except OSError:  # the client's socket broke under a send
            return self._left()
        finally:
            self._delivering = False  # from here on a disconnect must not cancel the reading of the rest

    async def _read_next(self) -> bytes:
        """The upstream's next bytes (b"" at its end), within the idle and total timeouts."""
        t = self._timeouts
        deadline = self._opened.started + t.total_s
        async with asyncio.timeout(min(t.idle_s, max(deadline - time.monotonic(), 0.001))):
            return await self._opened.response.readany()

    async def _pump(self, send: Send) -> int:
        chunk = self._opened.first
        try:
            while chunk:
                out = self._tap.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if self._tap.complete:
                    break
                try:
                    chunk = await self._read_next()
                except TimeoutError:
                    past_total = time.monotonic() >= self._opened.started + self._timeouts.total_s
                    which = "total" if past_total else "idle"
                    await self.fail(send, f"the upstream stream hit its {which} timeout", "upstream_timeout")
                    return 504
                except Exception as exc:  # the upstream connection broke mid-stream
                    await self.fail(send, f"the upstream stream broke: {type(exc).__name__}", "upstream_error")
                    return 502
            rest = self._tap.flush()
        except EventTooLarge as exc:
            await self.fail(send, f"the upstream sent an event too large to relay: {exc} (upstream.max_event_bytes)",
                            "upstream_error")
            return 502
        # From here a client that leaves has had the whole answer, unless its last event is still to go.
        self._delivered_last = self._tap.complete and not rest
        if self._before_end is not None:
            await self._before_end()
        self.finished = True
        await send({"type": "http.response.body", "body": rest, "more_body": False})
        return 200

    def _left(self) -> int:
        """The status of a stream whose client went away: 200 when it had the last event already."""
        return 200 if self._delivered_last else 499

    async def _read_rest(self) -> None:
        """Read what follows the last event, none of it relayed, so the connection can be reused;
        an upstream that sends more, or lingers, has its connection closed instead."""
        response = self._opened.response
        if response.at_eof():
            return
        rest = 0
        try:
            async with asyncio.timeout(REST_S):
                while rest <= MAX_REST_BYTES and (chunk := await response.readany()):
                    rest += len(chunk)
        except asyncio.CancelledError:  # a shutdown: the client has its whole answer, so no 503 for it
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception:
            pass

    async def _read_abandoned(self) -> None:
        """Take in what the upstream sent that the client will never get: it is billed.

        Closing, that is what already arrived; finishing, the rest of the stream up to its
        usage, within the stream's own idle and total timeouts.
        """
        await asyncio.sleep(0)  # let bytes already read off the socket reach the stream reader
        try:
            arrived = self._opened.response.read_nowait()
            if arrived:
                self._tap.feed(arrived)
            while self._finish_abandoned and self._tap.usage is None:
                chunk = await self._read_next()
                if not chunk:
                    return
                self._tap.feed(chunk)
        except Exception:  # timed out, broke, or too large: what was counted is what is billed
            return

    async def fail(self, send: Send, message: str, kind: str) -> None:
        """End the stream with an OpenAI error event; a client already gone is left alone."""
        if self.finished or self._client_gone:
            return
        self.finished = True
        self.error_code = kind
        try:
            await send({"type": "http.response.body", "body": self._tap.failure(message, kind), "more_body": False})
        except OSError:
            pass

    async def _watch_disconnect(self, receive: Receive, relay: asyncio.Task) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_gone = True
                if self._delivering and not self._delivered_last:
                    relay.cancel()
                return
