"""The fakes behave like the providers they stand for, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from . import FakeProvider
from .wire import auth, chat_body, sse_events

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct"
NOVITA_LLAMA = "meta-llama/llama-3.1-8b-instruct"


# One client for the module: building one per request costs more than the request.
HTTP = httpx.Client(timeout=5.0, trust_env=False)


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Any:
    yield
    HTTP.close()


def post(fake: FakeProvider, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", auth(fake))
    return HTTP.post(fake.base_url + path, json=body, headers=headers, **kwargs)


def get(fake: FakeProvider, path: str, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", auth(fake))
    return HTTP.get(fake.base_url + path, headers=headers, **kwargs)


@pytest.mark.parametrize("kind, prefix", [
    ("openai", "/v1"), ("netmind", "/inference-api/openai/v1"),
    ("deeptrin", "/inference-api/openai/v1"), ("novita", "/v3/openai"),
    ("deepinfra", "/v1/openai"), ("vllm", "/v1"),
])
def test_each_kind_serves_models_under_its_real_path_prefix(kind: str, prefix: str) -> None:
    with FakeProvider(kind) as fake:
        assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith(prefix)
        listing = get(fake, "/models").json()
        assert listing["object"] == "list"
        assert [card["id"] for card in listing["data"]] == fake.models


def test_model_cards_carry_each_providers_extra_fields() -> None:
    with FakeProvider("deepinfra", price_in_per_mtok=0.13, price_out_per_mtok=0.38,
                      max_model_len=131072) as di, FakeProvider("novita") as nv, \
            FakeProvider("vllm", max_model_len=2048) as vl:
        card = get(di, "/models").json()["data"][0]
        assert card["metadata"]["pricing"] == {"input_tokens": 0.13, "output_tokens": 0.38}
        assert card["metadata"]["context_length"] == 131072
        card = get(nv, "/models").json()["data"][0]
        assert card.keys() >= {"input_token_price_per_m", "output_token_price_per_m",
                               "context_size"}
        card = get(vl, "/models").json()["data"][0]
        assert card["max_model_len"] == 2048


def test_non_streaming_usage_follows_the_word_count_token_model() -> None:
    with FakeProvider("openai", completion_tokens=8) as fake:
        parts = [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "a b c"},
                                              {"type": "image_url", "image_url": {"url": "x"}}]}]
        doc = post(fake, "/chat/completions", {"model": "gpt-4o-mini", "messages": parts, "n": 2,
                                               "max_completion_tokens": 5}).json()
        assert doc["object"] == "chat.completion" and len(doc["choices"]) == 2
        assert doc["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4 "
        assert doc["choices"][0]["finish_reason"] == "length"
        assert doc["usage"] == {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
        assert (fake.ledger[0].prompt_tokens, fake.ledger[0].completion_tokens) == (5, 10)

        batch = {"model": "gpt-4o-mini", "prompt": ["x y", [1, 2, 3]]}
        doc = post(fake, "/completions", batch).json()
        assert doc["object"] == "text_completion"
        assert doc["usage"]["prompt_tokens"] == 5 and doc["usage"]["completion_tokens"] == 8
        assert doc["choices"][0]["finish_reason"] == "stop"
        doc = post(fake, "/completions", {"model": "gpt-4o-mini", "prompt": "x",
                                          "max_tokens": 3}).json()
        assert doc["choices"][0]["text"] == "tok0 tok1 tok2 "


def test_embeddings_return_eight_floats_per_input_in_either_encoding() -> None:
    with FakeProvider("openai", models=["text-embedding-3-small"]) as fake:
        body = {"model": "text-embedding-3-small", "input": ["hello world", "hi"]}
        doc = post(fake, "/embeddings", body).json()
        assert [len(d["embedding"]) for d in doc["data"]] == [8, 8]
        assert doc["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
        packed = post(fake, "/embeddings", {**body, "encoding_format": "base64"}).json()
        decoded = struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"]))
        assert list(decoded) == doc["data"][0]["embedding"]
        assert fake.ledger[0].completion_tokens == 0 and fake.ledger[0].endpoint == "embeddings"


def test_openai_stream_sends_usage_null_then_one_empty_choices_usage_chunk() -> None:
    with FakeProvider("netmind", completion_tokens=3) as fake:
        raw = post(fake, "/chat/completions", chat_body(LLAMA, stream=True,
                                                         stream_options={"include_usage": True}))
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = sse_events(raw.content)
        assert events[-1] == "[DONE]"
        *chunks, last = events[:-1]
        assert all("usage" in c and c["usage"] is None and c["choices"] for c in chunks)
        assert last["choices"] == [] and last["usage"]["completion_tokens"] == 3
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == "tok0 tok1 tok2 "

        plain = sse_events(post(fake, "/chat/completions", chat_body(LLAMA, stream=True)).content)
        assert all("usage" not in c for c in plain[:-1])


def test_deepinfra_stream_puts_usage_and_cost_on_the_finish_chunk_after_eos() -> None:
    with FakeProvider("deepinfra", completion_tokens=4, price_in_per_mtok=0.03,
                      price_out_per_mtok=0.05) as fake:
        events = sse_events(post(fake, "/chat/completions", chat_body(LLAMA, stream=True)).content)
        assert events[-1] == "[DONE]"
        eos, finish = events[-3], events[-2]
        assert eos["choices"][0]["delta"] == {"content": "</s>"}
        assert finish["choices"] and finish["choices"][0]["finish_reason"] == "stop"
        usage = finish["usage"]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 4)
        assert usage["estimated_cost"] == pytest.approx(3 * 0.03 / 1e6 + 4 * 0.05 / 1e6)
        assert not any(e["choices"] == [] for e in events[:-1])
        fake.wait_until(lambda: len(fake.ledger) == 1)  # billed as the handler ends, after the last byte
        assert fake.ledger[0].completion_tokens == 4  # "</s>" is not billed
        assert fake.ledger[0].cost_usd_nano == 3 * 30 + 4 * 50

        off = post(fake, "/chat/completions", chat_body(LLAMA, stream=True,
                                                        stream_options={"include_usage": False}))
        assert all("usage" not in e for e in sse_events(off.content)[:-1])
        doc = post(fake, "/chat/completions", chat_body(LLAMA)).json()
        assert "estimated_cost" in doc["usage"]
        assert "</s>" not in doc["choices"][0]["message"]["content"]


@pytest.mark.parametrize("field, value", [("temperature", 2.5), ("top_p", 0), ("n", 5),
                                          ("stop", [str(i) for i in range(17)])])
def test_deepinfra_rejects_out_of_range_fields_with_422_detail(field: str, value: Any) -> None:
    with FakeProvider("deepinfra") as fake:
        response = post(fake, "/chat/completions", chat_body(LLAMA, **{field: value}))
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail[0]["loc"] == ["body", field] and detail[0]["type"] == "value_error"
        assert fake.ledger == []


def test_deepinfra_busy_429_and_other_errors_use_its_own_shapes() -> None:
    with FakeProvider("deepinfra") as fake:
        fake.fail_next(1, status=429)
        busy = post(fake, "/chat/completions", chat_body(LLAMA))
        assert busy.status_code == 429
        assert busy.json() == {"error": {"message": "Model is busy, please try again later"}}
        missing = post(fake, "/chat/completions", chat_body("nope/model"))
        assert missing.status_code == 404 and set(missing.json()["error"]) == {"message"}


def test_novita_serves_lower_case_ids_only() -> None:
    with FakeProvider("novita", models=["Meta-Llama/Llama-3.1-8B-Instruct"]) as fake:
        assert fake.models == [NOVITA_LLAMA]
        ok = post(fake, "/chat/completions", chat_body(NOVITA_LLAMA))
        assert ok.status_code == 200
        wrong = post(fake, "/chat/completions", chat_body("meta-llama/Llama-3.1-8B-Instruct"))
        assert wrong.status_code == 404
        assert wrong.json()["error"]["code"] == "model_not_found"
        assert wrong.json()["error"]["param"] == "model"


@pytest.mark.parametrize("kind", ["openai", "netmind", "deeptrin", "novita", "deepinfra", "vllm"])
def test_wrong_key_gets_401_in_the_providers_shape(kind: str) -> None:
    with FakeProvider(kind, api_key="sk-right") as fake:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            response = post(fake, "/chat/completions", chat_body(fake.models[0]), headers=headers)
            assert response.status_code == 401
            assert "message" in response.json()["error"]
        models = get(fake, "/models", headers={"Authorization": "Bearer x"})
        assert models.status_code == 401
        assert post(fake, "/chat/completions", chat_body(fake.models[0])).status_code == 200


def test_vllm_needs_no_key_by_default_and_ignores_unknown_fields() -> None:
    with FakeProvider("vllm") as fake:
        body = chat_body("tiny", top_k=5, min_p=0.1, repetition_penalty=1.1, made_up=True)
        assert post(fake, "/chat/completions", body, headers={}).status_code == 200


def test_vllm_errors_in_new_or_flat_shape() -> None:
    body = chat_body("tiny", stream_options={"include_usage": True})
    with FakeProvider("vllm") as new, FakeProvider("vllm", flat_errors=True) as old:
        nested = post(new, "/chat/completions", body)
        assert nested.status_code == 400
        assert nested.json()["error"]["code"] == 400 and "type" in nested.json()["error"]
        flat = post(old, "/chat/completions", body)
        assert flat.status_code == 400
        assert flat.json()["object"] == "error" and flat.json()["code"] == 400
        assert "message" in flat.json() and "error" not in flat.json()
        assert post(old, "/chat/completions", chat_body("other")).json()["code"] == 404


def test_vllm_stream_ends_with_an_empty_choices_usage_chunk() -> None:
    with FakeProvider("vllm", completion_tokens=2) as fake:
        events = sse_events(post(fake, "/completions", {"model": "tiny", "prompt": "a b",
                                                        "stream": True,
                                                        "stream_options": {"include_usage": True}}
                                 ).content)
        assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 4
        assert "".join(e["choices"][0]["text"] for e in events[:-2]) == "tok0 tok1 "


def metric(text: str, name: str, model: str = "tiny") -> float:
    prefix = f'{name}{{model_name="{model}"}} '
    return next(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


async def test_vllm_metrics_follow_load_beyond_max_running() -> None:
    with FakeProvider("vllm", max_running=2, ttft_s=0.05, token_delay_s=0.05,
                      completion_tokens=4) as fake:
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                async with session.post(fake.base_url + "/chat/completions",
                                        json=chat_body("tiny", stream=True)) as response:
                    await response.read()

            tasks = [asyncio.create_task(one()) for _ in range(4)]
            await fake.await_until(lambda: fake.running == 2 and fake.waiting == 2)
            async with session.get(fake.origin + "/metrics") as response:
                busy = await response.text()
            assert metric(busy, "vllm:num_requests_running") == 2
            assert metric(busy, "vllm:num_requests_waiting") == 2
            assert metric(busy, "vllm:kv_cache_usage_perc") == 1.0
            await asyncio.gather(*tasks)
            async with session.get(fake.origin + "/metrics") as response:
                idle = await response.text()
            assert metric(idle, "vllm:num_requests_running") == 0
            assert metric(idle, "vllm:num_requests_waiting") == 0
            assert metric(idle, "vllm:generation_tokens_total") == 16
            async with session.get(fake.origin + "/health") as response:
                assert response.status == 200
            fake.kill_engine()
            async with session.get(fake.origin + "/health") as response:
                assert response.status == 503
        assert fake.requests and all(r.path.endswith("/chat/completions") for r in fake.requests)
        assert [p.path for p in fake.probes] == ["/metrics", "/metrics", "/health", "/health"]


def test_fail_next_fails_exactly_n_requests_then_recovers() -> None:
    with FakeProvider("openai") as fake:
        fake.fail_next(2, status=503, headers={"Retry-After": "1"})
        first = post(fake, "/chat/completions", chat_body("gpt-4o-mini"))
        assert first.status_code == 503 and first.headers["retry-after"] == "1"
        assert first.json()["error"]["type"] == "server_error"
        assert post(fake, "/chat/completions", chat_body("gpt-4o-mini")).status_code == 503
        assert post(fake, "/chat/completions", chat_body("gpt-4o-mini")).status_code == 200
        assert len(fake.requests) == 3 and len(fake.ledger) == 1


def test_fail_next_can_send_a_raw_non_json_body() -> None:
    with FakeProvider("novita") as fake:
        fake.fail_next(1, status=502, body=b"<html>bad gateway</html>", content_type="text/html")
        response = post(fake, "/chat/completions", chat_body(NOVITA_LLAMA))
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert response.content == b"<html>bad gateway</html>"


def test_fail_rate_is_reproducible_for_a_seed() -> None:
    def outcomes() -> list[int]:
        with FakeProvider("openai", fail_rate=0.5, seed=7) as fake:
            return [post(fake, "/chat/completions", chat_body("gpt-4o-mini")).status_code
                    for _ in range(12)]

    first = outcomes()
    assert first == outcomes()
    assert 200 in first and any(status >= 500 for status in first)


async def test_abandoned_stream_is_billed_for_the_tokens_written() -> None:
    with FakeProvider("deepinfra", completion_tokens=50, token_delay_s=0.02) as fake:
        async with aiohttp.ClientSession(headers=auth(fake)) as session:
            response = await session.post(fake.base_url + "/chat/completions",
                                          json=chat_body(LLAMA, stream=True))
            seen = 0
            async for line in response.content:
                seen += line.startswith(b"data: ") and b'"tok' in line
                if seen == 3:
                    break
            await fake.await_until(lambda: fake.open_streams == 1)
            left_at = time.monotonic()
            response.close()  # drops the connection mid-stream
        await fake.await_until(lambda: len(fake.ledger) == 1)
        bill = fake.ledger[0]
        assert bill.disconnected and bill.stream
        assert 3 <= bill.completion_tokens < 10
        assert bill.cost_usd_nano == 3 * 30 + bill.completion_tokens * 50
        assert fake.open_streams == 0 and bill.ended_at >= left_at


def test_latency_delays_headers_and_hang_never_answers() -> None:
    with FakeProvider("openai", latency_s=0.2) as fake:
        started = time.monotonic()
        assert post(fake, "/chat/completions", chat_body("gpt-4o-mini")).status_code == 200
        assert time.monotonic() - started >= 0.2
        fake.latency_s, fake.hang = 0.0, True
        with pytest.raises(httpx.ReadTimeout):
            post(fake, "/chat/completions", chat_body("gpt-4o-mini"), timeout=0.2)
        assert len(fake.requests) == 2 and len(fake.ledger) == 1


def test_streams_pace_tokens_by_ttft_and_token_delay() -> None:
    with FakeProvider("openai", ttft_s=0.15, token_delay_s=0.05, completion_tokens=3) as fake:
        arrivals = []
        started = time.monotonic()
        with HTTP.stream("POST", fake.base_url + "/chat/completions", headers=auth(fake),
                         json=chat_body("gpt-4o-mini", stream=True)) as response:
            for line in response.iter_lines():
                if '"tok' in line:
                    arrivals.append(time.monotonic() - started)
        assert len(arrivals) == 3
        assert arrivals[0] >= 0.15 and arrivals[2] - arrivals[0] >= 0.09


@pytest.mark.parametrize("kind", ["deepinfra", "novita", "vllm"])
def test_the_openai_sdk_reads_the_fake(kind: str) -> None:
    with FakeProvider(kind, completion_tokens=3) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key or "unused",
                               max_retries=0, http_client=HTTP)
        hello = [{"role": "user", "content": "hi"}]
        reply = client.chat.completions.create(model=fake.models[0], messages=hello)
        assert reply.choices[0].message.content == "tok0 tok1 tok2 "
        stream = client.chat.completions.create(model=fake.models[0], messages=hello,
                                                stream=True,
                                                stream_options={"include_usage": True})
        usages = [chunk.usage for chunk in stream if chunk.usage]
        assert [u.completion_tokens for u in usages] == [3]
        vectors = client.embeddings.create(model=fake.models[0], input="a b")
        assert len(vectors.data[0].embedding) == 8


def test_requests_record_lower_case_headers_and_the_parsed_body() -> None:
    with FakeProvider("openai") as fake:
        post(fake, "/chat/completions", chat_body("gpt-4o-mini"),
             headers={**auth(fake), "X-Trace-Id": "abc"})
        seen = fake.requests[0]
        assert seen.path == "/v1/chat/completions" and seen.method == "POST"
        assert seen.headers["x-trace-id"] == "abc" and seen.json["model"] == "gpt-4o-mini"


def test_stop_cuts_a_live_stream_and_a_restart_serves_on_the_same_port() -> None:
    fake = FakeProvider("vllm", max_running=1, token_delay_s=0.05, completion_tokens=100)
    fake.start()
    url = fake.base_url
    with HTTP.stream("POST", url + "/chat/completions",
                     json=chat_body("tiny", stream=True)) as response:
        lines = response.iter_lines()
        next(lines)
        fake.wait_until(lambda: fake.open_streams == 1)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 0.5
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)
    assert fake.ledger[0].disconnected and fake.open_streams == 0 and fake.running == 0
    with pytest.raises(httpx.ConnectError):
        HTTP.get(url + "/models")
    with fake:
        assert fake.base_url == url
        assert post(fake, "/completions", {"model": "tiny", "prompt": "a",
                                           "max_tokens": 1}).status_code == 200
