"""The Redis store: quotas, reservations, usage and keys shared by every gateway process.

Each operation that touches more than one key is one Lua script, so it is atomic
and costs one round trip; the settlements of a team that end in one loop turn share one
(gateway.store.redis_settlements). Key layout (`gw` is the prefix):

    gw:{team}:rpm                   zset   request id -> admission time (ms); last 60 s; a lease's
                                           requests ("<lease id>", "<lease id>:2", ...) -> its end
    gw:{team}:tpm                   zset   "<id>:<tokens>" -> settle time (ms); last 60 s (one
                                           entry per settlement call: its requests' tokens)
    gw:{team}:tpm:total             string sum of the tokens in gw:{team}:tpm
    gw:{team}:reservations          hash   live reservation (or lease) id -> "tokens|cost|day|month"
                                           (a lease's: what it still holds)
    gw:{team}:reservations:expiry   zset   reservation id -> expiry (ms); a settled id stays
                                           until then, as the tombstone that makes settlement
                                           idempotent (see gateway.store.redis_scripts)
    gw:{team}:held                  hash   "tokens", "d:<day>", "m:<month>" -> in-flight sums
    gw:{team}:day:<YYYY-MM-DD>      hash   "<field>@<model>|<provider>" usage by route, and the
                                           day's "cost_nano" (its other totals are the routes' sums)
    gw:{team}:month:<YYYY-MM>       string settled nano-dollars
    gw:{team}:records               stream per-request records, newest last
    gw:{teams}:all                  set    teams that have records (for records(None))
    gw:{keys}:by_hash, :by_id, :revoked, :version   API keys
    gw:{team}:response:<id>         string a stored Responses answer (previous_response_id), with a TTL
    gw:{config}:version, :text      string the config every worker runs (published by a reload)

The braces are Redis Cluster hash tags: all of a team's keys live in one slot, so
a script may touch any of them. Time inside scripts is the server's TIME, so all
gateway processes agree on windows and expiries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from datetime import date, timedelta
from typing import Any

import orjson
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.store.address import RedisAddress, parse_address
from gateway.store.base import (
    SETTLED_GRACE_S,
    Admission,
    DailyUsage,
    Hold,
    KeyRecord,
    LeaseAsk,
    Limits,
    StoreUnavailable,
    UsageRecord,
    refused,
)
from gateway.store.batch import ScriptBatcher
from gateway.store.connect import connect
from gateway.store.redis_scripts import SCRIPTS
from gateway.store.redis_settlements import Settlements
from gateway.store.windows import HELD_RETRY_MS, ROUTE_FIELDS, WINDOW_MS, check_amounts, next_day_ms, next_month_ms

USAGE_TTL_S = 400 * 86_400  # daily usage outlives a year of reports
RECORDS_PAGE = 1_000  # records read per team and round trip when looking for one request
MAX_RESPONSE_ID = 200  # a response id is ours or an upstream's; one past this is no id of either


class RedisStore:
    """A `Store` on Redis (any shape gateway.store.address reads), shared by all gateway processes.

    Every socket wait is bounded by `timeout_s`; any failure to get an answer
    raises StoreUnavailable. Broken connections are replaced on the next call,
    so the store recovers by itself when Redis comes back.
    """

    def __init__(
        self,
        address: RedisAddress | str,
        timeout_s: float = 0.5,
        *,
        prefix: str = "gw",
        max_records: int = 100_000,
        max_connections: int = 64,
        usage_ttl_s: int = USAGE_TTL_S,
        replicas: int = 0,
    ) -> None:
        if isinstance(address, str):
            address = parse_address(address)
        self.address = address
        self._redis = connect(address, timeout_s, max_connections)
        # Admission and settlement, once per request each, leave batched: the calls of one
        # loop turn in one pipeline (bench/redis_clients.py measures what that saves).
        self._batch = ScriptBatcher(self._redis, timeout_s)
        self._replicas = replicas  # a settlement counts once this many replicas have it
        self._prefix = prefix
        self._max_records = max_records
        self._usage_ttl_s = usage_ttl_s
        self._known_teams: set[str] = set()  # teams this process has put in the team set
        self._settlements = Settlements(self._settle_batch, self._settlement_keys, max_records, usage_ttl_s)
        # Connect, send, and a reload after SCRIPT FLUSH each get one timeout.
        self._deadline_s = 3 * timeout_s

    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        check_amounts(hold.tokens, hold.cost_nano)
        reservation_id = hold.reservation_id
        keys = self._team_keys(hold.team, "rpm", "tpm", "tpm:total", "reservations",
                               "reservations:expiry", "held", f"day:{hold.day}", f"month:{hold.month}")
        args = (
            reservation_id, hold.tokens, hold.cost_nano, hold.day, hold.month,
            round(hold.ttl_s * 1000), _limit(limits.rpm), _limit(limits.tpm),
            _limit(limits.budget_day_nano), _limit(limits.budget_month_nano),
            next_day_ms(hold.day), next_month_ms(hold.month), HELD_RETRY_MS, _limit(hold.tpm_floor),
        )
        if lease is not None:
            check_amounts(lease.tokens, lease.cost_nano)
            args += (lease.slots, lease.tokens, lease.cost_nano, round(lease.life_s * 1000), "1" if lease.only else "")
        reply = await self._fast_run("admit", keys, args)
        admitted, refused_by, wait_ms, requests, tokens, tokens_reset_ms, *granted = reply
        if not admitted:
            return refused(refused_by.decode(), wait_ms, limits, requests, tokens)
        if requests < 0:  # this id was admitted already: nothing more was held
            return Admission(admitted=True, reservation_id=reservation_id)
        return Admission(
            admitted=True,
            reservation_id=reservation_id,
            requests_remaining=None if limits.rpm is None else limits.rpm - requests,
            tokens_remaining=None if limits.tpm is None else limits.tpm - tokens,
            requests_reset_s=WINDOW_MS / 1000,
            tokens_reset_s=tokens_reset_ms / 1000,
            lease_slots=granted[0] if lease is not None and granted and granted[0] > 1 else 0,
        )

    async def release(self, team: str, reservation_id: str, ttl_s: float, unused: tuple[int, int] = (1, 1)) -> bool:
        keys = self._team_keys(team, "rpm", "reservations", "reservations:expiry", "held")
        return bool(await self._fast_run("release", keys, (reservation_id, round(ttl_s * 1000), *unused)))

    async def settle(self, reservation_id: str, usage: UsageRecord, ttl_s: float = SETTLED_GRACE_S,
                     lease_id: str = "") -> bool:
        check_amounts(usage.prompt_tokens, usage.completion_tokens, usage.cost_nano, usage.provider_cost_nano or 0)
        return bool(await self._settlements.settle(reservation_id, usage, round(ttl_s * 1000), lease_id))

    async def _settle_batch(self, team: str, keys: list[str], args: Callable[[], list[Any]]) -> list[int]:
        if team in self._known_teams:
            return await self._fast_run("settle", keys, args, self._replicas)
        async with self._answering():
            return await self._settle_first(team, keys, args())

    def _settlement_keys(self, team: str, day: str, month: str) -> list[str]:
        return self._team_keys(team, "tpm", "tpm:total", "reservations", "reservations:expiry",
                               "held", f"day:{day}", f"month:{month}", "records")

    async def _settle_first(self, team: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Settle and add the team to the set records(None) reads, in one round trip.

        The set has its own hash slot, so it cannot be written by the script; this
        process adds each team once, which is enough since the set never expires.
        """
        script = SCRIPTS["settle"]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            pipe.sadd(self._key("teams", "all"), team)
            if self._replicas:
                pipe.execute_command("WAIT", self._replicas, max(1, int(self._deadline_s * 500)))
            recorded, _, *waited = await pipe.execute(raise_on_error=False)
        if waited and isinstance(waited[0], int) and waited[0] < self._replicas:
            raise StoreUnavailable(f"redis: no {self._replicas} replica(s) took this settlement in time")
        if isinstance(recorded, NoScriptError):
            recorded = await self._redis.eval(script.source, len(keys), *keys, *args)
        elif isinstance(recorded, Exception):
            _refused_argument(recorded)
            raise recorded
        self._known_teams.add(team)
        return recorded

    async def spend(self, team: str, day: str, month: str) -> tuple[int, int]:
        keys = self._team_keys(team, "reservations", "reservations:expiry", "held", f"day:{day}", f"month:{month}")
        async with self._answering():
            day_nano, month_nano = await self._run("spend", keys, (day, month))
        return int(day_nano), int(month_nano)

    async def usage(self, team: str, first_day: str, last_day: str) -> list[DailyUsage]:
        days = _days(first_day, last_day)
        async with self._answering():
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(self._key(team, f"day:{day}"))
                totals = await pipe.execute()
        return [_daily_usage(day, found) for day, found in zip(days, totals) if found]

    async def records(self, team: str | None = None, count: int = 100, since_ms: int = 0) -> list[UsageRecord]:
        async with self._answering():
            teams = await self._record_teams(team)
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in teams:
                    pipe.xrevrange(self._key(name, "records"), min=_stream_floor(since_ms), count=count)
                streams = await pipe.execute()
        # Stream ids are "<server ms>-<seq>", so they order records across teams too.
        entries = sorted((entry for stream in streams for entry in stream), key=_stream_order, reverse=True)
        return [_usage_record(values[b"r"]) for _, values in entries[:count]]

    async def find_record(self, request_id: str, team: str | None = None, since_ms: int = 0,
                          max_scanned: int = 100_000) -> UsageRecord | None:
        # Each round reads the next page of every team's stream still in range, in one round trip;
        # only a record whose bytes hold the id is parsed.
        needle = b'"request_id":' + orjson.dumps(request_id)
        async with self._answering():
            cursors = dict.fromkeys(await self._record_teams(team), "+")
            scanned = 0
            while cursors and scanned < max_scanned:
                page = min(RECORDS_PAGE, max_scanned - scanned)
                names = list(cursors)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.xrevrange(self._key(name, "records"), max=cursors[name], min=_stream_floor(since_ms),
                                       count=page)
                    pages = await pipe.execute()
                for name, entries in zip(names, pages):
                    scanned += len(entries)
                    for _, values in entries:
                        if needle in values[b"r"]:
                            return _usage_record(values[b"r"])
                    if len(entries) < page:
                        del cursors[name]
                    else:
                        cursors[name] = "(" + entries[-1][0].decode()  # the page's last id, excluded
        return None

    async def _record_teams(self, team: str | None) -> list[str]:
        if team is not None:
            return [team]
        return sorted(t.decode() for t in await self._redis.smembers(self._key("teams", "all")))

    async def add_key(self, record: KeyRecord) -> None:
        keys = self._keys_keys("by_hash", "by_id", "revoked", "version")
        args = (record.key_id, record.key_hash, orjson.dumps(record), "1" if record.revoked else "0")
        async with self._answering():
            await self._run("add_key", keys, args)

    async def lookup_key(self, key_hash: str) -> KeyRecord | None:
        async with self._answering():
            value = await self._run("lookup_key", self._keys_keys("by_hash", "revoked"), (key_hash,))
        return None if value is None else _from_json(KeyRecord, value)

    async def revoke_key(self, key_id: str) -> bool:
        keys = self._keys_keys("by_id", "revoked", "version")
        async with self._answering():
            return bool(await self._run("revoke_key", keys, (key_id,)))

    async def keys(self, team: str | None = None) -> list[KeyRecord]:
        async with self._answering():
            values, revoked_ids = await self._run("list_keys", self._keys_keys("by_hash", "revoked"), ())
        revoked = {key_id.decode() for key_id in revoked_ids}
        found = []
        for value in values:
            record = _from_json(KeyRecord, value)
            if team is None or record.team == team:
                found.append(replace(record, revoked=record.key_id in revoked))
        return sorted(found, key=lambda r: (r.created_ms, r.key_id))

    async def keys_version(self) -> int:
        async with self._answering():
            return int(await self._redis.get(self._key("keys", "version")) or 0)

    async def put_response(self, team: str, response_id: str, record: bytes, ttl_s: float) -> None:
        async with self._answering():
            await self._redis.set(self._response_key(team, response_id), record, px=max(1, round(ttl_s * 1000)))

    async def get_response(self, team: str, response_id: str) -> bytes | None:
        async with self._answering():
            return await self._redis.get(self._response_key(team, response_id))

    async def delete_response(self, team: str, response_id: str) -> bool:
        async with self._answering():
            return bool(await self._redis.delete(self._response_key(team, response_id)))

    def _response_key(self, team: str, response_id: str) -> str:
        return self._key(team, "response:" + response_id[:MAX_RESPONSE_ID])

    async def publish_config(self, text: str) -> int:
        version_key, text_key = self._key("config", "version"), self._key("config", "text")
        async with self._answering():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(version_key)
                pipe.set(text_key, text)
                version, _ = await pipe.execute()
        return int(version)

    async def config_version(self) -> int:
        async with self._answering():
            return int(await self._redis.get(self._key("config", "version")) or 0)

    async def published_config(self) -> tuple[int, str] | None:
        async with self._answering():
            version, text = await self._redis.mget(self._key("config", "version"), self._key("config", "text"))
        if version is None or text is None:
            return None
        return int(version), text.decode("utf-8")

    async def ping(self) -> None:
        async with self._answering():
            await self._redis.ping()

    async def close(self) -> None:
        await self._batch.close()
        try:
            await self._redis.aclose()
        except (RedisError, OSError):
            pass  # closing a connection to a Redis that is gone cannot fail usefully

    @asynccontextmanager
    async def _answering(self) -> AsyncIterator[None]:
        """Turn every way of not getting an answer into StoreUnavailable."""
        try:
            async with asyncio.timeout(self._deadline_s):
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc

    async def _fast_run(self, name: str, keys: Sequence[str], args: Sequence[Any] | Callable[[], Sequence[Any]],
                        replicas: int = 0) -> Any:
        """A script in this loop turn's batch; the batch's own deadline bounds the wait."""
        try:
            return await self._batch.run(name, keys, args, replicas)
        except ResponseError as exc:
            _refused_argument(exc)
            raise StoreUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = SCRIPTS[name]
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or its script cache was flushed; EVAL caches it again.
            return await self._redis.eval(script.source, len(keys), *keys, *args)
        except ResponseError as exc:
            _refused_argument(exc)
            raise

    def _key(self, tag: str, name: str) -> str:
        return f"{self._prefix}:{{{tag}}}:{name}"

    def _team_keys(self, team: str, *names: str) -> list[str]:
        return [self._key(team, name) for name in names]

    def _keys_keys(self, *names: str) -> list[str]:
        return [self._key("keys", name) for name in names]


def _refused_argument(error: Exception) -> None:
    """A script that refused an argument before writing: the caller's bug, not the store's absence."""
    if "gateway: argument" in str(error):
        raise ValueError(f"store: {error}") from error


def _limit(value: int | None) -> int | str:
    return "" if value is None else value


def _days(first_day: str, last_day: str) -> list[str]:
    first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _daily_usage(day: str, found: dict[bytes, bytes]) -> DailyUsage:
    """A day's hash read back: its totals are the sums of its routes' (a day-wide field other than
    cost_nano, which admission reads, is a total an older gateway kept, and the same sum)."""
    totals = DailyUsage(day=day)
    for raw_name, raw_amount in found.items():
        field_name, _, route = raw_name.decode().partition("@")
        if route and field_name in ROUTE_FIELDS:
            totals.by_route.setdefault(route, dict.fromkeys(ROUTE_FIELDS, 0))[field_name] = int(raw_amount)
    for name in ROUTE_FIELDS:
        setattr(totals, name, sum(fields[name] for fields in totals.by_route.values()))
    return totals


def _stream_floor(since_ms: int) -> str:
    """The lowest stream id of records settled at or after `since_ms` (the stream's ids are server ms)."""
    return f"{since_ms}-0" if since_ms > 0 else "-"


def _stream_order(entry: tuple[bytes, Any]) -> tuple[int, int]:
    ms, _, seq = entry[0].partition(b"-")
    return int(ms), int(seq)


def _from_json(kind: type, raw: bytes) -> Any:
    """Rebuild a dataclass, ignoring fields a newer gateway may have added."""
    data = orjson.loads(raw)
    return kind(**{f.name: data[f.name] for f in fields(kind) if f.name in data})


def _usage_record(raw: bytes) -> UsageRecord:
    return _from_json(UsageRecord, raw)
