"""Settlements of one loop turn, sent to Redis as one script call per team and period.

Requests that end together (a busy worker ends several in one turn of its event loop) mostly
belong to a few teams: their settlements share the team's keys, so one call settles them
all, and the day's and month's totals are written once with the sums made here (the script,
gateway.store.redis_settlement_script, says how each is still decided on its own). Nothing
waits for a batch to fill: the first settlement of a turn makes the call, and the others of
the turn join it until it is written with the rest of the turn's store calls. Each caller
gets its own answer, or the call's error: a batch that fails fails every settlement in it,
and each goes to its caller's outbox and is retried by its reservation id, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.ids import new_id
from gateway.money import MAX_NANO
from gateway.store.base import StoreUnavailable, UsageRecord

MAX_BATCH = 256  # settlements in one call: a script runs alone on Redis, so none runs long

# (team, keys, args) -> one answer per settlement
Run = Callable[[str, list[str], Callable[[], list[Any]]], Awaitable[list[int]]]


class _Batch:
    """The settlements of one team and period in one loop turn."""

    __slots__ = ("team", "day", "month", "items", "futures", "routes", "tokens", "cost", "provider_cost", "args")

    def __init__(self, team: str, day: str, month: str) -> None:
        self.team, self.day, self.month = team, day, month
        self.items: list[Any] = []
        self.futures: list[asyncio.Future] = []
        # "model|provider" -> [its number, requests, prompt, completion, cost, provider cost or None]
        self.routes: dict[str, list[Any]] = {}
        self.tokens = self.cost = self.provider_cost = 0
        self.args: list[Any] | None = None  # made when the call is written: it takes no more then

    def has_room(self, usage: UsageRecord) -> bool:
        """Another settlement fits: every sum stays exact in the script's doubles."""
        return (len(self.items) < MAX_BATCH
                and self.tokens + usage.prompt_tokens + usage.completion_tokens <= MAX_NANO
                and self.cost + usage.cost_nano <= MAX_NANO
                and self.provider_cost + (usage.provider_cost_nano or 0) <= MAX_NANO)

    def add(self, reservation_id: str, usage: UsageRecord, remember_ms: int, lease_id: str,
            future: asyncio.Future | None) -> None:
        tokens = usage.prompt_tokens + usage.completion_tokens
        provider_cost = usage.provider_cost_nano
        route_name = f"{usage.model}|{usage.provider}"
        route = self.routes.get(route_name)
        if route is None:
            route = self.routes[route_name] = [len(self.routes) + 1, 0, 0, 0, 0, None]
        route[1] += 1
        route[2] += usage.prompt_tokens
        route[3] += usage.completion_tokens
        route[4] += usage.cost_nano
        if provider_cost is not None:
            route[5] = (route[5] or 0) + provider_cost
            self.provider_cost += provider_cost
        self.tokens += tokens
        self.cost += usage.cost_nano
        self.items.append((reservation_id, tokens, usage.cost_nano, "" if provider_cost is None else provider_cost,
                           usage.prompt_tokens, usage.completion_tokens, route[0], orjson.dumps(usage),
                           remember_ms, lease_id))
        self.futures.append(future)

    def make_args(self, max_records: int, usage_ttl_s: int) -> list[Any]:
        args: list[Any] = [max_records, usage_ttl_s, new_id(), len(self.items), len(self.routes),
                           self.tokens, self.cost]
        for name, (_, requests, prompt, completion, cost, provider_cost) in self.routes.items():
            args += (name, requests, prompt, completion, cost, "" if provider_cost is None else provider_cost)
        for item in self.items:
            args += item
        return args


class Settlements:
    """`settle(...)`: the settlement's answer (1 recorded, 0 settled already), from one call with the
    others of its team and period that end in the same loop turn."""

    def __init__(self, run: Run, keys: Callable[[str, str, str], list[str]], max_records: int,
                 usage_ttl_s: int) -> None:
        self._run = run
        self._keys = keys
        self._max_records = max_records
        self._usage_ttl_s = usage_ttl_s
        self._open: dict[tuple[str, str, str], _Batch] = {}  # taking more settlements until written

    async def settle(self, reservation_id: str, usage: UsageRecord, remember_ms: int, lease_id: str) -> int:
        key = (usage.team, usage.day, usage.month)
        batch = self._open.get(key)
        if batch is not None and batch.args is None and batch.has_room(usage):
            future = asyncio.get_running_loop().create_future()
            batch.add(reservation_id, usage, remember_ms, lease_id, future)
            return await future
        # The first of its batch makes the call; the batch is written, and closed, at the turn's end.
        batch = self._open[key] = _Batch(*key)
        batch.add(reservation_id, usage, remember_ms, lease_id, None)
        try:
            answers = await self._run(batch.team, self._keys(*key), self._written(batch))
        except asyncio.CancelledError:
            self._fail(batch, StoreUnavailable("the call carrying this settlement was cancelled"))
            raise
        except Exception as error:  # every settlement in the call shares its fate
            self._fail(batch, error)
            raise
        finally:
            self._close(key, batch)
        for future, answer in zip(batch.futures[1:], answers[1:]):
            if not future.done():  # its caller may have gone: the settlement stands
                future.set_result(answer)
        return answers[0]

    def _written(self, batch: _Batch) -> Callable[[], list[Any]]:
        def args() -> list[Any]:
            if batch.args is None:
                batch.args = batch.make_args(self._max_records, self._usage_ttl_s)
            return batch.args
        return args

    def _close(self, key: tuple[str, str, str], batch: _Batch) -> None:
        if batch.args is None:
            batch.args = []  # never written (the store failed first): it takes nothing more
        if self._open.get(key) is batch:
            del self._open[key]

    @staticmethod
    def _fail(batch: _Batch, error: Exception) -> None:
        for future in batch.futures[1:]:
            if not future.done():
                future.set_exception(error)
