"""Work beside the request path for the life of the gateway: one round every few seconds.

`Periodic` is the one way the gateway runs such work (key refresh, pollers, gauges, the
dedicated watcher and autoscaler). A round that raises is logged and the next one runs:
a background loop outlives any one bad answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway.background")


class Periodic:
    """Calls `round()` every `interval_s` seconds between `start()` and `stop()`, the first
    time at once when `immediately`."""

    def __init__(self, name: str, interval_s: float, round: Callable[[], Awaitable[object]], *,
                 immediately: bool = False) -> None:
        self.name = name
        self.interval_s = interval_s
        self._round = round
        self._immediately = immediately
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        wait = not self._immediately
        while True:
            if wait:
                await asyncio.sleep(self.interval_s)
            wait = True
            try:
                await self._round()
            except Exception:
                log.exception("%s: a round failed; the next one runs in %g s", self.name, self.interval_s)


async def stop_all(loops: list[Periodic]) -> None:
    await asyncio.gather(*(loop.stop() for loop in loops))
