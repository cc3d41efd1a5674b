"""Specifications of the key ring: keys from memory, a store lookup for one not seen yet, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import KeyRing
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.keys import hash_key
from gateway.service import Gateway
from gateway.store import KeyRecord, StoreUnavailable
from gateway.store.memory import MemoryStore

CONFIG = parse_config({"teams": {"research": {"keys": ["sk-in-config"]}, "ops": {}}}, {})


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.down = False

    async def lookup_key(self, key_hash: str) -> KeyRecord | None:
        self.lookups += 1
        if self.down:
            raise StoreUnavailable("redis: paused")
        return await super().lookup_key(key_hash)


async def refused(ring: KeyRing, authorization: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await ring.authenticate(authorization)
    return caught.value


async def test_a_key_written_in_config_names_its_team_without_asking_the_store() -> None:
    store = CountingStore()
    ring = KeyRing(CONFIG, store)
    assert (await ring.authenticate("Bearer sk-in-config")).team.name == "research"
    assert store.lookups == 0


@pytest.mark.parametrize("authorization", [None, "", "sk-in-config", "Basic sk-in-config", "Bearer",
                                           "Bearer sk-in-config trailing", "Bearer\tsk-in-config"])
async def test_anything_but_a_bearer_key_is_a_401(authorization: str | None) -> None:
    error = await refused(KeyRing(CONFIG, CountingStore()), authorization)
    assert (error.status, error.code) == (401, "invalid_api_key")


async def test_a_key_made_elsewhere_is_found_in_the_store_once_then_kept() -> None:
    store = CountingStore()
    ring = KeyRing(CONFIG, store)
    await store.add_key(KeyRecord("key_1", hash_key("sk-new"), "ops", "ci", created_ms=1))
    assert (await ring.authenticate("Bearer sk-new")).key_id == "key_1"
    assert (await ring.authenticate("Bearer sk-new")).team.name == "ops"
    assert store.lookups == 1


async def test_an_unknown_key_is_looked_up_once_a_second_and_a_flood_is_rate_limited() -> None:
    store = CountingStore()
    ring = KeyRing(CONFIG, store)
    for _ in range(5):
        await refused(ring, "Bearer sk-wrong")
    assert store.lookups == 1  # remembered as unknown
    for n in range(500):
        await refused(ring, f"Bearer sk-guess-{n}")
    assert store.lookups <= 1 + 2 * 50  # the burst, then the rate


async def test_a_revoked_key_stops_at_the_next_refresh_even_when_it_was_looked_up() -> None:
    store = CountingStore()
    ring = KeyRing(CONFIG, store)
    await store.add_key(KeyRecord("key_2", hash_key("sk-soon-gone"), "ops", "ci", created_ms=1))
    await ring.authenticate("Bearer sk-soon-gone")
    await store.revoke_key("key_2")
    await ring.refresh()
    await refused(ring, "Bearer sk-soon-gone")


async def test_a_key_of_a_team_not_in_config_is_refused() -> None:
    store = CountingStore()
    await store.add_key(KeyRecord("key_3", hash_key("sk-orphan"), "deleted-team", "x", created_ms=1))
    await refused(KeyRing(CONFIG, store), "Bearer sk-orphan")


async def test_a_lookup_while_the_store_is_down_is_a_503_to_retry_not_a_401() -> None:
    store = CountingStore()
    store.down = True
    error = await refused(KeyRing(CONFIG, store), "Bearer sk-unseen")
    assert (error.status, error.code, error.headers["retry-after"]) == (503, "store_unavailable", "1")


async def test_a_reloaded_config_moves_keys_to_its_teams_and_drops_the_keys_of_teams_gone() -> None:
    store = CountingStore()
    ring = KeyRing(CONFIG, store)
    await store.add_key(KeyRecord("key_1", hash_key("sk-ops"), "ops", "ci", created_ms=1))
    await ring.refresh()
    reloaded = parse_config({"teams": {"ops": {"rpm": 7, "keys": ["sk-rotated"]}}}, {})
    ring.use(reloaded)
    assert (await ring.authenticate("Bearer sk-ops")).team is reloaded.teams["ops"]  # its new limits
    assert (await ring.authenticate("Bearer sk-rotated")).team.name == "ops"
    # A key written for a team the new config no longer has: unknown, looked up once, refused.
    assert (await refused(ring, "Bearer sk-in-config")).status == 401
    assert store.lookups == 1


# --- loopback keys: a well-known key that is no key to anyone off this machine ----------------

DEMO_KEY = "sk-gw-demo"
LOCAL = parse_config({
    "providers": {"mock": {"kind": "mock"}},
    "models": {"m": {"routes": [{"provider": "mock", "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
    "teams": {"demo": {"loopback_keys": [DEMO_KEY]}, "research": {"keys": ["sk-in-config"]}}}, {})


def scope(host: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"type": "http", "client": (host, 5000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"])
async def test_a_loopback_key_is_accepted_from_a_loopback_peer(host: str) -> None:
    ring = KeyRing(LOCAL, CountingStore())
    assert (await ring.authenticate(f"Bearer {DEMO_KEY}", scope(host))).team.name == "demo"


@pytest.mark.parametrize(("host", "headers"), [
    ("10.1.2.3", {}), ("172.17.0.1", {}), ("::ffff:10.0.0.1", {}), ("2001:db8::1", {}),
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}), ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}),
    ("127.0.0.1", {"Forwarded": "for=203.0.113.9"}), ("::1", {"X-Real-IP": "203.0.113.9"}),
])
async def test_a_loopback_key_from_elsewhere_or_through_a_proxy_is_a_401_that_says_why(
        host: str, headers: dict[str, str]) -> None:
    store = CountingStore()
    ring = KeyRing(LOCAL, store)
    with pytest.raises(GatewayError) as caught:
        await ring.authenticate(f"Bearer {DEMO_KEY}", scope(host, headers))
    assert caught.value.status == 401 and caught.value.code == "loopback_key"
    assert "accepted from this machine only" in caught.value.message
    assert store.lookups == 0


async def test_a_loopback_key_without_a_peer_to_check_is_refused() -> None:
    ring = KeyRing(LOCAL, CountingStore())
    assert (await refused(ring, f"Bearer {DEMO_KEY}")).code == "loopback_key"


async def test_an_ordinary_key_works_from_anywhere() -> None:
    ring = KeyRing(LOCAL, CountingStore())
    assert (await ring.authenticate("Bearer sk-in-config", scope("10.1.2.3"))).team.name == "research"


@pytest.fixture
async def local_app() -> AsyncIterator[Any]:
    gateway = Gateway(LOCAL, MemoryStore())
    await gateway.start()
    yield create_app(LOCAL, gateway)
    await gateway.stop()


def client_at(app: Any, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5000)), base_url="http://gateway",
                             headers={"authorization": f"Bearer {DEMO_KEY}"})


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def test_the_app_refuses_a_loopback_key_from_another_host_on_every_authenticated_path(local_app: Any) -> None:
    async with client_at(local_app, "10.1.2.3") as client:
        for answer in (await client.post("/v1/chat/completions", json=CHAT), await client.get("/v1/models"),
                       await client.get("/v1/models/m")):
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "loopback_key"
            assert DEMO_KEY not in answer.text


async def test_the_app_answers_a_loopback_key_from_ipv6_loopback(local_app: Any) -> None:
    async with client_at(local_app, "::1") as client:
        answer = await client.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200
        assert answer.headers["x-gateway-provider"] == "mock"
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["m"]
        assert (await client.get("/v1/models/m")).status_code == 200
        relayed = await client.post("/v1/chat/completions", json=CHAT, headers={"x-forwarded-for": "203.0.113.9"})
        assert relayed.status_code == 401
