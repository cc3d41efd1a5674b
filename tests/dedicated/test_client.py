"""The control-plane client against the fake: documented requests, typed answers, and a clear error for every failure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import web

from gateway.config import ServiceSpec
from gateway.dedicated.client import ControlPlane, ControlPlaneError, Flavor, Service, create_body
from tests.dedicated.fake_control_plane import FakeControlPlane
from tests.fakes.server import BackgroundServer
from tests.waiting import eventually

SPEC = ServiceSpec(flavor_id="rtx4090-x1", image_url="registry.example/vllm:0.11", name="llama-8b",
                   description="gateway pool", command="vllm serve meta-llama/Meta-Llama-3.1-8B-Instruct",
                   port=8000, gpu_num=1, instances=2)


def test_a_create_request_has_the_documented_shape() -> None:
    assert create_body(SPEC) == {
        "name": "llama-8b", "description": "gateway pool", "payment_type": "usd",
        "resource_metadata": {"flavor_id": "rtx4090-x1", "scale_type": "manual", "target_instance_number": 2},
        "deploy_metadata": {"image_url": "registry.example/vllm:0.11",
                            "command": "vllm serve meta-llama/Meta-Llama-3.1-8B-Instruct", "port": 8000,
                            "gpu_num": 1}}


async def _available(client: ControlPlane, service_id: str) -> Service | None:
    service = await client.get(service_id)
    return service if service.status == "available" else None


async def _status_is(client: ControlPlane, service_id: str, status: str) -> bool:
    return (await client.get(service_id)).status == status


@pytest.mark.parametrize("envelope", [False, True])
async def test_a_service_lives_through_the_documented_lifecycle(control_plane: FakeControlPlane,
                                                                envelope: bool) -> None:
    control_plane.envelope = envelope
    async with ControlPlane(control_plane.url, control_plane.token) as client:
        assert await client.flavors() == [Flavor("rtx4090-x1", "NVIDIA_GeForce_RTX_4090", 4, 8, 300_000_000)]
        created = await client.create(SPEC)
        assert created.status == "initializing"
        assert control_plane.calls[-1] == ("POST", "/v1/inference-service", create_body(SPEC))
        service = await eventually(lambda: _available(client, created.service_id), timeout_s=5,
                                   what="the service becoming available")
        assert (service.status, service.available, service.flavor_id, service.instances, service.gpu_num) == (
            "available", True, "rtx4090-x1", 2, 1)

        resized = await client.scale(created.service_id, 3)
        assert resized is not None and (resized.status, resized.instances) == ("available", 3)
        assert control_plane.calls[-1][2] == {"resource_metadata": {"target_instance_number": 3}}
        stopped = await client.scale(created.service_id, 0)
        assert stopped is not None and stopped.status == "stopped"

        await client.delete(created.service_id)
        with pytest.raises(ControlPlaneError) as gone:
            await client.get(created.service_id)
        assert gone.value.reason == "not_found" and gone.value.status == 404


async def test_a_bad_flavor_ends_unavailable(control_plane: FakeControlPlane) -> None:
    async with ControlPlane(control_plane.url, control_plane.token) as client:
        created = await client.create(ServiceSpec(flavor_id="no-such-flavor", image_url="x"))
        await eventually(lambda: _status_is(client, created.service_id, "unavailable"), timeout_s=5,
                         what="the service failing its deployment")


async def test_every_request_carries_the_bearer_token_and_a_refused_one_says_so(
        control_plane: FakeControlPlane) -> None:
    async with ControlPlane(control_plane.url, "wrong-token") as client:
        with pytest.raises(ControlPlaneError) as refused:
            await client.flavors()
    assert refused.value.reason == "auth"
    assert str(refused.value) == (f"GET {control_plane.url}/v1/inference-service/flavor: 401, the control token "
                                  "was refused: invalid or missing API token")
    async with ControlPlane(control_plane.url, "") as client:
        with pytest.raises(ControlPlaneError, match="no control token configured"):
            await client.get("svc")
    assert len(control_plane.calls) == 1  # nothing was sent without a token


async def test_a_refused_request_carries_the_control_planes_own_words(control_plane: FakeControlPlane) -> None:
    service_id = control_plane.add_service()
    async with ControlPlane(control_plane.url, control_plane.token) as client:
        with pytest.raises(ControlPlaneError) as refused:
            await client.update(service_id, {"resource_metadata": {"target_instance_number": -1}})
        assert refused.value.reason == "rejected" and refused.value.status == 400
        assert "target_instance_number must be a whole number >= 0" in str(refused.value)
        for status, reason in ((500, "server_error"), (503, "server_error"), (429, "rate_limited"),
                               (403, "auth")):
            control_plane.fail_next = [status]
            with pytest.raises(ControlPlaneError) as failed:
                await client.get(service_id)
            assert (failed.value.reason, failed.value.status) == (reason, status)


async def test_a_refusal_inside_a_200_answer_is_still_a_refusal(control_plane: FakeControlPlane) -> None:
    control_plane.envelope = True
    async with ControlPlane(control_plane.url, control_plane.token) as client:
        control_plane.fail_next = [400]
        with pytest.raises(ControlPlaneError) as refused:
            await client.flavors()
        assert refused.value.reason == "rejected" and "injected failure 400" in str(refused.value)


@pytest.fixture
def odd_server() -> Iterator[str]:
    """A server that answers HTML where JSON belongs, and one path that never answers in time."""

    def make_app() -> web.Application:
        async def html(request: web.Request) -> web.Response:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(5)
            return web.Response(text="{}")

        async def no_id(request: web.Request) -> web.Response:
            return web.json_response({"message": "ok"})

        app = web.Application()
        app.router.add_get("/v1/inference-service/flavor", html)
        app.router.add_get("/v1/inference-service/slow", slow)
        app.router.add_post("/v1/inference-service", no_id)
        return app

    server = BackgroundServer(make_app, name="odd-control-plane")
    port = server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_answers_that_are_not_what_the_docs_promise_are_bad_responses(odd_server: str) -> None:
    async with ControlPlane(odd_server, "t", timeout_s=0.3) as client:
        with pytest.raises(ControlPlaneError) as html:
            await client.flavors()
        assert html.value.reason == "bad_response" and "not JSON: '<html>maintenance</html>'" in str(html.value)
        with pytest.raises(ControlPlaneError) as anonymous:
            await client.create(SPEC)
        assert anonymous.value.reason == "bad_response" and "names no service_id" in str(anonymous.value)
        with pytest.raises(ControlPlaneError) as slow:
            await client.get("slow")
        assert slow.value.reason == "timeout" and "no answer within 0.3 s" in str(slow.value)


async def test_an_unreachable_control_plane_says_where_it_was_looked_for() -> None:
    async with ControlPlane("http://127.0.0.1:9", "t", timeout_s=2) as client:
        with pytest.raises(ControlPlaneError) as unreachable:
            await client.get("svc")
    assert unreachable.value.reason == "unreachable"
    assert str(unreachable.value).startswith("GET http://127.0.0.1:9/v1/inference-service/svc: cannot reach")
