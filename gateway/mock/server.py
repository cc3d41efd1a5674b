"""The mock's HTTP server: a small asyncio protocol on httptools, sharing its worker's event loop.

It is the upstream the gateway's real path talks to (aiohttp, timeouts, relay, usage
tap), so it must cost little: an answer with no latency configured is written in one
go, without a task; only a delayed one gets a task, which a client leaving cancels.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

import httptools

from gateway.config import ProviderConfig
from gateway.config.mock import MockConfig
from gateway.mock.answers import MockAnswers, Reply, error

log = logging.getLogger("gateway.mock")
_HEALTHY = Reply(200, body=b"{}")


class MockServer:
    """One mock upstream listening on `host:port` (port 0: any free one); `base_url` once started."""

    def __init__(self, config: MockConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.answers = MockAnswers(config)
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self.connections: set[MockProtocol] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "MockServer.start() was not awaited"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: MockProtocol(self), self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None


class MockServers:
    """A worker's mock upstreams, one per `mock` provider, each pointed at by that provider's endpoint."""

    def __init__(self, providers: dict[str, ProviderConfig]) -> None:
        self.servers = {name: MockServer(p.mock) for name, p in providers.items() if p.mock is not None}

    async def start(self) -> dict[str, str]:
        """Start every server; each provider's base URL."""
        for server in self.servers.values():
            await server.start()
        return {name: server.base_url for name, server in self.servers.items()}

    async def use(self, providers: dict[str, ProviderConfig]) -> dict[str, str]:
        """Follow a reloaded config: new mocks started, removed ones stopped, and the others kept
        listening with their new settings (what they are answering goes on); each one's base URL."""
        wanted = {name: p.mock for name, p in providers.items() if p.mock is not None}
        for name in self.servers.keys() - wanted.keys():
            await self.servers.pop(name).stop()
        for name, config in wanted.items():
            server = self.servers.get(name)
            if server is None:
                server = self.servers[name] = MockServer(config)
                await server.start()
            elif server.config != config:
                server.config, server.answers = config, MockAnswers(config)
        return {name: server.base_url for name, server in self.servers.items()}

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()


class MockProtocol(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered in order."""

    def __init__(self, server: MockServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._pending: asyncio.Task[None] | None = None  # a delayed answer being written

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport  # uvloop's transports are no asyncio.Transport subclass, but act as one
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._pending is not None:
            self._pending.cancel()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(error(400, "Malformed HTTP request.", "invalid_request_error", None), keep_alive=False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._body = b"", []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        method = self._parser.get_method()
        keep_alive = self._parser.should_keep_alive()
        if method == b"GET" and path in ("/health", "/v1/health"):
            reply = _HEALTHY
        elif method != b"POST":
            reply = error(405, f"Use POST on {path[:200]}.", "invalid_request_error", None)
        else:
            reply = self._server.answers.reply(path, b"".join(self._body))
        latency = self._server.config.latency
        delayed = reply.status == 200 and (latency.first_token_s or (latency.per_token_s and reply.tokens))
        if self._pending is None and not delayed:
            self._write(reply, keep_alive)
        else:
            self._pending = asyncio.get_running_loop().create_task(
                self._write_later(reply, keep_alive, self._pending))

    async def _write_later(self, reply: Reply, keep_alive: bool, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await before  # a pipelined request is answered after the one before it
        latency = self._server.config.latency
        if reply.status != 200:
            self._write(reply, keep_alive)
        elif reply.steps is None:
            await asyncio.sleep(latency.first_token_s + latency.per_token_s * reply.tokens)
            self._write(reply, keep_alive)
        else:
            await asyncio.sleep(latency.first_token_s)
            self._write_head(reply, keep_alive)
            for i, step in enumerate(reply.steps):
                if i:
                    await asyncio.sleep(latency.per_token_s)
                self._write_chunk(step)
            self._end_stream(keep_alive)
        if self._pending is asyncio.current_task():
            self._pending = None

    def _write(self, reply: Reply, keep_alive: bool) -> None:
        if reply.steps is not None:
            self._write_head(reply, keep_alive)
            self._write_chunk(b"".join(reply.steps))
            self._end_stream(keep_alive)
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = ["content-type: application/json", f"content-length: {len(reply.body)}",
                *(f"{name}: {value}" for name, value in reply.headers.items())]
        if not keep_alive:
            head.append("connection: close")
        transport.write(_status_line(reply.status) + "".join(f"{line}\r\n" for line in head).encode("latin-1")
                        + b"\r\n" + reply.body)
        if not keep_alive:
            transport.close()

    def _write_head(self, reply: Reply, keep_alive: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_status_line(200) + b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
                                  b"transfer-encoding: chunked\r\n" + (b"" if keep_alive else b"connection: close\r\n")
                                  + b"\r\n")

    def _write_chunk(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self, keep_alive: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"0\r\n\r\n")
            if not keep_alive:
                self._transport.close()


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("latin-1")
