"""A burst at twice a pool's capacity: routing keeps the pool busy, spills cheaply, and answers fast,
where the naive baselines each give up one of the three (bench/ROUTING.md has the full-size run)."""

from __future__ import annotations

import pytest

from tests.routing.burst import Setup, run

pytestmark = pytest.mark.slow


def test_burst_above_pool_capacity_beats_always_cheapest_and_round_robin() -> None:
    rows = {row.scenario: row for row in run(Setup(), requests=40, rate=20.0, scenarios=[
        "gateway routing (balanced)", "always cheapest (the pool: free per token)",
        "always cheapest per-token provider", "round-robin over the three routes"])}
    routing = rows["gateway routing (balanced)"]
    pool_only = rows["always cheapest (the pool: free per token)"]
    cheap_only = rows["always cheapest per-token provider"]
    round_robin = rows["round-robin over the three routes"]
    assert all(row.errors == 0 for row in rows.values())
    assert routing.pool_share > round_robin.pool_share + 0.1  # the pool is used up to its capacity
    assert routing.served.get("fast", 0) == 0  # spill goes to the cheapest fast-enough provider
    assert routing.cost_usd < 0.7 * cheap_only.cost_usd and routing.cost_usd < 0.5 * round_robin.cost_usd
    assert routing.ttft_p95_s < 0.5 * pool_only.ttft_p95_s  # no queue behind a full pool
