"""A broken or hostile upstream: the client gets an OpenAI-format answer or error, never a 500;
a served request is billed (from the gateway's own counts when the upstream's are garbage),
an unserved one is not; and afterwards nothing is held, nothing is in flight, memory is bounded."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from gateway.call import read_call
from tests.fakes import FakeProvider
from tests.faults.conftest import KEY, Invariants, fault_config
from tests.faults.upstream import BAD_USAGES, COMPLETION_TOKENS, LINGER_S, PROMPT_TOKENS, WORDS, HostileUpstream
from tests.gateway_process import GatewayProcess

MESSAGES = [{"role": "user", "content": "hi"}]
PROMPT_ESTIMATE = -(-read_call(orjson.dumps({"model": "x", "messages": MESSAGES}), "chat").prompt_tokens_bound // 4)
ANSWER_BYTES = len("".join(WORDS).encode())


@pytest.fixture(scope="module")
def gateway(hostile: HostileUpstream, steady: FakeProvider, module_redis) -> Iterator[GatewayProcess]:
    with GatewayProcess(fault_config(hostile, steady, module_redis.url)) as gw:
        yield gw


@pytest.fixture
def check(gateway: GatewayProcess, module_redis) -> Invariants:
    return Invariants(gateway, module_redis.url)


def ask(gw: GatewayProcess, model: str, stream: bool = False, usage: bool = False) -> tuple[httpx.Response, bytes, str]:
    request_id = uuid.uuid4().hex
    body = {"model": model, "messages": MESSAGES, "max_tokens": 64, "stream": stream}
    if usage:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id}
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body, headers=headers, timeout=30) as response:
        return response, response.read(), request_id


def error_of(body: bytes) -> dict:
    return orjson.loads(body)["error"]


def last_event(body: bytes) -> dict:
    events = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]
    return orjson.loads(events[-1])


def cost(prompt: int, completion: int) -> int:
    return prompt * 1_000 + completion * 2_000


@pytest.mark.parametrize("model", sorted(BAD_USAGES))
def test_unbillable_usage_in_a_whole_answer_is_billed_from_the_gateways_count(gateway, check, model) -> None:
    response, body, request_id = ask(gateway, model)
    assert response.status_code == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "".join(WORDS)  # the answer, unchanged
    record = check.record(request_id)
    assert (record.prompt_tokens, record.completion_tokens) == (PROMPT_ESTIMATE, -(-ANSWER_BYTES // 4))
    assert record.cost_nano == cost(record.prompt_tokens, record.completion_tokens) > 0
    assert record.provider_cost_nano is None
    check.hold()


@pytest.mark.parametrize("model", sorted(BAD_USAGES))
def test_unbillable_usage_in_a_stream_is_billed_from_the_deltas_that_passed(gateway, check, model) -> None:
    response, body, request_id = ask(gateway, model, stream=True)
    assert response.status_code == 200 and body.count(b'"content"') == len(WORDS)
    record = check.record(request_id)
    assert (record.prompt_tokens, record.completion_tokens) == (PROMPT_ESTIMATE, len(WORDS))
    assert record.cost_nano == cost(PROMPT_ESTIMATE, len(WORDS))
    check.hold()


def test_usage_counted_by_the_gateway_is_said_in_a_metric(gateway, check) -> None:
    ask(gateway, "usage-strings")
    text = httpx.get(gateway.url + "/metrics").text
    assert 'gateway_usage_estimated_total{provider="hostile",reason="invalid"}' in text
    check.hold()


@pytest.mark.parametrize(("model", "stream"), [("html", False), ("html", True), ("truncated", False),
                                               ("empty", False), ("empty", True)])
def test_a_200_that_is_no_answer_is_a_502_and_is_not_billed(gateway, check, model, stream) -> None:
    response, body, request_id = ask(gateway, model, stream=stream)
    assert response.status_code == 502 and response.headers["content-type"] == "application/json"
    assert error_of(body)["code"] == "upstream_invalid_response"
    record = check.record(request_id)
    assert (record.status, record.cost_nano, record.prompt_tokens, record.completion_tokens) == (502, 0, 0, 0)
    check.hold()


def test_vectors_that_base64_cannot_hold_are_a_502_and_the_providers_usage_is_billed(gateway, check) -> None:
    request_id = uuid.uuid4().hex
    response = httpx.post(gateway.base_url + "/embeddings", timeout=30, json={
        "model": "bad-vectors", "input": "hi", "encoding_format": "base64"},
        headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id})
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_invalid_response"
    record = check.record(request_id)  # the provider answered, and bills: so is the team, once
    assert (record.status, record.prompt_tokens, record.cost_nano) == (502, 3, 3 * 1_000)
    check.hold()


def test_a_feature_no_route_honours_is_refused_before_anything_is_held(gateway, check) -> None:
    request_id = uuid.uuid4().hex
    response = httpx.post(gateway.base_url + "/chat/completions", timeout=30, json={
        "model": "html", "messages": MESSAGES, "logprobs": True},  # the hostile route is DeepInfra: no logprobs
        headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id})
    assert response.status_code == 400 and response.json()["error"]["param"] == "logprobs"
    assert request_id not in check.records()
    check.hold()


def test_a_gzip_bomb_is_refused_at_the_cap_not_inflated(gateway, check) -> None:
    response, body, request_id = ask(gateway, "gzip-bomb")
    assert response.status_code == 502 and error_of(body)["code"] == "upstream_response_too_large"
    assert check.record(request_id).cost_nano == 0
    check.hold()  # worker memory included: 256 MB inflated would not fit under the bound


def test_a_200_mb_error_body_is_read_no_further_than_a_message_needs(gateway, check) -> None:
    response, body, request_id = ask(gateway, "huge-error")
    error = error_of(body)
    assert response.status_code == 502 and len(error["message"]) <= 2_000
    assert check.record(request_id).cost_nano == 0
    check.hold()


def test_a_final_event_without_its_blank_line_is_billed_and_reaches_the_client_whole(gateway, check) -> None:
    response, body, request_id = ask(gateway, "no-separator", stream=True, usage=True)
    assert response.status_code == 200 and body.endswith(b"\n\n")
    assert last_event(body)["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
    record = check.record(request_id)
    assert (record.prompt_tokens, record.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    check.hold()


def test_a_trickling_stream_under_its_idle_timeout_is_relayed_and_billed_exactly(gateway, check) -> None:
    response, body, request_id = ask(gateway, "trickle", stream=True)
    assert response.status_code == 200 and body.count(b'"content"') == len(WORDS)
    assert check.record(request_id).cost_nano == cost(PROMPT_TOKENS, COMPLETION_TOKENS)
    check.hold()


def test_a_stream_that_stalls_ends_with_an_error_event_and_bills_what_passed(gateway, check) -> None:
    response, body, request_id = ask(gateway, "stall", stream=True)
    assert response.status_code == 200 and last_event(body)["error"]["code"] == "upstream_timeout"
    record = check.record(request_id)
    assert (record.status, record.completion_tokens) == (504, 3)
    check.hold()


def test_a_stream_ends_at_its_last_event_though_the_upstream_lingers_before_its_end(gateway, check) -> None:
    started = time.monotonic()
    response, body, request_id = ask(gateway, "linger", stream=True, usage=True)
    assert response.status_code == 200 and body.endswith(b"data: [DONE]\n\n") and b'"error"' not in body
    assert time.monotonic() - started < LINGER_S  # not held open until the upstream's end of body
    record = check.record(request_id)
    assert (record.status, record.cost_nano) == (200, cost(PROMPT_TOKENS, COMPLETION_TOKENS))
    assert len([r for r in check.record_list() if r.request_id == request_id]) == 1
    check.hold()


def test_a_client_that_closes_at_done_is_settled_as_served_not_as_gone(gateway, check) -> None:
    # The OpenAI SDK closes its connection at [DONE], before the upstream's end of body arrives.
    request_id = uuid.uuid4().hex
    client = openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(model="linger", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_headers={"x-request-id": request_id}))
    assert chunks[-1].usage.completion_tokens == COMPLETION_TOKENS
    record = check.record(request_id)
    assert (record.status, record.cost_nano) == (200, cost(PROMPT_TOKENS, COMPLETION_TOKENS))
    assert len([r for r in check.record_list() if r.request_id == request_id]) == 1
    check.hold()


def test_an_upstream_that_never_answers_is_a_504_not_billed(gateway, check) -> None:
    response, body, request_id = ask(gateway, "hang")
    assert response.status_code == 504 and error_of(body)["code"] == "upstream_timeout"
    assert check.record(request_id).cost_nano == 0
    check.hold()


def test_a_connection_reset_mid_stream_ends_with_an_error_event_and_bills_what_passed(gateway, check) -> None:
    response, body, request_id = ask(gateway, "reset", stream=True)
    assert response.status_code == 200 and last_event(body)["error"]["code"] == "upstream_error"
    record = check.record(request_id)
    assert (record.status, record.completion_tokens) == (502, 3)
    check.hold()


def test_an_event_past_its_cap_ends_the_stream_with_an_error_event(gateway, check) -> None:
    response, body, request_id = ask(gateway, "huge-event", stream=True)
    assert response.status_code == 200 and len(body) < 2 << 20
    assert "too large" in last_event(body)["error"]["message"]
    assert check.record(request_id).status == 502
    check.hold()


def test_a_client_gone_mid_stream_is_settled_once_for_what_reached_it(gateway, check) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "slow-stream", "messages": MESSAGES, "max_tokens": 64, "stream": True}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, headers=headers,
                      timeout=30) as response:
        chunks = response.iter_bytes()
        received = next(chunks)
        while b'"content"' not in received:
            received += next(chunks)
    # The upstream is closed at once (abandoned_streams: close), and the request billed for what passed.
    record = check.record(request_id)
    assert record.status == 499 and 1 <= record.completion_tokens < len(WORDS)
    assert len([r for r in check.record_list() if r.request_id == request_id]) == 1
    check.hold()


def test_a_client_gone_while_its_answer_is_awaited_holds_nothing_afterwards(gateway, check) -> None:
    request_id = uuid.uuid4().hex
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.base_url + "/chat/completions", timeout=0.5,
                   headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id},
                   json={"model": "hang", "messages": MESSAGES, "max_tokens": 64})
    record = check.record(request_id)  # the upstream's first-byte timeout ends it: unbilled
    assert (record.status, record.cost_nano) == (504, 0)
    check.hold()


# --- the same faults under a Responses request, translated to chat and back ------------------------

def ask_responses(gw: GatewayProcess, model: str, stream: bool) -> tuple[httpx.Response, bytes, str]:
    request_id = uuid.uuid4().hex
    body = {"model": model, "input": "hi", "max_output_tokens": 64, "stream": stream}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id}
    with httpx.stream("POST", gw.base_url + "/responses", json=body, headers=headers, timeout=30) as response:
        return response, response.read(), request_id


@pytest.mark.parametrize(("model", "status"), [("stall", 504), ("reset", 502), ("huge-event", 502)])
def test_a_translated_responses_stream_that_breaks_ends_with_response_failed_and_bills_what_passed(
        gateway, check, model: str, status: int) -> None:
    response, body, request_id = ask_responses(gateway, model, stream=True)
    assert response.status_code == 200 and len(body) < 2 << 20
    final = last_event(body)
    assert final["type"] == "response.failed" and final["response"]["status"] == "failed"
    record = check.record(request_id)
    assert record.status == status and record.endpoint == "responses"
    assert len([r for r in check.record_list() if r.request_id == request_id]) == 1
    check.hold()


@pytest.mark.parametrize("model", ["html", "truncated", "usage-strings"])
def test_a_translated_responses_answer_from_garbage_is_an_error_or_billed_from_the_gateways_count(
        gateway, check, model: str) -> None:
    response, body, request_id = ask_responses(gateway, model, stream=False)
    record = check.record(request_id)
    if response.status_code == 200:  # usage that cannot be billed: the answer stands, the gateway counts
        assert orjson.loads(body)["object"] == "response" and record.usage_estimated == "invalid"
        assert record.cost_nano > 0
    else:
        assert response.status_code == 502 and record.cost_nano == 0
    check.hold()


def test_a_translated_responses_stream_ends_at_the_chat_streams_last_event(gateway, check) -> None:
    started = time.monotonic()
    response, body, request_id = ask_responses(gateway, "linger", stream=True)
    assert response.status_code == 200 and last_event(body)["type"] == "response.completed"
    assert time.monotonic() - started < LINGER_S
    assert check.record(request_id).status == 200
    check.hold()


def test_a_client_gone_mid_responses_stream_is_settled_once_and_nothing_is_stored(gateway, check) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "slow-stream", "input": "hi", "max_output_tokens": 64, "stream": True}
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": request_id}
    with httpx.stream("POST", gateway.base_url + "/responses", json=body, headers=headers, timeout=30) as response:
        chunks = response.iter_bytes()
        received = next(chunks)
        while b"response.output_text.delta" not in received:
            received += next(chunks)
        response_id = orjson.loads(received.split(b"data: ", 1)[1].split(b"\n", 1)[0])["response"]["id"]
    record = check.record(request_id)
    assert record.status == 499 and record.endpoint == "responses" and 1 <= record.completion_tokens < len(WORDS)
    assert len([r for r in check.record_list() if r.request_id == request_id]) == 1
    stored = httpx.get(f"{gateway.base_url}/responses/{response_id}", headers={"authorization": f"Bearer {KEY}"})
    assert stored.status_code == 404  # an answer the client never had is not one to continue
    check.hold()
