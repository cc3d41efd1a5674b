"""Specifications of the admin API: strict about who asks and what they send, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.ids import new_id
from gateway.service import Gateway
from gateway.store import UsageRecord
from gateway.store.memory import MemoryStore

ADMIN = "admin-secret-1"


def app_config(admin_key: str = ADMIN) -> Any:
    return parse_config({
        "server": {"admin_key": admin_key},
        "providers": {"pool": {"kind": "vllm", "endpoints": ["http://gpu-1:8000/v1"]}},
        "models": {"m": {"routes": [{"provider": "pool", "model": "tiny"}]}},
        "teams": {"research": {}, "support": {}},
    }, {})


@pytest.fixture
async def admin() -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    config = app_config()
    gateway = Gateway(config, MemoryStore())
    transport = httpx.ASGITransport(app=create_app(config, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                 headers={"authorization": f"Bearer {ADMIN}"}) as client:
        yield client, gateway


@pytest.mark.parametrize("authorization", [None, "", f"Basic {ADMIN}", f"bearer{ADMIN}", f"Bearer  {ADMIN}",
                                           f"Bearer {ADMIN} extra", f"Token {ADMIN}", "Bearer wrong", f"Bearer {ADMIN}x"])
async def test_anything_but_the_exact_bearer_key_is_a_401(admin: Any, authorization: str | None) -> None:
    client, _ = admin
    headers = {} if authorization is None else {"authorization": authorization}
    answer = await client.get("/admin/keys", headers={**headers} if headers else {"authorization": ""})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


async def test_the_scheme_is_case_insensitive_as_http_says(admin: Any) -> None:
    client, _ = admin
    assert (await client.get("/admin/keys", headers={"authorization": f"bearer {ADMIN}"})).status_code == 200


async def test_without_an_admin_key_the_admin_api_is_off() -> None:
    config = app_config(admin_key="")
    transport = httpx.ASGITransport(app=create_app(config, Gateway(config, MemoryStore())))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        answer = await client.get("/admin/keys", headers={"authorization": "Bearer "})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "admin_disabled"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"team": ["research"]}', b'{"team": {"a": 1}}',
                                  b'{"team": 7}', b'{"team": "nobody"}', b'{"team": "research", "name": 5}',
                                  b'{"team": "research", "name": "' + b"n" * 300 + b'"}', b'{"team": null}'])
async def test_a_bad_key_request_is_a_400_naming_the_field_never_a_500(admin: Any, body: bytes) -> None:
    client, _ = admin
    answer = await client.post("/admin/keys", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_an_oversized_admin_body_is_a_413(admin: Any) -> None:
    client, _ = admin
    answer = await client.post("/admin/keys", content=b'{"team": "research", "name": "' + b"x" * 100_000 + b'"}')
    assert answer.status_code == 413


async def test_a_key_is_shown_once_listed_without_it_and_revoked(admin: Any) -> None:
    client, gateway = admin
    created = await client.post("/admin/keys", json={"team": "research", "name": "ci"})
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    assert key.startswith("sk-gw-") and (await gateway.keys.authenticate(f"Bearer {key}")).team.name == "research"
    listed = (await client.get("/admin/keys", params={"team": "research"})).json()["data"]
    assert [k["id"] for k in listed] == [key_id] and all("key" not in k for k in listed)
    assert (await client.delete(f"/admin/keys/{key_id}")).json() == {"id": key_id, "revoked": True}
    assert (await client.delete("/admin/keys/key_nope")).status_code == 404


@pytest.mark.parametrize(("query", "param"), [
    ({"team": "research", "from": "2025-01-01", "to": "2026-03-01"}, "to"),  # 425 days
    ({"team": "research", "from": "2026-03-01", "to": "2026-02-01"}, "to"),  # backwards
    ({"team": "research", "from": "yesterday"}, "from"),
    ({"team": "nobody"}, "team"),
    ({}, "team"),
])
async def test_a_usage_report_out_of_bounds_is_a_400(admin: Any, query: dict, param: str) -> None:
    client, _ = admin
    answer = await client.get("/admin/usage", params=query)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


async def test_a_usage_report_sums_a_teams_days_exactly(admin: Any) -> None:
    client, gateway = admin
    for cost in (300, 700):
        await gateway.store.settle(new_id(), UsageRecord("research", "k", "m", "pool", 10, 5, cost, None, 200, 1,
                                                         0, "2026-11-02", "2026-11"))
    answer = await client.get("/admin/usage", params={"team": "research", "from": "2026-11-01", "to": "2026-11-30"})
    totals = answer.json()["totals"]
    assert (totals["requests"], totals["cost_nano"], totals["cost_usd"]) == (2, 1_000, 1e-6)
