"""The upstream HTTP/1.1 client: kept-alive connections, answers read as they arrive, and nothing of
one answer ever read as part of another's."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.upstream import http
from gateway.upstream.http import BrokenAnswer, Pool, Unreachable, target
from tests.store.deployments import make_certificates
from tests.waiting import eventually, keeps_holding

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ANSWER = b'{"ok":true}'


class Upstream:
    """A raw loopback server: each connection handled by `handler`, connections counted."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls = handler, tls
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


def whole(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)


def replying(raw: bytes) -> Handler:
    """A handler that reads one request, writes `raw` (whatever it is) and closes the connection."""
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
    return reply


async def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:  # keep-alive: every request on the connection answered
        await read_request(reader)
        writer.write(whole(ANSWER))
        await writer.drain()


async def send(pool: Pool, url: str, body: bytes = b"{}") -> http.Answer:
    where = target(url)
    connection = await pool.connection(where.origin, 2.0)
    answer = connection.request(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        where.path, where.host_header, len(body), body), where.origin[1])
    async with asyncio.timeout(5):
        await answer.head()
    return answer


async def read_all(answer: http.Answer) -> bytes:
    parts = []
    async with asyncio.timeout(5):
        while chunk := await answer.readany():
            parts.append(chunk)
    return b"".join(parts)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    made = Pool()
    yield made
    made.close()


async def test_answers_read_to_their_end_leave_the_connection_for_the_next_request(pool: Pool) -> None:
    async with Upstream(answering) as upstream:
        for _ in range(3):
            answer = await send(pool, upstream.url)
            assert (answer.status, answer.headers["content-type"], await read_all(answer)) == (
                200, "application/json", ANSWER)
        assert upstream.connections == 1


async def test_an_answer_left_unread_closes_its_connection_so_no_one_reads_its_rest(pool: Pool) -> None:
    served = []

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            served.append(1)
            if len(served) == 1:  # the first answer's rest would come later, on this connection
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part")
                await writer.drain()
                await reader.read()
                return
            writer.write(whole(ANSWER))
            await writer.drain()

    async with Upstream(slow_first) as upstream:
        first = await send(pool, upstream.url)
        first.close()  # the client went away, say
        assert await read_all(await send(pool, upstream.url)) == ANSWER
        assert upstream.connections == 2


async def test_a_chunked_answer_and_one_that_ends_with_its_connection_are_read_whole(pool: Pool) -> None:
    chunked = replying(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    until_close = replying(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
    for handler, expected in ((chunked, b"hello world"), (until_close, b"all of it")):
        async with Upstream(handler) as upstream:
            assert await read_all(await send(pool, upstream.url)) == expected


async def test_bytes_that_are_not_http_or_a_head_without_end_break_the_answer(pool: Pool,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = replying(b"<html>\x00\x01 not a status line\r\n\r\n")

    async def endless_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(10_000):
            writer.write(b"x-filler-%d: %s\r\n" % (n, b"y" * 100))
            await writer.drain()

    monkeypatch.setattr(http, "MAX_HEAD_BYTES", 16_384)
    async with Upstream(garbage) as upstream:
        with pytest.raises(BrokenAnswer, match="not valid HTTP"):
            await send(pool, upstream.url)
    async with Upstream(endless_head) as upstream:
        with pytest.raises(BrokenAnswer, match="headers passed 16384 bytes"):
            await send(pool, upstream.url)


async def test_an_upstream_gone_mid_answer_breaks_it_instead_of_ending_it(pool: Pool) -> None:
    cut = replying(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
    async with Upstream(cut) as upstream:
        answer = await send(pool, upstream.url)
        with pytest.raises(BrokenAnswer, match="closed the connection"):
            await read_all(answer)


async def test_an_unread_answer_past_the_buffer_stops_the_socket_until_it_is_read(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_BUFFERED", 64 * 1024)
    size = 4 << 20

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()  # blocks while the gateway does not read

    async with Upstream(flood) as upstream:
        answer = await send(pool, upstream.url)
        await eventually(lambda: answer._buffered >= 64 * 1024, what="the buffer filling")  # noqa: SLF001
        # Held there, not the whole 4 MiB: the socket is not read until the answer is.
        await keeps_holding(lambda: answer._buffered < 64 * 1024 + 2 * 65536, 0.3,  # noqa: SLF001
                            what="reading paused")
        assert len(await read_all(answer)) == size


async def test_a_connection_idle_past_its_time_or_closed_by_the_upstream_is_not_reused(
        pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(whole(ANSWER))
        await writer.drain()
        await reader.read()  # until the gateway closes its end

    answer_then_close = replying(whole(ANSWER, b"connection: keep-alive"))  # and then closes after all

    async with Upstream(one_answer) as upstream:
        await read_all(await send(pool, upstream.url))
        monkeypatch.setattr(http, "IDLE_S", 0.0)
        await read_all(await send(pool, upstream.url))
        assert upstream.connections == 2
    monkeypatch.setattr(http, "IDLE_S", 30.0)
    async with Upstream(answer_then_close) as upstream:
        await read_all(await send(pool, upstream.url))
        [kept] = pool._idle[target(upstream.url).origin]  # noqa: SLF001
        await eventually(lambda: kept.closed, what="the upstream's close reaching the gateway")
        assert await read_all(await send(pool, upstream.url)) == ANSWER
        assert upstream.connections == 2


async def test_tls_is_verified_against_the_trusted_authorities(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_certificates(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(files["cert"], files["key"])
    async with Upstream(answering, tls=served) as upstream:
        untrusting = Pool()
        with pytest.raises(Unreachable, match="TLS handshake failed"):
            await send(untrusting, upstream.url)
        untrusting.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(files["ca"]))  # an internal CA, trusted as a deployment would
        trusting = Pool()
        try:
            assert await read_all(await send(trusting, upstream.url)) == ANSWER
        finally:
            trusting.close()


def test_a_url_is_taken_apart_into_where_to_connect_and_what_to_ask() -> None:
    assert target("https://api.example.com/v1/chat/completions?api-version=2") == http.Target(
        ("https", "api.example.com", 443), b"api.example.com", b"/v1/chat/completions?api-version=2")
    assert target("http://[::1]:8000/v1").origin == ("http", "::1", 8000)
    assert target("http://[::1]:8000/v1").host_header == b"[::1]:8000"
    with pytest.raises(ValueError):
        target("ftp://example.com/x")
