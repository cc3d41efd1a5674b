"""Quotas and spend, end to end: two gateway processes sharing one real Redis, fake
providers that keep their own bills, and a team whose budget runs out mid-way."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from gateway.money import token_cost, usd_to_nano
from gateway.store.redis import RedisStore
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess
from tests.waiting import holds_for, wait_until

KEY = "sk-team-alpha"
PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per million tokens, as the fakes price them
PROMPT = "one two three four five six seven eight nine ten"  # ten tokens for the fakes


def config(fakes: dict[str, FakeProvider], redis_url: str, abandoned_streams: str = "close", **team: object) -> dict:
    price = {"input_per_mtok": PRICE_IN, "output_per_mtok": PRICE_OUT}
    return {
        "store": {"url": redis_url},
        "providers": {
            kind: {"kind": kind, "base_url": fakes[kind].base_url, "api_key": fakes[kind].api_key,
                   "abandoned_streams": abandoned_streams}
            for kind in ("openai", "deepinfra")
        },
        "models": {
            "m-openai": {"routes": [{"provider": "openai", "model": "gpt-4o-mini", "price": price}]},
            "m-deepinfra": {"routes": [{"provider": "deepinfra", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                                        "price": price}]},
        },
        "teams": {"alpha": {"keys": [KEY], **team}, "beta": {"keys": ["sk-team-beta"], "models": ["m-openai"]}},
        "server": {"admin_key": "admin-secret"},
    }


@pytest.fixture
def fakes():
    # A token every 20 ms, as real servers stream: a provider notices a disconnect before
    # its next token, so what it bills for a cut stream is what the gateway received.
    started = {kind: FakeProvider(kind, completion_tokens=8, token_delay_s=0.02,
                                  price_in_per_mtok=PRICE_IN, price_out_per_mtok=PRICE_OUT).start()
               for kind in ("openai", "deepinfra")}
    yield started
    for fake in started.values():
        fake.stop()


def bill_nano(prompt_tokens: int, completion_tokens: int) -> int:
    return token_cost(prompt_tokens, usd_to_nano(PRICE_IN)) + token_cost(completion_tokens, usd_to_nano(PRICE_OUT))


async def one_request(client: httpx.AsyncClient, base: str, model: str, stream: bool, disconnect: bool,
                      max_tokens: int = 8) -> tuple:
    request_id = uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "stream": stream}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id}
    async with client.stream("POST", base + "/chat/completions", json=body, headers=headers) as response:
        if response.status_code == 200 and disconnect:
            async for _ in response.aiter_bytes():
                break  # the client goes away after its first bytes
            return request_id, 499
        await response.aread()
        return request_id, response.status_code


def test_budget_holds_and_spend_matches_the_providers_bills_across_two_gateways(fakes, redis_process):
    budget_usd = 0.004  # about 150 of the 300 requests' actual cost
    # Streams the clients abandon are read to their usage, so they too are billed exactly.
    cfg = config(fakes, redis_process.url, abandoned_streams="finish", budget_usd={"day": budget_usd, "month": 100})
    with GatewayProcess(cfg) as first, GatewayProcess(cfg) as second:
        async def load() -> list[tuple]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                jobs = []
                for i in range(300):
                    base = (first if i % 2 else second).base_url
                    model = "m-deepinfra" if i % 3 == 0 else "m-openai"
                    jobs.append(one_request(client, base, model, stream=i % 4 < 2, disconnect=i % 20 == 1))
                return await asyncio.gather(*jobs)

        results = asyncio.run(load())
        admitted = {rid for rid, status in results if status in (200, 499)}
        records = settled_records(redis_process.url, "alpha", len(admitted))

    statuses = [status for _, status in results]
    assert statuses.count(429) > 0, "the budget should run out mid-way"
    assert set(statuses) <= {200, 429, 499}
    # every admitted request recorded exactly once, and nothing else
    assert sorted(r.request_id for r in records) == sorted(admitted)
    spent = sum(r.cost_nano for r in records)
    assert spent <= usd_to_nano(budget_usd)
    # What the gateway recorded is what the providers billed, to the nano-dollar, for every
    # admitted request, the streams whose clients left included.
    bills = [b for fake in fakes.values() for b in fake.ledger]
    assert statuses.count(499) > 0 and not any(b.disconnected for b in bills)
    assert len(bills) == len(records)
    assert spent == sum(b.cost_usd_nano for b in bills)
    assert sum(r.prompt_tokens for r in records) == sum(b.prompt_tokens for b in bills)
    assert sum(r.completion_tokens for r in records) == sum(b.completion_tokens for b in bills)
    assert all(r.completion_tokens == 8 and r.prompt_tokens == 10 for r in records if r.status == 499)


def test_streams_cut_at_a_provider_that_stops_are_billed_for_what_reached_the_gateway(fakes, redis_process):
    """`abandoned_streams: close`: the generation stops at once, and no usage ever comes.

    A provider bills every token it generated before it saw the cut, the gateway counts
    every token that reached it, so at most the one token per stream still on the wire can
    differ; the prompt is estimated from its size.
    """
    for fake in fakes.values():
        fake.completion_tokens = 200  # four seconds each: only a cut ends them early
    with GatewayProcess(config(fakes, redis_process.url, abandoned_streams="close")) as gw:
        async def load() -> list[tuple]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(
                    one_request(client, gw.base_url, "m-deepinfra" if i % 2 else "m-openai", stream=True,
                                disconnect=True, max_tokens=200) for i in range(10)))

        results = asyncio.run(load())
        records = settled_records(redis_process.url, "alpha", len(results))
    cut = [b for fake in fakes.values() for b in fake.ledger]
    assert [status for _, status in results] == [499] * 10
    assert len(records) == len(cut) == 10 and all(b.disconnected for b in cut)
    received = sum(r.completion_tokens for r in records)
    billed = sum(b.completion_tokens for b in cut)
    assert billed - len(cut) <= received <= billed < 10 * 200
    assert all(10 <= r.prompt_tokens <= 30 for r in records)


def settled_records(url: str, team: str, expected: int, timeout_s: float = 10.0) -> list:
    """The team's records once `expected` have landed (settlement runs after each response)."""
    def fetch() -> list:
        return asyncio.run(_records(url, team))

    def landed() -> list | None:
        found = fetch()
        return found if len(found) >= expected else None

    records = wait_until(landed, timeout_s, f"{expected} records")
    holds_for(lambda: len(fetch()) == len(records), 0.2, "no request recorded twice")
    return records


async def _records(url: str, team: str) -> list:
    store = RedisStore(url)
    try:
        return await store.records(team, count=10_000)
    finally:
        await store.close()


def test_rate_limit_refuses_with_retry_after_and_openai_headers(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url, rpm=3)) as gw:
        headers = {"authorization": f"Bearer {KEY}"}
        body = {"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]}
        answers = [httpx.post(gw.base_url + "/chat/completions", json=body, headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # The figures of the limit that refused, as OpenAI sends them.
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == refused.headers["retry-after"] + ".000s"
    assert refused.headers["x-request-id"]


def test_spent_budget_is_insufficient_quota(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url, budget_usd={"day": 0.0000001})) as gw:
        answer = httpx.post(gw.base_url + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == answer.json()["error"]["type"] == "insufficient_quota"
    assert [r for r in fakes["openai"].requests if r.method == "POST"] == []
    # Retrying cannot help until the day turns: the SDKs are told not to, and never to wait long.
    assert answer.headers["x-should-retry"] == "false"
    assert 1 <= int(answer.headers["retry-after"]) <= 60


def test_an_upstream_429_carries_no_team_headroom(fakes, redis_process):
    fakes["openai"].fail_next(1, status=429, headers={"retry-after": "2"})
    with GatewayProcess(config(fakes, redis_process.url, rpm=100)) as gw:
        answer = httpx.post(gw.base_url + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 429
    assert not [name for name in answer.headers if name.startswith("x-ratelimit-")]


def test_keys_decide_the_team_and_its_models(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url)) as gw:
        body = {"model": "m-deepinfra", "messages": [{"role": "user", "content": "hi"}]}
        missing = httpx.post(gw.base_url + "/chat/completions", json=body)
        wrong = httpx.post(gw.base_url + "/chat/completions", json=body, headers={"authorization": "Bearer nope"})
        other_team = httpx.post(gw.base_url + "/chat/completions", json=body,
                                headers={"authorization": "Bearer sk-team-beta"})
        listed = httpx.get(gw.base_url + "/models", headers={"authorization": "Bearer sk-team-beta"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "invalid_api_key")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
    assert (other_team.status_code, other_team.json()["error"]["code"]) == (403, "model_not_allowed")
    assert [m["id"] for m in listed.json()["data"]] == ["m-openai"]


def test_redis_down_is_a_quick_503_and_the_gateway_recovers(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url)) as gw:
        def ask() -> tuple[int, float]:
            started = time.monotonic()
            answer = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                                headers={"authorization": f"Bearer {KEY}"},
                                json={"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]})
            return answer.status_code, time.monotonic() - started

        assert ask()[0] == 200
        redis_process.stop()
        # A lease taken before Redis went (its money is held there) admits for at most store.lease_s.
        answers = []
        wait_until(lambda: answers.append(ask()) or answers[-1][0] == 503, 5, "a 503 once the lease is over",
                   interval_s=0.2)
        assert all(status == 200 for status, _ in answers[:-1]) and answers[-1][1] < 3.0
        assert httpx.get(gw.url + "/readyz").status_code == 503
        redis_process.start()
        wait_until(lambda: ask()[0] == 200, 5, "the gateway recovering when Redis came back", interval_s=0.2)
        assert httpx.get(gw.url + "/readyz").status_code == 200


def test_redis_down_admits_unmetered_when_configured_to(fakes, redis_process):
    cfg = config(fakes, redis_process.url)
    cfg["store"]["on_failure"] = "allow"
    with GatewayProcess(cfg) as gw:
        redis_process.stop()
        answer = httpx.post(gw.base_url + "/chat/completions", timeout=10, headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200


def test_revoked_key_stops_working_on_every_worker_within_a_second(fakes, redis_process):
    # Two gateway processes on one Redis: each answers on its own port, so each is asked for certain.
    cfg = config(fakes, redis_process.url)
    with GatewayProcess(cfg) as first, GatewayProcess(cfg) as second:
        admin = {"authorization": "Bearer admin-secret"}
        created = httpx.post(first.url + "/admin/keys", json={"team": "alpha", "name": "ci"}, headers=admin)
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["id"]
        body = {"model": "m-openai", "messages": [{"role": "user", "content": "hi"}]}
        auth = {"authorization": f"Bearer {key}"}

        def status(gw: GatewayProcess) -> int:
            return httpx.post(gw.base_url + "/chat/completions", json=body, headers=auth).status_code

        for gw in (first, second):
            wait_until(lambda: status(gw) == 200, 2, f"the new key working on {gw.url}")
        listed = httpx.get(first.url + "/admin/keys", params={"team": "alpha"}, headers=admin).json()["data"]
        assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
        assert httpx.delete(first.url + f"/admin/keys/{key_id}", headers=admin).status_code == 200
        revoked_at = time.monotonic()
        for gw in (first, second):
            wait_until(lambda: status(gw) == 401, 1.0 - (time.monotonic() - revoked_at),
                       f"the revoked key refused by {gw.url}")
            holds_for(lambda: status(gw) == 401, 0.2, "the revocation")


def test_usage_report_by_day_model_and_provider(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url)) as gw:
        auth = {"authorization": f"Bearer {KEY}"}
        for model in ("m-openai", "m-openai", "m-deepinfra"):
            httpx.post(gw.base_url + "/chat/completions", headers=auth,
                       json={"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8})

        def settled() -> dict | None:
            report = httpx.get(gw.url + "/admin/usage", params={"team": "alpha"},
                               headers={"authorization": "Bearer admin-secret"}).json()
            return report if report["totals"]["requests"] == 3 else None

        report = wait_until(settled, 5, "three requests settled")
    totals = report["totals"]
    assert (totals["requests"], totals["prompt_tokens"], totals["completion_tokens"]) == (3, 30, 24)
    assert totals["cost_nano"] == 3 * bill_nano(10, 8)
    routes = report["days"][0]["by_route"]
    assert routes["m-openai|openai"]["requests"] == 2 and routes["m-deepinfra|deepinfra"]["requests"] == 1
    assert routes["m-deepinfra|deepinfra"]["provider_cost_nano"] == bill_nano(10, 8)


def test_a_burst_on_a_small_budget_spends_it_nearly_all_with_retries_and_never_more(fakes, redis_process):
    # Each request holds its worst case (prompt bound + 8 tokens) and costs far less: a burst finds
    # the budget held by requests in flight long before it is spent. Those refusals say "retry in a
    # second"; only a spent budget says insufficient_quota.
    per_request = bill_nano(10, 8)
    budget_nano = 100 * per_request
    cfg = config(fakes, redis_process.url, budget_usd={"day": budget_nano / 1e9, "month": 100})
    with GatewayProcess(cfg, workers=2) as gw:
        async def one(client: httpx.AsyncClient) -> list[str]:
            codes = []
            for _ in range(20):
                answer = await client.post(gw.base_url + "/chat/completions", headers={
                    "authorization": f"Bearer {KEY}"}, json={
                    "model": "m-openai", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8})
                code = "ok" if answer.status_code == 200 else answer.json()["error"]["code"]
                codes.append(code)
                if code != "budget_held_by_requests_in_flight":
                    return codes
                assert answer.headers["retry-after"] == "1"
                await asyncio.sleep(0.05 * (1 + len(codes)))  # a client's own backoff, shorter than asked
            return codes

        async def burst() -> list[list[str]]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                gate = asyncio.Semaphore(50)

                async def gated() -> list[str]:
                    async with gate:
                        return await one(client)
                return await asyncio.gather(*(gated() for _ in range(300)))

        outcomes = asyncio.run(burst())
        records = settled_records(redis_process.url, "alpha", sum(o[-1] == "ok" for o in outcomes))
    spent = sum(r.cost_nano for r in records)
    assert spent <= budget_nano
    assert spent >= 0.95 * budget_nano, f"spent {spent} of {budget_nano}"
    assert {o[-1] for o in outcomes} <= {"ok", "insufficient_quota"}
    assert any("budget_held_by_requests_in_flight" in o for o in outcomes)


def test_a_key_made_on_one_worker_works_on_every_worker_from_its_first_request(fakes, redis_process):
    with GatewayProcess(config(fakes, redis_process.url), workers=2) as gw:
        made = httpx.post(gw.url + "/admin/keys", json={"team": "alpha", "name": "new"},
                          headers={"authorization": "Bearer admin-secret"}).json()["key"]
        statuses = []
        for _ in range(20):  # a new connection each: the two workers share the listening socket
            with httpx.Client(timeout=10) as client:
                statuses.append(client.post(gw.base_url + "/chat/completions", headers={
                    "authorization": f"Bearer {made}"}, json={
                    "model": "m-openai", "messages": [{"role": "user", "content": "hi"}]}).status_code)
    assert statuses == [200] * 20
