"""The autoscaler: its policy as a pure function, rule by rule, and the loop that applies it to a fake control plane."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.config import AutoscaleConfig, parse_config
from gateway.dedicated.autoscaler import Autoscaler, Decision, Observation, decide
from gateway.dedicated.client import ControlPlane
from gateway.dedicated.cost import Ledger
from gateway.dedicated.metrics import DedicatedMetrics
from gateway.dedicated.watcher import Watcher
from gateway.money import usd_to_nano
from gateway.routing import Endpoint
from tests.dedicated.fake_control_plane import FakeControlPlane

POLICY = AutoscaleConfig(enabled=True, dry_run=False, min_instances=0, max_instances=3, window_s=300,
                         idle_window_s=900, cooldown_s=600)
HOURLY = usd_to_nano(0.3)  # one instance-hour
# Spill-over over a 300 s window that costs as much as an instance over the same 300 s.
BREAK_EVEN = HOURLY * 300 // 3600
BUSY = Observation(status="available", instances=1, instance_hourly_nano=HOURLY, max_inflight_per_instance=8,
                   steady_s=3600, spill_cost_nano=0, spill_requests=0, idle_spill_requests=0, served_requests=500,
                   peak_inflight=8)


def with_policy(**changes: object) -> AutoscaleConfig:
    return POLICY.model_copy(update=changes)


def seen(**changes: Any) -> Observation:
    return replace(BUSY, **changes)


def at(observation: Observation, policy: AutoscaleConfig = POLICY, last_action_at: float | None = None,
       now: float = 10_000.0) -> Decision:
    return decide(observation, policy, now, last_action_at)


# --- the policy ------------------------------------------------------------------------------------

def test_spill_over_costing_more_than_an_instance_hour_adds_one_instance() -> None:
    decision = at(seen(spill_cost_nano=BREAK_EVEN + 1, spill_requests=40))
    assert (decision.action, decision.target, decision.reason) == ("up", 2, "spillover_cost")
    assert decision.detail == ("40 requests spilled over to per-token routes in the last 300 s for $0.025000, "
                               "$0.3000/h, more than an instance at $0.3000/h")


def test_spill_over_costing_no_more_than_an_instance_hour_adds_nothing() -> None:
    for cost in (0, BREAK_EVEN // 2, BREAK_EVEN):
        assert at(seen(spill_cost_nano=cost)).action == "hold"


def test_the_threshold_is_a_rate_so_it_does_not_depend_on_the_window_length() -> None:
    short = with_policy(window_s=60)
    assert at(seen(spill_cost_nano=HOURLY * 60 // 3600 + 1), short).action == "up"
    assert at(seen(spill_cost_nano=HOURLY * 60 // 3600), short).action == "hold"


def test_a_stopped_service_is_started_when_its_spill_over_is_worth_an_instance() -> None:
    decision = at(seen(status="stopped", instances=0, served_requests=0, peak_inflight=0,
                       spill_cost_nano=BREAK_EVEN * 3))
    assert (decision.action, decision.target, decision.reason) == ("up", 1, "spillover_cost")


def test_never_above_max_instances() -> None:
    decision = at(seen(instances=3, spill_cost_nano=BREAK_EVEN * 10, spill_requests=50, idle_spill_requests=90))
    assert (decision.action, decision.target, decision.reason) == ("hold", 3, "no_change")


def test_an_instance_the_others_could_stand_in_for_is_removed_after_an_idle_window() -> None:
    decision = at(seen(instances=3, peak_inflight=16))
    assert (decision.action, decision.target, decision.reason) == ("down", 2, "idle")
    assert decision.detail == "at most 16 in flight in the last 900 s and nothing spilled over: 2 of 3 instances carry 16"


def test_no_instance_is_removed_while_the_others_could_not_carry_the_peak() -> None:
    assert at(seen(instances=3, peak_inflight=17)).action == "hold"


def test_no_instance_is_removed_while_anything_spilled_over() -> None:
    assert at(seen(instances=3, peak_inflight=0, idle_spill_requests=1)).action == "hold"
    # Even when the spill-over window reaches further back than the idle one.
    assert at(seen(instances=3, peak_inflight=0, spill_requests=1), with_policy(idle_window_s=60)).action == "hold"


def test_the_last_instance_stops_only_after_a_window_without_any_request() -> None:
    assert at(seen(served_requests=1, peak_inflight=0)).action == "hold"
    decision = at(seen(served_requests=0, peak_inflight=0))
    assert (decision.action, decision.target, decision.reason) == ("down", 0, "idle")
    assert decision.detail == "no request in the last 900 s: stopping the last instance"


def test_never_below_min_instances() -> None:
    idle = seen(served_requests=0, peak_inflight=0)
    assert at(idle, with_policy(min_instances=1)) == Decision("hold", 1, "no_change", at(
        idle, with_policy(min_instances=1)).detail)
    assert at(replace(idle, instances=2), with_policy(min_instances=2)).action == "hold"


def test_bounds_are_restored_before_anything_else_is_weighed() -> None:
    below = at(seen(status="stopped", instances=0, steady_s=0), with_policy(min_instances=2))
    assert (below.action, below.target, below.reason) == ("up", 2, "below_min")
    above = at(seen(instances=5, steady_s=0, spill_cost_nano=BREAK_EVEN * 10))
    assert (above.action, above.target, above.reason) == ("down", 3, "above_max")


def test_cooldown_rate_limits_every_action() -> None:
    spilling = seen(spill_cost_nano=BREAK_EVEN * 10)
    held = at(spilling, last_action_at=10_000 - 599)
    assert (held.action, held.reason) == ("hold", "cooldown")
    assert held.detail == "599 s since the last action, cooldown_s is 600"
    assert at(spilling, last_action_at=10_000 - 600).action == "up"
    assert at(seen(status="stopped", instances=0, steady_s=0), with_policy(min_instances=1),
              last_action_at=10_000 - 1).reason == "cooldown"


def test_a_window_counts_only_once_the_service_has_been_steady_for_all_of_it() -> None:
    # Traffic from before the last change (an initializing phase, the previous size) is never judged.
    young = at(seen(steady_s=299, spill_cost_nano=BREAK_EVEN * 10))
    assert (young.action, young.reason) == ("hold", "warming_up")
    assert young.detail == ("steady for 299 s; waiting for a full 300 s window to judge spill-over and 900 s "
                            "idle window")
    assert at(seen(instances=2, steady_s=899, peak_inflight=0)).reason == "warming_up"
    assert at(seen(instances=2, steady_s=900, peak_inflight=0)).action == "down"


@pytest.mark.parametrize("status, reason", [("initializing", "initializing"), ("unavailable", "unavailable"),
                                            ("unknown", "status_unknown"), ("deleting", "status_unknown")])
def test_a_service_that_is_not_available_or_stopped_is_left_alone(status: str, reason: str) -> None:
    for observation in (seen(status=status, spill_cost_nano=BREAK_EVEN * 10),
                        seen(status=status, instances=3, served_requests=0, peak_inflight=0)):
        decision = at(observation, with_policy(min_instances=5, max_instances=6))
        assert (decision.action, decision.reason) == ("hold", reason)


def test_an_unknown_price_holds_rather_than_guessing() -> None:
    decision = at(seen(instance_hourly_nano=None, spill_cost_nano=BREAK_EVEN * 10))
    assert (decision.action, decision.reason) == ("hold", "price_unknown")


def test_sustained_spill_over_climbs_one_step_at_a_time_then_idle_descends_without_flapping() -> None:
    """A simulated six hours in 10 s steps: three busy hours, then quiet; windows summed from the steps."""
    policy = with_policy(min_instances=0, max_instances=3)
    instances, steady_since, last_action = 1, 0.0, None
    steps: list[tuple[float, int, int, int]] = []  # (time, spill-over cost, requests served, peak in flight)
    history = []
    for step in range(0, 6 * 3600, 10):
        now = float(step)
        busy = now < 3 * 3600
        steps.append((now, BREAK_EVEN * 2 // 30 if busy else 0, 20 if busy else 0, 8 * instances if busy else 0))
        window = [s for s in steps if s[0] > now - policy.window_s]
        idle = [s for s in steps if s[0] > now - policy.idle_window_s]
        observation = seen(instances=instances, steady_s=now - steady_since,
                           spill_cost_nano=sum(s[1] for s in window), idle_spill_requests=sum(1 for s in idle if s[1]),
                           served_requests=sum(s[2] for s in idle), peak_inflight=max(s[3] for s in idle))
        decision = decide(observation, policy, now, last_action)
        if decision.action != "hold":
            history.append((now, decision.action, decision.target))
            instances, steady_since, last_action = decision.target, now, now
    assert [(action, target) for _, action, target in history] == [("up", 2), ("up", 3), ("down", 2), ("down", 1),
                                                                     ("down", 0)]
    gaps = [later - earlier for (earlier, *_), (later, *_) in zip(history, history[1:])]
    assert all(gap >= policy.cooldown_s for gap in gaps)
    last_busy_step = 3 * 3600 - 10
    assert history[2][0] - last_busy_step >= policy.idle_window_s  # the first step down waits a whole idle window
    assert all(gap >= policy.idle_window_s for gap in gaps[2:])  # and each next one a whole idle window at its size


# --- the loop -----------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(control_plane: FakeControlPlane, service_id: str, clock: Clock, **autoscale: Any) -> tuple[Autoscaler, Any]:
    policy = {"enabled": True, "min_instances": 0, "max_instances": 2, "window_s": 60, "idle_window_s": 60,
              "cooldown_s": 120, **autoscale}
    config = parse_config({
        "providers": {
            "nd": {"kind": "netmind-dedicated", "api_key": "k", "control_token": control_plane.token,
                   "control_url": control_plane.url, "services": [service_id], "max_inflight_per_instance": 4,
                   "autoscale": policy},
            "ptok": {"kind": "openai", "api_key": "k"}},
        "models": {"m": {"routes": [{"provider": "nd"}, {"provider": "ptok", "price": {"input_per_mtok": 1}}]}}}, {})
    provider = config.providers["nd"]
    registry = CollectorRegistry()
    metrics = DedicatedMetrics(registry)
    client = ControlPlane(control_plane.url, control_plane.token)
    watcher = Watcher(provider, [Endpoint("http://127.0.0.1:9/v1")], client, metrics, clock)
    ledger = Ledger("nd", config, 60, clock)
    return Autoscaler(provider, watcher, ledger, client, metrics, clock), registry


async def spill_over(autoscaler: Autoscaler, clock: Clock) -> None:
    """A steady service and a window of spill-over worth far more than an instance."""
    await autoscaler._watcher.poll_once()
    clock.now += 61
    autoscaler._ledger.window.spilled(clock.now, usd_to_nano(1))


def decisions(registry: CollectorRegistry, mode: str) -> float | None:
    return registry.get_sample_value("gateway_dedicated_scaling_decisions_total",
                                     {"provider": "nd", "action": "up", "reason": "spillover_cost", "mode": mode})


async def test_dry_run_logs_and_counts_its_decisions_without_calling_the_control_plane(
        control_plane: FakeControlPlane, caplog: pytest.LogCaptureFixture) -> None:
    service_id = control_plane.add_service(instances=1)
    clock = Clock()
    autoscaler, registry = build(control_plane, service_id, clock, dry_run=True)
    await spill_over(autoscaler, clock)
    with caplog.at_level(logging.INFO, logger="gateway.dedicated"):
        decision = await autoscaler.tick()
        assert (decision.action, decision.target) == ("up", 2)
        clock.now += 60
        assert (await autoscaler.tick()).reason == "cooldown"  # the same decision is not repeated every tick
    assert control_plane.puts() == []
    assert control_plane.status(service_id) == "available" and autoscaler.state.instances == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "autoscaler" in r.getMessage()]
    assert warnings == [f"autoscaler nd/{service_id}: [dry run] would scale up 1 -> 2 instances (spillover_cost: "
                        "1 requests spilled over to per-token routes in the last 60 s for $1.000000, $60.0000/h, "
                        "more than an instance at $0.3000/h)"]
    assert decisions(registry, "dry_run") == 1.0 and decisions(registry, "applied") is None
    assert [(a.action, a.mode) for a in autoscaler.history] == [("up", "dry_run")]
    await autoscaler._client.close()


async def test_an_applied_decision_resizes_the_service_and_its_room(control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service(instances=1)
    clock = Clock()
    autoscaler, registry = build(control_plane, service_id, clock, dry_run=False)
    await spill_over(autoscaler, clock)
    assert (await autoscaler.tick()).action == "up"
    assert control_plane.puts(service_id) == [{"resource_metadata": {"target_instance_number": 2}}]
    assert autoscaler.state.instances == 2 and autoscaler.state.endpoint.max_inflight == 8
    assert autoscaler.state.changed_at == clock.now  # the next window starts from the new size
    assert decisions(registry, "applied") == 1.0
    assert registry.get_sample_value("gateway_dedicated_autoscaler_target_instances",
                                     {"provider": "nd", "service": service_id}) == 2.0
    await autoscaler._client.close()


async def test_a_refused_resize_is_logged_counted_and_tried_again_only_after_the_cooldown(
        control_plane: FakeControlPlane, caplog: pytest.LogCaptureFixture) -> None:
    service_id = control_plane.add_service(instances=1)
    clock = Clock()
    autoscaler, registry = build(control_plane, service_id, clock, dry_run=False)
    await spill_over(autoscaler, clock)
    control_plane.fail_next = [503]
    with caplog.at_level(logging.WARNING, logger="gateway.dedicated"):
        await autoscaler.tick()
    assert "FAILED to scale up 1 -> 2 instances" in caplog.text and "503, the control plane failed" in caplog.text
    assert decisions(registry, "failed") == 1.0 and autoscaler.history[-1].error is not None
    assert (await autoscaler.tick()).reason == "cooldown"
    clock.now += 120
    autoscaler._ledger.window.spilled(clock.now, usd_to_nano(1))
    assert (await autoscaler.tick()).action == "up" and decisions(registry, "applied") == 1.0
    await autoscaler._client.close()
