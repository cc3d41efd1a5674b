"""Helpers of the routing tests: config entries for fakes, a gateway process on them, its route table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

ADMIN_KEY = "routing-admin-key"


def provider_entry(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    """The config of one provider served by `fake`."""
    if fake.kind == "vllm":
        return {"kind": "vllm", "endpoints": [fake.base_url], **extra}
    return {"kind": fake.kind, "base_url": fake.base_url, "api_key": fake.api_key or "", **extra}


def price(input_usd: float, output_usd: float) -> dict[str, float]:
    return {"input_per_mtok": input_usd, "output_per_mtok": output_usd}


@contextmanager
def gateway(providers: dict[str, Any], models: dict[str, Any], **routing: Any) -> Iterator[GatewayProcess]:
    """A gateway process on these providers and models, with the admin API on."""
    config = {"server": {"admin_key": ADMIN_KEY}, "providers": providers, "models": models,
              "routing": routing}
    with GatewayProcess(config) as process:
        yield process


def route_table(gw: GatewayProcess) -> dict[str, Any]:
    # Generous: next to a busy real vLLM server on two cores, every process answers slowly.
    response = httpx.get(gw.url + "/admin/routes", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    response.raise_for_status()
    return response.json()


def route_doc(gw: GatewayProcess, model: str, provider: str) -> dict[str, Any]:
    return next(r for r in route_table(gw)[model]["routes"] if r["provider"] == provider)


def posts(fake: FakeProvider) -> int:
    """Generation requests the fake received (its model listings excluded)."""
    return sum(1 for r in fake.requests if r.method == "POST")
