"""The bytes every path of the benchmark exchanges: one request body, one answer, one stream.

Shared by the fake upstream and the load generators, so that direct, gateway and LiteLLM
runs send and receive exactly the same documents.
"""

from __future__ import annotations

import orjson

UPSTREAM_MODEL = "bench-upstream"
JSON_MODEL = "bench-json"  # public name through a gateway; the upstream serves any name
STREAM_MODEL = "bench-stream"
PROMPT = "Say hello in one short sentence."
PROMPT_TOKENS = 14
ANSWER = "Hello! How can I help you today?"
ANSWER_TOKENS = 9
CREATED = 1_700_000_000


def request_body(model: str, *, stream: bool = False, max_tokens: int = 32) -> bytes:
    """A small chat request, as a client of any of the three paths sends it."""
    body: dict = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def completion() -> bytes:
    """The whole non-streaming answer, with usage, as OpenAI sends it."""
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": UPSTREAM_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage(ANSWER_TOKENS),
    })


def usage(completion_tokens: int) -> dict:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion_tokens,
            "total_tokens": PROMPT_TOKENS + completion_tokens}


def stream_events(chunks: int, *, with_usage: bool) -> list[bytes]:
    """The SSE events of a streamed answer: `chunks` content deltas, the finish, usage, [DONE]."""
    events = [_event(_chunk({"role": "assistant", "content": f"tok{i} "} if i == 0 else
                            {"content": f"tok{i} "}, None)) for i in range(chunks)]
    events.append(_event(_chunk({}, "stop")))
    if with_usage:
        events.append(_event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
                              "model": UPSTREAM_MODEL, "choices": [], "usage": usage(chunks)}))
    events.append(b"data: [DONE]\n\n")
    return events


def models() -> bytes:
    """An OpenAI model list naming the one model the fake serves."""
    return orjson.dumps({"object": "list", "data": [
        {"id": UPSTREAM_MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]})


def _chunk(delta: dict, finish_reason: str | None) -> dict:
    return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
            "model": UPSTREAM_MODEL, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish_reason}]}


def _event(doc: dict) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"
