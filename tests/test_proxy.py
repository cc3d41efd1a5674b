"""End to end: the official OpenAI SDK, with only its base URL changed, through the gateway
to a fake of every seed provider."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

KINDS = ["openai", "netmind", "deeptrin", "novita", "deepinfra", "vllm"]
UPSTREAM_MODEL = {"openai": "gpt-4o-mini", "novita": "meta-llama/llama-3.1-8b-instruct", "vllm": "tiny"}
PRICE = {"input_per_mtok": 0.03, "output_per_mtok": 0.05}


@pytest.fixture(scope="module")
def fakes():
    started = {kind: FakeProvider(kind, completion_tokens=5).start() for kind in KINDS}
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture(scope="module")
def gateway(fakes):
    providers = {kind: {"kind": kind, "base_url": fake.base_url, "api_key": fake.api_key or ""}
                 for kind, fake in fakes.items()}
    providers["vllm"] = {"kind": "vllm", "endpoints": [fakes["vllm"].base_url]}
    providers["openai"]["timeouts"] = {"first_byte_s": 1.5}
    models = {f"m-{kind}": {"routes": [{"provider": kind, "price": PRICE,
                                        "model": UPSTREAM_MODEL.get(kind, "meta-llama/Meta-Llama-3.1-8B-Instruct")}]}
              for kind in KINDS}
    config = {"providers": providers, "models": models, "server": {"max_body_bytes": 65536},
              "routing": {"max_attempts": 1}}
    with GatewayProcess(config) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused-in-open-mode", max_retries=0, timeout=10)


@pytest.fixture(autouse=True)
def fresh_fakes(fakes):
    for fake in fakes.values():
        fake.reset()


@pytest.mark.parametrize("kind", KINDS)
def test_chat_answers_through_every_provider(client, fakes, kind):
    reply = client.chat.completions.with_raw_response.create(
        model=f"m-{kind}", messages=[{"role": "user", "content": "two words"}], max_tokens=3)
    completion = reply.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.usage.prompt_tokens == 2 and completion.usage.completion_tokens == 3
    assert reply.headers["x-gateway-provider"] == kind
    sent = fakes[kind].requests[-1].json
    assert sent["model"] == reply.headers["x-gateway-upstream-model"] == UPSTREAM_MODEL.get(
        kind, "meta-llama/Meta-Llama-3.1-8B-Instruct")


@pytest.mark.parametrize("kind", KINDS)
def test_stream_without_include_usage_has_no_usage_chunk(client, kind):
    chunks = list(client.chat.completions.create(
        model=f"m-{kind}", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 "
    assert all(c.choices for c in chunks), "a usage-only chunk reached a client that did not ask for one"
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_with_include_usage_ends_with_exactly_one_usage_chunk(client, kind):
    chunks = list(client.chat.completions.create(
        model=f"m-{kind}", messages=[{"role": "user", "content": "three words here"}], max_tokens=4,
        stream=True, stream_options={"include_usage": True}))
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 "


def test_deepinfra_end_of_sequence_delta_never_reaches_the_client(gateway):
    body = {"model": "m-deepinfra", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as response:
        raw = b"".join(response.iter_bytes())
    assert b"</s>" not in raw
    assert b'"usage":{' not in raw and b'"usage": {' not in raw
    assert raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("kind", KINDS)
def test_completions_regular_and_streaming(client, kind):
    completion = client.completions.create(model=f"m-{kind}", prompt="say something", max_tokens=2)
    assert completion.choices[0].text == "tok0 tok1 "
    chunks = list(client.completions.create(model=f"m-{kind}", prompt="say something", max_tokens=2,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "tok0 tok1 "
    assert chunks[-1].usage.completion_tokens == 2


def test_legacy_completions_default_to_sixteen_tokens_on_every_provider(client, fakes):
    fakes["deepinfra"].completion_tokens = 100
    client.completions.create(model="m-deepinfra", prompt="go")
    assert fakes["deepinfra"].requests[-1].json["max_tokens"] == 16


@pytest.mark.parametrize("kind", KINDS)
def test_embeddings(client, kind):
    result = client.embeddings.create(model=f"m-{kind}", input=["one two", "three"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 3


def test_models_lists_public_names(client):
    assert sorted(m.id for m in client.models.list()) == sorted(f"m-{k}" for k in KINDS)


def test_unknown_model_is_the_sdk_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_found"


def test_out_of_range_value_is_refused_before_any_upstream_call(client, fakes):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m-deepinfra", messages=[{"role": "user", "content": "x"}], n=5)
    assert caught.value.body["param"] == "n"
    assert fakes["deepinfra"].requests == []


def test_max_completion_tokens_is_renamed_for_providers_that_only_know_max_tokens(client, fakes):
    client.chat.completions.create(model="m-novita", messages=[{"role": "user", "content": "x"}],
                                   max_completion_tokens=2)
    sent = fakes["novita"].requests[-1].json
    assert sent["max_tokens"] == 2 and "max_completion_tokens" not in sent


@pytest.mark.parametrize("status, body, content_type, sdk_error, client_status", [
    (429, b'{"error":{"message":"slow down"}}', "application/json", openai.RateLimitError, 429),
    (401, b'{"error":{"message":"bad key"}}', "application/json", openai.InternalServerError, 502),
    (503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html",
     openai.InternalServerError, 503),
    (500, b"upstream exploded", "text/plain", openai.InternalServerError, 502),
    (400, b'{"error":{"message":"bad things","param":"messages"}}', "application/json",
     openai.BadRequestError, 400),
])
def test_upstream_errors_become_openai_errors(client, fakes, status, body, content_type, sdk_error,
                                              client_status):
    fakes["openai"].fail_next(1, status=status, body=body, content_type=content_type,
                              headers={"retry-after": "7"} if status == 429 else None)
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == client_status
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and "<" not in error["message"]
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"


def test_deepinfra_validation_error_names_the_parameter(client, fakes):
    fakes["deepinfra"].fail_next(1, status=422, body=b'{"detail":[{"loc":["body","top_k"],"msg":"too big",'
                                                     b'"type":"value_error"}]}')
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m-deepinfra", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["param"] == "top_k" and caught.value.body["message"] == "too big"


@pytest.mark.parametrize("body, status", [
    (b"{not json", 400), (b"[]", 400), (b'{"messages": []}', 400), (b'{"model": "m-openai"}', 400),
    (b'{"model": "m-openai", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400),
    (b'{"model": "m-openai", "messages": [{"role": "user", "content": "' + b"x" * 70000 + b'"}]}', 413),
], ids=["malformed", "not-an-object", "no-model", "no-messages", "wrong-type", "too-large"])
def test_bad_input_gets_a_4xx_openai_error_never_a_500(gateway, body, status):
    response = httpx.post(gateway.base_url + "/chat/completions", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_every_response_carries_a_request_id(gateway):
    echoed = httpx.post(gateway.base_url + "/chat/completions", headers={"x-request-id": "abc-123"},
                        json={"model": "m-openai", "messages": [{"role": "user", "content": "x"}]})
    assert echoed.headers["x-request-id"] == "abc-123"
    made = httpx.post(gateway.base_url + "/chat/completions", json={"model": "nope", "messages": []})
    assert len(made.headers["x-request-id"]) >= 16


def test_timeout_before_first_byte_is_a_504(client, fakes):
    fakes["openai"].hang = True
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "x"}])
    finally:
        fakes["openai"].hang = False
    assert caught.value.status_code == 504 and caught.value.body["code"] == "upstream_timeout"


def test_client_disconnect_closes_the_upstream_stream_within_a_second(gateway, fakes):
    fake = fakes["vllm"]
    fake.completion_tokens, fake.token_delay_s = 1000, 0.02
    try:
        body = {"model": "m-vllm", "messages": [{"role": "user", "content": "long"}], "stream": True,
                "max_tokens": 1000}
        with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as response:
            chunks = response.iter_bytes()  # held: a dropped iterator closes the response at once
            next(chunks)
            fake.wait_until(lambda: fake.open_streams == 1, timeout=1.0)
        gone = time.monotonic()
        fake.wait_until(lambda: fake.open_streams == 0, timeout=1.0)
        assert time.monotonic() - gone < 1.0
        fake.wait_until(lambda: len(fake.ledger) == 1, timeout=1.0)
        assert fake.ledger[0].disconnected and fake.ledger[0].completion_tokens < 1000
    finally:
        fake.completion_tokens, fake.token_delay_s = 5, 0.0


def test_a_stream_abandoned_at_novita_is_read_to_its_usage_since_novita_bills_it_anyway(gateway, fakes):
    fake = fakes["novita"]
    fake.completion_tokens, fake.token_delay_s = 40, 0.01
    try:
        body = {"model": "m-novita", "messages": [{"role": "user", "content": "long"}], "stream": True,
                "max_tokens": 40}
        with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body, timeout=10) as response:
            next(response.iter_bytes())
        fake.wait_until(lambda: len(fake.ledger) == 1, timeout=2.0)
        assert not fake.ledger[0].disconnected and fake.ledger[0].completion_tokens == 40
    finally:
        fake.completion_tokens, fake.token_delay_s = 5, 0.0


def test_idle_timeout_after_the_first_byte_ends_the_stream_with_an_error_the_sdk_raises(gateway, fakes):
    fake = fakes["openai"]
    fake.token_delay_s = 3.0  # far past the route's idle timeout
    try:
        providers = {"openai": {"kind": "openai", "base_url": fake.base_url, "api_key": fake.api_key,
                                "timeouts": {"idle_s": 0.3}}}
        config = {"providers": providers, "models": {"m": {"routes": [{"provider": "openai",
                                                                        "model": "gpt-4o-mini"}]}}}
        with GatewayProcess(config) as config_gateway:
            client = openai.OpenAI(base_url=config_gateway.base_url, api_key="x", max_retries=0)
            stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                                    stream=True, max_tokens=3)
            with pytest.raises(openai.APIError) as caught:
                for _ in stream:
                    pass
            assert "timeout" in str(caught.value)
    finally:
        fake.token_delay_s = 0.0
