"""Work that runs beside the request path for the life of the gateway: one task, cancelled at stop."""

from __future__ import annotations

import asyncio


class BackgroundLoop:
    """A subclass's `_run` coroutine as a task: `start` launches it, `stop` cancels and awaits it."""

    _task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
