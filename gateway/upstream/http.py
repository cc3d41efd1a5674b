"""HTTP/1.1 to upstreams: keep-alive connections per origin, answers parsed by httptools as they arrive.

What the gateway asks of an upstream is narrow: a POST with a body, an answer read whole or
streamed. aiohttp's client, used before, cost 60 µs of CPU a request for it; the gateway's call on
this costs 19 µs, deadlines, limits and the answer's JSON included, against 11 for the least an
HTTP/1.1 client does (`python -m bench.upstream_clients`, 16 concurrent). It does what the
gateway needs and no more, on asyncio's own transports (TLS included) and uvicorn's parser,
httptools:

- a request is written in one send (head and body); the connection is reused while the
  upstream keeps it alive and is closed when it has been idle for `IDLE_S`;
- an answer is read as it arrives, with back-pressure: past `MAX_BUFFERED` unread bytes the
  socket is not read until the reader catches up;
- a connection is never reused after an answer that was not read to its end (it is closed):
  no request ever reads the rest of another's answer.

Deadlines are the caller's (gateway.upstream.client): the first byte, the whole answer, the
gap between a stream's chunks; connecting has its own.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_BUFFERED = 1 << 20  # unread bytes of one answer past which its socket is not read
IDLE_S = 30.0  # a kept-alive connection unused for this long is closed, not reused
MAX_HEAD_BYTES = 64 << 10  # an answer's headers, all together: past this it is broken, not buffered on


class BrokenAnswer(ConnectionError):
    """The upstream's connection ended, or its bytes were not HTTP, before the answer did."""


class Unreachable(ConnectionError):
    """No connection could be made to the upstream (refused, unresolved, TLS refused)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's request goes: the origin to connect to, the host header, the path with its query."""

    origin: tuple[str, str, int]  # scheme, host, port
    host_header: bytes
    path: bytes


@functools.lru_cache(maxsize=1024)
def target(url: str) -> Target:
    """A URL taken apart once: upstream URLs repeat (a provider's few endpoints)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:100]!r}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target((scheme, parts.hostname, port), (host if port == default else f"{host}:{port}").encode("idna"),
                  path.encode("latin-1"))


class Answer:
    """An upstream's answer past its head: status, headers (names lowercased), and the body as it arrives."""

    def __init__(self, connection: Connection, host: str) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.host = host
        self._connection = connection
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._ended = False  # the whole body arrived
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    async def head(self) -> None:
        """Wait for the status line and headers."""
        await self._head

    async def readany(self) -> bytes:
        """The bytes of the body that arrived since the last read (waiting for some); b"" at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        # All that arrived, as one: a stream read behind its upstream catches up in one step.
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._connection.resume(self)
        return chunk

    def read_nowait(self) -> bytes:
        """Whatever of the body has arrived and was not read yet."""
        arrived = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._connection.resume(self)
        return arrived

    def at_eof(self) -> bool:
        """The whole body has arrived (reading it cannot wait)."""
        return self._ended

    def close(self) -> None:
        """Done with it: a connection whose answer was not read to its end is closed, never reused."""
        if not self._ended:
            self._connection.abort()

    # Fed by the connection.

    def _began(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers
        if not self._head.done():
            self._head.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._wake()
        if self._buffered > MAX_BUFFERED:
            self._connection.pause()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._ended:
            return
        self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # a caller that stopped waiting does not make the loop warn
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One keep-alive connection to an origin: one request at a time, its answer fed as it is parsed."""

    def __init__(self, origin: tuple[str, str, int], release: Callable[[Connection], None]) -> None:
        self.origin = origin
        self.idle_since = time.monotonic()
        self.closed = False
        self._release = release
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: Answer | None = None
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._informational = False  # a 1xx head: the answer's own follows
        self._until_close = False  # no length and not chunked: the body ends with the connection
        self._keep_alive = False
        self._paused = False

    def request(self, data: bytes, host: str) -> Answer:
        """Send a whole request (head and body, one send) and return its answer, head not yet arrived."""
        assert self._transport is not None and self._answer is None
        answer = self._answer = Answer(self, host)
        self._raw_headers = []
        self._head_bytes = 0
        self._transport.write(data)
        return answer

    def pause(self) -> None:
        if not self._paused and self._transport is not None and not self.closed:
            self._paused = True
            self._transport.pause_reading()

    def resume(self, answer: Answer | None = None) -> None:
        """Read from the socket again (for `answer`: only while it is this connection's)."""
        if answer is not None and answer is not self._answer:
            return
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self._transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:  # a callback's own error comes wrapped in one too
            cause = error.__context__ if isinstance(error.__context__, ValueError) else error
            self._broken(f"the upstream's answer is not valid HTTP ({cause})")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is None:
            return
        if self._until_close and self._answer.status and exc is None:
            self._done()
        else:
            self._answer._fail(BrokenAnswer("the upstream closed the connection before its answer ended"))
            self._answer = None

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:  # raised through the parser: see data_received
            raise ValueError(f"the upstream's headers passed {MAX_HEAD_BYTES} bytes")
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._informational = status < 200
        if self._informational:  # 100 Continue and the like: the answer's own head follows
            self._raw_headers = []
            self._head_bytes = 0
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self._keep_alive = self._parser.should_keep_alive()
        self._until_close = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        assert self._answer is not None
        self._answer._began(status, headers)

    def on_body(self, body: bytes) -> None:
        if self._answer is not None:
            self._answer._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._done()

    def _done(self) -> None:
        answer, self._answer = self._answer, None
        if answer is not None:
            answer._end()
        if self._keep_alive and not self._until_close and not self.closed:
            self.resume()  # the last bytes may have filled the answer's buffer: the next answer's must flow
            self.idle_since = time.monotonic()
            self._release(self)
        elif self._transport is not None:
            self.closed = True
            self._transport.close()

    def _broken(self, why: str) -> None:
        answer, self._answer = self._answer, None
        if answer is not None:
            answer._fail(BrokenAnswer(why))
        self.abort()


class Pool:
    """Kept-alive connections by origin, the most recently used first; no cap on their number."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def connection(self, origin: tuple[str, str, int], connect_s: float) -> Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_S:
                return connection
            connection.abort()
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, connection = await loop.create_connection(lambda: Connection(origin, self._put_back), host, port,
                                                             ssl=tls, server_hostname=host if tls else None)
        except TimeoutError:
            raise
        except OSError as error:
            raise Unreachable(_why_unreachable(error)) from error
        return connection  # type: ignore[return-value]

    def _put_back(self, connection: Connection) -> None:
        self._idle.setdefault(connection.origin, []).append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()


def _why_unreachable(error: OSError) -> str:
    """Why a connection failed, without the address (a client is not told where upstreams live)."""
    if isinstance(error, ssl.SSLError):
        return f"the TLS handshake failed ({error.reason or 'no reason given'})"
    if isinstance(error, socket.gaierror):
        return "its host name did not resolve"
    return os.strerror(error.errno).lower() if error.errno else "no connection"
