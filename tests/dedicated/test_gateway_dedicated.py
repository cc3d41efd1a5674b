"""End to end: a gateway process, a fake NetMind control plane and fake services, all on loopback.

A dedicated service is a pool route: it takes traffic only while `available`, first while
it has room, and the rest spills over to per-token routes; the autoscaler resizes it.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections import Counter
from typing import Any

import httpx
import yaml

from gateway import cli
from tests.dedicated.conftest import MODEL, admin, ask, dedicated_entry, gateway_config, per_token_entry, posts, price
from tests.dedicated.fake_control_plane import RTX_4090, FakeControlPlane
from tests.gateway_process import ROOT, GatewayProcess
from tests.waiting import wait_until


def service_doc(gw: GatewayProcess, provider: str = "nd") -> dict[str, Any]:
    return admin(gw, "/admin/endpoints")[provider]["services"][0]


async def burst(gw: GatewayProcess, n: int) -> Counter:
    """n concurrent chat requests; how many each provider served."""
    async with httpx.AsyncClient(timeout=10) as client:
        async def one() -> str:
            response = await client.post(gw.base_url + "/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4})
            assert response.status_code == 200, response.text
            return response.headers["x-gateway-provider"]
        return Counter(await asyncio.gather(*(one() for _ in range(n))))


def test_a_service_created_from_the_cli_becomes_a_route_once_available(control_plane: FakeControlPlane, fakes: Any,
                                                                        tmp_path: Any) -> None:
    control_plane.ready_after_s = 60.0  # initializing until the test lets it finish
    per_token = fakes("openai")
    spec = {"flavor_id": RTX_4090["flavor_id"], "image_url": "registry.example/vllm:0.11", "port": 8000,
            "gpu_num": 1, "instances": 1}
    operator_config = tmp_path / "gateway.yaml"
    operator_config.write_text(yaml.safe_dump({"providers": {"nd": {
        "kind": "netmind-dedicated", "api_key": "sk-fake", "control_token": control_plane.token,
        "control_url": control_plane.url, "create": spec}}}))
    created = subprocess.run([sys.executable, "-m", "gateway", "endpoints", "create", "--config", str(operator_config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert created.returncode == 0, created.stderr
    service_id = re.search(r"created service (\w+): initializing", created.stdout).group(1)
    assert f"add '{service_id}' to providers.nd.services" in created.stdout
    assert control_plane.calls[-1][2]["resource_metadata"] == {"flavor_id": "rtx4090-x1", "scale_type": "manual",
                                                               "target_instance_number": 1}

    service = fakes("netmind", service_id=service_id)
    providers = {"nd": dedicated_entry(control_plane, service, [service_id]), "ptok": per_token_entry(per_token)}
    routes = [{"provider": "ptok", "model": MODEL, "price": price(0.1, 0.2)}, {"provider": "nd", "model": MODEL}]
    with GatewayProcess(gateway_config(providers, routes)) as gw:
        assert [ask(gw) for _ in range(3)] == ["ptok"] * 3  # initializing: no traffic yet
        doc = service_doc(gw)
        assert (doc["status"], doc["takes_traffic"], doc["capacity"]) == ("initializing", False, 0)
        assert posts(service) == 0

        control_plane.ready_in(service_id, 0.2)
        wait_until(lambda: service_doc(gw)["takes_traffic"], 5, "the service to become a route")
        assert [ask(gw) for _ in range(3)] == ["nd"] * 3
        assert posts(service) == 3
        assert service.requests[-1].headers["authorization"] == "Bearer sk-fake"  # the inference key, not the token
        assert f"dedicated service nd/{service_id} is available (was initializing)" in gw.log()


async def test_traffic_goes_to_the_service_first_and_spills_over_when_it_is_full(control_plane: FakeControlPlane,
                                                                                 fakes: Any) -> None:
    service_id = control_plane.add_service(instances=1)
    service = fakes("netmind", service_id=service_id, ttft_s=0.5)
    per_token = fakes("openai")
    providers = {"nd": dedicated_entry(control_plane, service, [service_id], max_inflight_per_instance=2),
                 "ptok": per_token_entry(per_token)}
    routes = [{"provider": "ptok", "model": MODEL, "price": price(0.1, 0.2)}, {"provider": "nd", "model": MODEL}]
    with GatewayProcess(gateway_config(providers, routes)) as gw:
        wait_until(lambda: service_doc(gw)["takes_traffic"], 5, "the service to become a route")
        assert await burst(gw, 6) == {"nd": 2, "ptok": 4}  # two fit in one instance; the rest per token
        assert [ask(gw) for _ in range(2)] == ["nd"] * 2  # room again: first again

        cost = admin(gw, "/admin/endpoints")["nd"]["cost"]
        assert cost["requests_served"] == 4 and cost["tokens_served"] > 0
        assert cost["hourly_usd"] == 0.3  # the flavor's $0.3 per GPU-hour x 1 GPU x 1 instance
        assert cost["accrued_usd"] > 0 and cost["effective_usd_per_mtok"] > 0
        # The same tokens at the per-token route's price ($0.1 in, $0.2 out per million).
        assert 0.1 <= cost["per_token_equivalent_usd_per_mtok"] <= 0.2
        assert cost["spillover"]["requests"] == 4 and cost["spillover"]["usd"] > 0
        metrics = httpx.get(gw.url + "/metrics").text
        assert 'gateway_pool_spillover_requests_total{model="m",provider="ptok"} 4.0' in metrics
        assert 'gateway_pool_served_requests_total{model="m",provider="nd"} 4.0' in metrics
        assert f'gateway_dedicated_service_status{{provider="nd",service="{service_id}",status="available"}} 1.0' \
            in metrics
        assert 'gateway_dedicated_tokens_total{provider="nd"}' in metrics


def test_a_stopped_or_unavailable_service_takes_no_traffic(control_plane: FakeControlPlane, fakes: Any,
                                                           capsys: Any) -> None:
    stopped_id = control_plane.add_service(instances=0)
    broken_id = control_plane.add_service(instances=1, flavor_id="no-such-flavor", ready=True)
    stopped, broken = fakes("netmind", service_id=stopped_id), fakes("netmind", service_id=broken_id)
    per_token = fakes("openai")
    providers = {"stopped": dedicated_entry(control_plane, stopped, [stopped_id]),
                 "broken": dedicated_entry(control_plane, broken, [broken_id]), "ptok": per_token_entry(per_token)}
    routes = [{"provider": "stopped", "model": MODEL}, {"provider": "broken", "model": MODEL},
              {"provider": "ptok", "model": MODEL, "price": price(0.1, 0.2)}]
    with GatewayProcess(gateway_config(providers, routes)) as gw:
        view = admin(gw, "/admin/endpoints")
        assert [(view[p]["services"][0]["status"], view[p]["services"][0]["takes_traffic"])
                for p in ("stopped", "broken")] == [("stopped", False), ("unavailable", False)]
        assert [ask(gw) for _ in range(6)] == ["ptok"] * 6
        assert posts(stopped) == 0 and posts(broken) == 0

        target = ["--control-url", control_plane.url, "--token", control_plane.token]
        assert cli.main(["endpoints", "scale", stopped_id, "1", *target]) == 0
        assert "target 1 instances; now initializing" in capsys.readouterr().out
        wait_until(lambda: admin(gw, "/admin/endpoints")["stopped"]["services"][0]["takes_traffic"], 5,
                 "the restarted service to become a route")
        assert [ask(gw) for _ in range(3)] == ["stopped"] * 3
        assert posts(broken) == 0


def test_autoscaler_scales_up_under_sustained_spill_over_and_down_when_idle(control_plane: FakeControlPlane,
                                                                            fakes: Any) -> None:
    service_id = control_plane.add_service(instances=1)
    service = fakes("netmind", service_id=service_id, ttft_s=0.3)
    per_token = fakes("openai")
    autoscale = {"enabled": True, "dry_run": False, "min_instances": 0, "max_instances": 2, "window_s": 1.0,
                 "idle_window_s": 2.0, "cooldown_s": 0.5}
    providers = {"nd": dedicated_entry(control_plane, service, [service_id], max_inflight_per_instance=1,
                                       autoscale=autoscale),
                 "ptok": per_token_entry(per_token)}
    # A dear per-token route: a request a second spilling over costs more than the $0.3 instance-hour.
    routes = [{"provider": "ptok", "model": MODEL, "price": price(100, 100)}, {"provider": "nd", "model": MODEL}]
    with GatewayProcess(gateway_config(providers, routes)) as gw:
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                ask(gw)
        load = [threading.Thread(target=client) for _ in range(3)]
        for thread in load:
            thread.start()
        try:
            wait_until(lambda: control_plane.puts(service_id), 6, "a scale-up under sustained spill-over")
        finally:
            stop.set()
            for thread in load:
                thread.join()
        assert control_plane.puts(service_id)[0] == {"resource_metadata": {"target_instance_number": 2}}
        wait_until(lambda: service_doc(gw)["capacity"] == 2, 2, "the new capacity")

        wait_until(lambda: control_plane.status(service_id) == "stopped", 10, "scaling down to stopped when idle")
        assert [put["resource_metadata"]["target_instance_number"] for put in control_plane.puts(service_id)] \
            == [2, 1, 0]
        view = admin(gw, "/admin/endpoints")["nd"]
        actions = [(a["action"], a["instances"], a["target"], a["reason"], a["mode"])
                   for a in view["autoscale"]["actions"]]
        assert actions == [("up", 1, 2, "spillover_cost", "applied"), ("down", 2, 1, "idle", "applied"),
                           ("down", 1, 0, "idle", "applied")]
        assert "more than an instance at $0.3000/h" in view["autoscale"]["actions"][0]["detail"]
        wait_until(lambda: not service_doc(gw)["takes_traffic"], 2, "the stopped service to leave routing")
        metrics = httpx.get(gw.url + "/metrics").text
        for action, reason, count in (("up", "spillover_cost", 1), ("down", "idle", 2)):
            assert (f'gateway_dedicated_scaling_decisions_total{{action="{action}",mode="applied",provider="nd",'
                    f'reason="{reason}"}} {count}.0') in metrics
        log = gw.log()
        assert f"autoscaler nd/{service_id}: scaling up 1 -> 2 instances (spillover_cost: " in log
        assert f"autoscaler nd/{service_id}: scaling down 1 -> 0 instances (idle: no request in the last 2 s" in log
        assert ask(gw) == "ptok"
