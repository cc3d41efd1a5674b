"""Specifications of the ASGI application's edges: every answer says its request id, and
browsers may call from the origins config allows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with FakeProvider("openai", models=["gpt-4o-mini"]) as fake:
        config = {"server": {"admin_key": "admin-secret", "cors_origins": [ORIGIN]},
                  "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
                  "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-4o-mini"}]}}}
        with GatewayProcess(config) as process:
            yield process


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/models", 200), ("GET", "/v1/models/nope", 404), ("GET", "/nowhere", 404),
    ("GET", "/v1/chat/completions", 405), ("GET", "/healthz", 200), ("GET", "/admin/routes", 401),
    ("POST", "/v1/chat/completions", 400),
])
def test_every_answer_carries_a_request_id(gw: GatewayProcess, method: str, path: str, status: int) -> None:
    answer = httpx.request(method, gw.url + path, timeout=10)
    assert answer.status_code == status
    assert len(answer.headers["x-request-id"]) == 32
    echoed = httpx.request(method, gw.url + path, headers={"x-request-id": "trace-42"}, timeout=10)
    assert echoed.headers["x-request-id"] == "trace-42"


def test_a_browsers_preflight_is_answered_for_an_allowed_origin(gw: GatewayProcess) -> None:
    answer = httpx.options(gw.base_url + "/chat/completions", timeout=10, headers={
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "x-stainless-os" in answer.headers["access-control-allow-headers"].lower()


def test_an_answer_to_an_allowed_origin_exposes_the_gateways_headers(gw: GatewayProcess) -> None:
    answer = httpx.post(gw.base_url + "/chat/completions", headers={"origin": ORIGIN}, timeout=10,
                        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-gateway-provider" in answer.headers["access-control-expose-headers"]


def test_another_origin_is_not_allowed(gw: GatewayProcess) -> None:
    answer = httpx.options(gw.base_url + "/chat/completions", timeout=10, headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
