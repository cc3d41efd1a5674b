"""The admitted requests of one process whose settlement is not done yet, so that a shutdown
can wait for them before it closes the store."""

from __future__ import annotations

import asyncio


class InFlight:
    """The exchanges of one process whose settlement is not done yet."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drained(self, timeout_s: float) -> int:
        """Wait until every exchange is settled, or `timeout_s`; how many were left."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            pass
        return self.count
