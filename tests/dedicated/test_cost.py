"""The ledger: spill-over to per-token routes over a sliding window, and the tokens a dedicated provider served."""

from __future__ import annotations

from gateway.accounting.settlement import Outcome
from gateway.accounting.usage import Usage
from gateway.config import parse_config
from gateway.dedicated.cost import Ledger, Window, effective_per_mtok_nano
from gateway.money import usd_to_nano
from gateway.store import UsageRecord

CONFIG = parse_config({
    "providers": {
        "nd": {"kind": "netmind-dedicated", "api_key": "k", "services": ["svc"]},
        "pool": {"kind": "vllm", "endpoints": ["http://127.0.0.1:9/v1"]},
        "cheap": {"kind": "deepinfra", "api_key": "k"},
        "dear": {"kind": "openai", "api_key": "k"}},
    "models": {
        "m": {"routes": [{"provider": "nd"}, {"provider": "pool"},
                         {"provider": "dear", "price": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}},
                         {"provider": "cheap", "price": {"input_per_mtok": 0.5, "output_per_mtok": 2.0}}]},
        "other": {"routes": [{"provider": "dear", "price": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}}]}}}, {})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def settle(ledger: Ledger, provider: str, prompt: int, completion: int, cost_nano: int, model: str = "m",
           status: int = 200) -> None:
    record = UsageRecord(team="t", key_id="k", model=model, provider=provider, prompt_tokens=prompt,
                         completion_tokens=completion, cost_nano=cost_nano, provider_cost_nano=None, status=status,
                         latency_ms=1, time_ms=0, day="2026-01-01", month="2026-01")
    ledger.observe(Outcome("t", "k", model, provider, status, Usage(prompt, completion), None, 0.0), record)


def test_the_window_sums_only_its_last_seconds() -> None:
    window = Window(span_s=60)
    window.spilled(0.0, 100)
    window.spilled(30.0, 10)
    window.served(59.0)
    window.inflight(59.0, 7)
    assert window.over(59.5, 60) == (110, 2, 1, 7)
    assert window.over(59.5, 20) == (0, 0, 1, 7)
    assert window.over(75.0, 60) == (10, 1, 1, 7)  # the first spill-over has left the window
    assert window.over(200.0, 60) == (0, 0, 0, 0)


def test_the_window_forgets_a_bucket_it_reuses_a_lap_later() -> None:
    window = Window(span_s=10)
    window.spilled(1.0, 5)
    window.spilled(11.0, 7)  # the same ring slot, one lap on
    assert window.over(11.0, 10) == (7, 1, 0, 0)


def test_spill_over_is_what_its_models_cost_on_per_token_routes() -> None:
    clock = Clock()
    ledger = Ledger("nd", CONFIG, 60, clock)
    settle(ledger, "cheap", 1000, 100, 700_000)
    settle(ledger, "dear", 1000, 100, 1_400_000)
    settle(ledger, "pool", 1000, 100, 0)  # a vLLM pool's hours are paid anyway: not spill-over
    settle(ledger, "dear", 1000, 100, 1_400_000, model="other")  # a model the service does not serve
    settle(ledger, "dear", 0, 0, 0, status=502)  # failed, nothing billed
    settle(ledger, "", 0, 0, 0, status=503)  # no upstream reached
    assert ledger.window.over(clock.now, 60)[:2] == (2_100_000, 2)
    assert ledger.requests == 0 and ledger.tokens == 0


def test_tokens_served_are_priced_at_the_cheapest_per_token_route() -> None:
    ledger = Ledger("nd", CONFIG, 60, Clock())
    settle(ledger, "nd", 1_000_000, 100_000, 0)
    settle(ledger, "nd", 1_000_000, 100_000, 0)
    assert (ledger.requests, ledger.tokens) == (2, 2_200_000)
    # cheap: $0.5 x 1M + $2 x 0.1M = $0.70 a request; dear would be $1.40.
    assert ledger.equivalent_nano == 2 * usd_to_nano(0.7)
    assert ledger.window.over(0.0, 60)[2] == 2
    assert ledger.models == ["m"]


def test_effective_cost_per_million_tokens() -> None:
    assert effective_per_mtok_nano(usd_to_nano(0.3), 3_000_000) == usd_to_nano(0.1)
    assert effective_per_mtok_nano(usd_to_nano(0.3), 0) is None
