"""Specifications of the relay on its own: bytes through as they come, and every way a stream can
end after its first byte ends in whole events, with the status settlement needs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from gateway.config import Timeouts
from gateway.upstream.client import Opened
from gateway.upstream.relay import Relay
from gateway.upstream.tap import StreamTap
from providers import PROFILES
from tests.waiting import eventually

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'


class Upstream:
    """What the relay reads: chunks put by the test, then an end (b""), a failure or nothing."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.closed = False

    async def readany(self) -> bytes:
        item = await self.chunks.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def read_nowait(self) -> bytes:
        out = b""
        while not self.chunks.empty():
            item = self.chunks.get_nowait()
            out += item if isinstance(item, bytes) else b""
        return out

    def at_eof(self) -> bool:
        return False  # as an upstream whose end of body has not arrived yet

    @property
    def content(self) -> Upstream:
        return self

    def close(self) -> None:
        self.closed = True


class Client:
    """The ASGI side: what was sent, and a disconnect the test can trigger."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.told_gone = False  # the app has received the disconnect

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        self.told_gone = True
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def ended(self) -> bool:
        return bool(self.sent) and not self.sent[-1].get("more_body", False)


def relay(upstream: Upstream, first: bytes = CHUNK, idle_s: float = 5.0, max_event_bytes: int = 1 << 20,
          finish: bool = False) -> tuple[Relay, StreamTap]:
    opened = Opened(upstream, 200, first, time.monotonic(), time.monotonic())  # type: ignore[arg-type]
    tap = StreamTap(PROFILES["openai"], wants_usage=True, max_event_bytes=max_event_bytes)
    return Relay(opened, tap, Timeouts(idle_s=idle_s), {"x-request-id": "r"}, finish_abandoned=finish), tap


def last_error(client: Client) -> dict[str, Any]:
    return orjson.loads(client.body().rstrip().split(b"\n")[-1][5:])["error"]


async def test_a_stream_passes_through_as_it_came_and_ends_whole() -> None:
    upstream, client = Upstream(), Client()
    for item in (CHUNK, USAGE, b"data: [DONE]\n\n", b""):
        upstream.chunks.put_nowait(item)
    stream, tap = relay(upstream)
    end = await stream.run(client.receive, client.send)
    assert end.status == 200 and client.ended() and upstream.closed
    assert client.body() == CHUNK * 2 + USAGE + b"data: [DONE]\n\n"
    assert (tap.usage.prompt_tokens, tap.usage.completion_tokens, tap.deltas) == (3, 2, 2)


async def test_the_stream_ends_for_the_client_at_its_last_event_though_the_upstream_lingers() -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(USAGE + b"data: [DONE]\n\n")  # and then nothing, not even its end
    stream, _ = relay(upstream, idle_s=30)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(client.ended, 1, "the client's response ended")
    assert client.body() == CHUNK + USAGE + b"data: [DONE]\n\n"
    end = await asyncio.wait_for(running, 2)  # the upstream's rest is waited for briefly, then its connection closed
    assert end.status == 200 and upstream.closed


async def test_a_shutdown_while_the_upstreams_rest_is_read_leaves_the_answer_whole() -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(b"data: [DONE]\n\n")  # and then nothing
    stream, _ = relay(upstream, idle_s=30)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(client.ended, 1, "the client's response ended")
    running.cancel()  # the server's shutdown, past its grace period
    end = await asyncio.wait_for(running, 1)
    assert end.status == 200 and upstream.closed and b"error" not in client.body()


async def test_what_follows_the_last_event_is_read_for_the_connection_but_not_relayed() -> None:
    upstream, client = Upstream(), Client()
    for item in (b"data: [DONE]\n\n", b'data: {"choices":[]}\n\n', b""):
        upstream.chunks.put_nowait(item)
    end = await relay(upstream)[0].run(client.receive, client.send)
    assert end.status == 200 and client.body() == CHUNK + b"data: [DONE]\n\n"
    assert upstream.chunks.empty()  # read to its end: a real connection goes back to the pool


async def test_a_client_that_leaves_after_the_last_event_had_its_whole_answer() -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(b"data: [DONE]\n\n")
    stream, _ = relay(upstream)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(lambda: client.body().endswith(b"[DONE]\n\n"), 1, "the last event delivered")
    client.gone.set()  # as the OpenAI SDK does at [DONE], before the upstream's end of body
    end = await asyncio.wait_for(running, 2)
    assert end.status == 200


class EndAtFlush(StreamTap):
    """A tap whose client-facing last event is made at the end (as chat translated to Responses)."""

    def flush(self) -> bytes:
        return super().flush() + b"event: response.completed\ndata: {}\n\n"


@pytest.mark.parametrize(("tap", "status", "stored"), [(StreamTap, 200, True), (EndAtFlush, 499, False)])
async def test_a_client_leaving_while_the_answer_is_stored_is_gone_only_if_its_last_event_was_still_to_go(
        tap: type[StreamTap], status: int, stored: bool) -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(b"data: [DONE]\n\n")
    storing, may_finish, finished = asyncio.Event(), asyncio.Event(), []

    async def store() -> None:
        storing.set()
        await may_finish.wait()
        finished.append(True)

    opened = Opened(upstream, 200, CHUNK, time.monotonic(), time.monotonic())  # type: ignore[arg-type]
    stream = Relay(opened, tap(PROFILES["openai"], wants_usage=True), Timeouts(), {}, before_end=store)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await asyncio.wait_for(storing.wait(), 1)
    client.gone.set()
    await eventually(lambda: client.told_gone, 1, "the disconnect received")
    may_finish.set()
    end = await asyncio.wait_for(running, 2)
    assert end.status == status and bool(finished) == stored


async def test_an_idle_upstream_ends_the_stream_with_a_timeout_event() -> None:
    upstream, client = Upstream(), Client()
    stream, tap = relay(upstream, idle_s=0.1)
    end = await stream.run(client.receive, client.send)
    assert end.status == 504 and client.ended() and last_error(client)["code"] == "upstream_timeout"
    assert tap.deltas == 1  # what was delivered is what is billed


async def test_a_broken_upstream_ends_the_stream_with_an_error_event() -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(ConnectionResetError("reset by peer"))
    end = await relay(upstream)[0].run(client.receive, client.send)
    assert end.status == 502 and last_error(client)["code"] == "upstream_error"


async def test_an_event_past_its_cap_ends_the_stream_with_an_error_event() -> None:
    upstream, client = Upstream(), Client()
    upstream.chunks.put_nowait(b"data: " + b"x" * 5000)
    end = await relay(upstream, max_event_bytes=1024)[0].run(client.receive, client.send)
    assert end.status == 502 and "too large" in last_error(client)["message"] and len(client.body()) < 2048


async def test_a_client_that_leaves_closes_the_upstream_at_once_and_is_settled_as_499() -> None:
    upstream, client = Upstream(), Client()
    stream, _ = relay(upstream)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(lambda: client.body(), 1, "the first chunk delivered")
    client.gone.set()
    end = await asyncio.wait_for(running, 1)
    assert end.status == 499 and upstream.closed and not client.ended()


async def test_a_client_that_leaves_a_provider_billing_anyway_is_read_on_to_its_usage() -> None:
    upstream, client = Upstream(), Client()
    stream, tap = relay(upstream, finish=True)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(lambda: client.body(), 1, "the first chunk delivered")
    client.gone.set()
    for item in (CHUNK, USAGE, b""):
        upstream.chunks.put_nowait(item)
    end = await asyncio.wait_for(running, 1)
    assert end.status == 499 and tap.usage is not None and tap.usage.completion_tokens == 2


async def test_a_shutdown_ends_the_stream_with_an_event_saying_so_and_cancels_on() -> None:
    upstream, client = Upstream(), Client()
    stream, tap = relay(upstream)
    running = asyncio.create_task(stream.run(client.receive, client.send))
    await eventually(lambda: client.body(), 1, "the first chunk delivered")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert client.ended() and last_error(client)["code"] == "gateway_shutdown" and upstream.closed
    assert client.body().startswith(CHUNK) and tap.deltas == 1
