"""Specifications of admission: the worst case held, refusals that say when to come back, and
nothing left held when the store's answer never comes."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.accounting.admission import Admitter, worst_case
from gateway.accounting.outbox import Outbox
from gateway.call import read_call
from gateway.config import PartTokens, parse_config
from gateway.errors import GatewayError
from gateway.store import Admission, Hold, Limits, StoreUnavailable
from gateway.store.memory import MemoryStore
from tests.waiting import eventually

CONFIG = parse_config({
    "providers": {"a": {"kind": "openai", "api_key": "k"}, "b": {"kind": "openai", "api_key": "k"}},
    "models": {"m": {"routes": [
        {"provider": "a", "model": "x", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
        {"provider": "b", "model": "x", "price": {"input_per_mtok": 3, "output_per_mtok": 1},
         "part_tokens": {"image": 10_000}}]}},
    "teams": {"t": {"budget_usd": {"day": 1}, "max_tokens_default": 100}},
}, {})
MODEL, TEAM = CONFIG.models["m"], CONFIG.teams["t"]


def chat(**fields: object):
    return read_call(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}], **fields}),
                     "chat")


def test_the_worst_case_is_the_dearest_route_at_the_largest_prompt_bound() -> None:
    call = chat(max_tokens=50, n=2)
    tokens, cost = worst_case(call, MODEL, TEAM, PartTokens())
    prompt = call.prompt_tokens_bound
    assert tokens == prompt + 100
    assert cost == max(prompt * 1_000 + 100 * 2_000, prompt * 3_000 + 100 * 1_000)


def test_an_image_counts_at_each_routes_own_bound() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    call = read_call(orjson.dumps({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [image]}]}), "chat")
    tokens, _ = worst_case(call, MODEL, TEAM, PartTokens(image=500))
    assert tokens == call.prompt_tokens_bound + 10_000 + 1  # route b's bound, the larger


class LostAnswers(MemoryStore):
    """A store whose admissions run but whose answers never come back (a timeout)."""

    async def admit(self, hold: Hold, limits: Limits) -> Admission:
        await super().admit(hold, limits)
        raise StoreUnavailable("redis: did not answer within 0.5 s")


async def test_an_admission_whose_answer_was_lost_is_refused_and_released() -> None:
    store = LostAnswers()
    outbox = Outbox(store)
    with pytest.raises(GatewayError) as caught:
        await Admitter(CONFIG, store, outbox).admit(chat(), MODEL, TEAM)
    assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
    await eventually(lambda: not store._teams["t"].reservations and len(outbox) == 0, 2, "the release")
    assert await store.spend("t", *_periods()) == (0, 0)


async def test_an_admission_cancelled_while_the_store_decides_is_released() -> None:
    decided = asyncio.Event()

    class Slow(MemoryStore):
        async def admit(self, hold: Hold, limits: Limits) -> Admission:
            answer = await super().admit(hold, limits)
            decided.set()
            await asyncio.Event().wait()  # the reply is on its way; the client leaves first
            return answer

    store = Slow()
    outbox = Outbox(store)
    task = asyncio.create_task(Admitter(CONFIG, store, outbox).admit(chat(), MODEL, TEAM))
    await decided.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: not store._teams["t"].reservations, 2, "the release")


async def test_a_budget_held_by_requests_in_flight_says_retry_in_a_second() -> None:
    store = MemoryStore()
    admitter = Admitter(CONFIG, store, Outbox(store))
    big = chat(max_tokens=200_000)  # about $0.40 each at route a's price
    await admitter.admit(big, MODEL, TEAM)
    await admitter.admit(chat(max_tokens=200_000), MODEL, TEAM)
    with pytest.raises(GatewayError) as caught:
        await admitter.admit(chat(max_tokens=200_000), MODEL, TEAM)
    assert (caught.value.status, caught.value.code, caught.value.headers["retry-after"]) == (
        429, "budget_held_by_requests_in_flight", "1")
    assert "daily budget" in caught.value.message


async def test_a_spent_budget_says_insufficient_quota_until_the_next_day() -> None:
    store = MemoryStore()
    admitter = Admitter(CONFIG, store, Outbox(store))
    with pytest.raises(GatewayError) as caught:
        await admitter.admit(chat(max_tokens=600_000), MODEL, TEAM)  # $1.2 worst case on a $1 budget
    assert (caught.value.status, caught.value.code) == (429, "insufficient_quota")
    assert "daily budget" in caught.value.message and "next UTC day" in caught.value.message


def _periods() -> tuple[str, str]:
    from gateway.accounting.periods import utc_periods
    return utc_periods()
