"""Request lines and request lookup as an operator uses them: a real gateway process, its stdout,
its admin API and the `gateway requests` command, with Redis and a fake provider on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.observability.request_log import RequestLog, UtcClock, write_lines
from tests.conftest import RedisProcess
from tests.fakes import FakeProvider
from tests.gateway_process import ROOT, GatewayProcess
from tests.store.test_store import used
from tests.waiting import wait_until

ADMIN = "admin-secret-for-logs"
ALPHA_KEY = "sk-alpha-SECRET-0123456789"
BETA_KEY = "sk-beta-SECRET-9876543210"
MARKER = "PROMPT-MARKER-5c1e"
FIELDS = {"time", "request_id", "team", "key_id", "endpoint", "model", "provider", "attempts", "status", "error_code",
          "prompt_tokens", "completion_tokens", "cost_nano", "ttfb_ms", "duration_ms", "stream", "client_left",
          "usage_estimated"}
UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    redis_server = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis_server.start()
    with FakeProvider("openai", token_delay_s=0.02, completion_tokens=200) as fake:
        config = {
            "store": {"url": redis_server.url}, "server": {"admin_key": ADMIN},
            "providers": {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key}},
            "models": {"m": {"routes": [{"provider": "openai", "model": "gpt-4o-mini",
                                         "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
            "teams": {"alpha": {"keys": [ALPHA_KEY]}, "beta": {"keys": [BETA_KEY], "rpm": 1}},
        }
        try:
            with GatewayProcess(config) as gw:
                gw.fake = fake
                yield gw
        finally:
            redis_server.stop()


def ask(gw: GatewayProcess, key: str = ALPHA_KEY, **body: Any) -> tuple[httpx.Response, str]:
    request_id = uuid.uuid4().hex
    body = {"model": "m", "messages": [{"role": "user", "content": f"say {MARKER}"}], "max_tokens": 8, **body}
    answer = httpx.post(gw.base_url + "/chat/completions", json=body, timeout=30,
                        headers={"authorization": f"Bearer {key}", "x-request-id": request_id})
    return answer, request_id


def lines(gw: GatewayProcess) -> list[dict]:
    return [orjson.loads(line) for line in gw.log().splitlines() if line.startswith('{"time"')]


def line_of(gw: GatewayProcess, request_id: str) -> dict:
    return wait_until(lambda: next((x for x in lines(gw) if x["request_id"] == request_id), None), 5,
                      f"the request line of {request_id}")


def gateway_cli(gw: GatewayProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(gw.config_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)


def test_a_success_is_one_line_with_its_route_tokens_cost_and_times(gateway: GatewayProcess) -> None:
    answer, request_id = ask(gateway)
    assert answer.status_code == 200

    line = line_of(gateway, request_id)

    assert set(line) == FIELDS and UTC_MS.fullmatch(line["time"])
    assert line["key_id"].startswith("config:")
    assert {k: line[k] for k in ("team", "endpoint", "model", "provider", "attempts", "status", "error_code",
                                 "completion_tokens", "stream", "client_left", "usage_estimated")} == {
        "team": "alpha", "endpoint": "chat", "model": "m", "provider": "openai", "attempts": 1, "status": 200,
        "error_code": None, "completion_tokens": 8, "stream": False, "client_left": False, "usage_estimated": None}
    assert line["cost_nano"] == line["prompt_tokens"] * 1_000 + 8 * 2_000 > 0
    assert 0 <= line["ttfb_ms"] <= line["duration_ms"]


def test_a_stream_the_client_left_is_a_499_line_that_says_so(gateway: GatewayProcess) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "m", "messages": [{"role": "user", "content": "count"}], "max_tokens": 200, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {ALPHA_KEY}", "x-request-id": request_id}) as response:
        chunks = response.iter_bytes()
        received = next(chunks)
        while not re.search(rb'"content":\s*"[^"]', received):  # a token, not the role chunk's empty content
            received += next(chunks)

    line = line_of(gateway, request_id)

    assert (line["status"], line["client_left"], line["stream"], line["error_code"]) == (499, True, True, None)
    assert 1 <= line["completion_tokens"] < 200 and line["usage_estimated"] == "cut"
    assert line["ttfb_ms"] is not None and line["ttfb_ms"] <= line["duration_ms"]


def test_an_upstream_error_is_a_line_with_the_code_the_client_got(gateway: GatewayProcess) -> None:
    gateway.fake.fail_next(1, status=500)
    answer, request_id = ask(gateway)

    line = line_of(gateway, request_id)

    assert answer.status_code == 502
    assert (line["status"], line["error_code"], line["attempts"]) == (502, answer.json()["error"]["code"] or
                                                                      answer.json()["error"]["type"], 1)
    assert line["cost_nano"] == 0 and line["provider"] is None


def test_refused_requests_get_a_line_with_what_is_known(gateway: GatewayProcess) -> None:
    unknown, unknown_id = ask(gateway, key="sk-nobody")
    ask(gateway, key=BETA_KEY)
    limited, limited_id = ask(gateway, key=BETA_KEY)  # beta may send one request a minute

    refused_key, refused_rate = line_of(gateway, unknown_id), line_of(gateway, limited_id)

    assert unknown.status_code == 401 and limited.status_code == 429
    assert {k: refused_key[k] for k in ("team", "key_id", "model", "status", "error_code", "attempts")} == {
        "team": None, "key_id": None, "model": None, "status": 401, "error_code": "invalid_api_key", "attempts": 0}
    assert {k: refused_rate[k] for k in ("team", "model", "status", "error_code", "attempts", "cost_nano")} == {
        "team": "beta", "model": "m", "status": 429, "error_code": "rate_limit_exceeded", "attempts": 0,
        "cost_nano": 0}


def test_no_key_and_no_prompt_text_reach_the_output(gateway: GatewayProcess) -> None:
    _, request_id = ask(gateway, messages=[{"role": "user", "content": f"{MARKER} {ALPHA_KEY}"}])
    ask(gateway, key=f"sk-wrong-{MARKER}")
    line_of(gateway, request_id)

    output = gateway.log()
    for secret in (MARKER, ALPHA_KEY, BETA_KEY, ADMIN, gateway.fake.api_key):
        assert secret not in output


def test_a_request_is_looked_up_by_id_across_teams_with_what_it_cost(gateway: GatewayProcess) -> None:
    _, request_id = ask(gateway)
    line = line_of(gateway, request_id)
    admin = {"authorization": f"Bearer {ADMIN}"}

    found = httpx.get(f"{gateway.url}/admin/requests/{request_id}", headers=admin)
    narrowed = httpx.get(f"{gateway.url}/admin/requests/{request_id}", params={"team": "alpha"}, headers=admin)
    elsewhere = httpx.get(f"{gateway.url}/admin/requests/{request_id}", params={"team": "beta"}, headers=admin)

    assert found.status_code == 200 and found.json() == narrowed.json()
    assert {k: found.json()[k] for k in FIELDS} == line
    assert found.json()["cost_usd"] == pytest.approx(line["cost_nano"] / 1e9)
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "request_not_found"


def test_recent_requests_are_listed_newest_first_for_a_team(gateway: GatewayProcess) -> None:
    ids = [ask(gateway)[1] for _ in range(3)]
    admin = {"authorization": f"Bearer {ADMIN}"}

    listed = httpx.get(f"{gateway.url}/admin/requests", params={"team": "alpha", "since": "15m", "limit": 3},
                       headers=admin)
    bad = httpx.get(f"{gateway.url}/admin/requests", params={"since": "yesterday"}, headers=admin)

    assert listed.json()["object"] == "list"
    assert [r["request_id"] for r in listed.json()["data"]] == ids[::-1]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_the_requests_command_lists_a_team_and_shows_one_request(gateway: GatewayProcess) -> None:
    _, request_id = ask(gateway)

    listed = gateway_cli(gateway, "requests", "--team", "alpha", "--since", "1h", "--limit", "5")
    shown = gateway_cli(gateway, "requests", request_id)
    unknown = gateway_cli(gateway, "requests", "no-such-request")

    assert listed.returncode == 0 and request_id in listed.stdout.splitlines()[0]
    assert shown.returncode == 0
    assert f"request_id         {request_id}" in shown.stdout and "provider           openai" in shown.stdout
    assert unknown.returncode == 1 and "error 404" in unknown.stderr


async def test_a_stdout_nobody_reads_costs_dropped_lines_never_a_blocked_loop() -> None:
    reader, writer = os.pipe()  # a pipe holds 64 KiB; nobody reads this one
    registry = CollectorRegistry()
    log = RequestLog(registry, fd=writer, flush_s=0.01, max_bytes=256 << 10)
    log.start()
    try:
        started = time.monotonic()
        for n in range(20_000):
            log.settled(None, used(request_id=f"req-{n}"))
            if n % 500 == 0:
                await asyncio.sleep(0)  # the flush timer runs between requests, as it would in a worker
        assert time.monotonic() - started < 5
        assert wait_until(lambda: registry.get_sample_value("gateway_request_log_dropped_total") > 0)
    finally:
        os.set_blocking(reader, False)
        drained = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # let the writer finish so that it can stop
            try:
                drained += os.read(reader, 1 << 20)
            except BlockingIOError:
                if log._idle.is_set():
                    break
                await asyncio.sleep(0.01)
        await log.stop(timeout_s=1)
        os.close(reader)
        os.close(writer)
    assert all(orjson.loads(line)["request_id"].startswith("req-") for line in drained.splitlines())


def test_lines_are_written_whole_in_pipe_sized_writes(tmp_path) -> None:
    path = tmp_path / "out"
    chunk = b"".join(orjson.dumps({"n": n, "pad": "x" * (n % 300)}) + b"\n" for n in range(2_000))
    with open(path, "wb") as out:
        write_lines(out.fileno(), chunk)
    assert path.read_bytes() == chunk


def test_the_clock_writes_utc_with_milliseconds() -> None:
    clock = UtcClock()
    assert clock.iso(1_780_000_000_123) == "2026-05-28T20:26:40.123Z"
    assert clock.iso(1_780_000_000_999) == "2026-05-28T20:26:40.999Z"
    assert clock.iso(1_780_000_001_000) == "2026-05-28T20:26:41.000Z"
