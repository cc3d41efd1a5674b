"""Helpers for dedicated-endpoint tests: a fake control plane, fake services' data planes, config entries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.dedicated.fake_control_plane import FakeControlPlane
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

ADMIN_KEY = "dedicated-admin-key"
INVOKE_PREFIX = "/inference-api/v1/inference_service/"
MODEL = "m"


@pytest.fixture
def control_plane() -> Iterator[FakeControlPlane]:
    with FakeControlPlane(ready_after_s=0.3) as fake:
        yield fake


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeProvider]]:
    """Starts fakes of per-token providers (`fakes("openai")`) and of services' data planes
    (`fakes("netmind", service_id="...")`: served under the service's invoke path)."""
    started: list[FakeProvider] = []

    def make(kind: str, service_id: str | None = None, **options: Any) -> FakeProvider:
        fake = FakeProvider(kind, models=[MODEL], **options)
        if service_id is not None:
            fake.profile = replace(fake.profile, prefix=INVOKE_PREFIX + service_id)
        started.append(fake.start())
        return fake

    yield make
    for fake in started:
        fake.stop()


def dedicated_entry(control_plane: FakeControlPlane, data_plane: FakeProvider | None,
                    services: list[str], **extra: Any) -> dict[str, Any]:
    """A netmind-dedicated provider on the fake control plane; its services served by `data_plane`'s server."""
    origin = data_plane.origin if data_plane is not None else "http://127.0.0.1:9"
    return {"kind": "netmind-dedicated", "api_key": "sk-fake", "control_token": control_plane.token,
            "control_url": control_plane.url, "invoke_url_template": origin + INVOKE_PREFIX + "{service_id}",
            "services": services, "status_poll_s": 0.1, **extra}


def per_token_entry(fake: FakeProvider) -> dict[str, Any]:
    return {"kind": fake.kind, "base_url": fake.base_url, "api_key": fake.api_key or ""}


def price(input_usd: float, output_usd: float) -> dict[str, float]:
    return {"input_per_mtok": input_usd, "output_per_mtok": output_usd}


def gateway_config(providers: dict[str, Any], routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"server": {"admin_key": ADMIN_KEY}, "providers": providers,
            "models": {MODEL: {"strategy": "cost", "routes": routes}}}


def admin(gw: GatewayProcess, path: str) -> Any:
    response = httpx.get(gw.url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def ask(gw: GatewayProcess) -> str:
    """One chat request; the provider that served it."""
    response = httpx.post(gw.base_url + "/chat/completions", timeout=10, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4})
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-provider"]


def posts(fake: FakeProvider) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")
