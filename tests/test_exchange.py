"""Specifications of the exchange, the one owner of an admitted request: whatever breaks inside
the gateway, the request is answered once, settled once, and gives its router slot back once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.service import Gateway
from gateway.store import UsageRecord
from gateway.store.memory import MemoryStore
from gateway.upstream import tap as tap_module
from tests.fakes import FakeProvider
from tests.waiting import eventually

KEY = "sk-exchange"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider("openai", completion_tokens=6) as fake:
        yield fake


@pytest.fixture
async def running(upstream: FakeProvider) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway, MemoryStore]]:
    config = parse_config({
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url, "api_key": upstream.api_key}},
        "models": {"m": {"routes": [{"provider": "p", "model": "gpt-4o-mini",
                                     "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
        "teams": {"t": {"keys": [KEY], "budget_usd": {"day": 10}}}, "routing": {"models_poll_s": 0}}, {})
    store = MemoryStore()
    gateway = Gateway(config, store)
    await gateway.start()
    transport = httpx.ASGITransport(app=create_app(config, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                 headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client, gateway, store
    await gateway.stop()


def body(stream: bool) -> dict[str, Any]:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}


def nothing_held(gateway: Gateway, store: MemoryStore) -> bool:
    team = store._teams["t"]
    inflight = sum(e.inflight for endpoints in gateway.router.endpoints.values() for e in endpoints)
    return not team.reservations and not team.held and inflight == 0 and gateway.inflight.count == 0


async def test_a_bug_mid_stream_ends_the_stream_with_an_error_event_and_settles_once(
        running: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, gateway, store = running
    def exploding_feed(self: tap_module.StreamTap, chunk: bytes) -> bytes:
        raise RuntimeError("a bug in the tap")  # after the response started: the client has its headers
    monkeypatch.setattr(tap_module.StreamTap, "feed", exploding_feed)

    answer = await client.post("/v1/chat/completions", json=body(stream=True))

    assert answer.status_code == 200
    last = orjson.loads(answer.content.rstrip().split(b"\n")[-1][5:])
    assert last["error"]["code"] == "server_error"
    await eventually(lambda: nothing_held(gateway, store), 2, "the slot and the reservation given back")
    [record] = await store.records("t")
    assert record.status == 500


async def test_a_bug_before_the_answer_is_a_500_in_openai_form_and_settles_once(
        running: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, gateway, store = running

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in reading usage")
    monkeypatch.setattr("gateway.exchange.usage_from_doc", broken)

    answer = await client.post("/v1/chat/completions", json=body(stream=False))

    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    await eventually(lambda: nothing_held(gateway, store), 2, "the slot and the reservation given back")
    assert [r.status for r in await store.records("t")] == [500]


async def test_a_bug_in_settlement_still_gives_the_reservation_back(running: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client, gateway, store = running
    original = MemoryStore.settle

    async def failing_settle(self: MemoryStore, reservation_id: str, usage: UsageRecord, ttl_s: float = 60) -> bool:
        raise ValueError("store: a bug")
    monkeypatch.setattr(MemoryStore, "settle", failing_settle)

    answer = await client.post("/v1/chat/completions", json=body(stream=False))

    assert answer.status_code == 200
    await eventually(lambda: nothing_held(gateway, store), 2, "the reservation released by the outbox")
    monkeypatch.setattr(MemoryStore, "settle", original)
