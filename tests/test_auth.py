"""Specifications of the key ring: keys from memory, a store lookup for one not seen yet, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.auth import KeyRing
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.keys import hash_key
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
