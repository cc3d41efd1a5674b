"""Who is calling: an API key to its team, from memory, kept fresh from the store.

Keys live in the store (only their hashes). Each process keeps them in a dict and
polls a version number twice a second, so a revoked key stops working on every
worker within a second without a store call on the hot path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.background import Periodic
from gateway.config import Config, TeamConfig
from gateway.errors import GatewayError
from gateway.keys import hash_key
from gateway.store import KeyRecord, Store, StoreUnavailable

log = logging.getLogger("gateway.auth")
OPEN_TEAM = TeamConfig(name="default")  # the only team when none is configured


@dataclass(frozen=True, slots=True)
class Identity:
    team: TeamConfig
    key_id: str


class KeyRing:
    def __init__(self, config: Config, store: Store, refresh_s: float = 0.5) -> None:
        self._config = config
        self._store = store
        self._static = {h: Identity(team, f"config:{h[:8]}")
                        for team in config.teams.values() for h in team.key_hashes}
        self._keys: dict[str, Identity] = dict(self._static)
        self._version: int | None = None
        self._poller = Periodic("api key refresh", refresh_s, self._refresh_quietly)

    async def start(self) -> None:
        try:
            await self.refresh()
        except StoreUnavailable:
            log.warning("store unavailable at start; only keys written in config work until it answers")
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    def authenticate(self, authorization: str | None) -> Identity:
        if not self._config.auth_required:
            return Identity(OPEN_TEAM, "")
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise _invalid("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        identity = self._keys.get(hash_key(authorization[7:].strip()))
        if identity is None:
            raise _invalid("Incorrect API key provided.")
        return identity

    def remember(self, record: KeyRecord) -> None:
        """A key this process just created works here at once, elsewhere at the next refresh."""
        team = self._config.teams.get(record.team)
        if team is not None:
            self._keys = {**self._keys, record.key_hash: Identity(team, record.key_id)}

    async def refresh(self) -> None:
        version = await self._store.keys_version()
        if version == self._version:
            return
        keys = dict(self._static)
        for record in await self._store.keys():
            team = self._config.teams.get(record.team)
            if team is not None and not record.revoked:
                keys[record.key_hash] = Identity(team, record.key_id)
        self._keys, self._version = keys, version

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except StoreUnavailable:
            pass  # keep the last known keys; the store's absence shows at admission


def _invalid(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")
