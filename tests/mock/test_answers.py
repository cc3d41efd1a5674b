"""Specifications of what the mock says: OpenAI's shapes, the same answer and usage for the same
request, max_tokens honoured, errors at the configured rate."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.config.mock import MockConfig
from gateway.mock import MockAnswers

CHAT = "/v1/chat/completions"
PROMPT = "Write a haiku about the sea"  # 27 bytes: 7 tokens of four bytes


def answers(**settings: Any) -> MockAnswers:
    return MockAnswers(MockConfig.model_validate(settings), random.Random(7))


def reply(path: str, body: dict[str, Any], **settings: Any) -> Any:
    return answers(**settings).reply(path, orjson.dumps(body))


def events(steps: list[bytes]) -> list[bytes]:
    """The payloads of a stream's events, in order."""
    raw = b"".join(steps)
    assert raw.endswith(b"\n\n")
    return [event.removeprefix(b"data: ") for event in raw.split(b"\n\n")[:-1]]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": PROMPT}], **extra}


def test_a_chat_answer_is_an_openai_chat_completion_with_usage_from_four_bytes_a_token() -> None:
    answer = ChatCompletion.model_validate_json(reply(CHAT, chat()).body)
    assert answer.model == "m" and answer.object == "chat.completion"
    assert answer.choices[0].message.content == (
        "This is the mock provider answering: Write a haiku about the sea Write a haiku about")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (7, 16, 23)


def test_the_same_request_gets_the_same_text_and_usage() -> None:
    first, second = (ChatCompletion.model_validate_json(reply(CHAT, chat()).body) for _ in range(2))
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    other = ChatCompletion.model_validate_json(reply(CHAT, chat(messages=[{"role": "user", "content": "hi"}])).body)
    assert other.choices[0].message.content != first.choices[0].message.content


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_the_answer_with_finish_reason_length(name: str) -> None:
    answer = ChatCompletion.model_validate_json(reply(CHAT, chat(**{name: 3})).body)
    assert answer.choices[0].message.content == "This is the"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3


def test_answer_tokens_sets_the_length_of_an_answer_max_tokens_does_not_cut() -> None:
    answer = ChatCompletion.model_validate_json(reply(CHAT, chat(max_tokens=100), answer_tokens=40).body)
    assert answer.usage is not None and answer.usage.completion_tokens == 40
    assert answer.choices[0].finish_reason == "stop"


def test_n_choices_are_billed_n_times() -> None:
    answer = ChatCompletion.model_validate_json(reply(CHAT, chat(n=3, max_tokens=4)).body)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert answer.usage is not None and answer.usage.completion_tokens == 12


def test_a_stream_is_role_then_tokens_then_finish_then_usage_then_done() -> None:
    steps = reply(CHAT, chat(stream=True, stream_options={"include_usage": True}, max_tokens=3)).steps
    assert len(steps) == 3  # one write per token; the role comes with the first
    payloads = events(steps)
    assert payloads[-1] == b"[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(p) for p in payloads[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks[1:4]) == "This is the"
    assert chunks[4].choices[0].finish_reason == "length" and chunks[4].choices[0].delta.content is None
    assert chunks[5].choices == [] and chunks[5].usage is not None
    assert (chunks[5].usage.prompt_tokens, chunks[5].usage.completion_tokens) == (7, 3)
    assert all(c.usage is None for c in chunks[:5]) and b'"usage":null' in payloads[0]
    assert len({c.id for c in chunks}) == 1


def test_a_stream_without_include_usage_has_no_usage_chunk() -> None:
    payloads = events(reply(CHAT, chat(stream=True)).steps)
    assert payloads[-1] == b"[DONE]" and b"usage" not in b"".join(payloads)
    assert len(payloads) == 1 + 16 + 1 + 1  # role, tokens, finish, [DONE]


def test_a_completion_whole_and_streamed_is_openai_shaped() -> None:
    whole = Completion.model_validate_json(reply("/v1/completions", {"model": "m", "prompt": PROMPT}).body)
    assert whole.choices[0].text.startswith("This is the mock") and whole.usage is not None
    assert whole.usage.prompt_tokens == 7
    streamed = events(reply("/v1/completions", {"model": "m", "prompt": PROMPT, "stream": True, "max_tokens": 2,
                                               "stream_options": {"include_usage": True}}).steps)
    # Chunks before the last name no finish_reason: the SDK reads them unvalidated, as OpenAI sends them so.
    chunks = [Completion.model_validate_json(p) for p in streamed[2:-1]]
    assert [orjson.loads(p)["choices"][0]["text"] for p in streamed[:2]] == ["This", " is"]
    assert chunks[0].choices[0].finish_reason == "length"
    assert chunks[1].usage is not None and chunks[1].usage.completion_tokens == 2 and streamed[-1] == b"[DONE]"


def test_embeddings_are_unit_vectors_of_the_asked_size_that_depend_only_on_the_input() -> None:
    body = {"model": "e", "input": ["a sentence", "another one", "a sentence"], "dimensions": 8}
    answer = CreateEmbeddingResponse.model_validate_json(reply("/v1/embeddings", body).body)
    vectors = [d.embedding for d in answer.data]
    assert [len(v) for v in vectors] == [8, 8, 8] and vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-4
    assert answer.usage.prompt_tokens == 3 + 3 + 3
    default = CreateEmbeddingResponse.model_validate_json(reply("/v1/embeddings", {"model": "e", "input": "x"},
                                                                embedding_dimensions=5).body)
    assert len(default.data[0].embedding) == 5


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_error_rate_of_one_answers_every_request_with_an_openai_error(status: int) -> None:
    answer = reply(CHAT, chat(), error_rate=1, error_statuses=[status])
    assert answer.status == status
    error = orjson.loads(answer.body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and "error_rate" in error["message"]
    assert (answer.headers.get("retry-after") == "1") == (status == 429)


def test_an_error_rate_is_the_share_of_errors() -> None:
    mock = answers(error_rate=0.25)
    statuses = [mock.reply(CHAT, orjson.dumps(chat())).status for _ in range(2000)]
    assert 0.20 < sum(s != 200 for s in statuses) / 2000 < 0.30
    assert set(statuses) == {200, 500, 503, 429}


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/v1/nowhere", b"{}", 404), (CHAT, b"{not json", 400), (CHAT, b"[1]", 400), (CHAT, b'{"model": "m"}', 400),
    ("/v1/embeddings", b'{"model": "e"}', 400),
])
def test_a_bad_request_is_an_openai_error_not_a_crash(path: str, body: bytes, status: int) -> None:
    answer = answers().reply(path, body)
    assert answer.status == status and "message" in orjson.loads(answer.body)["error"]
