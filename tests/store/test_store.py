"""The store's contract, pinned against both backends (memory and Redis) alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
from redis.crc import key_slot

from gateway.ids import new_id
from gateway.store import Hold, KeyRecord, Limits, Store, StoreUnavailable, UsageRecord
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from gateway.store.redis_scripts import PURGE_BATCH, SCRIPTS
from tests.waiting import eventually, wait_until

DAY = "2030-01-15"
MONTH = "2030-01"


def hold(tokens: int = 100, cost: int = 1_000, *, team: str = "research", day: str = DAY, ttl_s: float = 600.0) -> Hold:
    return Hold(team=team, tokens=tokens, cost_nano=cost, day=day, month=day[:7], ttl_s=ttl_s)


def used(
    prompt: int = 10,
    completion: int = 5,
    cost: int = 300,
    *,
    team: str = "research",
    day: str = DAY,
    model: str = "llama-3.1-8b",
    provider: str = "deepinfra",
    provider_cost: int | None = None,
    request_id: str = "",
) -> UsageRecord:
    return UsageRecord(
        team=team,
        key_id="key-1",
        model=model,
        provider=provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_nano=cost,
        provider_cost_nano=provider_cost,
        status=200,
        latency_ms=120,
        time_ms=int(time.time() * 1000),
        day=day,
        month=day[:7],
        request_id=request_id,
    )


async def test_admission_holds_the_worst_case_until_settled(store: Store) -> None:
    admission = await store.admit(hold(cost=1_000), Limits())

    assert admission.admitted and admission.reservation_id
    assert await store.spend("research", DAY, MONTH) == (1_000, 1_000)


async def test_budget_never_overshoots_under_concurrency(store: Store) -> None:
    limits = Limits(budget_day_nano=1_000)

    answers = await asyncio.gather(*(store.admit(hold(cost=7), limits) for _ in range(300)))

    admitted = [a for a in answers if a.admitted]
    assert len(admitted) * 7 <= 1_000
    assert len(admitted) == 1_000 // 7  # and nothing that fitted was turned away
    # Nothing is spent yet: every refusal is for the requests in flight, and says so.
    assert {a.refused_by for a in answers if not a.admitted} == {"budget_day_held"}
    assert await store.spend("research", DAY, MONTH) == (len(admitted) * 7, len(admitted) * 7)


async def test_rpm_never_overshoots_under_concurrency(store: Store) -> None:
    answers = await asyncio.gather(*(store.admit(hold(), Limits(rpm=50)) for _ in range(200)))

    assert sum(a.admitted for a in answers) == 50


async def test_refused_admission_reserves_nothing(store: Store) -> None:
    limits = Limits(rpm=2, tpm=1_000, budget_day_nano=1_000)

    refused = await store.admit(hold(tokens=100, cost=5_000), limits)

    assert not refused.admitted and refused.refused_by == "budget_day"
    assert refused.reservation_id is None
    assert await store.spend("research", DAY, MONTH) == (0, 0)
    # Neither the request nor its tokens were counted: both slots and all tokens are free.
    first = await store.admit(hold(tokens=500, cost=10), limits)
    second = await store.admit(hold(tokens=500, cost=10), limits)
    assert first.admitted and second.admitted
    assert second.requests_remaining == 0 and second.tokens_remaining == 0


async def test_a_budget_held_by_requests_in_flight_refuses_for_a_second_not_for_the_day(store: Store) -> None:
    limits = Limits(budget_day_nano=1_000)
    first = await store.admit(hold(cost=600), limits)

    held = await store.admit(hold(cost=600), limits)
    assert not held.admitted and held.refused_by == "budget_day_held" and held.retry_after_s == 1

    assert await store.settle(first.reservation_id, used(cost=100))  # it used far less than its worst case
    second = await store.admit(hold(cost=600), limits)
    assert second.admitted
    assert await store.settle(second.reservation_id, used(cost=800))
    spent = await store.admit(hold(cost=600), limits)
    assert not spent.admitted and spent.refused_by == "budget_day" and spent.retry_after_s > 60


async def test_a_release_gives_a_reservation_back_and_records_nothing(store: Store) -> None:
    limits = Limits(rpm=1, budget_day_nano=1_000)
    admission = await store.admit(hold(cost=1_000), limits)

    assert await store.release("research", admission.reservation_id, ttl_s=60)

    assert await store.spend("research", DAY, MONTH) == (0, 0)
    assert await store.records("research") == []
    assert (await store.admit(hold(cost=1_000), limits)).admitted  # its request left the rpm window too
    assert not await store.release("research", admission.reservation_id, ttl_s=60)


async def test_a_release_that_reaches_the_store_before_its_admission_wins(store: Store) -> None:
    # The admission's answer was lost (a timeout while Redis was paused) and the gateway
    # released it; the admission itself, still queued, runs only afterwards.
    lost = hold(cost=1_000)
    assert not await store.release("research", lost.reservation_id, ttl_s=60)

    late = await store.admit(lost, Limits())

    assert not late.admitted and late.refused_by == "released"
    assert await store.spend("research", DAY, MONTH) == (0, 0)


async def test_admitting_the_same_id_again_holds_once(store: Store) -> None:
    again = hold(cost=1_000)
    assert (await store.admit(again, Limits())).admitted
    assert (await store.admit(again, Limits())).admitted
    assert await store.spend("research", DAY, MONTH) == (1_000, 1_000)


@pytest.mark.parametrize("amount", [-1, 2**53, 10**20])
async def test_amounts_that_redis_would_not_hold_exactly_are_refused_before_the_store(store: Store,
                                                                                       amount: int) -> None:
    with pytest.raises(ValueError):
        await store.admit(hold(tokens=amount), Limits())
    with pytest.raises(ValueError):
        await store.settle(new_id(), used(cost=amount))
    assert await store.spend("research", DAY, MONTH) == (0, 0)


async def test_settle_replaces_reservation_with_actual_cost(store: Store) -> None:
    admission = await store.admit(hold(cost=1_000), Limits())

    assert await store.settle(admission.reservation_id, used(cost=300))

    assert await store.spend("research", DAY, MONTH) == (300, 300)


async def test_settling_twice_records_once(store: Store) -> None:
    admission = await store.admit(hold(cost=1_000), Limits())

    first = await store.settle(admission.reservation_id, used(cost=300))
    second = await store.settle(admission.reservation_id, used(cost=300))

    assert (first, second) == (True, False)
    assert await store.spend("research", DAY, MONTH) == (300, 300)
    [day] = await store.usage("research", DAY, DAY)
    assert day.requests == 1
    assert len(await store.records("research")) == 1


async def test_settling_ids_never_admitted_records_each_once(store: Store) -> None:
    # Admitted while the store was down: the id is the gateway's, and a retry of it records nothing.
    unmetered = new_id()
    assert await store.settle(unmetered, used(cost=300))
    assert await store.settle(new_id(), used(cost=300))
    assert not await store.settle(unmetered, used(cost=300))

    assert await store.spend("research", DAY, MONTH) == (600, 600)
    assert len(await store.records("research")) == 2


async def test_expired_reservation_releases_its_hold(store: Store) -> None:
    limits = Limits(budget_day_nano=1_500)
    assert (await store.admit(hold(cost=1_000, ttl_s=0.2), limits)).admitted
    assert not (await store.admit(hold(cost=1_000), limits)).admitted

    await eventually(lambda: _spent(store, (0, 0)), timeout_s=3, what="the expired hold released")

    assert (await store.admit(hold(cost=1_000), limits)).admitted


async def test_settling_an_expired_reservation_still_records_the_actual_cost(store: Store) -> None:
    admission = await store.admit(hold(cost=1_000, ttl_s=0.1), Limits())
    await eventually(lambda: _spent(store, (0, 0)), timeout_s=3, what="the reservation expired")

    assert await store.settle(admission.reservation_id, used(cost=300))

    assert await store.spend("research", DAY, MONTH) == (300, 300)
    [day] = await store.usage("research", DAY, DAY)
    assert day.requests == 1


async def test_settling_an_expired_reservation_twice_records_once(store: Store) -> None:
    admission = await store.admit(hold(cost=1_000, ttl_s=0.1), Limits())
    await eventually(lambda: _spent(store, (0, 0)), timeout_s=3, what="the reservation expired")

    first = await store.settle(admission.reservation_id, used(cost=300))
    second = await store.settle(admission.reservation_id, used(cost=300))

    assert (first, second) == (True, False)
    assert await store.spend("research", DAY, MONTH) == (300, 300)


async def test_a_settled_id_is_remembered_only_until_its_reservation_expires(store: Store) -> None:
    # Idempotency costs nothing per request beyond the reservation's own lifetime: once it
    # has passed, the id is forgotten, like an id that was never seen (which is recorded).
    admission = await store.admit(hold(cost=1_000, ttl_s=0.5), Limits())
    assert await store.settle(admission.reservation_id, used(cost=300))
    assert not await store.settle(admission.reservation_id, used(cost=300))

    # Settling again records nothing until the id is forgotten, then records once.
    await eventually(lambda: store.settle(admission.reservation_id, used(cost=300)), timeout_s=3,
                     what="the settled id forgotten")
    assert await store.spend("research", DAY, MONTH) == (600, 600)


async def test_rpm_refuses_with_retry_after(store: Store) -> None:
    limits = Limits(rpm=3)
    remaining = [(await store.admit(hold(), limits)).requests_remaining for _ in range(3)]

    refused = await store.admit(hold(), limits)

    assert remaining == [2, 1, 0]
    assert not refused.admitted and refused.refused_by == "rpm"
    # The oldest of the three leaves the 60 s window about a minute from now.
    assert 58 <= refused.retry_after_s <= 60


async def test_tpm_counts_in_flight_and_settled_tokens(store: Store) -> None:
    limits = Limits(tpm=100)
    first = await store.admit(hold(tokens=60), limits)
    assert first.tokens_remaining == 40
    refused = await store.admit(hold(tokens=50), limits)
    assert refused.refused_by == "tpm" and refused.retry_after_s >= 1
    assert (await store.admit(hold(tokens=40), limits)).tokens_remaining == 0

    # Settling the first swaps its 60 held tokens for the 10 it used.
    await store.settle(first.reservation_id, used(prompt=4, completion=6))

    second = await store.admit(hold(tokens=50), limits)
    assert second.admitted and second.tokens_remaining == 0
    assert 0 < second.tokens_reset_s <= 60
    late = await store.admit(hold(tokens=1), limits)
    assert late.refused_by == "tpm"
    assert 58 <= late.retry_after_s <= 60  # when the settled 10 tokens leave the window


async def test_a_refusal_reports_the_figures_of_the_limit_that_refused(store: Store) -> None:
    for _ in range(2):
        await store.admit(hold(tokens=30), Limits(rpm=2, tpm=100))
    by_rpm = await store.admit(hold(tokens=30), Limits(rpm=2, tpm=100))
    assert (by_rpm.refused_by, by_rpm.requests_remaining, by_rpm.tokens_remaining) == ("rpm", 0, None)
    assert by_rpm.requests_reset_s == by_rpm.retry_after_s
    by_tpm = await store.admit(hold(tokens=50), Limits(tpm=100))
    assert (by_tpm.refused_by, by_tpm.tokens_remaining, by_tpm.requests_remaining) == ("tpm", 40, None)


async def test_a_tpm_hold_with_a_floor_shrinks_to_what_the_minute_has_left(store: Store) -> None:
    limits = Limits(tpm=1_000)
    await store.admit(hold(tokens=700), limits)
    flexible = Hold(team="research", tokens=5_000, cost_nano=1_000, day=DAY, month=MONTH, tpm_floor=200)
    admitted = await store.admit(flexible, limits)
    assert admitted.admitted and admitted.tokens_remaining == 0  # held 300, not 5,000
    too_big = Hold(team="research", tokens=5_000, cost_nano=1_000, day=DAY, month=MONTH, tpm_floor=1)
    assert (await store.admit(too_big, limits)).refused_by == "tpm"  # nothing left at all
    # Its release gives back the 300 it held, no more.
    await store.release("research", admitted.reservation_id, 600)
    assert (await store.admit(hold(tokens=300), limits)).tokens_remaining == 0


async def test_a_prompt_above_the_floor_of_what_is_left_is_still_refused(store: Store) -> None:
    limits = Limits(tpm=1_000)
    await store.admit(hold(tokens=900), limits)
    flexible = Hold(team="research", tokens=5_000, cost_nano=1_000, day=DAY, month=MONTH, tpm_floor=200)
    assert (await store.admit(flexible, limits)).refused_by == "tpm"


async def test_tpm_refuses_a_request_larger_than_the_limit_for_a_full_window(store: Store) -> None:
    refused = await store.admit(hold(tokens=101), Limits(tpm=100))

    assert refused.refused_by == "tpm" and refused.retry_after_s == 60


async def test_limits_are_checked_rpm_tpm_budget_day_budget_month(store: Store) -> None:
    assert (await store.admit(hold(tokens=100, cost=1_000), Limits())).admitted
    full = dict(rpm=1, tpm=100, budget_day_nano=1_000, budget_month_nano=1_000)

    refusals = []
    for lifted in ("rpm", "tpm", "budget_day_nano", "budget_month_nano"):
        refusals.append((await store.admit(hold(tokens=1, cost=1), Limits(**full))).refused_by)
        full[lifted] = None

    assert refusals == ["rpm", "tpm", "budget_day_held", "budget_month_held"]  # the first is still in flight
    assert (await store.admit(hold(tokens=1, cost=1), Limits(**full))).admitted


async def test_budget_refusal_retries_at_the_next_utc_boundary(store: Store) -> None:
    now = datetime.now(timezone.utc)
    today = now.date().isoformat()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    month_end = datetime(year, month, 1, tzinfo=timezone.utc)

    by_day = await store.admit(hold(cost=10, day=today), Limits(budget_day_nano=5))
    by_month = await store.admit(hold(cost=10, day=today), Limits(budget_month_nano=5))

    assert by_day.refused_by == "budget_day"
    assert abs(by_day.retry_after_s - max(1, (midnight - now).total_seconds())) <= 2
    assert by_month.refused_by == "budget_month"
    assert abs(by_month.retry_after_s - max(1, (month_end - now).total_seconds())) <= 2


async def test_day_budget_resets_on_a_new_day(store: Store) -> None:
    limits = Limits(budget_day_nano=1_000)
    first = await store.admit(hold(cost=1_000, day="2030-01-15"), limits)
    await store.settle(first.reservation_id, used(cost=1_000, day="2030-01-15"))
    assert (await store.admit(hold(cost=1, day="2030-01-15"), limits)).refused_by == "budget_day"

    assert (await store.admit(hold(cost=1_000, day="2030-01-16"), limits)).admitted


async def test_month_budget_counts_every_day_of_the_month(store: Store) -> None:
    limits = Limits(budget_day_nano=1_000, budget_month_nano=1_500)
    first = await store.admit(hold(cost=1_000, day="2030-01-15"), limits)
    await store.settle(first.reservation_id, used(cost=1_000, day="2030-01-15"))

    refused = await store.admit(hold(cost=1_000, day="2030-01-16"), limits)

    assert refused.refused_by == "budget_month"
    assert (await store.admit(hold(cost=1_000, day="2030-02-01"), limits)).admitted


async def test_teams_have_separate_quotas(store: Store) -> None:
    limits = Limits(rpm=1, budget_day_nano=1_000)
    assert (await store.admit(hold(cost=1_000, team="research"), limits)).admitted

    assert (await store.admit(hold(cost=1_000, team="support"), limits)).admitted
    assert await store.spend("support", DAY, MONTH) == (1_000, 1_000)


async def test_usage_by_day_and_route(store: Store) -> None:
    await store.settle(new_id(), used(10, 5, 300, day="2030-01-14", provider_cost=290))
    await store.settle(new_id(), used(20, 10, 600, day="2030-01-15", provider="novita"))
    await store.settle(new_id(), used(1, 2, 30, day="2030-01-15", provider_cost=25))
    await store.settle(new_id(), used(1, 1, 1, day="2030-01-20"))
    await store.settle(new_id(), used(1, 1, 1, day="2030-01-15", team="support"))

    days = await store.usage("research", "2030-01-13", "2030-01-16")

    assert [d.day for d in days] == ["2030-01-14", "2030-01-15"]
    fifteenth = days[1]
    assert (fifteenth.requests, fifteenth.prompt_tokens, fifteenth.completion_tokens) == (2, 21, 12)
    assert (fifteenth.cost_nano, fifteenth.provider_cost_nano) == (630, 25)
    assert fifteenth.by_route == {
        "llama-3.1-8b|novita": {"requests": 1, "prompt_tokens": 20, "completion_tokens": 10,
                                "cost_nano": 600, "provider_cost_nano": 0},
        "llama-3.1-8b|deepinfra": {"requests": 1, "prompt_tokens": 1, "completion_tokens": 2,
                                   "cost_nano": 30, "provider_cost_nano": 25},
    }
    assert days[0].provider_cost_nano == 290
    assert await store.usage("nobody", "2030-01-01", "2030-01-31") == []


async def test_records_round_trip_every_field(store: Store) -> None:
    record = used(7, 3, 123, provider_cost=120, request_id="req-1")

    await store.settle(new_id(), record)

    assert await store.records("research") == [record]


async def test_records_newest_first_and_capped(make_store: Callable[..., Awaitable[Store]]) -> None:
    store = await make_store(max_records=10)
    for n in range(150):
        await store.settle(new_id(), used(request_id=f"req-{n}"))

    newest = await store.records("research", count=1_000)

    assert [r.request_id for r in newest[:3]] == ["req-149", "req-148", "req-147"]
    assert [r.request_id for r in newest] == [f"req-{n}" for n in range(149, 149 - len(newest), -1)]
    # Redis trims whole stream nodes (approximate MAXLEN), so it may keep a node's worth more.
    assert 10 <= len(newest) <= 10 + 100
    assert len(await store.records("research", count=5)) == 5


async def test_records_of_all_teams_interleave_newest_first(store: Store) -> None:
    for n, team in enumerate(["research", "support", "research", "support"]):
        await store.settle(new_id(), used(team=team, request_id=f"req-{n}"))
        now_ms = int(time.time() * 1000)  # Redis orders records across teams by stream id (ms)
        wait_until(lambda: int(time.time() * 1000) > now_ms, what="the next millisecond")

    everyone = await store.records(None, count=3)

    assert [r.request_id for r in everyone] == ["req-3", "req-2", "req-1"]
    assert [r.request_id for r in await store.records("support")] == ["req-3", "req-1"]
    assert await store.records("nobody") == []


async def test_revoked_key_changes_version(store: Store) -> None:
    before = await store.keys_version()
    await store.add_key(KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1))
    added = await store.keys_version()

    assert await store.revoke_key("k-1")
    revoked = await store.keys_version()

    assert before < added < revoked
    assert await store.keys() == [KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1, revoked=True)]
    assert not await store.revoke_key("no-such-key")
    assert await store.keys_version() == revoked


async def test_keys_are_listed_by_team(store: Store) -> None:
    research = KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1)
    support = KeyRecord("k-2", "hash-2", "support", "bot", created_ms=2)
    await store.add_key(support)
    await store.add_key(research)

    assert await store.keys() == [research, support]
    assert await store.keys("support") == [support]
    assert await store.keys("nobody") == []


async def test_large_amounts_stay_exact(store: Store) -> None:
    # Beyond 14 digits, where a Lua number would print as 1.2345678901234e+14.
    cost = 123_456_789_012_345
    admission = await store.admit(hold(cost=cost), Limits(budget_day_nano=2**53 - 1))
    assert await store.spend("research", DAY, MONTH) == (cost, cost)

    await store.settle(admission.reservation_id, used(cost=cost + 2, provider_cost=cost + 1))

    assert await store.spend("research", DAY, MONTH) == (cost + 2, cost + 2)
    [day] = await store.usage("research", DAY, DAY)
    assert (day.cost_nano, day.provider_cost_nano) == (cost + 2, cost + 1)


async def test_negative_amounts_are_refused_before_they_reach_the_store(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.admit(hold(tokens=-1), Limits())
    with pytest.raises(ValueError):
        await store.settle(new_id(), used(cost=-1))

    assert await store.spend("research", DAY, MONTH) == (0, 0)


async def test_memory_forgets_settled_ids_when_their_reservations_expire() -> None:
    store = MemoryStore()
    for _ in range(500):
        admission = await store.admit(hold(ttl_s=0.5), Limits())
        assert await store.settle(admission.reservation_id, used())
    team = store._teams["research"]
    assert len(team.settled) == 500 and not team.reservations
    last_expiry_ms = max(expiry for expiry, _ in team.expiries)

    wait_until(lambda: time.time() * 1000 > last_expiry_ms, timeout_s=3, what="the last reservation's expiry")
    assert (await store.admit(hold(), Limits())).admitted

    assert not team.settled and len(team.reservations) == 1 and len(team.expiries) == 1


# ----------------------------- Redis only -----------------------------


SLOW_TTL_S = 2.0  # reservations that outlive a few hundred requests on a busy machine


def _team_keys(client: redis.Redis, prefix: str, team: str) -> dict[str, int]:
    """The team's keys, each with its TTL in seconds."""
    return {key.decode().split("}:", 1)[1]: client.ttl(key)
            for key in client.scan_iter(match=f"{prefix}:{{{team}}}:*", count=1000)}


def _wait_for_expiry(client: redis.Redis, prefix: str, *teams: str) -> None:
    """Until Redis's own clock has passed every expiry in the teams' reservation zsets."""
    def due() -> bool:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        latest = [client.zrange(f"{prefix}:{{{team}}}:reservations:expiry", -1, -1, withscores=True) for team in teams]
        return all(not found or found[0][1] < now_ms for found in latest)

    wait_until(due, timeout_s=SLOW_TTL_S + 5, what="every reservation's expiry")


async def _spent(store: Store, expected: tuple[int, int]) -> bool:
    return await store.spend("research", DAY, MONTH) == expected


async def _settle_many(store: Store, team: str, count: int, *, ttl_s: float) -> None:
    async def one() -> None:
        admission = await store.admit(hold(team=team, ttl_s=ttl_s), Limits())
        assert await store.settle(admission.reservation_id, used(team=team))

    for start in range(0, count, 50):
        await asyncio.gather(*(one() for _ in range(min(50, count - start))))


async def test_settled_requests_leave_no_keys_behind(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        await _settle_many(store, "support", 5, ttl_s=SLOW_TTL_S)
        await _settle_many(store, "research", 500, ttl_s=SLOW_TTL_S)
        _wait_for_expiry(client, redis_prefix, "support", "research")
        for team in ("support", "research"):  # the purge in admit drops the expired tombstones
            assert (await store.admit(hold(team=team), Limits())).admitted

        few, many = _team_keys(client, redis_prefix, "support"), _team_keys(client, redis_prefix, "research")
        assert sorted(many) == sorted(few)  # the key count does not grow with the requests settled
        assert not any(name.startswith("settled:") for name in many)
        assert all(ttl > 0 for ttl in many.values()), many
        expiry = f"{redis_prefix}:{{research}}:reservations:expiry"
        assert client.zcard(expiry) == 1  # only the live reservation of the last admit
        assert client.hlen(f"{redis_prefix}:{{research}}:reservations") == 1
        [day] = await store.usage("research", DAY, DAY)
        assert day.requests == 500
    finally:
        client.close()
        await store.close()


async def test_the_hot_path_reissues_no_ttls(redis_process) -> None:
    # A private server, so commandstats counts only this test's calls.
    store = RedisStore(redis_process.url, timeout_s=2.0)
    client = redis.Redis.from_url(redis_process.url)
    limits = Limits(rpm=10_000, tpm=10**9, budget_day_nano=10**12, budget_month_nano=10**12)
    try:
        # One request stays in flight, as on a busy team: the reservations hash and the held
        # sums never empty, so they are not made again (and given a TTL again) per request.
        assert (await store.admit(hold(), limits)).admitted
        for n in range(51):
            if n == 1:  # the first pair sets the TTLs of the keys it makes
                before = client.info("commandstats")
            admission = await store.admit(hold(), limits)
            assert await store.settle(admission.reservation_id, used())
        after = client.info("commandstats")

        def calls(name: str) -> int:
            return after.get(f"cmdstat_{name}", {}).get("calls", 0) - before.get(f"cmdstat_{name}", {}).get("calls", 0)

        assert calls("evalsha") == 100
        assert calls("expire") == calls("pexpire") == calls("set") == 0
        assert all(client.ttl(key) > 0 for key in client.scan_iter(match="gw:{research}:*"))
    finally:
        client.close()
        await store.close()


async def test_a_short_usage_ttl_is_refreshed_on_every_settlement(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix, usage_ttl_s=1_000)
    client = redis.Redis.from_url(redis_url)
    day_key = f"{redis_prefix}:{{research}}:day:{DAY}"
    try:
        await store.settle(new_id(), used())
        client.expire(day_key, 5)
        await store.settle(new_id(), used())
        assert client.ttl(day_key) > 900
    finally:
        client.close()
        await store.close()


async def test_a_purge_backlog_drains_in_batches(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    expiry = f"{redis_prefix}:{{research}}:reservations:expiry"
    try:
        crashed = await store.admit(hold(cost=5_000, ttl_s=SLOW_TTL_S), Limits())  # never settled
        await _settle_many(store, "research", PURGE_BATCH + 100, ttl_s=SLOW_TTL_S)
        assert client.zcard(expiry) == PURGE_BATCH + 101
        _wait_for_expiry(client, redis_prefix, "research")

        assert await store.spend("research", DAY, MONTH) == ((PURGE_BATCH + 100) * 300,) * 2
        assert client.zcard(expiry) == 101  # one call purges at most a batch
        await store.spend("research", DAY, MONTH)
        assert client.zcard(expiry) == 0
        assert client.hlen(f"{redis_prefix}:{{research}}:reservations") == 0
        assert crashed.admitted
    finally:
        client.close()
        await store.close()


async def test_unreachable_redis_raises_store_unavailable_quickly() -> None:
    store = RedisStore("redis://127.0.0.1:1/0", timeout_s=0.5)
    calls = [
        store.ping(),
        store.admit(hold(), Limits()),
        store.settle("r-1", used()),
        store.spend("research", DAY, MONTH),
        store.usage("research", DAY, DAY),
        store.records(),
        store.keys(),
        store.keys_version(),
        store.add_key(KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1)),
        store.revoke_key("k-1"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await call
        assert time.monotonic() - started < 1.0
    await store.close()


async def test_silent_redis_raises_store_unavailable_after_its_timeout() -> None:
    # Accepts the connection, then never answers: only the read timeout can end the wait.
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.admit(hold(), Limits())
        assert time.monotonic() - started < 1.5
    finally:
        await store.close()
        server.close()


async def test_two_gateway_processes_share_quotas(redis_url: str, redis_prefix: str) -> None:
    one = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    two = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    limits = Limits(rpm=10, budget_day_nano=1_000)
    try:
        answers = await asyncio.gather(*(s.admit(hold(cost=100), limits) for s in [one, two] * 10))
        assert sum(a.admitted for a in answers) == 10
        assert await two.spend("research", DAY, MONTH) == (1_000, 1_000)

        # A reservation made through one is settled through the other, once.
        reservation_id = next(a.reservation_id for a in answers if a.admitted)
        assert await two.settle(reservation_id, used(cost=40))
        assert not await one.settle(reservation_id, used(cost=40))
        assert await one.spend("research", DAY, MONTH) == (940, 940)

        await one.add_key(KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1))
        assert [k.key_id for k in await two.keys()] == ["k-1"]
    finally:
        await one.close()
        await two.close()


async def test_store_recovers_when_redis_comes_back(redis_process) -> None:
    store = RedisStore(redis_process.url, timeout_s=0.5)
    try:
        assert (await store.admit(hold(), Limits())).admitted

        redis_process.stop()
        with pytest.raises(StoreUnavailable):
            await store.admit(hold(), Limits())
        with pytest.raises(StoreUnavailable):
            await store.ping()  # what /readyz asks

        redis_process.start()
        assert (await store.admit(hold(), Limits())).admitted
        await store.ping()
    finally:
        await store.close()


async def test_scripts_are_loaded_again_after_a_script_flush(redis_process) -> None:
    store = RedisStore(redis_process.url, timeout_s=0.5)
    client = redis.Redis.from_url(redis_process.url)
    try:
        admission = await store.admit(hold(), Limits())
        client.script_flush()
        assert await store.settle(admission.reservation_id, used())
        client.script_flush()
        assert (await store.admit(hold(), Limits())).admitted
        assert await store.spend("research", DAY, MONTH) == (1_300, 1_300)
    finally:
        client.close()
        await store.close()


async def test_each_team_lives_in_one_cluster_slot(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        for team in ("research", "support"):
            admission = await store.admit(hold(team=team, ttl_s=0.05), Limits())
            await store.settle(admission.reservation_id, used(team=team))
            await store.admit(hold(team=team), Limits())
        await store.add_key(KeyRecord("k-1", "hash-1", "research", "ci", created_ms=1))
        await store.revoke_key("k-1")

        slots: dict[str, set[int]] = {}
        for key in client.scan_iter(match=f"{redis_prefix}:*"):
            tag = key.decode().split("{", 1)[1].split("}", 1)[0]
            slots.setdefault(tag, set()).add(key_slot(key))
        assert set(slots) == {"research", "support", "keys", "teams"}
        assert all(len(found) == 1 for found in slots.values())
        # Usage outlives the day; nothing the store writes lives forever by accident.
        day_key = f"{redis_prefix}:{{research}}:day:{DAY}"
        assert client.ttl(day_key) > 300 * 86_400
        for key in client.scan_iter(match=f"{redis_prefix}:{{research}}:*"):
            assert client.ttl(key) > 0, key
    finally:
        client.close()
        await store.close()


async def test_a_corrupt_reservation_or_held_sum_is_dropped_and_never_wedges_the_team(
        redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    team = f"{redis_prefix}:{{research}}"
    try:
        client.hset(f"{team}:reservations", "mangled", "not|a|reservation")
        client.zadd(f"{team}:reservations:expiry", {"mangled": 0})  # due: the next admit purges it
        client.hset(f"{team}:held", mapping={"tokens": "abc", f"d:{DAY}": "1.5"})

        admission = await store.admit(hold(tokens=100, cost=1_000), Limits(tpm=1_000, budget_day_nano=5_000))

        assert admission.admitted
        assert await store.settle(admission.reservation_id, used(cost=300))
        assert await store.spend("research", DAY, MONTH) == (300, 300)
        assert client.hlen(f"{team}:reservations") == 0 and client.hgetall(f"{team}:held") == {}
    finally:
        client.close()
        await store.close()


async def test_the_scripts_check_every_amount_before_their_first_write(redis_url: str, redis_prefix: str) -> None:
    # What the Python side already refuses, the scripts refuse too: nothing half-written.
    client = redis.Redis.from_url(redis_url)
    keys = [f"{redis_prefix}:{{research}}:{name}" for name in
            ("rpm", "tpm", "tpm:total", "reservations", "reservations:expiry", "held", f"day:{DAY}", f"month:{MONTH}")]
    try:
        for tokens in ("-5", "1e20", "9007199254740992", "12abc"):
            args = ["some-id", tokens, "100", DAY, MONTH, "60000", "", "", "", "", "0", "0", "1000"]
            with pytest.raises(redis.ResponseError, match="is not an amount"):
                client.eval(SCRIPTS["admit"].source, len(keys), *keys, *args)
        assert list(client.scan_iter(match=f"{redis_prefix}:*")) == []
    finally:
        client.close()


async def test_a_published_config_comes_back_with_a_version_one_above_the_last(store: Store) -> None:
    assert await store.config_version() == 0 and await store.published_config() is None
    assert await store.publish_config("teams: {}\n") == 1
    assert await store.publish_config("teams: {a: {}}\n") == 2
    assert await store.config_version() == 2
    assert await store.published_config() == (2, "teams: {a: {}}\n")


async def test_a_stored_response_is_its_teams_until_it_expires_or_is_deleted(store: Store) -> None:
    await store.put_response("alpha", "resp_1", b'{"v":1}', ttl_s=60)
    await store.put_response("alpha", "resp_short", b"{}", ttl_s=0.05)
    assert await store.get_response("alpha", "resp_1") == b'{"v":1}'
    assert await store.get_response("beta", "resp_1") is None  # another team's id is no id
    async def expired() -> bool:
        return await store.get_response("alpha", "resp_short") is None
    await eventually(expired, timeout_s=3, what="the short-lived response gone")
    assert not await store.delete_response("beta", "resp_1")
    assert await store.delete_response("alpha", "resp_1")
    assert await store.get_response("alpha", "resp_1") is None
