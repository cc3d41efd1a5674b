"""Specifications of config reloads on real gateway processes: validated first, applied everywhere
between requests, nothing in flight cut or settled twice, new prices for what is admitted after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.store import UsageRecord
from gateway.store.redis import RedisStore
from tests.conftest import RedisProcess
from tests.fakes import FakeProvider
from tests.gateway_process import ROOT, GatewayProcess
from tests.waiting import wait_until

ADMIN = {"authorization": "Bearer admin-reload"}
KEY = "sk-reload-team"
OLD = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}  # 1,000 and 2,000 nano-dollars a token
NEW = {"input_per_mtok": 3.0, "output_per_mtok": 5.0}


def config(fake: FakeProvider, redis_url: str, price: dict[str, float], **teams: Any) -> dict[str, Any]:
    return {
        "server": {"workers": 2, "admin_key": "admin-reload"},
        "store": {"url": redis_url},
        "routing": {"models_poll_s": 0},
        "providers": {"fake": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
        "models": {"m": {"routes": [{"provider": "fake", "model": "gpt-4o-mini", "price": price}]}},
        "teams": {"team": {"keys": [KEY], "rpm": 100_000}, **teams},
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider("openai", token_delay_s=0.1, completion_tokens=12) as provider:
        yield provider


def reload(gw: GatewayProcess, changed: dict[str, Any] | None = None, text: bytes = b"") -> httpx.Response:
    if changed is not None:
        gw.config_path.write_text(yaml.safe_dump({**changed, "server": gw.config["server"]}))
    return httpx.post(gw.url + "/admin/reload", headers=ADMIN, content=text, timeout=30)


def served_versions(gw: GatewayProcess) -> list[float]:
    """The config version each worker serves, from /metrics (one series per worker process)."""
    text = httpx.get(gw.url + "/metrics", timeout=5).text
    return [sample.value for family in text_string_to_metric_families(text)
            if family.name == "gateway_config_version" for sample in family.samples]


def chat(gw: GatewayProcess, key: str = KEY, request_id: str = "") -> httpx.Response:
    return httpx.post(gw.base_url + "/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", "x-request-id": request_id or uuid.uuid4().hex},
                      json={"model": "m", "max_tokens": 12, "messages": [{"role": "user", "content": "hi"}]})


def records(redis_url: str, team: str = "team") -> list[UsageRecord]:
    async def read() -> list[UsageRecord]:
        store = RedisStore(redis_url)
        try:
            return await store.records(team, count=10_000)
        finally:
            await store.close()
    return asyncio.run(read())


def cost(record: UsageRecord, price: dict[str, float]) -> int:
    return round(record.prompt_tokens * price["input_per_mtok"] * 1000
                 + record.completion_tokens * price["output_per_mtok"] * 1000)


class Stream(threading.Thread):
    """One streamed chat completion, read to its end."""

    def __init__(self, gw: GatewayProcess) -> None:
        super().__init__()
        self.gw, self.request_id = gw, uuid.uuid4().hex
        self.status, self.body = 0, b""

    def run(self) -> None:
        with httpx.stream("POST", self.gw.base_url + "/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {KEY}", "x-request-id": self.request_id},
                          json={"model": "m", "stream": True, "max_tokens": 12,
                                "messages": [{"role": "user", "content": "hi"}]}) as response:
            self.status = response.status_code
            for chunk in response.iter_bytes():
                self.body += chunk


def test_a_reload_under_streaming_load_cuts_no_stream_settles_each_once_and_prices_what_comes_after(
        fake: FakeProvider, redis_process: RedisProcess) -> None:
    with GatewayProcess(config(fake, redis_process.url, OLD), workers=2) as gw:
        wait_until(lambda: served_versions(gw) == [0.0, 0.0], 10, "both workers up")
        before = [Stream(gw) for _ in range(8)]  # 12 tokens 0.1 s apart: each runs over a second
        for stream in before:
            stream.start()
        wait_until(lambda: all(b'"content"' in s.body for s in before), 10, "every stream under way")
        answer = reload(gw, config(fake, redis_process.url, NEW))
        assert answer.status_code == 200, answer.text
        assert answer.json()["changed"] == ["models.m"] and answer.json()["needs_restart"] == []
        version = answer.json()["version"]
        assert any(not s.body.endswith(b"data: [DONE]\n\n") for s in before)  # still running at the reload
        wait_until(lambda: served_versions(gw) == [version, version], 5, "the other worker applied it")
        after = [Stream(gw) for _ in range(8)]
        for stream in after:
            stream.start()
        for stream in (*before, *after):
            stream.join(30)
        log = gw.log()
    for stream in (*before, *after):
        assert stream.status == 200 and stream.body.endswith(b"data: [DONE]\n\n"), stream.body[-200:]
        assert b'"finish_reason":"length"' in stream.body  # all 12 tokens came
    settled = records(redis_process.url)
    by_id = {r.request_id: r for r in settled}
    assert len(settled) == len(by_id) == 16  # each once
    for stream in before:  # admitted on the old config: settled on it, after the reload
        assert by_id[stream.request_id].cost_nano == cost(by_id[stream.request_id], OLD) > 0
    for stream in after:
        assert by_id[stream.request_id].cost_nano == cost(by_id[stream.request_id], NEW) > 0
    assert "Traceback" not in log
    held = redis.Redis.from_url(redis_process.url)
    assert held.hlen("gw:{team}:reservations") == 0 and not held.hgetall("gw:{team}:held")


def test_an_invalid_config_changes_nothing_and_the_answer_says_where_and_why(
        fake: FakeProvider, redis_process: RedisProcess) -> None:
    good = config(fake, redis_process.url, OLD)
    with GatewayProcess(good, workers=1) as gw:
        broken = {**good, "models": {"m": {"routes": [{"provider": "nowhere", "model": "x"}]}}}
        answer = reload(gw, broken)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "invalid_config"
        assert "models.m.routes[0].provider" in error["message"] and "nowhere" in error["message"]
        assert reload(gw, text=b"models: [unclosed").json()["error"]["code"] == "invalid_config"
        assert chat(gw).status_code == 200  # the running config serves on
        assert httpx.get(gw.url + "/admin/config", headers=ADMIN).json()["version"] == 0
        wait_until(lambda: "config reload refused" in gw.log(), 5, "the refusal logged")


def test_teams_keys_and_limits_change_at_once_and_what_needs_a_restart_is_named(
        fake: FakeProvider, redis_process: RedisProcess) -> None:
    with GatewayProcess(config(fake, redis_process.url, OLD), workers=1) as gw:
        assert chat(gw).status_code == 200
        changed = config(fake, redis_process.url, OLD, newcomers={"keys": ["sk-newcomer"]})
        changed["teams"]["team"] = {"keys": [KEY], "rpm": 1}
        changed["server"] = {**gw.config["server"], "port": gw.port + 1}
        gw.config_path.write_text(yaml.safe_dump(changed))
        answer = httpx.post(gw.url + "/admin/reload", headers=ADMIN, timeout=30).json()
        assert answer["changed"] == ["server.port", "teams.newcomers", "teams.team"]
        assert answer["needs_restart"] == ["server.port"]
        assert chat(gw, "sk-newcomer").status_code == 200  # a team added
        assert chat(gw).status_code == 429  # the lower rpm counts the minute's first request
        gw.config_path.write_text(yaml.safe_dump({**config(fake, redis_process.url, OLD), "server": gw.config["server"]}))
        assert httpx.post(gw.url + "/admin/reload", headers=ADMIN, timeout=30).status_code == 200
        assert chat(gw, "sk-newcomer").status_code == 401  # a team removed: its key with it
        assert httpx.get(gw.url + "/admin/config", headers=ADMIN).json()["version"] == 2


def test_the_cli_sends_a_file_and_prints_what_changed(fake: FakeProvider, redis_process: RedisProcess,
                                                      tmp_path: Any) -> None:
    with GatewayProcess(config(fake, redis_process.url, OLD), workers=1) as gw:
        sent = tmp_path / "next.yaml"
        sent.write_text(yaml.safe_dump({**config(fake, redis_process.url, NEW), "server": gw.config["server"]}))
        done = subprocess.run([sys.executable, "-m", "gateway", "reload", "--url", gw.url, "--admin-key",
                               "admin-reload", "--send", str(sent)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "applied; changed: models.m" in done.stdout
        request_id = uuid.uuid4().hex
        assert chat(gw, request_id=request_id).status_code == 200
        record = next(r for r in records(redis_process.url) if r.request_id == request_id)
        assert record.cost_nano == cost(record, NEW)


def test_the_admin_reload_needs_the_admin_key(fake: FakeProvider, redis_process: RedisProcess) -> None:
    with GatewayProcess(config(fake, redis_process.url, OLD), workers=1) as gw:
        answer = httpx.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {KEY}"})
        assert answer.status_code == 401 and orjson.loads(answer.content)["error"]["code"] == "invalid_api_key"


def worker_pids(gw: GatewayProcess) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["PPid"]) == gw.pid and fields["Name"].strip().startswith("python"):
            found.add(int(fields["Pid"]))
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_the_config_without_restarting_a_worker_or_cutting_a_stream(
        fake: FakeProvider, redis_process: RedisProcess, workers: int) -> None:
    with GatewayProcess(config(fake, redis_process.url, OLD), workers=workers) as gw:
        wait_until(lambda: served_versions(gw) == [0.0] * workers, 10, "every worker up")
        pids = worker_pids(gw) if workers > 1 else {gw.pid}
        streams = [Stream(gw) for _ in range(4)]
        for stream in streams:
            stream.start()
        wait_until(lambda: all(b'"content"' in s.body for s in streams), 10, "every stream under way")
        gw.config_path.write_text(yaml.safe_dump({**config(fake, redis_process.url, NEW),
                                                  "server": gw.config["server"]}))
        os.kill(gw.pid, signal.SIGHUP)  # to the supervisor (or the one process), as `kill -HUP` does
        wait_until(lambda: served_versions(gw) == [1.0] * workers, 15, "every worker on version 1")
        for stream in streams:
            stream.join(30)
        assert (worker_pids(gw) if workers > 1 else {gw.pid}) == pids
        request_id = uuid.uuid4().hex
        assert chat(gw, request_id=request_id).status_code == 200
    for stream in streams:
        assert stream.status == 200 and stream.body.endswith(b"data: [DONE]\n\n")
    record = next(r for r in records(redis_process.url) if r.request_id == request_id)
    assert record.cost_nano == cost(record, NEW)


def test_mock_upstreams_follow_a_reload_settings_changed_in_place_and_new_ones_started(
        redis_process: RedisProcess) -> None:
    def mock_config(error_rate: float, second: bool = False) -> dict[str, Any]:
        providers = {"mock": {"kind": "mock", "error_rate": error_rate, "error_statuses": [503]}}
        routes = [{"provider": "mock", "model": "m", "price": OLD}]
        if second:
            providers["spare"] = {"kind": "mock"}
            routes.append({"provider": "spare", "model": "m", "price": NEW})
        return {"server": {"admin_key": "admin-reload"}, "store": {"url": redis_process.url},
                "routing": {"max_attempts": 2}, "providers": providers, "models": {"m": {"routes": routes}},
                "teams": {"team": {"keys": [KEY], "rpm": 100_000}}}

    with GatewayProcess(mock_config(0.0), workers=1) as gw:
        assert chat(gw).status_code == 200
        assert reload(gw, mock_config(1.0)).status_code == 200
        assert chat(gw).status_code == 503  # the running mock now fails every request
        assert reload(gw, mock_config(1.0, second=True)).status_code == 200
        answer = chat(gw)
        assert answer.status_code == 200 and answer.headers["x-gateway-provider"] == "spare"
        assert answer.headers["x-gateway-attempts"] == "2"
