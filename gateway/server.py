"""uvicorn's HTTP protocol with what a public endpoint needs and uvicorn does not give.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`), but not a new
connection that sends nothing, nor a request head that arrives a byte at a time: a
slowloris crowd holds them for ever, until the worker runs out of file descriptors and
real clients cannot connect. Here a request's head must arrive within
`server.header_timeout_s` (else 408 and close), and a worker holds at most
`server.max_connections` connections: at the cap, the connection that has waited
longest for a request head gives its place to the new one (a busy connection never
does); when every connection is busy, the new one is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import ServerConfig

log = logging.getLogger("gateway.server")
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GatewayProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    max_connections = 4096

    @classmethod
    def configure(cls, server: ServerConfig) -> None:
        """This worker's limits, from the config its app was built from."""
        cls.header_timeout_s = server.header_timeout_s
        cls.max_connections = server.max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self.waiting_since: float | None = None  # when it began waiting for a request head; None while busy
        self._refused = False
        if len(self.connections) >= self.max_connections and not self._make_room():
            self._refused = True
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a keep-alive connection's next request
            self._await_head()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self.waiting_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.waiting_since = self.loop.time()  # idle between requests: the first to go at the cap

    def _await_head(self) -> None:
        self.waiting_since = self.waiting_since or self.loop.time()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()

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
