"""The in-process store: quotas, reservations, usage and keys for a single gateway process.

Same semantics as the Redis store, kept in plain Python objects. Every method
runs to completion without awaiting, so on one event loop each call is atomic.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import date
from itertools import islice, takewhile

from gateway.store.base import (
    SETTLED_GRACE_S,
    Admission,
    DailyUsage,
    Hold,
    KeyRecord,
    LeaseAsk,
    Limits,
    UsageRecord,
    refused,
)
from gateway.store.windows import (
    HELD_RETRY_MS,
    ROUTE_FIELDS,
    WINDOW_MS,
    check_amounts,
    next_day_ms,
    next_month_ms,
    retry_after_s,
)


@dataclass(slots=True)
class _Reservation:
    tokens: int
    cost_nano: int
    day: str
    month: str
    expires_ms: int


@dataclass(slots=True)
class _Team:
    """All state of one team; the Redis store keeps the same under one hash tag."""

    requests: deque[tuple[int, str]] = field(default_factory=deque)  # (admission time, id), oldest first
    tokens: deque[tuple[int, int]] = field(default_factory=deque)  # (settle time, tokens)
    window_tokens: int = 0  # sum of `tokens`
    reservations: dict[str, _Reservation] = field(default_factory=dict)
    # Settled reservation ids -> forget after (ms): a second settle before then records
    # nothing. Like Redis's tombstones, each goes when its reservation would have expired.
    settled: dict[str, int] = field(default_factory=dict)
    expiries: list[tuple[int, str]] = field(default_factory=list)  # heap of live and settled ids
    held: Counter[str] = field(default_factory=Counter)  # "tokens", "d:<day>", "m:<month>"
    days: dict[str, DailyUsage] = field(default_factory=dict)
    months: dict[str, int] = field(default_factory=dict)  # settled nano-dollars
    records: deque[tuple[int, UsageRecord]] = field(default_factory=deque)


class MemoryStore:
    """A `Store` for one process (`memory://`): nothing is shared, nothing survives a restart."""

    def __init__(self, *, max_records: int = 100_000) -> None:
        self._max_records = max_records
        self._teams: dict[str, _Team] = {}
        self._record_seq = 0
        self._keys: dict[str, KeyRecord] = {}
        self._keys_version = 0
        self._config: tuple[int, str] | None = None
        self._responses: dict[tuple[str, str], tuple[bytes, float]] = {}  # (team, id) -> (record, monotonic expiry)

    async def admit(self, hold: Hold, limits: Limits, lease: LeaseAsk | None = None) -> Admission:
        # One process, no round trip to save: a lease asked for is never granted.
        """Reserve `hold` or refuse it, checking rpm, tpm, budget_day, budget_month in order.

        rpm and tpm are sliding 60 s logs. `requests_reset_s` is when this request
        leaves the window (60 s); `tokens_reset_s` is when the settled tokens now in
        the window have all left it (0 when there are none).
        """
        check_amounts(hold.tokens, hold.cost_nano)
        now = _now_ms()
        team = self._team(hold.team)
        _purge(team, now)
        reservation_id = hold.reservation_id
        if reservation_id in team.reservations:
            return Admission(admitted=True, reservation_id=reservation_id)  # a retry: held once
        if reservation_id in team.settled:
            return _refused("released", 0)
        _trim_windows(team, now)
        requests = len(team.requests)
        counted = team.window_tokens + team.held["tokens"]

        if limits.rpm is not None and requests + 1 > limits.rpm:
            return refused("rpm", _requests_wait(team, limits.rpm, now), limits, requests=requests)
        tokens = hold.tokens
        if limits.tpm is not None and hold.tpm_floor is not None and counted + tokens > limits.tpm:
            tokens = max(hold.tpm_floor, limits.tpm - counted)  # tpm is a rate: see Hold.tpm_floor
        if limits.tpm is not None and counted + tokens > limits.tpm:
            wait = WINDOW_MS
            if tokens <= limits.tpm:
                wait = _tokens_wait(team, counted + tokens - limits.tpm, now)
            return refused("tpm", wait, limits, counted_tokens=counted)
        if limits.budget_day_nano is not None:
            day = team.days.get(hold.day)
            refusal = _over_budget("budget_day", day.cost_nano if day else 0, team.held["d:" + hold.day],
                                   hold.cost_nano, limits.budget_day_nano, next_day_ms(hold.day) - now)
            if refusal is not None:
                return refusal
        if limits.budget_month_nano is not None:
            refusal = _over_budget("budget_month", team.months.get(hold.month, 0), team.held["m:" + hold.month],
                                   hold.cost_nano, limits.budget_month_nano, next_month_ms(hold.month) - now)
            if refusal is not None:
                return refusal

        expires_ms = now + round(hold.ttl_s * 1000)
        team.requests.append((now, reservation_id))
        team.reservations[reservation_id] = _Reservation(tokens, hold.cost_nano, hold.day, hold.month, expires_ms)
        heapq.heappush(team.expiries, (expires_ms, reservation_id))
        _hold(team, tokens, hold.cost_nano, hold.day, hold.month, sign=1)
        tokens_reset_ms = team.tokens[-1][0] + WINDOW_MS - now if team.tokens else 0
        return Admission(
            admitted=True,
            reservation_id=reservation_id,
            requests_remaining=None if limits.rpm is None else limits.rpm - requests - 1,
            tokens_remaining=None if limits.tpm is None else limits.tpm - counted - tokens,
            requests_reset_s=WINDOW_MS / 1000,
            tokens_reset_s=tokens_reset_ms / 1000,
        )

    async def release(self, team: str, reservation_id: str, ttl_s: float, unused: tuple[int, int] = (1, 1)) -> bool:
        now = _now_ms()
        state = self._team(team)
        _purge(state, now)
        reservation = state.reservations.get(reservation_id)
        if reservation is not None:
            _release(state, reservation_id)
            state.settled[reservation_id] = reservation.expires_ms  # its heap entry stands for the tombstone
            # The request never happened, as far as rates go.
            state.requests = deque(entry for entry in state.requests if entry[1] != reservation_id)
            return True
        if reservation_id not in state.settled:
            forget_ms = now + round(ttl_s * 1000)
            state.settled[reservation_id] = forget_ms
            heapq.heappush(state.expiries, (forget_ms, reservation_id))
        return False

    async def settle(self, reservation_id: str, usage: UsageRecord, ttl_s: float = SETTLED_GRACE_S,
                     lease_id: str = "") -> bool:
        check_amounts(usage.prompt_tokens, usage.completion_tokens, usage.cost_nano, usage.provider_cost_nano or 0)
        now = _now_ms()
        team = self._team(usage.team)
        _purge(team, now)
        reservation = team.reservations.pop(reservation_id, None)
        if reservation is not None:
            # Live: its holds go back; its heap entry now stands for the tombstone.
            _hold(team, reservation.tokens, reservation.cost_nano, reservation.day, reservation.month, sign=-1)
            team.settled[reservation_id] = reservation.expires_ms
        elif reservation_id in team.settled:
            return False
        else:
            # Never admitted here, or expired before settlement: recorded, and remembered a while.
            forget_ms = now + round(ttl_s * 1000)
            team.settled[reservation_id] = forget_ms
            heapq.heappush(team.expiries, (forget_ms, reservation_id))

        tokens = usage.prompt_tokens + usage.completion_tokens
        if tokens:
            _trim_windows(team, now)
            team.tokens.append((now, tokens))
            team.window_tokens += tokens
        day = team.days.get(usage.day)
        if day is None:
            day = team.days[usage.day] = DailyUsage(day=usage.day)
        provider_cost = usage.provider_cost_nano or 0
        day.requests += 1
        day.prompt_tokens += usage.prompt_tokens
        day.completion_tokens += usage.completion_tokens
        day.cost_nano += usage.cost_nano
        day.provider_cost_nano += provider_cost
        route = day.by_route.setdefault(f"{usage.model}|{usage.provider}", dict.fromkeys(ROUTE_FIELDS, 0))
        route["requests"] += 1
        route["prompt_tokens"] += usage.prompt_tokens
        route["completion_tokens"] += usage.completion_tokens
        route["cost_nano"] += usage.cost_nano
        route["provider_cost_nano"] += provider_cost
        team.months[usage.month] = team.months.get(usage.month, 0) + usage.cost_nano

        self._record_seq += 1
        team.records.append((self._record_seq, usage))
        if len(team.records) > self._max_records:
            team.records.popleft()
        return True

    async def spend(self, team: str, day: str, month: str) -> tuple[int, int]:
        state = self._team(team)
        _purge(state, _now_ms())
        daily = state.days.get(day)
        return (
            (daily.cost_nano if daily else 0) + state.held["d:" + day],
            state.months.get(month, 0) + state.held["m:" + month],
        )

    async def usage(self, team: str, first_day: str, last_day: str) -> list[DailyUsage]:
        state = self._teams.get(team)
        if state is None:
            return []
        first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
        found = [d for d in state.days.values() if first <= date.fromisoformat(d.day) <= last]
        return [_copy_usage(d) for d in sorted(found, key=lambda d: d.day)]

    async def records(self, team: str | None = None, count: int = 100, since_ms: int = 0) -> list[UsageRecord]:
        newest: list[tuple[int, UsageRecord]] = []
        for state in self._record_teams(team):
            recent = takewhile(lambda entry: entry[1].time_ms >= since_ms, reversed(state.records))
            newest.extend(islice(recent, count))
        newest.sort(key=lambda entry: entry[0], reverse=True)
        return [record for _, record in newest[:count]]

    async def find_record(self, request_id: str, team: str | None = None, since_ms: int = 0,
                          max_scanned: int = 100_000) -> UsageRecord | None:
        scanned = 0
        for state in self._record_teams(team):
            for _, record in reversed(state.records):
                scanned += 1
                if scanned > max_scanned:
                    return None
                if record.time_ms < since_ms:
                    break
                if record.request_id == request_id:
                    return record
        return None

    def _record_teams(self, team: str | None) -> list[_Team]:
        if team is not None:
            return [self._teams[team]] if team in self._teams else []
        return list(self._teams.values())

    async def add_key(self, record: KeyRecord) -> None:
        self._keys[record.key_id] = record
        self._keys_version += 1

    async def lookup_key(self, key_hash: str) -> KeyRecord | None:
        for record in self._keys.values():
            if record.key_hash == key_hash and not record.revoked:
                return record
        return None

    async def revoke_key(self, key_id: str) -> bool:
        record = self._keys.get(key_id)
        if record is None:
            return False
        if not record.revoked:
            self._keys[key_id] = replace(record, revoked=True)
            self._keys_version += 1
        return True

    async def keys(self, team: str | None = None) -> list[KeyRecord]:
        found = [r for r in self._keys.values() if team is None or r.team == team]
        return sorted(found, key=lambda r: (r.created_ms, r.key_id))

    async def keys_version(self) -> int:
        return self._keys_version

    async def put_response(self, team: str, response_id: str, record: bytes, ttl_s: float) -> None:
        now = time.monotonic()
        if len(self._responses) >= self._max_records:  # bounded like the records: the expired go first
            self._responses = {k: v for k, v in self._responses.items() if v[1] > now}
            while len(self._responses) >= self._max_records:
                del self._responses[next(iter(self._responses))]
        self._responses[(team, response_id)] = (record, now + ttl_s)

    async def get_response(self, team: str, response_id: str) -> bytes | None:
        found = self._responses.get((team, response_id))
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def delete_response(self, team: str, response_id: str) -> bool:
        return self._responses.pop((team, response_id), None) is not None

    async def publish_config(self, text: str) -> int:
        version = (self._config[0] if self._config else 0) + 1
        self._config = (version, text)
        return version

    async def config_version(self) -> int:
        return self._config[0] if self._config else 0

    async def published_config(self) -> tuple[int, str] | None:
        return self._config

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _team(self, name: str) -> _Team:
        team = self._teams.get(name)
        if team is None:
            team = self._teams[name] = _Team()
        return team


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _refused(limit: str, wait_ms: float) -> Admission:
    return Admission(admitted=False, refused_by=limit, retry_after_s=retry_after_s(wait_ms))


def _over_budget(limit: str, spent: int, held: int, cost: int, budget: int, wait_ms: float) -> Admission | None:
    """The refusal when this request's worst case does not fit: for good, or while others are in flight."""
    if spent + cost > budget:
        return _refused(limit, wait_ms)
    if spent + held + cost > budget:
        return _refused(limit + "_held", HELD_RETRY_MS)
    return None


def _trim_windows(team: _Team, now: int) -> None:
    cutoff = now - WINDOW_MS
    while team.requests and team.requests[0][0] <= cutoff:
        team.requests.popleft()
    while team.tokens and team.tokens[0][0] <= cutoff:
        team.window_tokens -= team.tokens.popleft()[1]


def _requests_wait(team: _Team, limit: int, now: int) -> int:
    if limit < 1:
        return WINDOW_MS
    # One more fits once the oldest (count + 1 - limit) requests have left the window.
    leaving = team.requests[len(team.requests) - limit][0]
    return leaving + WINDOW_MS - now


def _tokens_wait(team: _Team, excess: int, now: int) -> int:
    """Milliseconds until `excess` settled tokens have left the window.

    In-flight holds are not in the window; when they alone are in the way the wait
    is until the window has emptied (and at least the minimum retry).
    """
    freed, at = 0, now - WINDOW_MS
    for at, tokens in team.tokens:
        freed += tokens
        if freed >= excess:
            break
    return at + WINDOW_MS - now


def _hold(team: _Team, tokens: int, cost_nano: int, day: str, month: str, sign: int) -> None:
    for name, amount in (("tokens", tokens), ("d:" + day, cost_nano), ("m:" + month, cost_nano)):
        team.held[name] += sign * amount
        if team.held[name] <= 0:
            del team.held[name]


def _release(team: _Team, reservation_id: str) -> None:
    reservation = team.reservations.pop(reservation_id, None)
    if reservation is not None:
        _hold(team, reservation.tokens, reservation.cost_nano, reservation.day, reservation.month, sign=-1)


def _purge(team: _Team, now: int) -> None:
    """Give back the holds of reservations whose time is up (a gateway died mid-request),
    and forget settled ids whose time is up."""
    heap = team.expiries
    while heap and heap[0][0] <= now:
        _, reservation_id = heapq.heappop(heap)
        reservation = team.reservations.get(reservation_id)
        if reservation is not None and reservation.expires_ms <= now:
            _release(team, reservation_id)
        forget_ms = team.settled.get(reservation_id)
        if forget_ms is not None and forget_ms <= now:
            del team.settled[reservation_id]
    # Each entry should be a live or a settled id; should stale ones ever pile up, rebuild.
    if len(heap) > 2 * (len(team.reservations) + len(team.settled)) + 64:
        team.expiries = [(r.expires_ms, rid) for rid, r in team.reservations.items()]
        team.expiries += [(forget_ms, rid) for rid, forget_ms in team.settled.items()]
        heapq.heapify(team.expiries)


def _copy_usage(day: DailyUsage) -> DailyUsage:
    copy = replace(day)
    copy.by_route = {route: dict(totals) for route, totals in day.by_route.items()}
    return copy
