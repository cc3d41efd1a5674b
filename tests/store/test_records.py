"""Per-request records as an operator reads them back: since a time, and one request by its id."""

from __future__ import annotations

import dataclasses
import time

import orjson
import redis

from gateway.ids import new_id
from gateway.store import Store, UsageRecord
from gateway.store.redis import RedisStore
from tests.store.test_store import used
from tests.waiting import wait_until


def next_millisecond() -> int:
    now_ms = int(time.time() * 1000)
    return wait_until(lambda: int(time.time() * 1000) > now_ms and int(time.time() * 1000), what="the next ms")


def what_happened(request_id: str, team: str = "research") -> UsageRecord:
    return dataclasses.replace(used(team=team, request_id=request_id), status=502, endpoint="chat", attempts=2,
                               error_code="upstream_error", ttfb_ms=840, stream=True, usage_estimated="absent")


async def test_a_record_keeps_what_happened_to_its_request(store: Store) -> None:
    record = what_happened("req-1")

    await store.settle(new_id(), record)

    assert await store.find_record("req-1") == record
    assert not record.client_left and dataclasses.replace(record, status=499).client_left


async def test_a_request_is_found_in_any_team_or_only_in_the_team_named(store: Store) -> None:
    for n, team in enumerate(["research", "support", "research"]):
        await store.settle(new_id(), what_happened(f"req-{n}", team))

    found = await store.find_record("req-1")

    assert found is not None and found.team == "support"
    assert (await store.find_record("req-1", team="support")) == found
    assert await store.find_record("req-1", team="research") is None
    assert await store.find_record("req-unknown") is None
    assert await store.find_record("req-1", team="nobody") is None


async def test_neither_listing_nor_lookup_reaches_before_since(store: Store) -> None:
    await store.settle(new_id(), used(request_id="old"))
    since = next_millisecond()
    await store.settle(new_id(), used(request_id="new"))

    assert [r.request_id for r in await store.records("research", since_ms=since)] == ["new"]
    assert [r.request_id for r in await store.records(None, since_ms=since)] == ["new"]
    assert await store.find_record("old", since_ms=since) is None
    assert (await store.find_record("old")) is not None


async def test_a_lookup_gives_up_after_the_records_it_may_read(store: Store) -> None:
    for n in range(2_500):  # more than one page of the Redis stream
        await store.settle(new_id(), used(request_id=f"req-{n}"))

    assert await store.find_record("req-0", max_scanned=2_000) is None
    assert (await store.find_record("req-0", max_scanned=3_000)).request_id == "req-0"
    assert (await store.find_record("req-2499", max_scanned=1)).request_id == "req-2499"


async def test_a_record_written_before_these_fields_existed_still_reads(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, timeout_s=2.0, prefix=redis_prefix)
    old = {f.name: getattr(used(request_id="req-old"), f.name) for f in dataclasses.fields(UsageRecord)
           if f.name in ("team", "key_id", "model", "provider", "prompt_tokens", "completion_tokens", "cost_nano",
                         "provider_cost_nano", "status", "latency_ms", "time_ms", "day", "month", "request_id",
                         "table_cost_nano")}
    client = redis.Redis.from_url(redis_url)
    client.xadd(f"{redis_prefix}:{{research}}:records", {"r": orjson.dumps(old)})
    client.sadd(f"{redis_prefix}:{{teams}}:all", "research")
    client.close()
    try:
        found = await store.find_record("req-old")
        [listed] = await store.records("research")
    finally:
        await store.close()

    assert found == listed
    assert (found.request_id, found.time_ms, found.cost_nano) == ("req-old", old["time_ms"], old["cost_nano"])
    assert (found.attempts, found.error_code, found.ttfb_ms, found.stream, found.usage_estimated) == (
        1, None, None, False, None)
