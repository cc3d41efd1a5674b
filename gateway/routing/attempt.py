"""One try of a route at one of its endpoints: a slot in the router, given back exactly once."""

from __future__ import annotations

import time

from gateway.errors import GatewayError
from gateway.routing.route import Endpoint, Route
from gateway.routing.router import Router


class Attempt:
    """Counted in flight from `begin` until its first ending: `failed` (no answer), `finished`
    (answered, and now over) or `abandon` (anything else: an exception, a cancellation).

    Later endings do nothing, so the attempt's owner may `abandon` it in a `finally` whatever
    happened before.
    """

    __slots__ = ("_router", "route", "endpoint", "began", "started", "first_byte_at", "ended", "status",
                 "error", "_open")

    def __init__(self, router: Router, route: Route, endpoint: Endpoint) -> None:
        self._router = router
        self.route = route
        self.endpoint = endpoint
        # What it came to, for a trace drawn after the request (time.monotonic; 0.0 while unknown).
        self.began = time.monotonic()
        self.started = 0.0
        self.first_byte_at = 0.0
        self.ended = 0.0
        self.status = 0  # the upstream's answer as the client saw it; 0 when abandoned
        self.error: GatewayError | None = None
        self._open = True

    @classmethod
    def begin(cls, router: Router, route: Route, avoid: list[Endpoint], room_only: bool) -> Attempt | None:
        """An attempt at the endpoint the router picks; None when none will do now."""
        endpoint = router.begin(route, avoid, room_only)
        return None if endpoint is None else cls(router, route, endpoint)

    def answered(self, started: float, first_byte_at: float, stream: bool) -> None:
        """The upstream answered 200: the route works; a stream's first byte times its TTFT."""
        self.started, self.first_byte_at = started, first_byte_at
        self._router.opened(self.route, self.endpoint, started=started, first_byte_at=first_byte_at, stream=stream)

    def failed(self, error: GatewayError) -> None:
        if self._close():
            self.ended, self.status, self.error = time.monotonic(), error.status, error
            self._router.failed(self.route, self.endpoint, error)

    def finished(self, status: int, ended_at: float, completion_tokens: int, stream: bool) -> None:
        if self._close():
            self.ended, self.status = ended_at, status
            self._router.end(self.route, self.endpoint, status=status, started=self.started,
                             first_byte_at=self.first_byte_at, ended_at=ended_at,
                             completion_tokens=completion_tokens, stream=stream)

    def abandon(self) -> None:
        if self._close():
            self.ended = time.monotonic()
            self._router.release(self.route, self.endpoint)

    def _close(self) -> bool:
        was_open, self._open = self._open, False
        return was_open
