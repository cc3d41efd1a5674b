"""The parts of a fault: a misbehaving upstream, a Redis of the test's own, a gateway process of
two workers between them, and the checks that must hold after any fault."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.store import UsageRecord
from gateway.store.redis import RedisStore
from tests.conftest import RedisProcess
from tests.fakes import FakeProvider
from tests.faults.upstream import HostileUpstream
from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until

KEY = "sk-fault-team"
TEAM = "faulty"
FAULTS = ["usage-strings", "usage-negative", "usage-floats", "usage-true", "usage-huge", "usage-list",
          "usage-negative-cost", "usage-nan-cost", "html", "truncated", "empty", "gzip-bomb", "huge-error",
          "no-separator", "trickle", "stall", "hang", "reset", "huge-event", "slow-stream", "bad-vectors",
          "linger"]
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}  # 1,000 and 2,000 nano-dollars a token
MAX_WORKER_RSS_MB = 250


def fault_config(hostile: HostileUpstream, steady: FakeProvider, redis_url: str, first_byte_s: float = 2,
                 idle_s: float = 1, **server: Any) -> dict:
    return {
        "server": {"workers": 2, "admin_key": "admin-fault", **server},
        "store": {"url": redis_url, "timeout_s": 0.25},
        "upstream": {"max_body_bytes": 8 << 20, "max_error_body_bytes": 64 << 10, "max_event_bytes": 1 << 20},
        "routing": {"max_attempts": 1, "models_poll_s": 0, "circuit": {"failures": 1000, "min_requests": 1000}},
        "providers": {
            # DeepInfra's kind: its profile reads `estimated_cost`, so a bad cost is a bad usage too.
            "hostile": {"kind": "deepinfra", "base_url": hostile.base_url, "api_key": "k",
                        "timeouts": {"first_byte_s": first_byte_s, "idle_s": idle_s, "total_s": 60}},
            "steady": {"kind": "openai", "base_url": steady.base_url, "api_key": steady.api_key},
        },
        "models": {**{name: {"routes": [{"provider": "hostile", "model": name, "price": PRICE}]} for name in FAULTS},
                   "ok": {"routes": [{"provider": "steady", "model": "gpt-4o-mini", "price": PRICE}]}},
        "teams": {TEAM: {"keys": [KEY], "budget_usd": {"day": 100, "month": 1000}, "rpm": 100_000}},
    }


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream(bomb_bytes=256 << 20, error_body_bytes=200 << 20) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def steady() -> Iterator[FakeProvider]:
    with FakeProvider("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("fault-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Invariants:
    """What must hold once traffic stops, whatever happened: read from Redis and /metrics."""

    def __init__(self, gw: GatewayProcess, redis_url: str) -> None:
        self.gw = gw
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)

    def reservations(self) -> int:
        return self.redis.hlen(f"gw:{{{TEAM}}}:reservations")

    def held(self) -> dict:
        return self.redis.hgetall(f"gw:{{{TEAM}}}:held")

    def leased(self) -> int:
        """Requests of the last minute admitted from a lease past its first (its slots "<id>:<n>"): the
        fault exercised the leases, not only one-by-one admissions."""
        return sum(b":" in member for member in self.redis.zrange(f"gw:{{{TEAM}}}:rpm", 0, -1))

    def settled_together(self) -> int:
        """Requests whose settlement went in one store call with another's: a call that records
        tokens leaves one entry in the tpm log, however many requests it settled."""
        with_tokens = sum(1 for r in self.record_list() if r.prompt_tokens + r.completion_tokens > 0)
        return with_tokens - self.redis.zcard(f"gw:{{{TEAM}}}:tpm")

    def inflight(self) -> float:
        text = httpx.get(self.gw.url + "/metrics", timeout=5).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "gateway_upstream_inflight_requests" for sample in family.samples)

    def record_list(self) -> list[UsageRecord]:
        async def read() -> list[UsageRecord]:
            store = RedisStore(self.redis_url)
            try:
                return await store.records(TEAM, count=100_000)
            finally:
                await store.close()
        return asyncio.run(read())

    def records(self) -> dict[str, UsageRecord]:
        return {r.request_id: r for r in self.record_list()}

    def worker_rss_mb(self) -> list[float]:
        """Peak resident memory of the gateway's processes (the supervisor and its workers), in MB: a
        body held for a moment, then freed, still shows."""
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            except OSError:
                continue  # gone meanwhile
            if int(fields["PPid"]) == self.gw.pid or int(fields["Pid"]) == self.gw.pid:
                found.append(int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
        return found

    def hold(self, timeout_s: float = 10.0) -> None:
        """Nothing held, nothing in flight, memory bounded, and the gateway still answers."""
        wait_until(lambda: self.reservations() == 0 and not self.held(), timeout_s, "the team's reservations empty")
        wait_until(lambda: self.inflight() == 0, timeout_s, "no upstream request counted in flight")
        assert max(self.worker_rss_mb()) < MAX_WORKER_RSS_MB, self.worker_rss_mb()
        answer = httpx.post(self.gw.base_url + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                            json={"model": "ok", "messages": [{"role": "user", "content": "still there?"}]},
                            timeout=10)
        assert answer.status_code == 200, answer.text

    def record(self, request_id: str, timeout_s: float = 10.0) -> UsageRecord:
        return wait_until(lambda: self.records().get(request_id), timeout_s, f"the record of {request_id}")

