"""The watcher: a service's status on the control plane becomes its route's availability, room and cost."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.config import parse_config
from gateway.dedicated.client import ControlPlane
from gateway.dedicated.metrics import DedicatedMetrics
from gateway.dedicated.watcher import Watcher
from gateway.routing import Endpoint
from tests.dedicated.fake_control_plane import RTX_4090, FakeControlPlane


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher_for(control_plane: FakeControlPlane, services: list[str], clock: Clock | None = None,
                **extra: Any) -> tuple[Watcher, CollectorRegistry]:
    config = parse_config({"providers": {"nd": {
        "kind": "netmind-dedicated", "api_key": "k", "control_token": control_plane.token,
        "control_url": control_plane.url, "services": services, "max_inflight_per_instance": 4, **extra}}}, {})
    registry = CollectorRegistry()
    endpoints = [Endpoint(url) for url in config.providers["nd"].base_urls]
    client = ControlPlane(control_plane.url, control_plane.token)
    return Watcher(config.providers["nd"], endpoints, client, DedicatedMetrics(registry), clock or Clock()), registry


async def test_a_service_takes_traffic_only_while_available_and_as_much_as_its_instances_hold(
        control_plane: FakeControlPlane) -> None:
    control_plane.ready_after_s = 60
    service_id = control_plane.add_service(instances=2, ready=False)
    watcher, registry = watcher_for(control_plane, [service_id])
    endpoint = watcher.states[0].endpoint
    assert (endpoint.healthy, endpoint.max_inflight) == (False, 0)  # nothing before the first answer

    await watcher.poll_once()
    assert (watcher.states[0].status, endpoint.healthy, endpoint.max_inflight) == ("initializing", False, 0)

    control_plane.ready_in(service_id, 0)
    await watcher.poll_once()
    assert (watcher.states[0].status, endpoint.healthy, endpoint.max_inflight) == ("available", True, 8)
    assert registry.get_sample_value("gateway_dedicated_capacity_requests",
                                     {"provider": "nd", "service": service_id}) == 8.0

    async with ControlPlane(control_plane.url, control_plane.token) as client:
        await client.scale(service_id, 0)
    await watcher.poll_once()
    assert (watcher.states[0].status, watcher.states[0].instances, endpoint.healthy, endpoint.max_inflight) == (
        "stopped", 0, False, 0)
    assert registry.get_sample_value("gateway_dedicated_service_status",
                                     {"provider": "nd", "service": service_id, "status": "stopped"}) == 1.0
    assert registry.get_sample_value("gateway_dedicated_service_status",
                                     {"provider": "nd", "service": service_id, "status": "available"}) == 0.0
    await watcher._client.close()


async def test_a_failed_deploy_takes_no_traffic(control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service(instances=1, flavor_id="no-such-flavor")
    watcher, _ = watcher_for(control_plane, [service_id])
    await watcher.poll_once()
    assert watcher.states[0].status == "unavailable" and not watcher.states[0].endpoint.healthy
    await watcher._client.close()


async def test_a_failed_poll_keeps_the_last_status_and_says_why(control_plane: FakeControlPlane,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    service_id = control_plane.add_service(instances=1)
    watcher, registry = watcher_for(control_plane, [service_id], instance_hourly_usd=1)
    await watcher.poll_once()
    control_plane.fail_next = [503, 503]
    await watcher.poll_once()
    await watcher.poll_once()
    state = watcher.states[0]
    assert state.status == "available" and state.endpoint.healthy
    assert "503, the control plane failed" in state.error
    assert caplog.text.count("status poll failed, keeping status available") == 1  # said once, not every poll
    assert registry.get_sample_value("gateway_dedicated_control_plane_errors_total",
                                     {"provider": "nd", "reason": "server_error"}) == 2.0
    await watcher.poll_once()
    assert state.error is None and "the control plane answers again" in caplog.text
    await watcher._client.close()


async def test_a_deleted_service_leaves_routing(control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service(instances=1)
    watcher, _ = watcher_for(control_plane, [service_id])
    await watcher.poll_once()
    del control_plane.services[service_id]
    await watcher.poll_once()
    state = watcher.states[0]
    assert (state.status, state.endpoint.healthy, state.endpoint.max_inflight) == ("unknown", False, 0)
    assert "404" in state.error
    await watcher._client.close()


async def test_hourly_cost_is_the_flavor_price_per_gpu_x_gpus_x_instances_and_accrues_while_running(
        control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service(instances=3)
    control_plane.services[service_id].gpu_num = 2
    clock = Clock()
    watcher, _ = watcher_for(control_plane, [service_id], clock)
    await watcher.poll_once()
    assert watcher.states[0].instance_hourly_nano == 600_000_000  # $0.3 per GPU-hour x 2 GPUs
    assert watcher.hourly_nano() == 1_800_000_000
    clock.now += 1800
    await watcher.poll_once()
    assert watcher.accrued_nano() == pytest.approx(900_000_000)  # half an hour at $1.8/h

    async with ControlPlane(control_plane.url, control_plane.token) as client:
        await client.scale(service_id, 0)
    clock.now += 1
    await watcher.poll_once()  # the last second still ran at $1.8/h
    clock.now += 3600
    await watcher.poll_once()  # a stopped hour costs nothing
    assert watcher.hourly_nano() == 0
    assert watcher.accrued_nano() == pytest.approx(900_000_000 + 500_000)
    await watcher._client.close()


async def test_a_configured_instance_price_wins_over_the_flavor_list(control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service(instances=2)
    watcher, _ = watcher_for(control_plane, [service_id], instance_hourly_usd=1.25)
    await watcher.poll_once()
    assert watcher.hourly_nano() == 2_500_000_000
    assert not any(path.endswith("/flavor") for _, path, _ in control_plane.calls)
    await watcher._client.close()


async def test_an_unknown_flavor_price_reads_as_unknown_not_as_free(control_plane: FakeControlPlane) -> None:
    control_plane.flavors = [{**RTX_4090, "billing": {}}]
    service_id = control_plane.add_service(instances=1)
    watcher, _ = watcher_for(control_plane, [service_id])
    await watcher.poll_once()
    assert watcher.states[0].instance_hourly_nano is None and watcher.hourly_nano() is None
    await watcher._client.close()
