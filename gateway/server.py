"""uvicorn's HTTP protocol with what a public endpoint needs and uvicorn does not give.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`), but not a new
connection that sends nothing, nor a request head or body that arrives a byte at a time:
a slowloris crowd holds them for ever, until the worker runs out of file descriptors and
real clients cannot connect. Here a request's head must arrive within
`server.header_timeout_s` and its body within `server.body_timeout_s` after it (else 408
and close), and a worker holds at most `server.max_connections` connections: at the cap,
the connection that has waited longest for a request head gives its place to the new one
(a busy connection never does); when every connection is busy, the new one is closed.

The deadlines cost no timer per request: one sweep per worker, a few times a second,
closes the connections past theirs.
"""

from __future__ import annotations

import asyncio
import logging
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import ServerConfig
from gateway.errors import GatewayError

log = logging.getLogger("gateway.server")
_TIMEOUT_BODY = GatewayError(408, "The request did not arrive in time.", code="request_timeout").body()
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))
MAX_SWEEP_S = 0.5


class GatewayProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_connections = 4096
    _sweep: asyncio.TimerHandle | None = None  # one per worker, shared by its connections

    @classmethod
    def configure(cls, server: ServerConfig) -> None:
        """This worker's limits, from the config its app was built from."""
        cls.header_timeout_s = server.header_timeout_s
        cls.body_timeout_s = server.body_timeout_s
        cls.max_connections = server.max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Both are loop times; None while not waiting. `due` is when this connection is closed
        # unless what it waits for arrives.
        self.waiting_since: float | None = None  # for a request head (new, or idle between requests)
        self.due: float | None = None
        self._refused = False
        if len(self.connections) >= self.max_connections and not self._make_room():
            self._refused = True
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()
        self._schedule_sweep()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._refused:
            super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.due is None:  # a keep-alive connection's next request
            self._await_head()

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        self.due = self.loop.time() + self.body_timeout_s  # the body's turn
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.due = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.waiting_since = self.loop.time()  # idle between requests: the first to go at the cap

    def _await_head(self) -> None:
        now = self.loop.time()
        self.waiting_since = self.waiting_since or now
        self.due = now + self.header_timeout_s

    def _too_late(self) -> None:
        self.due = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()

    def _schedule_sweep(self) -> None:
        cls = type(self)
        if cls._sweep is None:
            interval = min(MAX_SWEEP_S, self.header_timeout_s / 4, self.body_timeout_s / 4)
            cls._sweep = self.loop.call_later(interval, self._sweep_connections, interval)

    def _sweep_connections(self, interval: float) -> None:
        cls = type(self)
        cls._sweep = None
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, GatewayProtocol) and connection.due is not None and connection.due <= now:
                connection._too_late()
        if self.connections:
            cls._sweep = self.loop.call_later(interval, self._sweep_connections, interval)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head; False when all are busy."""
        waiting = [c for c in self.connections if isinstance(c, GatewayProtocol) and c.waiting_since is not None
                   and not c.transport.is_closing()]
        if not waiting:
            log.warning("at server.max_connections (%d) with every connection busy: a new one is refused",
                        self.max_connections)
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        oldest.transport.close()
        return True


def raise_open_files_limit() -> int:
    """Let this process hold as many files as it is allowed to: connections are files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
