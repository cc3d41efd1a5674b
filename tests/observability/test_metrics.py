"""Specifications of the gateway's Prometheus metrics: what one request adds, what the gauges
copy, how names and labels are formed, and, end to end on two workers, that /metrics agrees
with the store's usage records."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections import defaultdict

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.accounting.periods import utc_periods
from gateway.accounting.settlement import Outcome
from gateway.accounting.usage import Usage
from gateway.config import parse_config
from gateway.errors import GatewayError, upstream_error
from gateway.ids import new_id
from gateway.observability.gauges import StateGauges, endpoint_label
from gateway.observability.metrics import UPSTREAM_REASONS, Metrics, failure_reason
from gateway.routing import Router
from gateway.store import Hold, Limits, StoreUnavailable, UsageRecord
from gateway.store.memory import MemoryStore
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

ALLOWED_LABELS = {"team", "model", "provider", "endpoint", "status_class", "reason", "period", "operation"}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def config(**teams: dict):
    return parse_config({
        "providers": {
            "pool": {"kind": "vllm", "endpoints": ["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"]},
            "deepinfra": {"kind": "deepinfra", "api_key": "x"},
        },
        "models": {"llama": {"routes": [{"provider": "pool", "model": "tiny"},
                                        {"provider": "deepinfra", "model": "llama-8b", "price": PRICE}]}},
        "teams": teams or {"research": {"budget_usd": {"day": 2, "month": 30}}},
    }, {})


def outcome(provider: str = "deepinfra", status: int = 200, **timing: object) -> Outcome:
    return Outcome("research", "key_secret_id", "llama", provider, status, Usage(10, 20), None, 100.0,
                   "request-id-123", **timing)


def record(provider: str = "deepinfra", status: int = 200, cost_nano: int = 1_500) -> UsageRecord:
    return UsageRecord(team="research", key_id="key_secret_id", model="llama", provider=provider, prompt_tokens=10,
                       completion_tokens=20, cost_nano=cost_nano, provider_cost_nano=None, status=status,
                       latency_ms=503, time_ms=0, day="2026-11-22", month="2026-11", request_id="request-id-123")


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_settled_stream_counts_once_with_its_tokens_cost_and_timings():
    metrics = Metrics(config())
    metrics.settled(outcome(stream=True, upstream_started=100.010, first_byte_at=100.020, upstream_ended=100.500,
                            ended=100.503), record())
    by_request = {"team": "research", "model": "llama", "provider": "deepinfra"}
    assert value(metrics, "gateway_requests_total", **by_request, status_class="2xx") == 1
    assert value(metrics, "gateway_prompt_tokens_total", **by_request) == 10
    assert value(metrics, "gateway_completion_tokens_total", **by_request) == 20
    assert value(metrics, "gateway_cost_usd_total", **by_request) == pytest.approx(1.5e-6)
    by_route = {"model": "llama", "provider": "deepinfra"}
    assert value(metrics, "gateway_request_duration_seconds_sum", **by_route) == pytest.approx(0.503)
    assert value(metrics, "gateway_time_to_first_token_seconds_sum", **by_route) == pytest.approx(0.020)
    # Total 503 ms, upstream 490 ms: the gateway added 13 ms.
    assert value(metrics, "gateway_overhead_seconds_sum", **by_route) == pytest.approx(0.013)
    assert value(metrics, "gateway_overhead_seconds_bucket", **by_route, le="0.025") == 1
    assert value(metrics, "gateway_overhead_seconds_bucket", **by_route, le="0.01") == 0


def test_a_whole_body_has_no_time_to_first_token_and_a_request_no_upstream_answered_no_overhead():
    metrics = Metrics(config())
    metrics.settled(outcome(upstream_started=100.01, first_byte_at=100.2, upstream_ended=100.2, ended=100.21),
                    record())
    metrics.settled(outcome(provider="", status=503, attempts=0, ended=100.002), record(provider="", status=503,
                                                                                        cost_nano=0))
    assert value(metrics, "gateway_time_to_first_token_seconds_count", model="llama", provider="deepinfra") == 0
    assert value(metrics, "gateway_overhead_seconds_count", model="llama", provider="deepinfra") == 1
    assert value(metrics, "gateway_requests_total", team="research", model="llama", provider="none",
                 status_class="5xx") == 1
    assert value(metrics, "gateway_overhead_seconds_count", model="llama", provider="none") is None


def test_a_fallback_from_the_pool_counts_a_retry_a_fallback_and_a_spill_over():
    metrics = Metrics(config())
    metrics.settled(outcome(attempts=3, upstream_started=100.1, first_byte_at=100.2, upstream_ended=100.2,
                            ended=100.21), record())
    metrics.settled(outcome(provider="pool", upstream_started=100.1, first_byte_at=100.2, upstream_ended=100.2,
                            ended=100.21), record(provider="pool", cost_nano=0))
    assert value(metrics, "gateway_retries_total", model="llama", provider="deepinfra") == 2
    assert value(metrics, "gateway_fallbacks_total", model="llama", provider="deepinfra") == 1
    assert value(metrics, "gateway_fallbacks_total", model="llama", provider="pool") == 0
    assert value(metrics, "gateway_pool_spillover_requests_total", model="llama", provider="deepinfra") == 1
    assert value(metrics, "gateway_pool_served_requests_total", model="llama", provider="pool") == 1


def test_a_stream_that_breaks_after_its_first_byte_counts_as_an_upstream_error():
    metrics = Metrics(config())
    metrics.settled(outcome(status=502, stream=True, upstream_started=100.1, first_byte_at=100.2,
                            upstream_ended=100.3, ended=100.3), record(status=502))
    metrics.settled(outcome(status=504, stream=True, upstream_started=100.1, first_byte_at=100.2,
                            upstream_ended=100.3, ended=100.3), record(status=504))
    assert value(metrics, "gateway_upstream_errors_total", provider="deepinfra", reason="stream_broken") == 1
    assert value(metrics, "gateway_upstream_errors_total", provider="deepinfra", reason="stream_timeout") == 1


@pytest.mark.parametrize("error, reason", [
    (GatewayError(504, "late", code="upstream_timeout", retryable=True), "timeout"),
    (GatewayError(502, "refused", code="upstream_unreachable", retryable=True), "unreachable"),
    (GatewayError(502, "reset", code="upstream_failed", retryable=True), "connection"),
    (upstream_error(401, b'{"error":{"message":"bad key"}}', "p"), "auth"),
    (upstream_error(429, b'{"error":{"message":"slow down"}}', "p"), "rate_limited"),
    (upstream_error(503, b"<html>busy</html>", "p"), "server_error"),
    (upstream_error(422, b'{"detail":[{"loc":["body","top_k"],"msg":"no"}]}', "p"), "client_error"),
    (upstream_error(400, b'{"error":{"message":"x","code":"whatever_the_provider_says"}}', "p"), "client_error"),
])
def test_an_upstream_failure_has_one_of_a_few_fixed_reasons(error, reason):
    assert failure_reason(error) == reason and reason in UPSTREAM_REASONS
    metrics = Metrics(config())
    metrics.upstream_failed("deepinfra", error)
    metrics.upstream_failed("deepinfra", error)
    assert value(metrics, "gateway_upstream_errors_total", provider="deepinfra", reason=reason) == 2


def test_labels_never_carry_a_key_or_a_request_id():
    metrics = Metrics(config())
    metrics.settled(outcome(stream=True, upstream_started=100.1, first_byte_at=100.2, upstream_ended=100.3,
                            ended=100.3), record())
    metrics.refused(401)
    text = metrics.exposition()[0].decode()
    assert "key_secret_id" not in text and "request-id-123" not in text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, sample


def test_metric_names_follow_prometheus_conventions():
    metrics = Metrics(config())
    families = list(metrics.registry.collect())
    names = {family.name for family in families}
    assert {"gateway_requests", "gateway_cost_usd", "gateway_request_duration_seconds", "gateway_team_budget_usd",
            "gateway_store_duration_seconds", "gateway_upstream_inflight_requests"} <= names, names
    for family in families:
        assert family.name.startswith("gateway_")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        else:
            assert not family.name.endswith("_total"), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if "cost" in family.name or "budget" in family.name or "spend" in family.name:
            assert "_usd" in family.name, family.name
        assert "percent" not in family.name and "millis" not in family.name, "base units only"


def test_the_pool_share_series_exist_before_any_request():
    text = Metrics(config()).exposition()[0].decode()
    assert 'gateway_pool_served_requests_total{model="llama",provider="pool"} 0.0' in text
    assert 'gateway_pool_spillover_requests_total{model="llama",provider="deepinfra"} 0.0' in text


async def test_store_calls_are_timed_and_calls_without_an_answer_counted():
    class DownStore(MemoryStore):
        async def ping(self) -> None:
            raise StoreUnavailable("redis: ConnectionError")

    metrics = Metrics(config())
    store = metrics.metered(DownStore())
    admission = await store.admit(Hold("research", 10, 0, "2026-11-22", "2026-11"), Limits())
    assert admission.admitted
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert value(metrics, "gateway_store_duration_seconds_count", operation="admit") == 1
    assert value(metrics, "gateway_store_failures_total", operation="admit") == 0
    assert value(metrics, "gateway_store_failures_total", operation="ping") == 1
    assert value(metrics, "gateway_store_duration_seconds_count", operation="ping") == 1


async def test_gauges_copy_the_routers_state_and_each_teams_budget():
    cfg = config(research={"budget_usd": {"day": 2, "month": 30}}, ops={})
    metrics, router, store = Metrics(cfg), Router(cfg), MemoryStore()
    member = router.endpoints["pool"][0]
    member.inflight, member.waiting, member.running, member.kv_cache_usage = 3, 2.0, 5.0, 0.25
    router.endpoints["pool"][1].healthy = False
    router.endpoints["pool"][1].busy = True
    deepinfra_route = router.routes["llama"][1]
    for _ in range(5):
        deepinfra_route.circuits[0].failure(0.0)
    day, month = utc_periods()
    admitted = await store.admit(Hold("research", 10, 250_000_000, day, month), Limits())
    await store.settle(new_id(), UsageRecord("research", "k", "llama", "deepinfra", 1, 1, 500_000_000, None, 200, 1, 0,
                                         day, month))
    gauges = StateGauges(metrics, cfg, router, store)
    gauges.refresh_routes()
    await gauges.refresh_budgets()

    gpu1, gpu2 = endpoint_label("http://gpu-1:8000/v1"), endpoint_label("http://gpu-2:8000/v1")
    assert value(metrics, "gateway_upstream_inflight_requests", provider="pool", endpoint=gpu1) == 3
    assert value(metrics, "gateway_pool_waiting_requests", provider="pool", endpoint=gpu1) == 2
    assert value(metrics, "gateway_pool_running_requests", provider="pool", endpoint=gpu1) == 5
    assert value(metrics, "gateway_pool_kv_cache_usage_ratio", provider="pool", endpoint=gpu1) == 0.25
    assert value(metrics, "gateway_pool_capacity_requests", provider="pool", endpoint=gpu1) == 64
    assert value(metrics, "gateway_endpoint_up", provider="pool", endpoint=gpu2) == 0
    assert value(metrics, "gateway_pool_busy", provider="pool", endpoint=gpu1) == 0
    assert value(metrics, "gateway_pool_busy", provider="pool", endpoint=gpu2) == 1
    deepinfra_url = endpoint_label(deepinfra_route.endpoints[0].url)
    assert value(metrics, "gateway_circuit_state", model="llama", provider="deepinfra", endpoint=deepinfra_url) == 2
    assert value(metrics, "gateway_circuit_state", model="llama", provider="pool", endpoint=gpu1) == 0
    # Spend is settled plus held: 0.50 settled and 0.25 still in flight.
    assert value(metrics, "gateway_team_spend_usd", team="research", period="day") == pytest.approx(0.75)
    assert value(metrics, "gateway_team_budget_usd", team="research", period="day") == 2
    assert value(metrics, "gateway_team_budget_remaining_usd", team="research", period="day") == pytest.approx(1.25)
    assert value(metrics, "gateway_team_budget_remaining_usd", team="research", period="month") == \
        pytest.approx(29.25)
    assert value(metrics, "gateway_team_spend_usd", team="ops", period="month") == 0
    assert value(metrics, "gateway_team_budget_usd", team="ops", period="month") is None
    assert admitted.admitted


def test_an_endpoint_label_drops_credentials():
    assert endpoint_label("https://user:secret@gpu-1:8000/v1?token=x") == "https://gpu-1:8000/v1"


# --------------------------------------------------------------------------------------
# End to end: two workers, one Redis, two teams, two providers, streams and whole bodies.
# --------------------------------------------------------------------------------------

TEAMS = {"alpha": "sk-alpha-key", "beta": "sk-beta-key"}
ADMIN = "admin-secret"
MODELS = {"m-deepinfra": ("deepinfra", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
          "m-novita": ("novita", "meta-llama/llama-3.1-8b-instruct")}


@pytest.fixture
def two_providers():
    started = {kind: FakeProvider(kind, completion_tokens=6, token_delay_s=0.002).start()
               for kind in ("deepinfra", "novita")}
    yield started
    for fake in started.values():
        fake.stop()


def mixed_config(fakes: dict[str, FakeProvider], redis_url: str) -> dict:
    return {
        "store": {"url": redis_url},
        "server": {"admin_key": ADMIN},
        "routing": {"max_attempts": 1},
        "providers": {kind: {"kind": kind, "base_url": fake.base_url, "api_key": fake.api_key}
                      for kind, fake in fakes.items()},
        "models": {name: {"routes": [{"provider": kind, "model": upstream, "price": PRICE}]}
                   for name, (kind, upstream) in MODELS.items()},
        "teams": {team: {"keys": [key], "budget_usd": {"day": 100, "month": 1000}} for team, key in TEAMS.items()},
    }


async def mixed_load(base_url: str) -> int:
    """Every team x model x (whole, stream, stream with usage), four times; returns requests sent."""
    shapes = [{}, {"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}]
    jobs = list(itertools.product(TEAMS.values(), MODELS, shapes, range(4)))
    limit = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, key: str, model: str, shape: dict, n: int) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "one two three " * (n + 1)}],
                "max_tokens": 4 + n, **shape}
        async with limit:
            async with client.stream("POST", base_url + "/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key}"}) as response:
                await response.aread()

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(one(client, *job) for job in jobs))
    return len(jobs)


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} from one /metrics answer, on a fresh connection."""
    text = httpx.get(url + "/metrics", timeout=5).text
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[str, dict[tuple, float]], name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, {}).items() if match.items() <= set(labels))


@pytest.mark.slow
def test_metrics_agree_with_the_stores_usage_under_mixed_load_on_two_workers(two_providers, redis_process):
    # A Redis of this test's own: the store's key prefix is fixed, so a shared one would mix runs.
    two_providers["novita"].fail_next(2, status=500)  # two requests settle as 502s with no provider
    with GatewayProcess(mixed_config(two_providers, redis_process.url), workers=2) as gw:
        sent = asyncio.run(mixed_load(gw.base_url))
        deadline = time.monotonic() + 10
        while True:  # settlement runs after the response; wait until every request is counted
            samples = scrape(gw.url)
            if total(samples, "gateway_requests_total") >= sent:
                break
            assert time.monotonic() < deadline, "requests never settled"
            time.sleep(0.05)
        assert total(samples, "gateway_requests_total") == sent
        assert total(samples, "gateway_requests_total", status_class="5xx") == 2
        assert total(samples, "gateway_upstream_errors_total", provider="novita", reason="server_error") == 2
        # Each scrape may be answered by either worker: every one must show both workers' sums.
        for _ in range(4):
            again = scrape(gw.url)
            assert total(again, "gateway_requests_total") == sent

        today = dt.datetime.now(dt.timezone.utc).date()
        span = {"from": (today - dt.timedelta(days=1)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}
        for team in TEAMS:
            report = httpx.get(gw.url + "/admin/usage", params={"team": team, **span},
                               headers={"authorization": f"Bearer {ADMIN}"}, timeout=5).json()
            store_routes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for day in report["days"]:
                for route, fields in day["by_route"].items():
                    for name, amount in fields.items():
                        store_routes[route][name] += amount
            totals = report["totals"]
            assert totals["requests"] == total(samples, "gateway_requests_total", team=team)
            assert totals["prompt_tokens"] == total(samples, "gateway_prompt_tokens_total", team=team)
            assert totals["completion_tokens"] == total(samples, "gateway_completion_tokens_total", team=team)
            assert totals["cost_nano"] / 1e9 == pytest.approx(total(samples, "gateway_cost_usd_total", team=team),
                                                              rel=1e-9, abs=1e-15)
            assert totals["cost_nano"] > 0 and totals["completion_tokens"] > 0
            for route, fields in store_routes.items():
                model, _, provider = route.partition("|")
                labels = {"team": team, "model": model, "provider": provider or "none"}
                assert fields["requests"] == total(samples, "gateway_requests_total", **labels), route
                assert fields["prompt_tokens"] == total(samples, "gateway_prompt_tokens_total", **labels), route
                assert fields["completion_tokens"] == total(samples, "gateway_completion_tokens_total", **labels)
                assert fields["cost_nano"] / 1e9 == pytest.approx(
                    total(samples, "gateway_cost_usd_total", **labels), rel=1e-9, abs=1e-15), route
