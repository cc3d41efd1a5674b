"""Specifications of a newcomer's first ten minutes: `gateway serve --config config.example.yaml` in a
shell with no variable the config reads answers the README's snippets with the demo key, from this
machine only, and records the spend; the key shows in no log line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"
DEMO_KEY = "sk-gw-demo"
ADMIN_KEY = "admin-first-run"  # only to read the usage report; not a provider's or a team's


@pytest.fixture(scope="module")
def first_run() -> Iterator[GatewayProcess]:
    with GatewayProcess(EXAMPLE, env={"GATEWAY_ADMIN_KEY": ADMIN_KEY}) as process:
        yield process


@pytest.fixture
def sdk(first_run: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=first_run.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        yield client


def spend(gateway: GatewayProcess) -> dict:
    answer = httpx.get(gateway.url + "/admin/usage", params={"team": "demo"}, timeout=10,
                       headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.status_code == 200
    return answer.json()["totals"]


def test_the_example_answers_a_chat_completion_a_stream_and_an_embedding(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model="llama-3.1-8b", messages=[{"role": "user", "content": "Hi there"}])
    assert answer.choices[0].message.content.startswith("This is the mock provider answering: Hi there")
    assert answer.usage is not None and answer.usage.completion_tokens == 16

    stream = sdk.chat.completions.create(model="llama-3.3-70b", stream=True, max_tokens=5,
                                         messages=[{"role": "user", "content": "Stream, please"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "This is the mock provider"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"

    vector = sdk.embeddings.create(model="text-embedding-3-small", input="Hi").data[0].embedding
    assert len(vector) == 16


def test_the_example_answers_the_responses_api_through_the_mock(sdk: openai.OpenAI) -> None:
    answer = sdk.responses.create(model="llama-3.1-8b", input="Hi there", max_output_tokens=6)
    assert answer.status in ("completed", "incomplete") and answer.output_text
    events = list(sdk.responses.create(model="llama-3.1-8b", input="Hi there", stream=True))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")


def test_the_spend_of_a_first_run_is_recorded_at_the_stand_ins_price(first_run: GatewayProcess,
                                                                     sdk: openai.OpenAI) -> None:
    before = spend(first_run)
    raw = sdk.chat.completions.with_raw_response.create(
        model="llama-3.1-8b", max_tokens=4, messages=[{"role": "user", "content": "12345678"}])
    assert raw.headers["x-gateway-provider"] == "mock"
    after = wait_until(lambda: (s := spend(first_run))["requests"] > before["requests"] and s,
                       what="the request to be settled")
    assert after["prompt_tokens"] - before["prompt_tokens"] == 2  # eight bytes, four a token
    assert after["completion_tokens"] - before["completion_tokens"] == 4
    # 2 tokens at 0.03 USD and 4 at 0.05 USD per million, in nano-dollars
    assert after["cost_nano"] - before["cost_nano"] == 2 * 30 + 4 * 50


@pytest.mark.parametrize("relay", ["x-forwarded-for", "forwarded", "x-real-ip"])
def test_the_demo_key_relayed_by_a_proxy_is_refused(first_run: GatewayProcess, relay: str) -> None:
    answer = httpx.post(first_run.base_url + "/chat/completions", timeout=10,
                        headers={"authorization": f"Bearer {DEMO_KEY}", relay: "203.0.113.7"},
                        json={"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "Hi"}]})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "loopback_key"
    assert "accepted from this machine only" in answer.json()["error"]["message"]
    models = httpx.get(first_run.base_url + "/models", timeout=10,
                       headers={"authorization": f"Bearer {DEMO_KEY}", relay: "203.0.113.7"})
    assert models.status_code == 401


def test_the_readmes_python_snippet_runs_as_written(first_run: GatewayProcess) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The first ten minutes", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet and "sk-gw-demo" in snippet.group(1)
    script = snippet.group(1).replace("127.0.0.1:8080", f"127.0.0.1:{first_run.port}")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
                         env={k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")})
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert printed[0].startswith("This is the mock provider answering: Hi")
    assert printed[1].startswith("This is the mock provider answering: Stream, please")
    assert printed[2] == "16"


def test_the_readmes_curl_runs_as_written(first_run: GatewayProcess) -> None:
    section = (ROOT / "README.md").read_text().split("### The first ten minutes", 1)[1]
    command = re.search(r"```sh\n(curl .*?)```", section, re.DOTALL)
    assert command and "sk-gw-demo" in command.group(1)
    run = subprocess.run(["bash", "-c", command.group(1).replace("127.0.0.1:8080", f"127.0.0.1:{first_run.port}")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    answer = orjson.loads(run.stdout)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]


def test_the_log_says_the_demo_team_takes_loopback_keys_and_never_shows_one(first_run: GatewayProcess,
                                                                          sdk: openai.OpenAI) -> None:
    sdk.models.list()
    log = wait_until(lambda: "loopback key" in (text := first_run.log()) and text, what="the start-up log")
    assert "team 'demo' accepts 1 loopback key(s), from clients on this machine only" in log
    assert "served by its stand-in route (mock)" in log
    assert DEMO_KEY not in log and ADMIN_KEY not in log
    assert "Traceback" not in log
