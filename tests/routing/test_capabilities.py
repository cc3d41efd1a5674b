"""End to end: a request means the same on every route. The official OpenAI SDK against a gateway
in front of a fake of every provider kind, each honouring what its provider documents.

For every kind x feature: a kind that honours it is sent the parameter and the client gets the
answer's shape; a kind that does not is never sent the request, and the client gets a 400 that
names the parameter. A model whose first route cannot do a feature is served by one that can.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.fakes import FakeProvider
from tests.fakes.bodies import embedding_vector
from tests.gateway_process import GatewayProcess
from tests.routing.support import posts, provider_entry

KINDS = ("netmind", "deeptrin", "deepinfra", "novita", "vllm", "openai")
# What each kind honours, as the profiles say (providers/*.py) and the fakes do.
HONOURS = {
    "netmind": set(), "deeptrin": set(),
    "deepinfra": {"tools", "json_object"},
    "novita": {"tools", "json_object", "json_schema", "logprobs"},
    "vllm": {"tools", "json_object", "json_schema", "logprobs", "dimensions"},
    "openai": {"tools", "json_object", "json_schema", "logprobs", "dimensions"},
}
MESSAGES = [{"role": "user", "content": "what is the weather in Paris"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SCHEMA = {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}}
WINDOW = 131072  # given where a provider publishes none, so that nothing is capped


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[GatewayProcess, dict[str, FakeProvider]]]:
    fakes = {kind: FakeProvider(kind, models=["m"]).start() for kind in KINDS}
    providers = {kind: provider_entry(fake) for kind, fake in fakes.items()}
    models: dict[str, Any] = {f"only-{kind}": {"routes": [_route(kind)]} for kind in KINDS}
    # NetMind first: every feature beyond text must go past it. (Not the vLLM pool: a pool with room
    # comes first whatever the order.)
    models["m"] = {"strategy": "ordered", "routes": [_route(kind) for kind in KINDS if kind != "vllm"]}
    with GatewayProcess({"providers": providers, "models": models}) as gw:
        yield gw, fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture
def gw(fleet: tuple[GatewayProcess, dict[str, FakeProvider]]) -> GatewayProcess:
    for fake in fleet[1].values():
        fake.reset()
    return fleet[0]


@pytest.fixture
def fakes(fleet: tuple[GatewayProcess, dict[str, FakeProvider]]) -> dict[str, FakeProvider]:
    return fleet[1]


def _route(kind: str) -> dict[str, Any]:
    return {"provider": kind, "model": "m", **({} if kind in ("vllm", "novita", "deepinfra") else
                                               {"context_window": WINDOW})}


def client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="open", max_retries=0, timeout=10)


def last_body(fake: FakeProvider) -> dict[str, Any]:
    return [r for r in fake.requests if r.method == "POST"][-1].json


def refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value.body


# --- the matrix: every kind x every feature -----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_calling(gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str, stream: bool) -> None:
    create = client(gw).chat.completions.create
    ask = dict(model=f"only-{kind}", messages=MESSAGES, tools=[WEATHER], tool_choice="auto")
    if "tools" not in HONOURS[kind]:
        error = refusal(lambda: create(**ask, stream=stream))
        assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
        assert f"{kind} does not support tools" in error["message"]
        assert posts(fakes[kind]) == 0
        return
    if stream:
        chunks = list(create(**ask, stream=True))
        calls = [c.delta.tool_calls[0] for chunk in chunks for c in chunk.choices if c.delta.tool_calls]
        assert calls[0].function.name == "get_weather"
        assert "".join(c.function.arguments or "" for c in calls) == '{"city":"x"}'
    else:
        message = create(**ask).choices[0].message
        assert message.tool_calls[0].function.name == "get_weather"
        assert message.tool_calls[0].function.arguments == '{"city":"x"}'
    sent = last_body(fakes[kind])
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("format_type", ["json_object", "json_schema"])
def test_json_answers(gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str, format_type: str) -> None:
    response_format: dict[str, Any] = {"type": format_type}
    if format_type == "json_schema":
        response_format["json_schema"] = SCHEMA
    create = client(gw).chat.completions.create
    if format_type not in HONOURS[kind]:
        error = refusal(lambda: create(model=f"only-{kind}", messages=MESSAGES, response_format=response_format))
        assert (error["param"], error["code"]) == ("response_format", "unsupported_parameter")
        assert posts(fakes[kind]) == 0
        return
    content = create(model=f"only-{kind}", messages=MESSAGES, response_format=response_format).choices[0].message.content
    assert content == ('{"ok":true}' if format_type == "json_schema" else '{"answer":"x"}')
    assert last_body(fakes[kind])["response_format"] == response_format


@pytest.mark.parametrize("kind", KINDS)
def test_logprobs(gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str) -> None:
    create = client(gw).chat.completions.create
    if "logprobs" not in HONOURS[kind]:
        error = refusal(lambda: create(model=f"only-{kind}", messages=MESSAGES, logprobs=True, top_logprobs=2))
        assert (error["param"], error["code"]) == ("logprobs", "unsupported_parameter")
        return
    choice = create(model=f"only-{kind}", messages=MESSAGES, logprobs=True, top_logprobs=2).choices[0]
    assert choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2
    assert last_body(fakes[kind])["top_logprobs"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_completions_logprobs(gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str) -> None:
    create = client(gw).completions.create
    if "logprobs" not in HONOURS[kind]:
        error = refusal(lambda: create(model=f"only-{kind}", prompt="once upon", logprobs=2))
        assert (error["param"], error["code"]) == ("logprobs", "unsupported_parameter")
        return
    choice = create(model=f"only-{kind}", prompt="once upon", logprobs=2).choices[0]
    assert choice.logprobs.tokens and len(choice.logprobs.top_logprobs[0]) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_image_inputs_only_where_images_are_seen(gw: GatewayProcess, fakes: dict[str, FakeProvider],
                                                 kind: str) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}]
    create = client(gw).chat.completions.create
    if kind != "openai":  # a text model's route declares `vision: true` when its model sees
        error = refusal(lambda: create(model=f"only-{kind}", messages=messages))
        assert (error["param"], error["code"]) == ("messages", "unsupported_parameter")
        assert "image inputs" in error["message"]
        assert posts(fakes[kind]) == 0
        return
    assert create(model=f"only-{kind}", messages=messages).choices[0].message.content
    assert last_body(fakes[kind])["messages"] == messages


@pytest.mark.parametrize("kind", KINDS)
def test_base64_embeddings_decode_to_the_providers_vector_on_every_kind(
        gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str) -> None:
    raw = client(gw).embeddings.with_raw_response.create(model=f"only-{kind}", input=["hello", "world"],
                                                         encoding_format="base64")
    vectors = [base64.b64decode(item["embedding"]) for item in raw.http_response.json()["data"]]
    expected = [struct.pack("<8f", *embedding_vector(text)) for text in ("hello", "world")]
    assert vectors == expected  # byte for byte what OpenAI's encoding of the same floats is
    sent = last_body(fakes[kind])
    assert sent.get("encoding_format") == ("base64" if kind in ("vllm", "openai") else None)


@pytest.mark.parametrize("kind", KINDS)
def test_the_sdks_default_embeddings_are_the_providers_floats(gw: GatewayProcess, kind: str) -> None:
    data = client(gw).embeddings.create(model=f"only-{kind}", input="hello").data
    assert data[0].embedding == pytest.approx(embedding_vector("hello"))


@pytest.mark.parametrize("kind", KINDS)
def test_dimensions(gw: GatewayProcess, fakes: dict[str, FakeProvider], kind: str) -> None:
    create = client(gw).embeddings.create
    if "dimensions" not in HONOURS[kind]:
        error = refusal(lambda: create(model=f"only-{kind}", input="hello", dimensions=4))
        assert (error["param"], error["code"]) == ("dimensions", "unsupported_parameter")
        return
    assert len(create(model=f"only-{kind}", input="hello", dimensions=4).data[0].embedding) == 4


# --- a model whose first route cannot: served by one that can --------------------------------------


def served_by(raw: Any) -> str:
    return raw.headers["x-gateway-provider"]


def test_parse_with_a_pydantic_model_goes_past_routes_without_structured_output(gw: GatewayProcess) -> None:
    raw = client(gw).chat.completions.with_raw_response.parse(model="m", messages=MESSAGES, response_format=Weather)
    assert served_by(raw) == "novita"  # the first in order that honours json_schema
    assert raw.parse().choices[0].message.parsed == Weather(city="x", celsius=1)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_go_past_routes_without_tools(gw: GatewayProcess, stream: bool) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="m", messages=MESSAGES, tools=[WEATHER],
                                                               stream=stream)
    assert served_by(raw) == "deepinfra"
    if not stream:
        assert raw.parse().choices[0].message.tool_calls[0].function.name == "get_weather"


def test_logprobs_go_past_routes_without_them(gw: GatewayProcess) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="m", messages=MESSAGES, logprobs=True)
    assert served_by(raw) == "novita" and raw.parse().choices[0].logprobs.content


def test_plain_text_stays_on_the_first_route(gw: GatewayProcess) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert served_by(raw) == "netmind"


def test_narrowing_to_routes_that_cannot_is_a_400_that_says_so(gw: GatewayProcess) -> None:
    error = refusal(lambda: client(gw).chat.completions.create(
        model="m", messages=MESSAGES, tools=[WEATHER], extra_headers={"x-gateway-route": "netmind,deeptrin"}))
    assert error["param"] == "tools"
    assert "narrowed" in error["message"]
    assert "netmind does not support tools" in error["message"] and "deeptrin does not support tools" in error["message"]


# --- nothing added, everything dropped is said ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_upstream_is_sent_no_parameter_the_client_did_not_send(gw: GatewayProcess, fakes: dict[str, FakeProvider],
                                                                   kind: str) -> None:
    client(gw).chat.completions.create(model=f"only-{kind}", messages=MESSAGES, temperature=0.5)
    client(gw).chat.completions.create(model=f"only-{kind}", messages=MESSAGES, stream=True)
    plain, streamed = [r.json for r in fakes[kind].requests if r.method == "POST"]
    assert set(plain) == {"model", "messages", "temperature"}
    assert set(streamed) == {"model", "messages", "stream", "stream_options"}  # usage, for accounting
    assert streamed["stream_options"] == {"include_usage": True}


def test_what_a_provider_is_not_sent_is_listed_in_a_header(gw: GatewayProcess, fakes: dict[str, FakeProvider]) -> None:
    response = httpx.post(gw.base_url + "/chat/completions", json={
        "model": "only-netmind", "messages": MESSAGES, "top_k": 5, "metadata": {"a": "b"}, "seed": 1}, timeout=10)
    assert response.status_code == 200
    assert response.headers["x-gateway-dropped-params"] == "top_k, metadata"
    assert set(last_body(fakes["netmind"])) == {"model", "messages", "seed"}
    plain = httpx.post(gw.base_url + "/chat/completions", json={"model": "only-netmind", "messages": MESSAGES},
                       timeout=10)
    assert "x-gateway-dropped-params" not in plain.headers


# --- the clients people use beside the Python SDK --------------------------------------------------


def test_langchain_structured_output_goes_where_json_schema_is_honoured(gw: GatewayProcess) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=gw.base_url, api_key="open", model="m", max_retries=0, timeout=10)
    assert chat.with_structured_output(Weather).invoke("weather in Paris?") == Weather(city="x", celsius=1)


def test_langchain_bind_tools_gets_its_tool_calls(gw: GatewayProcess) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    chat = ChatOpenAI(base_url=gw.base_url, api_key="open", model="m", max_retries=0, timeout=10)
    calls = chat.bind_tools([get_weather]).invoke("weather in Paris?").tool_calls
    assert [(c["name"], c["args"]) for c in calls] == [("get_weather", {"city": "x"})]


@pytest.mark.parametrize("kind", ["netmind", "deepinfra", "openai"])
def test_the_node_sdks_default_embeddings_are_the_providers_vectors(gw: GatewayProcess, kind: str) -> None:
    node_modules = Path(os.environ.get("GATEWAY_CLIENTS_DIR", Path.home() / ".cache" / "gateway-clients"))
    script = Path(__file__).resolve().parent.parent / "clients" / "embeddings.cjs"
    done = subprocess.run(["node", str(script), gw.base_url, f"only-{kind}", "hello", "world"],
                          env={**os.environ, "NODE_PATH": str(node_modules / "node_modules")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    vectors = json.loads(done.stdout)
    assert vectors == [pytest.approx(embedding_vector(text)) for text in ("hello", "world")]
