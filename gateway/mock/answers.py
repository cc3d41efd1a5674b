"""What the mock says: deterministic answers, usage, stream chunks and errors, all in OpenAI's shapes.

Tokens are counted the way the gateway estimates them (four bytes of prompt text a token)
and an answer is made of whole tokens (a word each), so the same request always gets the
same text and the same usage: `answer_tokens` of them, or `max_tokens` with finish_reason
"length" when that is fewer.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config.mock import MockConfig

BYTES_PER_TOKEN = 4
OPENING = ("This", " is", " the", " mock", " provider", " answering:")
FILLER = ("lorem", "ipsum")
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}
DONE = b"data: [DONE]\n\n"
_ERRORS = {
    429: ("Rate limit reached for the mock provider (error_rate).", "requests", "rate_limit_exceeded"),
    500: ("The mock provider failed on purpose (error_rate).", "server_error", None),
    502: ("The mock provider's upstream failed on purpose (error_rate).", "server_error", None),
    503: ("The mock provider is overloaded on purpose (error_rate).", "server_error", None),
}
_ids = itertools.count(1)


@dataclass(slots=True)
class Reply:
    """One answer: a whole JSON body, or a stream's events grouped by the token they wait for.

    `steps[0]` is sent after the latency to the first token, each next one a token's time later.
    """

    status: int
    body: bytes = b""
    steps: list[bytes] | None = None
    tokens: int = 0  # generated per choice: what a whole body's latency is made of
    headers: dict[str, str] = field(default_factory=dict)


class MockAnswers:
    def __init__(self, config: MockConfig, chance: random.Random | None = None) -> None:
        self._config = config
        self._chance = chance or random.Random()

    def reply(self, path: str, raw: bytes) -> Reply:
        endpoint = ENDPOINTS.get(path)
        if endpoint is None:
            return error(404, f"Unknown path {path[:200]}; the mock serves {', '.join(ENDPOINTS)}",
                         "invalid_request_error", "not_found")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error(400, "The body is not valid JSON.", "invalid_request_error", None)
        if not isinstance(doc, dict):
            return error(400, "The body must be a JSON object.", "invalid_request_error", None)
        config = self._config
        if config.error_rate and self._chance.random() < config.error_rate:
            return error(self._chance.choice(config.error_statuses))
        if endpoint == "embeddings":
            return self._embeddings(doc)
        return self._generation(endpoint, doc)

    def _generation(self, endpoint: str, doc: dict[str, Any]) -> Reply:
        chat = endpoint == "chat"
        prompts = [_chat_text(doc.get("messages"))] if chat else _prompts(doc.get("prompt"))
        if prompts[0] is None:
            field_name = "messages" if chat else "prompt"
            return error(400, f"'{field_name}' is required.", "invalid_request_error", None, param=field_name)
        limit = doc.get("max_completion_tokens", doc.get("max_tokens"))
        wanted = self._config.answer_tokens
        if type(limit) is int and 0 < limit < wanted:
            count, finish = limit, "length"
        else:
            count, finish = wanted, "stop"
        n = doc.get("n") if type(doc.get("n")) is int and doc.get("n", 0) > 0 else 1
        texts = [answer_tokens(p, count) for p in prompts]
        usage = {"prompt_tokens": sum(count_tokens(p) for p in prompts),
                 "completion_tokens": count * n * len(prompts)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-mock{next(_ids):012x}", "created": int(time.time()),
                "model": str(doc.get("model", "mock")), "system_fingerprint": None}
        choices = [(i * n + j, tokens) for i, tokens in enumerate(texts) for j in range(n)]
        if doc.get("stream") is True:
            options = doc.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            steps = _chat_steps if chat else _completion_steps
            return Reply(200, steps=steps(head, choices, finish, usage if with_usage else None), tokens=count)
        if chat:
            body = {**head, "object": "chat.completion", "choices": [
                {"index": i, "message": {"role": "assistant", "content": "".join(tokens), "refusal": None},
                 "logprobs": None, "finish_reason": finish} for i, tokens in choices], "usage": usage}
        else:
            body = {**head, "object": "text_completion", "choices": [
                {"index": i, "text": "".join(tokens), "logprobs": None, "finish_reason": finish}
                for i, tokens in choices], "usage": usage}
        return Reply(200, body=orjson.dumps(body), tokens=count)

    def _embeddings(self, doc: dict[str, Any]) -> Reply:
        inputs = _embedding_inputs(doc.get("input"))
        if not inputs:
            return error(400, "'input' is required: a string, a list of strings, or token ids.",
                         "invalid_request_error", None, param="input")
        size = doc.get("dimensions")
        size = size if type(size) is int and 0 < size <= 65_536 else self._config.embedding_dimensions
        as_base64 = doc.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vector = embedding(text, size)
            encoded: Any = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(count_tokens(text) if isinstance(text, str) else len(text) for text in inputs)
        body = {"object": "list", "data": data, "model": str(doc.get("model", "mock")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return Reply(200, body=orjson.dumps(body))


def count_tokens(text: str) -> int:
    """The mock's tokenisation: a token per four bytes of text, at least one."""
    return max(1, math.ceil(len(text.encode()) / BYTES_PER_TOKEN))


def answer_tokens(prompt: str, count: int) -> list[str]:
    """`count` tokens: an opening, then the prompt's words over and over (a filler if it has none)."""
    words = prompt.split()[:64] or list(FILLER)
    echoed = (" " + word for word in itertools.cycle(words))
    return list(itertools.islice(itertools.chain(OPENING, echoed), count))


def embedding(text: str | list[int], size: int) -> list[float]:
    """A unit vector that depends only on the input."""
    seed = hashlib.sha256(text.encode() if isinstance(text, str) else orjson.dumps(text)).digest()
    raw = [seed[i % 32] - 127.5 + (i // 32) for i in range(size)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def error(status: int, message: str | None = None, kind: str | None = None, code: str | None = None,
          param: str | None = None) -> Reply:
    """An error in OpenAI's shape; without a message, the one error_rate answers with."""
    if message is None:
        message, kind, code = _ERRORS[status]
    body = orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})
    return Reply(status, body=body, headers={"retry-after": "1"} if status == 429 else {})


def _event(doc: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def _chat_steps(head: dict[str, Any], choices: list[tuple[int, list[str]]], finish: str,
                usage: dict[str, int] | None) -> list[bytes]:
    chunk = {**head, "object": "chat.completion.chunk"}
    if usage is not None:
        chunk["usage"] = None  # as OpenAI: every chunk says it, the last one has it

    def event(i: int, delta: dict[str, Any], reason: str | None = None) -> bytes:
        return _event({**chunk, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}]})

    steps = [b"".join(event(i, {"role": "assistant", "content": "", "refusal": None}) for i, _ in choices)]
    for t in range(len(choices[0][1])):
        steps.append(b"".join(event(i, {"content": tokens[t]}) for i, tokens in choices))
    steps[0] += steps.pop(1)  # the role comes with the first token
    steps[-1] += b"".join(event(i, {}, finish) for i, _ in choices) + _end(chunk, usage)
    return steps


def _completion_steps(head: dict[str, Any], choices: list[tuple[int, list[str]]], finish: str,
                      usage: dict[str, int] | None) -> list[bytes]:
    chunk = {**head, "object": "text_completion"}
    if usage is not None:
        chunk["usage"] = None

    def event(i: int, text: str, reason: str | None = None) -> bytes:
        return _event({**chunk, "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": reason}]})

    steps = [b"".join(event(i, tokens[t]) for i, tokens in choices) for t in range(len(choices[0][1]))]
    steps[-1] += b"".join(event(i, "", finish) for i, _ in choices) + _end(chunk, usage)
    return steps


def _end(chunk: dict[str, Any], usage: dict[str, int] | None) -> bytes:
    return (_event({**chunk, "choices": [], "usage": usage}) if usage is not None else b"") + DONE


def _chat_text(messages: Any) -> str | None:
    """The text of every message, joined; None when there are no messages."""
    if not isinstance(messages, list) or not messages:
        return None
    texts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return "\n".join(texts)


def _prompts(prompt: Any) -> list[Any]:
    """A completion's prompts as texts (token ids count as their numbers' text); [None] when absent."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(type(p) is int for p in prompt):
            return [" ".join(map(str, prompt))]
        return [p if isinstance(p, str) else " ".join(map(str, p)) if isinstance(p, list) else "" for p in prompt]
    return [None]


def _embedding_inputs(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(type(v) is int for v in value):
            return [value]
        return [v for v in value if isinstance(v, (str, list))]
    return []
