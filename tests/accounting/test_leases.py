"""Specifications of leases: far from its limits a team's requests are admitted without a store
round trip each, and every request is still counted, billed and given back exactly."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis

from gateway.accounting.admission import Admitter
from gateway.accounting.outbox import Outbox
from gateway.accounting.periods import utc_periods
from gateway.accounting.settlement import Outcome, Settler
from gateway.accounting.usage import Usage
from gateway.call import read_call
from gateway.config import TeamConfig, parse_config
from gateway.errors import GatewayError
from gateway.routing import Router
from gateway.store import Admission, Hold, LeaseAsk, Limits
from gateway.store.redis import RedisStore
from tests.waiting import eventually

LEASE_S = 0.3


class Counted(RedisStore):
    """The Redis store, counting the admissions that reach it."""

    admissions = 0

    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        self.admissions += 1
        return await super().admit(hold, limits, lease)


def setup(url: str, **teams: dict) -> tuple[Counted, Admitter, Settler, dict[str, TeamConfig], list]:
    config = parse_config({
        "store": {"url": url, "lease_s": LEASE_S},
        "providers": {"a": {"kind": "openai", "api_key": "k"}},
        "models": {"m": {"routes": [{"provider": "a", "model": "x",
                                     "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
        "teams": teams,
    }, {})
    store = Counted(url)
    outbox = Outbox(store)
    admitter = Admitter(config, store, outbox)
    return store, admitter, Settler(store, outbox, admitter.leases), config.teams, Router(config).routes["m"]


def chat():
    return read_call(orjson.dumps({"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}),
                     "chat")


async def serve(admitter: Admitter, settler: Settler, team: TeamConfig, routes: list, usage: Usage) -> None:
    reservation = await admitter.admit(chat(), routes, team)
    price = routes[0].price
    await settler.settle(reservation, Outcome(team.name, "k", "m", "a", 200, usage, price, time.monotonic()))


def held(client: redis.Redis, team: str) -> dict:
    return client.hgetall(f"gw:{{{team}}}:held")


async def test_far_from_its_limits_a_team_is_admitted_from_leases_and_every_request_counts(redis_process) -> None:
    store, admitter, settler, teams, routes = setup(
        redis_process.url, roomy={"rpm": 10_000, "tpm": 10_000_000, "budget_usd": {"day": 100}})
    client = redis.Redis.from_url(redis_process.url)
    for _ in range(40):
        await serve(admitter, settler, teams["roomy"], routes, Usage(5, 7))
    assert store.admissions <= 8  # leases of 8 and more, against 40 round trips one by one
    day, _ = utc_periods()
    [usage] = await store.usage("roomy", day, day)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (40, 200, 280)
    assert usage.cost_nano == 40 * (5 * 1_000 + 7 * 2_000)
    # Once the last lease's life is over it is given back: nothing held, and the rpm window counts
    # the 40 requests made, not the slots the leases had left.
    await eventually(lambda: not held(client, "roomy"), LEASE_S + 3, "the leases given back")
    assert client.hlen("gw:{roomy}:reservations") == 0
    assert client.zcard("gw:{roomy}:rpm") == 40
    await store.close()


async def test_concurrent_requests_share_one_ask_for_a_lease_and_leases_grow_to_the_rate(redis_process) -> None:
    # Thirty-two clients at once: when a lease runs out they wait for the one on its way instead of
    # each asking the store, and the next leases are larger, so a burst does not become round trips.
    store, admitter, settler, teams, routes = setup(redis_process.url, busy={"rpm": 1_000_000})

    async def client() -> None:
        for _ in range(25):
            await serve(admitter, settler, teams["busy"], routes, Usage(5, 7))

    await asyncio.gather(*(client() for _ in range(32)))
    assert store.admissions <= 800 // 10
    day, _ = utc_periods()
    [usage] = await store.usage("busy", day, day)
    assert usage.requests == 800
    await admitter.leases.stop(timeout_s=2)
    assert redis.Redis.from_url(redis_process.url).zcard("gw:{busy}:rpm") == 800
    await store.close()


async def test_near_a_limit_every_request_is_decided_by_the_store(redis_process) -> None:
    store, admitter, settler, teams, routes = setup(redis_process.url, tight={"rpm": 6})
    for _ in range(6):
        await serve(admitter, settler, teams["tight"], routes, Usage(5, 7))
    with pytest.raises(GatewayError) as refused:
        await admitter.admit(chat(), routes, teams["tight"])
    assert (refused.value.status, refused.value.code) == (429, "rate_limit_exceeded")
    assert store.admissions == 7  # a lease of 8 would pass half of 6: none was granted
    await store.close()


async def test_a_budget_is_never_passed_with_leases(redis_process) -> None:
    # Each request holds its prompt's bound and 20 tokens out at worst, and costs 19,000 nano-dollars.
    store, admitter, settler, teams, routes = setup(redis_process.url, small={"budget_usd": {"day": 0.002}})
    served = 0
    for _ in range(400):
        try:
            await serve(admitter, settler, teams["small"], routes, Usage(5, 7))
        except GatewayError as error:
            assert error.status == 429
            break
        served += 1
    day, month = utc_periods()
    spent, _ = await store.spend("small", day, month)
    assert served > 50 and served * 19_000 <= 2_000_000
    assert spent <= 2_000_000
    assert store.admissions > served // 8  # past half the budget, one by one again
    await store.close()


async def test_a_shutdown_gives_every_lease_back_at_once(redis_process) -> None:
    store, admitter, settler, teams, routes = setup(redis_process.url, roomy={"rpm": 10_000})
    client = redis.Redis.from_url(redis_process.url)
    for _ in range(3):
        await serve(admitter, settler, teams["roomy"], routes, Usage(5, 7))
    assert held(client, "roomy")  # the lease still holds what its five other requests may use
    await admitter.leases.stop(timeout_s=2)
    assert not held(client, "roomy")
    assert client.zcard("gw:{roomy}:rpm") == 3
    await store.close()


async def test_a_renewal_that_fails_unexpectedly_does_not_hold_up_the_teams_requests(redis_process) -> None:
    class Failing(Counted):
        async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
            if lease is not None and lease.only:  # the background renewal
                raise ValueError("store: a bug")
            return await super().admit(hold, limits, lease)

    store, admitter, settler, teams, routes = setup(redis_process.url, roomy={"rpm": 10_000})
    failing = Failing(redis_process.url)
    admitter._store = settler._store = admitter.leases._store = failing  # noqa: SLF001
    for _ in range(30):  # through renewals that fail: each request is still admitted, in time
        await asyncio.wait_for(serve(admitter, settler, teams["roomy"], routes, Usage(5, 7)), 2)
    day, _ = utc_periods()
    [usage] = await failing.usage("roomy", day, day)
    assert usage.requests == 30
    await admitter.leases.stop(timeout_s=2)
    await store.close()
    await failing.close()
