"""Specifications of admission: the worst case held, refusals that say when to come back, and
nothing left held when the store's answer never comes."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.accounting.admission import Admitter, worst_case
from gateway.accounting.outbox import Outbox
from gateway.call import read_call
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.store import Admission, Hold, LeaseAsk, Limits, StoreUnavailable
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
ROUTES, TEAM = Router(CONFIG).routes["m"], CONFIG.teams["t"]


def chat(**fields: object):
    return read_call(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}], **fields}),
                     "chat")


def test_the_worst_case_is_the_dearest_route_at_the_largest_prompt_bound() -> None:
    call = chat(max_tokens=50, n=2)
    tokens, cost = worst_case(call, ROUTES)
    prompt = call.prompt_tokens_bound
    assert tokens == prompt + 100
    assert cost == max(prompt * 1_000 + 100 * 2_000, prompt * 3_000 + 100 * 1_000)


def test_an_image_counts_at_each_routes_own_bound() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    call = read_call(orjson.dumps({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [image]}]}), "chat")
    tokens, _ = worst_case(call, ROUTES)
    assert tokens == call.prompt_tokens_bound + 10_000 + 1  # route b's bound, the larger


WINDOWED = parse_config({
    "providers": {"a": {"kind": "vllm"}, "b": {"kind": "deepinfra", "api_key": "k"}},
    "models": {"m": {"routes": [
        {"provider": "a", "model": "x", "context_window": 8192},
        {"provider": "b", "model": "x", "context_window": 32768, "max_output_tokens": 4096,
         "price": {"input_per_mtok": 1, "output_per_mtok": 4}}]},
        "open": {"routes": [{"provider": "b", "model": "x", "price": {"input_per_mtok": 1, "output_per_mtok": 4}}]}},
    "teams": {"t": {"max_tokens_default": 1000}, "capped": {"max_tokens_cap": 256}},
}, {})


def admitted(config, model: str, team: str, **fields: object):
    """The call as admission leaves it, and the worst case it held."""
    store = MemoryStore()
    call = chat(**fields)
    routes = Router(config).routes[model]
    reservation = asyncio.run(Admitter(config, store, Outbox(store)).admit(call, routes, config.teams[team]))
    return call, (reservation.hold.tokens, reservation.hold.cost_nano)


def test_a_request_naming_no_limit_holds_what_its_routes_windows_allow() -> None:
    call, (tokens, cost) = admitted(WINDOWED, "m", "t")
    prompt = call.prompt_tokens_bound
    # a: the whole window, nothing per token; b: its output limit, at its price, over any prompt up to the bound
    assert tokens == max(8192, prompt + 4096)
    assert cost == prompt * 1_000 + 4096 * 4_000
    assert call.max_tokens is None  # nothing invented: the route's window bounds it, not a cap


def test_a_route_with_no_known_window_is_sent_and_held_the_teams_default() -> None:
    call, (tokens, cost) = admitted(WINDOWED, "open", "t")
    assert call.max_tokens is None and call.blind_max_tokens == 1000
    assert (tokens, cost) == (call.prompt_tokens_bound + 1000, call.prompt_tokens_bound * 1_000 + 1000 * 4_000)


def test_a_teams_cap_is_sent_everywhere_and_refuses_more() -> None:
    call, (tokens, _) = admitted(WINDOWED, "m", "capped")
    assert call.max_tokens == 256 and tokens == call.prompt_tokens_bound + 256
    with pytest.raises(GatewayError) as caught:
        admitted(WINDOWED, "m", "capped", max_tokens=257)
    assert (caught.value.status, caught.value.param) == (400, "max_tokens")
    assert "at most 256" in caught.value.message


def test_the_clients_limit_still_bounds_a_windowed_route() -> None:
    call, (tokens, cost) = admitted(WINDOWED, "m", "t", max_tokens=100, n=3)
    assert tokens == call.prompt_tokens_bound + 300
    assert cost == call.prompt_tokens_bound * 1_000 + 300 * 4_000


class LostAnswers(MemoryStore):
    """A store whose admissions run but whose answers never come back (a timeout)."""

    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        await super().admit(hold, limits, lease)
        raise StoreUnavailable("redis: did not answer within 0.5 s")


async def test_an_admission_whose_answer_was_lost_is_refused_and_released() -> None:
    store = LostAnswers()
    outbox = Outbox(store)
    with pytest.raises(GatewayError) as caught:
        await Admitter(CONFIG, store, outbox).admit(chat(), ROUTES, TEAM)
    assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
    await eventually(lambda: not store._teams["t"].reservations and len(outbox) == 0, 2, "the release")
    assert await store.spend("t", *_periods()) == (0, 0)


async def test_an_admission_cancelled_while_the_store_decides_is_released() -> None:
    decided = asyncio.Event()

    class Slow(MemoryStore):
        async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
            answer = await super().admit(hold, limits, lease)
            decided.set()
            await asyncio.Event().wait()  # the reply is on its way; the client leaves first
            return answer

    store = Slow()
    outbox = Outbox(store)
    task = asyncio.create_task(Admitter(CONFIG, store, outbox).admit(chat(), ROUTES, TEAM))
    await decided.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: not store._teams["t"].reservations, 2, "the release")


async def test_a_budget_held_by_requests_in_flight_says_retry_in_a_second() -> None:
    store = MemoryStore()
    admitter = Admitter(CONFIG, store, Outbox(store))
    big = chat(max_tokens=200_000)  # about $0.40 each at route a's price
    await admitter.admit(big, ROUTES, TEAM)
    await admitter.admit(chat(max_tokens=200_000), ROUTES, TEAM)
    with pytest.raises(GatewayError) as caught:
        await admitter.admit(chat(max_tokens=200_000), ROUTES, TEAM)
    assert (caught.value.status, caught.value.code, caught.value.headers["retry-after"]) == (
        429, "budget_held_by_requests_in_flight", "1")
    assert "daily budget" in caught.value.message


async def test_a_spent_budget_says_insufficient_quota_until_the_next_day() -> None:
    store = MemoryStore()
    admitter = Admitter(CONFIG, store, Outbox(store))
    with pytest.raises(GatewayError) as caught:
        await admitter.admit(chat(max_tokens=600_000), ROUTES, TEAM)  # $1.2 worst case on a $1 budget
    assert (caught.value.status, caught.value.code) == (429, "insufficient_quota")
    assert "daily budget" in caught.value.message and "next UTC day" in caught.value.message


def _periods() -> tuple[str, str]:
    from gateway.accounting.periods import utc_periods
    return utc_periods()
