"""Specifications of reading a client's request body: OpenAI's schema, refused early with the field named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.call import Call, read_call
from gateway.config import PartTokens
from gateway.errors import GatewayError

HELLO = [{"role": "user", "content": "Hello"}]


def chat(**fields: Any) -> Call:
    return read_call(orjson.dumps({"model": "llama-3.1-8b", "messages": HELLO, **fields}), "chat")


def refused(raw: bytes | dict[str, Any], endpoint: str = "chat") -> GatewayError:
    body = raw if isinstance(raw, bytes) else orjson.dumps(raw)
    with pytest.raises(GatewayError) as caught:
        read_call(body, endpoint)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    return caught.value


def refused_chat(**fields: Any) -> GatewayError:
    return refused({"model": "llama-3.1-8b", "messages": HELLO, **fields})


# --- the body as a whole ------------------------------------------------------------------

def test_a_well_formed_chat_call_is_read() -> None:
    call = chat(temperature=0.5, max_tokens=100)
    assert call.endpoint == "chat"
    assert call.path == "/chat/completions"
    assert call.model == "llama-3.1-8b"
    assert call.stream is False
    assert call.wants_usage is False
    assert call.max_tokens == 100
    assert call.n == 1
    assert call.narrowing is None
    assert call.body == {"model": "llama-3.1-8b", "messages": HELLO, "temperature": 0.5, "max_tokens": 100}


def test_malformed_json_is_refused_as_not_valid_json() -> None:
    error = refused(b'{"model": "m", "messages": [')
    assert error.message.startswith("The request body is not valid JSON: ")
    assert error.param is None


def test_an_empty_body_is_refused() -> None:
    assert refused(b"").message == "The request body is empty; send a JSON object."


@pytest.mark.parametrize("raw", [b"[]", b'"hello"', b"42", b"null"])
def test_a_body_that_is_not_an_object_is_refused(raw: bytes) -> None:
    assert refused(raw).message == "The request body must be a JSON object."


@pytest.mark.parametrize("model", [None, "", 42])
def test_a_missing_model_is_refused_naming_model(model: Any) -> None:
    body: dict[str, Any] = {"messages": HELLO}
    if model is not None:
        body["model"] = model
    error = refused(body)
    assert (error.message, error.param, error.code) == (
        "you must provide a model parameter", "model", "missing_required_parameter")


def test_missing_messages_are_refused_as_a_missing_parameter() -> None:
    error = refused({"model": "m"})
    assert (error.message, error.param, error.code) == (
        "'messages' must be a non-empty array", "messages", "missing_required_parameter")


@pytest.mark.parametrize("messages", [[], "Hello", {"role": "user", "content": "Hello"}])
def test_empty_or_non_array_messages_are_refused_naming_messages(messages: Any) -> None:
    error = refused({"model": "m", "messages": messages})
    assert (error.message, error.param) == ("'messages' must be a non-empty array", "messages")


def test_a_message_without_a_role_is_refused_naming_its_index() -> None:
    error = refused({"model": "m", "messages": [{"role": "system", "content": "x"}, {"content": "y"}]})
    assert (error.message, error.param) == ("messages[1] must be an object with a string 'role'", "messages[1]")


def test_message_content_of_another_type_is_refused() -> None:
    error = refused({"model": "m", "messages": [{"role": "user", "content": 5}]})
    assert (error.message, error.param, error.code) == (
        "messages[0].content must be a string or an array of content parts", "messages[0].content", "invalid_type")


@pytest.mark.parametrize("role", ["admin", "System", "", "robot"])
def test_a_role_openai_does_not_define_is_refused_naming_it(role: str) -> None:
    error = refused({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": role, "content": "y"}]})
    assert (error.param, error.code) == ("messages[1].role", "invalid_value")
    assert "must be one of assistant, developer, function, system, tool, user" in error.message


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
def test_every_role_openai_defines_is_taken(role: str) -> None:
    assert read_call(orjson.dumps({"model": "m", "messages": [{"role": role, "content": "x"}]}), "chat").n == 1


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_a_limit_above_the_ceiling_is_refused_naming_the_parameter(name: str) -> None:
    body = orjson.dumps({"model": "m", "messages": HELLO, name: 2_000_001})
    with pytest.raises(GatewayError) as caught:
        read_call(body, "chat", max_output_tokens=2_000_000)
    assert (caught.value.status, caught.value.param) == (400, name)
    assert read_call(orjson.dumps({"model": "m", "messages": HELLO, name: 2_000_000}), "chat",
                     max_output_tokens=2_000_000).max_tokens == 2_000_000


def test_media_parts_are_counted_at_the_routes_bound_not_at_their_bytes() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    audio = {"type": "input_audio", "input_audio": {"data": "B" * 50_000, "format": "wav"}}
    content = [{"type": "text", "text": "What is in these?"}, image, image, audio]
    call = read_call(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}]}), "chat")
    assert call.media == {"image": 2, "audio": 1}
    assert call.prompt_tokens_bound < 100  # the base64 is not text the model reads
    parts = PartTokens(image=1_000, audio=3_000, file=5)
    assert call.prompt_bound(parts) == call.prompt_tokens_bound + 2 * 1_000 + 3_000


def test_a_part_of_an_unknown_type_counts_its_whole_json() -> None:
    part = {"type": "video_url", "video_url": {"url": "https://example.test/v.mp4"}}
    call = read_call(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [part]}]}), "chat")
    assert call.prompt_tokens_bound >= len(orjson.dumps(part)) and not call.media


# --- types ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("temperature", "hot"),
    ("temperature", True),
    ("top_p", [1]),
    ("stream", "yes"),
    ("stream", 1),
    ("max_tokens", 1.5),
    ("max_tokens", "100"),
    ("max_completion_tokens", 2.5),
    ("n", 2.0),
    ("n", True),
    ("seed", "42"),
    ("logit_bias", [1, 2]),
    ("stream_options", "include_usage"),
    ("user", 7),
])
def test_a_field_of_the_wrong_type_is_refused_naming_the_field(field: str, value: Any) -> None:
    error = refused_chat(**{field: value})
    assert error.param == field
    assert error.code == "invalid_type"
    assert error.message.startswith(f"Invalid type for '{field}': expected ")


def test_a_wrong_type_message_names_json_types_not_python_ones() -> None:
    assert refused_chat(max_tokens="100").message == "Invalid type for 'max_tokens': expected integer, got string."
    assert refused_chat(stream="yes").message == "Invalid type for 'stream': expected boolean, got string."
    assert refused_chat(n=2.0).message == "Invalid type for 'n': expected integer, got number."


@pytest.mark.parametrize(("field", "value"), [("temperature", 1), ("temperature", 0.7), ("top_p", 1),
                                              ("seed", 3), ("stream", False), ("user", "u-1")])
def test_a_field_of_the_right_type_is_accepted(field: str, value: Any) -> None:
    assert chat(**{field: value}).body[field] == value


def test_null_fields_are_accepted_as_absent() -> None:
    call = chat(temperature=None, max_tokens=None, n=None, stop=None, stream=None)
    assert (call.max_tokens, call.n, call.stream) == (None, 1, False)


@pytest.mark.parametrize("n", [0, -1, 129])
def test_n_outside_1_to_128_is_refused_naming_n(n: int) -> None:
    error = refused_chat(n=n)
    assert (error.message, error.param) == (f"n must be between 1 and 128, got {n}", "n")


def test_n_within_range_is_read() -> None:
    assert chat(n=128).n == 128
    assert chat(n=3).n == 3


# --- stop -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [5, ["END", 5], {"a": 1}, [None]])
def test_stop_that_is_not_a_string_or_strings_is_refused(stop: Any) -> None:
    error = refused_chat(stop=stop)
    assert (error.message, error.param, error.code) == (
        "'stop' must be a string or an array of strings", "stop", "invalid_type")


@pytest.mark.parametrize("stop", ["END", ["END"], ["a", "b", "c", "d"]])
def test_stop_as_a_string_or_strings_is_accepted(stop: Any) -> None:
    assert chat(stop=stop).body["stop"] == stop


# --- stream and usage -----------------------------------------------------------------------

def test_stream_options_without_stream_are_refused() -> None:
    for fields in ({}, {"stream": False}):
        error = refused_chat(stream_options={"include_usage": True}, **fields)
        assert (error.message, error.param) == (
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")


def test_the_client_wants_usage_only_when_streaming_with_include_usage() -> None:
    assert chat(stream=True, stream_options={"include_usage": True}).wants_usage is True
    assert chat(stream=True, stream_options={"include_usage": False}).wants_usage is False
    assert chat(stream=True, stream_options={}).wants_usage is False
    assert chat(stream=True).wants_usage is False
    assert chat(stream=False).wants_usage is False
    assert chat().wants_usage is False


def test_a_streaming_call_is_marked_as_a_stream() -> None:
    assert chat(stream=True).stream is True


# --- max tokens -----------------------------------------------------------------------------

def test_max_tokens_and_max_completion_tokens_are_both_accepted() -> None:
    assert chat(max_tokens=50).max_tokens == 50
    assert chat(max_completion_tokens=60).max_tokens == 60


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat(max_tokens=50, max_completion_tokens=60).max_tokens == 60


def test_chat_has_no_default_max_tokens() -> None:
    assert chat().max_tokens is None


def test_legacy_completions_default_to_16_max_tokens() -> None:
    call = read_call(orjson.dumps({"model": "m", "prompt": "Once upon"}), "completions")
    assert call.max_tokens == 16
    assert call.path == "/completions"
    assert read_call(orjson.dumps({"model": "m", "prompt": "x", "max_tokens": 200}), "completions").max_tokens == 200


def test_max_tokens_below_one_is_refused_naming_max_tokens() -> None:
    error = refused_chat(max_tokens=0)
    assert (error.message, error.param) == ("max_tokens must be between 1 and 1000000, got 0", "max_tokens")


def test_max_completion_tokens_below_one_is_refused_naming_max_completion_tokens() -> None:
    error = refused_chat(max_completion_tokens=0)
    assert error.param == "max_completion_tokens"


# --- completions prompt forms ---------------------------------------------------------------

@pytest.mark.parametrize(("prompt", "bound"), [
    ("Once upon a time", 16),
    (["Once", "upon a time"], 15),
    ([1, 2, 3, 4], 4),
    ([[1, 2], [3, 4, 5]], 5),
])
def test_each_of_the_four_prompt_forms_is_accepted(prompt: Any, bound: int) -> None:
    call = read_call(orjson.dumps({"model": "m", "prompt": prompt}), "completions")
    assert call.body["prompt"] == prompt
    assert call.prompt_tokens_bound >= bound


@pytest.mark.parametrize("prompt", [5, {"text": "x"}, [1, "two"], ["a", ["b"]], [[1, "2"]], [1.5, 2],
                                    [True, False], [[1, True]]])
def test_a_prompt_of_another_form_is_refused_naming_prompt(prompt: Any) -> None:
    error = refused({"model": "m", "prompt": prompt}, "completions")
    assert (error.message, error.param, error.code) == (
        "'prompt' must be a string, an array of strings, or an array of tokens", "prompt", "invalid_type")


def test_a_missing_prompt_is_refused() -> None:
    error = refused({"model": "m"}, "completions")
    assert (error.message, error.param, error.code) == (
        "you must provide a prompt parameter", "prompt", "missing_required_parameter")


# --- embeddings input -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["hello world", ["a", "b"], [101, 102], [[101], [102, 103]]])
def test_embeddings_input_forms_are_accepted(value: Any) -> None:
    call = read_call(orjson.dumps({"model": "e5", "input": value}), "embeddings")
    assert call.path == "/embeddings"
    assert call.body["input"] == value
    assert call.max_tokens is None


@pytest.mark.parametrize("value", [None, "", []])
def test_missing_or_empty_embeddings_input_is_refused(value: Any) -> None:
    body: dict[str, Any] = {"model": "e5"}
    if value is not None:
        body["input"] = value
    error = refused(body, "embeddings")
    assert (error.message, error.param, error.code) == (
        "you must provide an input parameter", "input", "missing_required_parameter")


def test_embeddings_input_of_another_form_is_refused() -> None:
    error = refused({"model": "e5", "input": {"text": "x"}}, "embeddings")
    assert (error.param, error.code) == ("input", "invalid_type")


# --- the prompt token bound -----------------------------------------------------------------

def test_prompt_bound_is_never_below_the_byte_length_of_chat_text() -> None:
    system, user = "Tu es un assistant très précis.", "日本語で答えてください 🙂"
    call = chat(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
    assert call.prompt_tokens_bound >= len(system.encode()) + len(user.encode())


def test_prompt_bound_counts_text_content_parts() -> None:
    parts = [{"type": "text", "text": "Décris l'image"}, {"type": "image_url", "image_url": {"url": "http://x/i.png"}},
             {"type": "text", "text": "en détail, s'il te plaît"}]
    call = chat(messages=[{"role": "user", "content": parts}])
    assert call.prompt_tokens_bound >= len("Décris l'image".encode()) + len("en détail, s'il te plaît".encode())


def test_prompt_bound_counts_tools_and_tool_calls() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object",
                                                                                 "properties": {"q": {"type": "string"}}}}}]
    calls = [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "weather"}'}}]
    call = chat(tools=tools, messages=[{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": None, "tool_calls": calls},
                                       {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])
    assert call.prompt_tokens_bound >= len(orjson.dumps(tools)) + len(orjson.dumps(calls)) + len(b"hi") + len(b"sunny")


def test_prompt_bound_counts_a_message_name() -> None:
    name = "a_participant_with_a_rather_long_name_" * 5
    call = chat(messages=[{"role": "user", "name": name, "content": "hi"}])
    assert call.prompt_tokens_bound >= len(name.encode()) + len(b"hi")


@pytest.mark.parametrize("prompt", ["naïve café ☕", ["première", "deuxième ligne"]])
def test_prompt_bound_is_never_below_the_byte_length_of_completions_text(prompt: Any) -> None:
    call = read_call(orjson.dumps({"model": "m", "prompt": prompt}), "completions")
    texts = [prompt] if isinstance(prompt, str) else prompt
    assert call.prompt_tokens_bound >= sum(len(t.encode()) for t in texts)


def test_prompt_bound_of_embeddings_text_is_never_below_its_byte_length() -> None:
    call = read_call(orjson.dumps({"model": "e5", "input": ["über", "straße"]}), "embeddings")
    assert call.prompt_tokens_bound >= len("über".encode()) + len("straße".encode())


def test_prompt_bound_of_token_lists_is_their_length() -> None:
    assert read_call(orjson.dumps({"model": "m", "prompt": [5, 6, 7]}), "completions").prompt_tokens_bound == 3
    assert read_call(orjson.dumps({"model": "m", "prompt": [[5], [6, 7]]}), "completions").prompt_tokens_bound == 3


# --- the gateway field ----------------------------------------------------------------------

def test_the_gateway_field_is_read_as_narrowing() -> None:
    assert chat(gateway={"providers": ["pool"]}).narrowing == {"providers": ["pool"]}


def test_a_gateway_field_that_is_not_an_object_is_refused() -> None:
    error = refused_chat(gateway="pool")
    assert error.param == "gateway"


# --- the features a request needs ----------------------------------------------------------------


def _needs(endpoint: str, **fields: Any) -> frozenset[str]:
    base = {"chat": {"messages": [{"role": "user", "content": "hi"}]}, "completions": {"prompt": "hi"},
            "embeddings": {"input": "hi"}}[endpoint]
    return read_call(orjson.dumps({"model": "m", **base, **fields}), endpoint).needs


@pytest.mark.parametrize(("endpoint", "fields", "needs"), [
    ("chat", {}, set()),
    ("chat", {"tools": [{"type": "function", "function": {"name": "f"}}]}, {"chat.tools"}),
    ("chat", {"tools": [{"type": "function", "function": {"name": "f"}}], "stream": True},
     {"chat.tools", "chat.tool_streaming"}),
    ("chat", {"tools": []}, set()),  # no tool to call: nothing changes
    ("chat", {"response_format": {"type": "json_object"}}, {"chat.json_object"}),
    ("chat", {"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}}, {"chat.json_schema"}),
    ("chat", {"response_format": {"type": "text"}}, set()),
    ("chat", {"logprobs": True}, {"chat.logprobs"}),
    ("chat", {"logprobs": False, "top_logprobs": 0}, set()),
    ("chat", {"n": 2}, {"chat.n"}),
    ("chat", {"modalities": ["text", "audio"]}, {"chat.audio_output"}),
    ("chat", {"web_search_options": {}}, {"chat.web_search"}),
    ("chat", {"guided_json": {"type": "object"}}, {"chat.structured_outputs"}),
    ("completions", {"logprobs": 0}, {"completions.logprobs"}),
    ("completions", {"echo": True, "suffix": "end", "n": 3}, {"completions.echo", "completions.suffix",
                                                            "completions.n"}),
    ("embeddings", {"dimensions": 256, "encoding_format": "base64"}, {"embeddings.dimensions"}),
])
def test_a_call_knows_the_features_it_needs(endpoint: str, fields: dict[str, Any], needs: set[str]) -> None:
    assert _needs(endpoint, **fields) == needs


def test_base64_embeddings_are_wanted_but_never_needed() -> None:
    call = read_call(orjson.dumps({"model": "m", "input": "hi", "encoding_format": "base64"}), "embeddings")
    assert call.wants_base64 and not call.needs


@pytest.mark.parametrize(("fields", "param"), [({"encoding_format": "binary"}, "encoding_format"),
                                                ({"dimensions": 0}, "dimensions"),
                                                ({"encoding_format": 1}, "encoding_format")])
def test_embedding_options_out_of_their_forms_are_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        read_call(orjson.dumps({"model": "m", "input": "hi", **fields}), "embeddings")
    assert caught.value.param == param
