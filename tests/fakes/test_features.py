"""Each fake honours the optional features its provider documents and ignores the others.

Ignoring is what a real server does with a field it does not know: the answer is plain
text, embeddings are float lists of the usual length, and there are no logprobs.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from . import FakeProvider
from .profiles import profile_for
from .wire import auth, chat_body, sse_events

KINDS = ["openai", "netmind", "deeptrin", "novita", "deepinfra", "vllm"]
EVERYTHING = {"tools", "json_object", "json_schema", "logprobs", "base64_embeddings", "dimensions"}
# docs/providers.md, "Features per provider", written out again so that a profile drifting from it fails here.
HONOURS = {"openai": EVERYTHING, "vllm": EVERYTHING,
           "novita": {"tools", "json_object", "json_schema", "logprobs"},
           "deepinfra": {"tools", "json_object"},
           "netmind": set(), "deeptrin": set()}


def kinds(feature: str, honoured: bool = True) -> list[str]:
    return [kind for kind in KINDS if (feature in HONOURS[kind]) == honoured]


TOKENS = 4  # every fake below generates four completion tokens a choice
TEXT = "tok0 tok1 tok2 tok3 "  # the plain answer, which is also what an ignored feature gets
CALL_ID = re.compile(r"call_[0-9a-f]{24}")

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city", "unit"],
    "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}, "days": {"type": "integer"}},
    "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}}}}
TOOLS = [WEATHER, CLOCK]
WEATHER_ARGUMENTS = '{"city":"x","unit":"celsius"}'

REVIEW = {"type": "json_schema", "json_schema": {"name": "review", "strict": True, "schema": {
    "type": "object", "required": ["title", "score", "tags", "verdict"],
    "properties": {"title": {"type": "string"}, "score": {"type": "number"},
                   "tags": {"type": "array", "items": {"type": "string"}},
                   "verdict": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}}}}}
REVIEW_JSON = '{"title":"x","score":1.5,"tags":["x"],"verdict":true}'
JSON_OBJECT = {"type": "json_object"}
JSON_OBJECT_ANSWER = '{"answer":"x"}'

HTTP = httpx.Client(timeout=5.0, trust_env=False)


@pytest.fixture(scope="module", autouse=True)
def _close_http_client() -> Iterator[None]:
    yield
    HTTP.close()


def post(fake: FakeProvider, path: str, body: dict[str, Any]) -> httpx.Response:
    return HTTP.post(fake.base_url + path, json=body, headers=auth(fake))


def answer(fake: FakeProvider, path: str = "/chat/completions", **fields: Any) -> dict[str, Any]:
    """The one choice of a non-streamed answer to a chat (or, by `path`, completions) request."""
    body = {"model": fake.models[0], **fields}
    if path == "/chat/completions":
        body = chat_body(fake.models[0], **fields)
    response = post(fake, path, body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["usage"]["completion_tokens"] == TOKENS * fields.get("n", 1)
    return doc["choices"][0]


def stream(fake: FakeProvider, path: str = "/chat/completions", **fields: Any) -> list[dict[str, Any]]:
    """The chunks of a streamed answer, [DONE] checked and dropped."""
    body = {"model": fake.models[0], "stream": True, **fields}
    if path == "/chat/completions":
        body = chat_body(fake.models[0], stream=True, **fields)
    events = sse_events(post(fake, path, body).content)
    assert events[-1] == "[DONE]"
    return events[:-1]


def content(chunks: list[dict[str, Any]]) -> str:
    """The content a chat stream spelt out, DeepInfra's literal end-of-sequence left out."""
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text.removesuffix("</s>")


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeProvider]:
    """A fake of the kind the test is parametrised with (`indirect=True`)."""
    with FakeProvider(request.param, completion_tokens=TOKENS) as provider:
        yield provider


def every(*kinds_: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("fake", kinds_ or KINDS, indirect=True)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_declares_the_features_its_provider_documents(kind: str) -> None:
    assert profile_for(kind).features == HONOURS[kind]


# Tools.

@every(*kinds("tools"))
def test_tools_get_one_call_to_the_first_tool_with_arguments_from_its_schema(fake: FakeProvider) -> None:
    choice = answer(fake, tools=TOOLS)
    call = choice["message"]["tool_calls"][0]
    assert CALL_ID.fullmatch(call.pop("id"))
    assert choice == {"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                      "message": {"role": "assistant", "content": None, "tool_calls": [
                          {"type": "function", "function": {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}}]}}


@every(*kinds("tools"))
def test_a_streamed_tool_call_opens_with_its_name_then_sends_the_arguments_in_pieces(fake: FakeProvider) -> None:
    chunks = stream(fake, tools=TOOLS, stream_options={"include_usage": True})
    opening = chunks[0]["choices"][0]["delta"]
    assert CALL_ID.fullmatch(opening["tool_calls"][0].pop("id"))
    assert opening == {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}
    fragments = [c["choices"][0]["delta"] for c in chunks[1:1 + TOKENS]]
    assert all(list(f) == ["tool_calls"] and f["tool_calls"][0]["index"] == 0 for f in fragments)
    assert "".join(f["tool_calls"][0]["function"]["arguments"] for f in fragments) == WEATHER_ARGUMENTS
    finish = chunks[1 + TOKENS]
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "tool_calls"
    usage_chunk = finish if fake.kind == "deepinfra" else chunks[-1]  # each kind's usual placement
    assert usage_chunk["usage"]["completion_tokens"] == TOKENS
    assert len(chunks) == 2 + TOKENS + (fake.kind != "deepinfra")  # no "</s>" content in a tool call


def test_tool_choice_forces_a_function_or_turns_tools_off() -> None:
    with FakeProvider("openai", completion_tokens=TOKENS) as fake:
        forced = {"type": "function", "function": {"name": "get_time"}}
        call = answer(fake, tools=TOOLS, tool_choice=forced)["message"]["tool_calls"][0]
        assert call["function"] == {"name": "get_time", "arguments": '{"zone":"x"}'}
        assert answer(fake, tools=TOOLS, tool_choice="required")["message"]["tool_calls"][0]["function"][
            "name"] == "get_weather"
        assert answer(fake, tools=TOOLS, tool_choice="none")["message"] == {"role": "assistant", "content": TEXT}
        unknown = {"type": "function", "function": {"name": "nope"}}
        refused = post(fake, "/chat/completions", chat_body(fake.models[0], tools=TOOLS, tool_choice=unknown))
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "tool_choice"


def test_every_choice_calls_the_tool_under_its_own_id() -> None:
    with FakeProvider("vllm", completion_tokens=TOKENS) as fake:
        doc = post(fake, "/chat/completions", chat_body("tiny", tools=TOOLS, n=2)).json()
        ids = {c["message"]["tool_calls"][0]["id"] for c in doc["choices"]}
        assert len(ids) == 2 and doc["usage"]["completion_tokens"] == 2 * TOKENS


@every(*kinds("tools", honoured=False))
def test_kinds_without_tools_answer_a_tools_request_with_text(fake: FakeProvider) -> None:
    choice = answer(fake, tools=TOOLS, tool_choice="required")
    assert choice["message"] == {"role": "assistant", "content": TEXT}
    assert choice["finish_reason"] == "stop"
    chunks = stream(fake, tools=TOOLS, tool_choice="required")
    assert content(chunks) == TEXT and finish_reasons(chunks) == ["stop"]
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks if c["choices"])
    assert [r.json["tools"] for r in fake.requests] == [TOOLS, TOOLS]  # what the upstream received, as sent


# response_format.

@every()
@pytest.mark.parametrize("response_format, feature, json_text", [
    (JSON_OBJECT, "json_object", JSON_OBJECT_ANSWER), (REVIEW, "json_schema", REVIEW_JSON)])
def test_response_format_gets_json_content_where_honoured_and_text_elsewhere(
        fake: FakeProvider, response_format: dict[str, Any], feature: str, json_text: str) -> None:
    expected = json_text if fake.kind in kinds(feature) else TEXT
    choice = answer(fake, response_format=response_format)
    assert choice["message"] == {"role": "assistant", "content": expected}
    assert choice["finish_reason"] == "stop"
    chunks = stream(fake, response_format=response_format)
    assert content(chunks) == expected and finish_reasons(chunks) == ["stop"]
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:1 + TOKENS]]
    assert len(pieces) == TOKENS and all(pieces)  # one content delta per billed token


def test_structured_content_stays_whole_under_a_token_limit_that_cuts_the_bill() -> None:
    with FakeProvider("novita", completion_tokens=TOKENS) as fake:
        response = post(fake, "/chat/completions", chat_body(fake.models[0], response_format=REVIEW, max_tokens=2))
        doc = response.json()
        assert doc["choices"][0]["message"]["content"] == REVIEW_JSON
        assert doc["choices"][0]["finish_reason"] == "stop" and doc["usage"]["completion_tokens"] == 2
        chunks = stream(fake, response_format=REVIEW, max_tokens=2)
        assert content(chunks) == REVIEW_JSON and len(chunks) == 1 + 2 + 1


# Logprobs.

def entry(token: str, alternatives: int) -> dict[str, Any]:
    """One chat logprobs entry as the fakes write it: -0.5 for the token, then "alt1", "alt2", ..."""
    ranked = [(token, -0.5)] + [(f"alt{r}", -0.5 - r) for r in range(1, alternatives)]
    top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked]
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": top}


TOKEN_TEXTS = [f"tok{i} " for i in range(TOKENS)]


@every()
def test_chat_logprobs_list_every_content_token_where_honoured(fake: FakeProvider) -> None:
    honoured = fake.kind in kinds("logprobs")
    choice = answer(fake, logprobs=True, top_logprobs=2)
    assert choice["message"]["content"] == TEXT
    assert choice["logprobs"] == ({"content": [entry(t, 2) for t in TOKEN_TEXTS]} if honoured else None)
    chunks = stream(fake, logprobs=True, top_logprobs=2)
    carried = [c["choices"][0]["logprobs"] for c in chunks if c["choices"]]
    if honoured:
        assert carried[1:1 + TOKENS] == [{"content": [entry(t, 2)]} for t in TOKEN_TEXTS]
        assert carried[0] is None and carried[-1] is None  # the role and finish chunks carry no token
    else:
        assert all(lp is None for lp in carried)


def test_chat_logprobs_without_top_logprobs_list_no_alternatives_and_a_tool_call_no_content() -> None:
    with FakeProvider("openai", completion_tokens=TOKENS) as fake:
        assert answer(fake, logprobs=True)["logprobs"]["content"][0]["top_logprobs"] == []
        assert answer(fake, logprobs=True, tools=TOOLS)["logprobs"] == {"content": []}
        refused = post(fake, "/chat/completions", chat_body(fake.models[0], logprobs=True, top_logprobs=21))
        assert refused.status_code == 400


@every()
def test_completions_logprobs_use_the_legacy_lists_where_honoured(fake: FakeProvider) -> None:
    honoured = fake.kind in kinds("logprobs")
    choice = answer(fake, "/completions", prompt="a b", logprobs=2, max_tokens=TOKENS)
    assert choice["text"] == TEXT
    legacy = {"tokens": TOKEN_TEXTS, "token_logprobs": [-0.5] * TOKENS,
              "top_logprobs": [{t: -0.5, "alt1": -1.5} for t in TOKEN_TEXTS], "text_offset": [0, 5, 10, 15]}
    assert choice["logprobs"] == (legacy if honoured else None)
    chunks = stream(fake, "/completions", prompt="a b", logprobs=2, max_tokens=TOKENS)
    carried = [c["choices"][0]["logprobs"] for c in chunks if c["choices"]][:TOKENS]
    if honoured:
        assert [lp["tokens"] for lp in carried] == [[t] for t in TOKEN_TEXTS]
        assert [lp["text_offset"] for lp in carried] == [[0], [5], [10], [15]]
    else:
        assert all(lp is None for lp in carried)


# Embeddings.

def vectors(fake: FakeProvider, **fields: Any) -> list[Any]:
    response = post(fake, "/embeddings", {"model": fake.models[0], "input": ["hello world", "hi"], **fields})
    assert response.status_code == 200, response.text
    return [d["embedding"] for d in response.json()["data"]]


def floats(packed: str) -> list[float]:
    raw = base64.b64decode(packed)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@every()
def test_base64_embeddings_pack_the_same_floats_where_honoured(fake: FakeProvider) -> None:
    plain = vectors(fake)
    packed = vectors(fake, encoding_format="base64")
    if fake.kind in kinds("base64_embeddings"):
        assert all(isinstance(v, str) for v in packed) and [floats(v) for v in packed] == plain
    else:
        assert packed == plain


@every()
def test_dimensions_set_the_vector_length_where_honoured(fake: FakeProvider) -> None:
    plain = vectors(fake)
    longer, shorter = vectors(fake, dimensions=20), vectors(fake, dimensions=3)
    if fake.kind in kinds("dimensions"):
        assert [len(v) for v in longer] == [20, 20] and [len(v) for v in shorter] == [3, 3]
        assert [v[:8] for v in longer] == plain and [v[:3] for v in plain] == shorter
        assert [len(floats(v)) for v in vectors(fake, dimensions=20, encoding_format="base64")] == [20, 20]
        refused = post(fake, "/embeddings", {"model": fake.models[0], "input": "a", "dimensions": 0})
        assert refused.status_code == 400
    else:
        assert longer == shorter == plain and [len(v) for v in plain] == [8, 8]
    assert [r.json.get("dimensions") for r in fake.requests[:3]] == [None, 20, 3]  # as sent, honoured or not


# The OpenAI SDK parses what the fakes send.

@pytest.mark.parametrize("sdk_kind", ["openai", "vllm"])
def test_the_openai_sdk_reads_streamed_tool_calls_and_logprobs(sdk_kind: str) -> None:
    with FakeProvider(sdk_kind, completion_tokens=TOKENS) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key or "unused", max_retries=0,
                               http_client=HTTP)
        hello = [{"role": "user", "content": "hi"}]
        arguments = ""
        for chunk in client.chat.completions.create(model=fake.models[0], messages=hello, tools=TOOLS, stream=True):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                arguments += call.function.arguments or ""
        assert orjson.loads(arguments) == orjson.loads(WEATHER_ARGUMENTS)
        reply = client.chat.completions.create(model=fake.models[0], messages=hello, logprobs=True, top_logprobs=1)
        assert [t.token for t in reply.choices[0].logprobs.content] == TOKEN_TEXTS
