"""Traces of requests: one span per request, a child per upstream attempt, named and described as
the OpenTelemetry GenAI conventions say; nothing of OpenTelemetry is loaded when tracing is off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.app import create_app
from gateway.config import parse_config
from gateway.observability.tracing import Tracer
from gateway.service import Gateway
from gateway.store.memory import MemoryStore
from tests.fakes import FakeProvider
from tests.gateway_process import ROOT
from tests.waiting import eventually

KEY = "sk-tracing-0123456789"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with FakeProvider("openai", completion_tokens=4) as first, FakeProvider("deepinfra", completion_tokens=4) as second:
        yield first, second


@pytest.fixture
async def traced(upstreams: Any) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    first, second = upstreams
    first.reset()
    second.reset()
    config = parse_config({
        "providers": {"primary": {"kind": "openai", "base_url": first.base_url, "api_key": first.api_key},
                      "backup": {"kind": "deepinfra", "base_url": second.base_url, "api_key": second.api_key}},
        "models": {"m": {"strategy": "ordered", "routes": [
            {"provider": "primary", "model": "gpt-4o-mini", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
            {"provider": "backup", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
             "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}},
        "teams": {"t": {"keys": [KEY]}}, "routing": {"models_poll_s": 0},
        "server": {"log": {"requests": False}}}, {})
    gateway = Gateway(config, MemoryStore())
    exporter = InMemorySpanExporter()
    gateway.settler.observers.append(Tracer(config.server.tracing, SimpleSpanProcessor(exporter)).settled)
    await gateway.start()
    transport = httpx.ASGITransport(app=create_app(config, gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                 headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client, exporter
    await gateway.stop()


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0.3,
            **extra}


async def spans_of(exporter: InMemorySpanExporter, count: int) -> list:
    return await eventually(lambda: len(exporter.get_finished_spans()) >= count and exporter.get_finished_spans(),
                            2, f"{count} spans")


async def test_a_success_is_a_request_span_with_one_attempt_under_it(traced: Any) -> None:
    client, exporter = traced

    answer = await client.post("/v1/chat/completions", json=chat())
    attempt, request = await spans_of(exporter, 2)

    assert answer.status_code == 200
    assert request.name == "chat m" and request.parent is None
    assert {k: request.attributes[k] for k in (
        "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.provider.name",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.max_tokens",
        "gen_ai.request.temperature", "http.response.status_code", "gateway.team", "gateway.attempts")} == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 4,
        "gen_ai.request.max_tokens": 4, "gen_ai.request.temperature": 0.3, "http.response.status_code": 200,
        "gateway.team": "t", "gateway.attempts": 1}
    assert request.attributes["gateway.cost_nano"] == 1 * 1_000 + 4 * 2_000
    assert request.status.status_code == StatusCode.UNSET and "error.type" not in request.attributes
    assert attempt.name == "chat gpt-4o-mini" and attempt.parent.span_id == request.context.span_id
    assert attempt.attributes["gateway.provider"] == "primary"
    assert attempt.attributes["http.response.status_code"] == 200
    assert request.start_time <= attempt.start_time <= attempt.end_time <= request.end_time


async def test_a_fallback_is_two_attempts_the_first_failed(traced: Any, upstreams: Any) -> None:
    client, exporter = traced
    upstreams[0].fail_next(1, status=503)

    answer = await client.post("/v1/chat/completions", json=chat())
    *attempts, request = await spans_of(exporter, 3)

    assert answer.status_code == 200 and request.attributes["gateway.attempts"] == 2
    assert [a.attributes["gateway.provider"] for a in attempts] == ["primary", "backup"]
    assert all(a.parent.span_id == request.context.span_id for a in attempts)
    failed, served = attempts
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["http.response.status_code"] == 503
    assert "error.type" in failed.attributes and "error.type" not in served.attributes
    assert request.attributes["gen_ai.provider.name"] == "deepinfra"
    assert failed.end_time <= served.start_time


async def test_an_error_marks_the_request_span_with_its_type(traced: Any, upstreams: Any) -> None:
    client, exporter = traced
    for upstream in upstreams:
        upstream.fail_next(1, status=500)

    answer = await client.post("/v1/chat/completions", json=chat())
    *attempts, request = await spans_of(exporter, 3)

    assert answer.status_code == 502
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes["error.type"] == (answer.json()["error"]["code"] or answer.json()["error"]["type"])
    assert request.attributes["http.response.status_code"] == 502 and request.attributes["gateway.cost_nano"] == 0
    assert len(attempts) == 2 and all(a.status.status_code == StatusCode.ERROR for a in attempts)


def test_with_tracing_off_opentelemetry_is_never_imported() -> None:
    script = ("import sys; from gateway.config import parse_config; from gateway.service import Gateway; "
              "from gateway.store.memory import MemoryStore; Gateway(parse_config({}, {}), MemoryStore()); "
              "print(any(m.startswith('opentelemetry') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.strip() == "False", result.stderr


def test_with_tracing_on_a_gateway_traces_its_requests() -> None:
    config = parse_config({"server": {"tracing": {"enabled": True, "endpoint": "http://127.0.0.1:9/v1/traces",
                                                  "sample_ratio": 0.5}}}, {})
    gateway = Gateway(config, MemoryStore())
    assert gateway.tracer is not None and gateway.tracer.settled in gateway.settler.observers
    gateway.tracer.stop()
