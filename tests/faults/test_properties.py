"""A property of the whole request path, over bodies a hostile tenant might send: whatever the body,
the answer is never a 500, and nothing is left reserved or in flight afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.call import ROLES
from gateway.config import parse_config
from gateway.service import Gateway
from gateway.store.memory import MemoryStore
from tests.fakes import FakeProvider

KEY = "sk-property"
anything = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
counts = st.integers(min_value=-5, max_value=2**60) | anything
parts = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "other"])},
    optional={"text": st.text(max_size=20) | anything, "image_url": anything}), max_size=3)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(sorted(ROLES)) | anything},
    optional={"content": st.text(max_size=40) | parts | anything, "name": anything, "tool_calls": anything}),
    max_size=4) | anything
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "missing"]) | anything, "messages": messages},
    optional={"max_tokens": counts, "max_completion_tokens": counts, "n": counts, "stream": st.booleans() | anything,
              "stream_options": anything, "temperature": anything, "stop": anything, "tools": anything,
              "gateway": anything, "logit_bias": anything, "seed": counts, "user": anything})
raw_bodies = bodies.map(lambda body: json.dumps(body).encode()) | st.binary(max_size=64)


class InProcess:
    """One gateway on an in-process store, driven on one event loop for every example."""

    def __init__(self, upstream: FakeProvider) -> None:
        self.config = parse_config({
            "providers": {"p": {"kind": "openai", "base_url": upstream.base_url, "api_key": upstream.api_key}},
            "models": {"m": {"routes": [{"provider": "p", "model": "gpt-4o-mini",
                                         "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
            "teams": {"t": {"keys": [KEY], "budget_usd": {"day": 1_000}}},
            "routing": {"models_poll_s": 0}}, {})
        self.store = MemoryStore()
        self.gateway = Gateway(self.config, self.store)
        self.runner = asyncio.Runner()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.config, self.gateway)),
                                        base_url="http://gateway", headers={"authorization": f"Bearer {KEY}"})
        self.runner.run(self.gateway.start())

    def post(self, body: bytes) -> httpx.Response:
        return self.runner.run(self.client.post("/v1/chat/completions", content=body, timeout=10))

    def held(self) -> Any:
        team = self.store._teams.get("t")
        return (dict(team.reservations), dict(team.held)) if team else ({}, {})

    def inflight(self) -> int:
        return sum(e.inflight for endpoints in self.gateway.router.endpoints.values() for e in endpoints)

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.run(self.gateway.stop())
        self.runner.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[InProcess]:
    with FakeProvider("openai") as upstream:
        app = InProcess(upstream)
        try:
            yield app
        finally:
            app.close()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=raw_bodies)
def test_any_body_gets_an_openai_answer_or_error_never_a_500_and_holds_nothing(gateway: InProcess,
                                                                              body: bytes) -> None:
    answer = gateway.post(body)
    assert answer.status_code < 500 or answer.status_code in (502, 503, 504), answer.text
    if answer.status_code != 200:
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert gateway.held() == ({}, {})
    assert gateway.inflight() == 0
