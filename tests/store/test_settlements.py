"""The Redis store settles the requests of a team that end in one loop turn in one script call:
each still recorded exactly once, with totals that are the sum of what each used."""

from __future__ import annotations

import asyncio

import redis

from gateway.ids import new_id
from gateway.money import MAX_NANO
from gateway.store import LeaseAsk, Limits, StoreUnavailable
from gateway.store.redis import RedisStore
from tests.store.test_leases import lease_hold
from tests.store.test_store import DAY, MONTH, hold, used
from tests.waiting import eventually


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


async def test_settlements_of_one_turn_go_in_one_call_and_each_is_recorded(redis_process) -> None:
    store, client = RedisStore(redis_process.url), redis.Redis.from_url(redis_process.url)
    limits = Limits(rpm=1_000, tpm=10**9, budget_day_nano=10**12, budget_month_nano=10**12)
    admissions = [await store.admit(hold(), limits) for _ in range(20)]
    await store.settle(new_id(), used())  # the team's first settlement also names it for records(None)
    before = script_calls(client)

    answers = await asyncio.gather(*(
        store.settle(a.reservation_id, used(prompt=n, completion=1, cost=100 + n, provider="deepinfra" if n % 2 else
                                          "novita", provider_cost=n if n % 3 == 0 else None))
        for n, a in enumerate(admissions)))

    assert answers == [True] * 20
    assert script_calls(client) - before == 1
    [day] = await store.usage("research", DAY, DAY)
    assert day.requests == 21
    assert day.prompt_tokens == 10 + sum(range(20)) and day.completion_tokens == 5 + 20
    assert day.cost_nano == 300 + sum(100 + n for n in range(20))
    assert day.provider_cost_nano == sum(n for n in range(20) if n % 3 == 0)
    assert day.by_route["llama-3.1-8b|novita"]["requests"] == 10
    assert await store.spend("research", DAY, MONTH) == (day.cost_nano, day.cost_nano)  # nothing held
    assert len(await store.records("research", count=100)) == 21
    assert int(client.get("gw:{research}:tpm:total")) == day.prompt_tokens + day.completion_tokens
    client.close()
    await store.close()


async def test_a_call_with_a_settlement_already_made_records_only_the_others(redis_process) -> None:
    store = RedisStore(redis_process.url)
    first, second = await store.admit(hold(), Limits()), await store.admit(hold(), Limits())
    assert await store.settle(first.reservation_id, used(cost=300))

    # The first again (a retry), the second, and the second twice in the same call.
    answers = await asyncio.gather(store.settle(first.reservation_id, used(cost=300)),
                                   store.settle(second.reservation_id, used(cost=500)),
                                   store.settle(second.reservation_id, used(cost=500)))

    assert answers == [False, True, False]
    [day] = await store.usage("research", DAY, DAY)
    assert (day.requests, day.cost_nano, day.prompt_tokens) == (2, 800, 20)
    assert await store.spend("research", DAY, MONTH) == (800, 800)
    assert len(await store.records("research")) == 2
    await store.close()


async def test_a_leases_settlements_in_one_call_draw_it_down_once_each(redis_process) -> None:
    store, client = RedisStore(redis_process.url), redis.Redis.from_url(redis_process.url)
    lease = lease_hold()
    assert (await store.admit(lease, Limits(rpm=1_000), LeaseAsk(4, 400, 4_000, 1.0))).lease_slots == 4

    answers = await asyncio.gather(*(store.settle(f"request-{n}", used(cost=600), 600, lease_id=lease.reservation_id)
                                     for n in range(3)))

    assert answers == [True] * 3
    # 1,800 spent, 2,200 still held by the lease: the sum is what it was.
    assert await store.spend("research", DAY, MONTH) == (4_000, 4_000)
    assert client.hget("gw:{research}:reservations", lease.reservation_id).startswith(b"355|2200|")  # 3 x 15 tokens, 3 x 600
    assert await store.release("research", lease.reservation_id, 600, (4, 4))
    assert await store.spend("research", DAY, MONTH) == (1_800, 1_800)
    assert not client.hgetall("gw:{research}:held")
    client.close()
    await store.close()


async def test_teams_of_one_turn_are_settled_each_in_its_own_call(redis_process) -> None:
    store, client = RedisStore(redis_process.url), redis.Redis.from_url(redis_process.url)
    for team in ("research", "sales"):
        await store.settle(new_id(), used(team=team))
    before = script_calls(client)

    await asyncio.gather(*(store.settle(new_id(), used(team=team, cost=1_000))
                           for team in ("research", "sales") for _ in range(5)))

    assert script_calls(client) - before == 2
    for team in ("research", "sales"):
        assert await store.spend(team, DAY, MONTH) == (5_300, 5_300)
    client.close()
    await store.close()


async def test_amounts_whose_sum_a_double_would_round_go_in_separate_calls(redis_process) -> None:
    store = RedisStore(redis_process.url)
    half = MAX_NANO // 2 + 1  # two of them pass 2^53 - 1

    answers = await asyncio.gather(store.settle(new_id(), used(cost=half)), store.settle(new_id(), used(cost=7)))

    assert answers == [True, True]
    assert await store.spend("research", DAY, MONTH) == (half + 7, half + 7)
    await store.close()


async def test_a_call_that_fails_fails_each_of_its_settlements_and_each_can_be_retried(redis_process) -> None:
    store = RedisStore(redis_process.url, timeout_s=0.5)
    await store.settle(new_id(), used())
    ids = [new_id() for _ in range(4)]
    redis_process.stop()

    outcomes = await asyncio.gather(*(store.settle(i, used()) for i in ids), return_exceptions=True)

    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    redis_process.start()

    async def settled_again() -> bool:  # the store connects again on a later call
        try:
            return await asyncio.gather(*(store.settle(i, used()) for i in ids)) == [True] * 4
        except StoreUnavailable:
            return False

    await eventually(settled_again, what="the settlements retried after the restart")
    [day] = await store.usage("research", DAY, DAY)
    assert day.requests == 4  # the server keeps nothing across its restart: the four, once each
    await store.close()
