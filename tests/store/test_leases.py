"""The Redis store's leases: a block of admissions held as one reservation, drawn down by the
settlements of the requests admitted from it, and given back with the slots nobody used."""

from __future__ import annotations

import redis

from gateway.store import Hold, LeaseAsk, Limits
from gateway.store.redis import RedisStore
from tests.store.test_store import DAY, MONTH, used

LIMITS = Limits(rpm=1_000, tpm=1_000_000, budget_day_nano=1_000_000, budget_month_nano=10_000_000)


def lease_hold() -> Hold:
    return Hold(team="research", tokens=100, cost_nano=1_000, day=DAY, month=MONTH, ttl_s=600)


async def test_a_lease_holds_its_block_and_each_settlement_moves_what_it_used_to_the_spend(redis_process) -> None:
    store, client = RedisStore(redis_process.url), redis.Redis.from_url(redis_process.url)
    hold = lease_hold()
    admission = await store.admit(hold, LIMITS, LeaseAsk(4, 400, 4_000, 1.0))
    assert admission.admitted and admission.lease_slots == 4
    assert await store.spend("research", DAY, MONTH) == (4_000, 4_000)  # all of it held
    assert client.zcard("gw:{research}:rpm") == 4

    assert await store.settle("request-1", used(cost=300), 600, lease_id=hold.reservation_id)
    assert not await store.settle("request-1", used(cost=300), 600, lease_id=hold.reservation_id)  # once
    # 300 spent, 3,700 still held by the lease: the sum is what it was.
    assert await store.spend("research", DAY, MONTH) == (4_000, 4_000)

    # Given back with slots 2 to 4 unused: only what was spent stays, and one request in the window.
    assert await store.release("research", hold.reservation_id, 600, (2, 4))
    assert await store.spend("research", DAY, MONTH) == (300, 300)
    assert client.zcard("gw:{research}:rpm") == 1
    assert not client.hgetall("gw:{research}:held")

    # A settlement that reaches the store after its lease went back (the outbox retried it) is
    # recorded, and takes nothing from holds that are gone.
    assert await store.settle("request-2", used(cost=200), 600, lease_id=hold.reservation_id)
    assert await store.spend("research", DAY, MONTH) == (500, 500)
    [day] = await store.usage("research", DAY, DAY)
    assert day.requests == 2
    await store.close()


async def test_a_lease_past_half_of_a_limit_is_not_granted(redis_process) -> None:
    store = RedisStore(redis_process.url)
    # 4 slots against an rpm of 6: past half of it. The request is reserved alone, as asked.
    admission = await store.admit(lease_hold(), Limits(rpm=6), LeaseAsk(4, 400, 4_000, 1.0))
    assert admission.admitted and admission.lease_slots == 0
    assert await store.spend("research", DAY, MONTH) == (1_000, 1_000)
    # A renewal wants the lease or nothing: refused, and nothing held.
    renewal = await store.admit(lease_hold(), Limits(rpm=6), LeaseAsk(4, 400, 4_000, 1.0, only=True))
    assert (renewal.admitted, renewal.refused_by) == (False, "lease")
    assert await store.spend("research", DAY, MONTH) == (1_000, 1_000)
    await store.close()


async def test_a_leases_requests_count_in_every_rpm_window_they_may_run_in(redis_process) -> None:
    store, client = RedisStore(redis_process.url), redis.Redis.from_url(redis_process.url)
    hold = lease_hold()
    await store.admit(hold, LIMITS, LeaseAsk(4, 400, 4_000, 2.0))
    now_ms = client.time()[0] * 1000
    scores = [score for _, score in client.zrange("gw:{research}:rpm", 0, -1, withscores=True)]
    # Dated at the end of the lease's life, so a window ending a minute after it still counts them.
    assert len(scores) == 4 and all(score >= now_ms + 1_000 for score in scores)
    await store.close()
