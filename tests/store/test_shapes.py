"""The Redis store on every deployment shape, against real servers: an ACL user with `default`
off, TLS from a private CA, a unix socket and its database, a Sentinel-managed primary that
fails over under load, and a Redis Cluster whose primary dies mid-run.

Under load, each request is what the gateway makes of it: an admission (released if its answer
is lost) and a settlement retried until the store takes it (the outbox's job). Across a failover
the same store follows the new primary without a restart; spend recorded is never more than
what was settled (replication is asynchronous: writes the old primary took after its replica
was promoted are lost with it; docs/deploy.md, Redis in production).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gateway.accounting.periods import utc_periods
from gateway.ids import new_id
from gateway.store import Hold, Limits, StoreUnavailable, UsageRecord
from gateway.store.redis import RedisStore
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess
from tests.waiting import eventually

LIMITS = Limits(rpm=10**6, tpm=10**9, budget_day_nano=10**15)
COST = 1_000  # nano-dollars a settled request is charged


def usage(team: str, cost: int = COST) -> UsageRecord:
    day, month = utc_periods()
    return UsageRecord(team=team, key_id="key_shape", model="m", provider="p", prompt_tokens=5, completion_tokens=7,
                       cost_nano=cost, provider_cost_nano=None, status=200, latency_ms=3,
                       time_ms=int(time.time() * 1000), day=day, month=month, request_id=new_id())


def hold(team: str) -> Hold:
    day, month = utc_periods()
    return Hold(team=team, tokens=100, cost_nano=5_000, day=day, month=month, ttl_s=600)


@dataclass
class Load:
    """Requests from `callers` tasks until stopped; what the store refused, and what was settled."""

    store: RedisStore
    teams: list[str]
    settled: dict[str, int] = field(default_factory=dict)  # team -> nano-dollars settled
    refused_at: list[float] = field(default_factory=list)
    done: int = 0
    stop: bool = False

    async def run(self, callers: int = 8) -> None:
        await asyncio.gather(*(self._caller(i) for i in range(callers)))

    async def _caller(self, n: int) -> None:
        while not self.stop:
            team = self.teams[(n + self.done) % len(self.teams)]
            admission_hold = hold(team)
            try:
                admitted = await self.store.admit(admission_hold, LIMITS)
            except StoreUnavailable:
                self.refused_at.append(time.monotonic())
                await self._until_taken(lambda: self.store.release(team, admission_hold.reservation_id, 600))
                continue
            assert admitted.admitted
            record = usage(team)
            await self._until_taken(lambda: self.store.settle(admission_hold.reservation_id, record, 600))
            self.settled[team] = self.settled.get(team, 0) + record.cost_nano
            self.done += 1

    async def _until_taken(self, call: Callable[[], Any]) -> None:
        """Again until the store takes it, as the outbox does."""
        async def taken() -> bool:
            try:
                await call()
            except StoreUnavailable:
                return False
            return True

        await eventually(taken, 60, "the store taking a release or settlement", interval_s=0.05)

    async def until(self, more: int, timeout_s: float = 60) -> None:
        """Wait until `more` requests beyond now are settled."""
        target = self.done + more
        await eventually(lambda: self.done >= target, timeout_s, f"{more} more requests settled")


async def spend(store: RedisStore, team: str) -> int:
    day, month = utc_periods()
    return (await store.spend(team, day, month))[0]


async def a_few_requests(store: RedisStore, teams: list[str]) -> None:
    for team in teams:
        admission_hold = hold(team)
        assert (await store.admit(admission_hold, LIMITS)).admitted
        assert await store.settle(admission_hold.reservation_id, usage(team), 600)


# --- one server, each way of reaching it -------------------------------------------------------------


@pytest.mark.parametrize("shape", ["acl_redis", "tls_redis", "unix_redis"])
async def test_the_store_works_on_every_way_to_reach_one_server(shape: str, request: pytest.FixtureRequest) -> None:
    deployment = request.getfixturevalue(shape)
    store = RedisStore(deployment.url, timeout_s=2.0)
    try:
        await a_few_requests(store, ["alpha", "beta", "alpha"])
        assert await spend(store, "alpha") == 2 * COST
        assert {r.team for r in await store.records(None, count=10)} == {"alpha", "beta"}
        day, _ = utc_periods()
        assert (await store.usage("beta", day, day))[0].requests == 1
        await store.ping()
    finally:
        await store.close()


async def test_the_database_a_url_names_is_the_one_used_by_every_call(unix_redis: Any) -> None:
    store = RedisStore(unix_redis.url, timeout_s=2.0)  # ?db=2
    try:
        await a_few_requests(store, ["alpha"])
    finally:
        await store.close()
    assert unix_redis.server.client(db=2).exists("gw:{alpha}:records", "gw:{alpha}:reservations:expiry") == 2
    assert unix_redis.server.client(db=0).dbsize() == 0


async def test_a_wrong_password_is_a_store_that_does_not_answer_not_a_hang(acl_redis: Any) -> None:
    store = RedisStore(acl_redis.url.replace("p%40ss", "nope"), timeout_s=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.admit(hold("alpha"), LIMITS)
        assert time.monotonic() - started < 2
    finally:
        await store.close()


def test_a_gateway_on_an_acl_user_serves_requests(acl_redis: Any) -> None:
    with FakeProvider("openai", models=["gpt-4o-mini"]) as fake:
        config = {"store": {"url": acl_redis.url},
                  "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
                  "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-4o-mini"}]}},
                  "teams": {"t": {"keys": ["sk-shape-team"], "budget_usd": {"day": 10}}}}
        with GatewayProcess(config) as gw:
            answer = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                                headers={"authorization": "Bearer sk-shape-team"},
                                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            ready = httpx.get(gw.url + "/readyz", timeout=10)
    assert answer.status_code == 200, answer.text
    assert ready.status_code == 200


async def across(store: RedisStore, teams: list[str], disrupt: Callable[[], Any]) -> tuple[Load, dict[str, int]]:
    """Load on `store` while `disrupt` (blocking) runs, 200 requests settled before and after it:
    the load, and the spend the store then records per team. The store is closed after."""
    load = Load(store, teams)
    running = asyncio.create_task(load.run())
    try:
        await load.until(200)
        await asyncio.to_thread(disrupt)
        await load.until(200, timeout_s=90)  # the same store, no restart: it found the new primary
        load.stop = True
        await running
        return load, {team: await spend(store, team) for team in load.settled}
    finally:
        load.stop = True
        await asyncio.gather(running, return_exceptions=True)
        await store.close()


# --- Sentinel ---------------------------------------------------------------------------------------


async def test_a_sentinel_failover_under_load_is_followed_without_a_restart(sentinel_redis: Any) -> None:
    old = sentinel_redis.primary()
    load, recorded = await across(RedisStore(sentinel_redis.url, timeout_s=1.0), ["alpha", "beta", "gamma"],
                                  sentinel_redis.failover)
    assert sentinel_redis.primary() != old
    # SENTINEL FAILOVER promotes the replica at once; the old primary takes writes until it is
    # told it is a replica, and they are lost with its data. Never counted twice, though.
    for team, settled in load.settled.items():
        assert 0 < recorded[team] <= settled
    lost = 1 - sum(recorded.values()) / sum(load.settled.values())
    print(f"orderly Sentinel failover: {load.done} requests settled, {lost:.1%} of spend lost, "
          f"{len(load.refused_at)} admissions refused")


async def test_settlements_that_wait_for_a_replica_lose_nothing_in_a_sentinel_failover(sentinel_redis: Any) -> None:
    store = RedisStore(sentinel_redis.url, timeout_s=1.0, replicas=1)  # store.settle_replicas: 1
    load, recorded = await across(store, ["alpha", "beta", "gamma"], sentinel_redis.failover)
    # A settlement the old primary took but no replica did was not taken: it was sent again,
    # reached the new primary, and counts once there.
    assert recorded == load.settled


async def test_settlements_of_one_loop_turn_share_one_wait_for_the_replica(sentinel_redis: Any) -> None:
    store = RedisStore(sentinel_redis.url, timeout_s=1.0, replicas=1)
    primary = sentinel_redis.node(sentinel_redis.primary()).client()
    try:
        holds = [hold("alpha") for _ in range(17)]
        for h in holds:
            assert (await store.admit(h, LIMITS)).admitted
        first = holds.pop()  # a team's first settlement in a process also adds it to the team set
        assert await store.settle(first.reservation_id, usage("alpha"))
        waits = primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
        settled = await asyncio.gather(*(store.settle(h.reservation_id, usage("alpha")) for h in holds))
        assert all(settled)
        assert primary.info("commandstats")["cmdstat_wait"]["calls"] - waits == 1  # not 16
        assert (await store.spend("alpha", *utc_periods()))[0] == 17 * COST
    finally:
        primary.close()
        await store.close()


async def test_a_killed_sentinel_primary_is_replaced_and_never_over_counted(sentinel_redis: Any) -> None:
    def kill() -> None:
        sentinel_redis.wait_for_new_primary(sentinel_redis.kill_primary())

    load, recorded = await across(RedisStore(sentinel_redis.url, timeout_s=1.0), ["alpha", "beta"], kill)
    for team, settled in load.settled.items():
        # Replication is asynchronous: what the dead primary took and had not passed on is lost.
        assert 0 < recorded[team] <= settled


# --- Cluster ----------------------------------------------------------------------------------------


TEAMS = [f"team-{n}" for n in range(24)]


async def test_teams_spread_over_the_cluster_and_reports_read_every_node(cluster_redis: Any) -> None:
    owners = {cluster_redis.primary_of(f"gw:{{{team}}}:held") for team in TEAMS}
    assert len(owners) == 3  # every primary holds some team
    store = RedisStore(cluster_redis.url, timeout_s=2.0)
    try:
        await a_few_requests(store, TEAMS)
        for team in TEAMS:
            assert await spend(store, team) == COST
        assert {r.team for r in await store.records(None, count=100)} == set(TEAMS)
        day, _ = utc_periods()
        assert (await store.usage("team-7", day, day))[0].cost_nano == COST
    finally:
        await store.close()


def test_a_gateway_on_a_cluster_serves_teams_on_every_node_and_its_admin_api_reads_them_all(
        cluster_redis: Any) -> None:
    teams = {f"team-{n}": f"sk-shape-{n}" for n in range(6)}
    assert len({cluster_redis.primary_of(f"gw:{{{team}}}:held") for team in teams}) == 3
    admin = {"authorization": "Bearer admin-shape"}
    with FakeProvider("openai", models=["gpt-4o-mini"]) as fake:
        config = {"server": {"admin_key": "admin-shape", "workers": 2}, "store": {"url": cluster_redis.url},
                  "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
                  "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-4o-mini",
                                               "price": {"input_per_mtok": 1, "output_per_mtok": 1}}]}},
                  "teams": {team: {"keys": [key]} for team, key in teams.items()}}
        with GatewayProcess(config, workers=2) as gw:
            ids = {}
            for team, key in teams.items():
                answer = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                                    headers={"authorization": f"Bearer {key}"},
                                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200, answer.text
                ids[team] = answer.headers["x-request-id"]
            usage = {team: httpx.get(gw.url + "/admin/usage", params={"team": team}, headers=admin, timeout=10)
                     for team in teams}
            # Found by id alone: the lookup reads every team's records, wherever its slot lives.
            found = {team: httpx.get(f"{gw.url}/admin/requests/{request_id}", headers=admin, timeout=10)
                     for team, request_id in ids.items()}
    for team in teams:
        assert usage[team].status_code == 200 and usage[team].json()["totals"]["requests"] == 1
        assert found[team].status_code == 200 and found[team].json()["team"] == team


async def test_a_cluster_primary_killed_mid_run_is_replaced_by_its_replica(cluster_redis: Any) -> None:
    load, recorded = await across(RedisStore(cluster_redis.url, timeout_s=1.0), TEAMS[:6],
                                  lambda: cluster_redis.kill_primary_of("gw:{team-0}:held"))
    for team, settled in load.settled.items():
        assert 0 < recorded[team] <= settled
