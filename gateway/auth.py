"""Who is calling: an API key to its team, from memory, kept fresh from the store.

Keys live in the store (only their hashes). Each process keeps them in a dict and
polls a version number twice a second, so a revoked key stops working on every
worker within a second without a store call on the hot path. A key this process does
not know yet (created a moment ago through another worker) is looked up in the store
once; unknown keys are remembered for a while and lookups are rate-limited, so a flood
of wrong keys costs the store a bounded number of reads.

A team's `loopback_keys` are accepted only from a client on this machine: a loopback peer
whose request no proxy relayed (it carries no X-Forwarded-For, Forwarded or X-Real-IP; a
proxy on the same host is a loopback peer too, and uvicorn may have rewritten the peer
from those headers). Only a loopback key's request pays for that check.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass

from starlette.types import Scope

from gateway.background import Periodic
from gateway.config import Config, TeamConfig
from gateway.errors import GatewayError
from gateway.keys import bearer_token, hash_key
from gateway.store import KeyRecord, Store, StoreUnavailable

log = logging.getLogger("gateway.auth")
OPEN_TEAM = TeamConfig(name="default")  # the only team when none is configured
MISS_TTL_S = 1.0  # an unknown key is not looked up again for this long
MAX_MISSES = 10_000
LOOKUPS_PER_S = 50  # store reads for keys not in memory, per worker
RELAY_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


@dataclass(frozen=True, slots=True)
class Identity:
    team: TeamConfig
    key_id: str


OPEN_IDENTITY = Identity(OPEN_TEAM, "")


class KeyRing:
    def __init__(self, config: Config, store: Store, refresh_s: float = 0.5) -> None:
        self._config = config
        self._store = store
        self._static = _config_keys(config)
        self._keys: dict[str, Identity] = dict(self._static)
        self._loopback = _loopback_keys(config)
        self._version: int | None = None
        self._poller = Periodic("api key refresh", refresh_s, self._refresh_quietly)
        self._misses: dict[str, float] = {}  # key hash -> monotonic time until which it is known unknown
        self._lookups = RateLimit(LOOKUPS_PER_S, burst=2 * LOOKUPS_PER_S)

    async def start(self) -> None:
        try:
            await self.refresh()
        except StoreUnavailable:
            log.warning("store unavailable at start; only keys written in config work until it answers")
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def authenticate(self, authorization: str | None, scope: Scope | None = None) -> Identity:
        """The caller's identity; `scope` (the request's) tells whether a loopback key may be used."""
        if not self._config.auth_required:
            return OPEN_IDENTITY
        token = bearer_token(authorization)
        if token is None:
            raise _invalid("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")
        key_hash = hash_key(token)
        identity = self._keys.get(key_hash)
        if identity is None:
            local = self._loopback.get(key_hash)
            if local is not None:
                if scope is not None and from_this_machine(scope):
                    return local
                raise _invalid("This API key is accepted from this machine only (a loopback client, not through "
                               "a proxy); ask for a key of your own (gateway keys create).", code="loopback_key")
            identity = await self._look_up(key_hash)
        return identity

    async def _look_up(self, key_hash: str) -> Identity:
        """A key not in memory, from the store; a miss is remembered for MISS_TTL_S."""
        now = time.monotonic()
        if self._misses.get(key_hash, 0.0) > now or not self._lookups.take(now):
            raise _invalid("Incorrect API key provided.")
        try:
            record = await self._store.lookup_key(key_hash)
        except StoreUnavailable:
            raise GatewayError(503, "The gateway cannot check this API key right now; retry shortly.",
                               type="service_unavailable", code="store_unavailable",
                               headers={"retry-after": "1"}) from None
        team = self._config.teams.get(record.team) if record is not None else None
        if record is None or team is None:
            if len(self._misses) >= MAX_MISSES:
                self._misses.clear()
            self._misses[key_hash] = now + MISS_TTL_S
            raise _invalid("Incorrect API key provided.")
        identity = self._keys[key_hash] = Identity(team, record.key_id)
        return identity

    def use(self, config: Config) -> None:
        """Serve a reloaded config: its teams and keys from now on, store keys mapped to its teams.

        A key whose team is gone stops working at once; the next refresh reads the store anew.
        """
        teams = config.teams
        static = _config_keys(config)
        keys = {h: Identity(teams[i.team.name], i.key_id) for h, i in self._keys.items()
                if h not in self._static and i.team.name in teams}
        keys.update(static)
        self._config, self._static, self._keys, self._version = config, static, keys, None
        self._loopback = _loopback_keys(config)
        self._misses.clear()

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


def _config_keys(config: Config) -> dict[str, Identity]:
    return {h: Identity(team, f"config:{h[:8]}") for team in config.teams.values() for h in team.key_hashes}


def _loopback_keys(config: Config) -> dict[str, Identity]:
    return {h: Identity(team, f"loopback:{h[:8]}") for team in config.teams.values() for h in team.loopback_key_hashes}


class RateLimit:
    """A token bucket: `take` is True at most `rate` times a second, after a `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def from_this_machine(scope: Scope) -> bool:
    """Whether the request's peer is a loopback address and no proxy relayed it."""
    client = scope.get("client")
    if not client or not _loopback(client[0]):
        return False
    return not any(name in RELAY_HEADERS for name, _ in scope["headers"])


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a unix socket's peer, or a name: nothing proves it local
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def _invalid(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, code=code)
