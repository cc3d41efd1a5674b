"""A lean Redis client for the hot path: one pipelined connection, replies matched in order.

Every command issued during one turn of the event loop leaves in a single write, and
replies are handed to their callers first in, first out, so concurrent admissions and
settlements share round trips and system calls. No timer is set per call: a watchdog
fails every waiting call, and drops the connection, once the oldest has waited longer
than the timeout. Failures raise OSError or TimeoutError; error replies, ReplyError.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any
from urllib.parse import unquote, urlsplit

_INCOMPLETE = object()


class ReplyError(Exception):
    """An error reply from Redis (`NOSCRIPT ...`, `ERR ...`)."""


def encode(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse(buf: bytearray, pos: int) -> tuple[Any, int] | object:
    """One reply starting at `pos`: (value, next position), or _INCOMPLETE."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE
    kind = buf[pos]
    if kind == 58:  # ':' integer
        return int(buf[pos + 1:end]), end + 2
    if kind == 36:  # '$' bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            return None, end + 2
        if len(buf) < end + 4 + size:
            return _INCOMPLETE
        return bytes(buf[end + 2:end + 2 + size]), end + 4 + size
    if kind == 42:  # '*' array
        count = int(buf[pos + 1:end])
        if count < 0:
            return None, end + 2
        items = []
        at = end + 2
        for _ in range(count):
            item = parse(buf, at)
            if item is _INCOMPLETE:
                return _INCOMPLETE
            value, at = item  # type: ignore[misc]
            items.append(value)
        return items, at
    if kind == 43:  # '+' simple string
        return bytes(buf[pos + 1:end]), end + 2
    if kind == 45:  # '-' error
        return ReplyError(buf[pos + 1:end].decode(errors="replace")), end + 2
    raise ConnectionError(f"unexpected reply byte {kind!r} from redis")


class _Connection(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._outgoing: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._suspect: asyncio.Future | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError(f"redis connection lost: {exc}" if exc else "redis closed the connection"))

    def send(self, command: bytes) -> asyncio.Future:
        if self.lost:
            raise ConnectionResetError("redis connection lost")
        future = self._loop.create_future()
        if not self._outgoing:
            self._loop.call_soon(self._flush)  # everything sent this turn leaves in one write
        self._outgoing.append(command)
        self._waiting.append((future, self._loop.time()))
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout_s, self._check)
        return future

    def _flush(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        pos = 0
        while self._waiting:
            reply = parse(self._buffer, pos)
            if reply is _INCOMPLETE:
                break
            value, pos = reply  # type: ignore[misc]
            future, _ = self._waiting.popleft()
            if not future.done():
                if isinstance(value, ReplyError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        if pos:
            del self._buffer[:pos]

    def _check(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        future, sent_at = self._waiting[0]
        waited = self._loop.time() - sent_at
        if waited >= self._timeout_s:
            if self._suspect is not future:
                # Timers run before the socket is polled: after a stall of this process the
                # answer may already be waiting. Look again once the socket has been read.
                self._suspect = future
                self._watchdog = self._loop.call_later(0.001, self._check)
                return
            # Replies come in order: nothing behind an unanswered command can be answered first.
            self._fail(TimeoutError(f"redis did not answer within {self._timeout_s:g} s"))
            self.close()
            return
        self._watchdog = self._loop.call_later(self._timeout_s - waited, self._check)

    def _fail(self, error: BaseException) -> None:
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def close(self) -> None:
        self.lost = True
        if self._transport is not None:
            self._transport.close()


class RespClient:
    """Commands to one Redis (`redis://[:password@]host:port/db`), over one connection made on demand."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._db = int(parts.path.lstrip("/") or 0)
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future | None = None

    async def call(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        return await connection.send(encode(args))

    async def _connect(self) -> _Connection:
        if self._connecting is not None:  # one connection attempt, shared by every caller
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self._timeout_s), self._host, self._port),
                self._timeout_s)
            try:
                if self._password is not None:
                    await connection.send(encode(("AUTH", self._password)))
                if self._db:
                    await connection.send(encode(("SELECT", self._db)))
            except BaseException:
                connection.close()
                raise
            self._connection = connection
            self._connecting.set_result(connection)
            return connection
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            self._connecting = None

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
