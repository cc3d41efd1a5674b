"""An aiohttp app served on 127.0.0.1 from a daemon thread that owns its own event loop.

Owning a loop lets the same fake serve synchronous tests and asyncio tests alike:
the test's loop (if any) never runs the fake's handlers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

START_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 0.2  # a backstop: stop() cancels in-flight handlers itself


class BackgroundServer:
    """Start and stop are synchronous and may be called from any thread, again and again."""

    def __init__(self, make_app: Callable[[], web.Application],
                 name: str = "fake-provider") -> None:
        self._make_app = make_app
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self.port: int | None = None

    def start(self) -> int:
        """Serve on an ephemeral port (the same one again after a stop); returns the port."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("fake provider did not start in time")
        if self._error is not None:
            raise RuntimeError("fake provider failed to start") from self._error
        assert self.port is not None
        return self.port

    def stop(self) -> None:
        """Close the listener, cut in-flight requests, and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT_S)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() when it happens before ready
            self._error = exc
        finally:
            self._ready.set()
            self._cancel_leftovers(loop)
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = self._make_app()
        app.middlewares.append(web.middleware(self._track_handler()))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            # A restart reuses the port, so clients configured earlier reach it again.
            site = web.TCPSite(runner, "127.0.0.1", self.port or 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            # Cut streams and hanging requests now rather than after aiohttp's grace period.
            for task in list(self._handlers):
                task.cancel()
            await runner.cleanup()

    def _track_handler(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """A middleware that keeps the set of handler tasks in flight, for stop() to cancel."""

        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            try:
                return await handler(request)
            finally:
                self._handlers.discard(task)

        return track

    @staticmethod
    def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
