"""A streamed answer as pieces: each SSE event, the wait before it, and the tokens it bills."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .bodies import token_text, usage
from .job import Job
from .pricing import Prices
from .profiles import Profile

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Piece:
    delay_s: float  # wait before writing this piece
    data: bytes
    tokens: int  # completion tokens this piece delivers


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def stream_pieces(job: Job, profile: Profile, prices: Prices, ident: str, created: int,
                  ttft_s: float, token_delay_s: float) -> Iterator[Piece]:
    """Every write of one stream, in order, ending with [DONE].

    Choices advance in lock step: step i carries token i of every choice, and only
    the first write of a step waits (ttft for the first step, token delay after).
    """
    chat = job.endpoint == "chat"
    null_usage = job.include_usage and profile.null_usage_in_chunks

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        payload: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk" if chat else
                                   "text_completion", "created": created, "model": job.model,
                                   "choices": choices}
        if null_usage:
            payload["usage"] = None
        payload.update(extra)
        return event(payload)

    def choice(index: int, text: str | None, finish: str | None = None,
               role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

    wait = ttft_s
    if chat:
        for c in range(job.n):
            yield Piece(wait, chunk([choice(c, None, role=True)]), 0)
            wait = 0.0
    for step in range(job.tokens_per_choice):
        for c in range(job.n):
            yield Piece(wait, chunk([choice(c, token_text(step))]), 1)
            wait = 0.0
        wait = token_delay_s
    if job.tokens_per_choice:
        wait = 0.0  # the end follows the last token at once; ttft still applies to an empty answer
    if profile.eos_delta is not None:
        for c in range(job.n):
            yield Piece(wait, chunk([choice(c, profile.eos_delta)]), 0)
            wait = 0.0
    for c in range(job.n):
        last = c == job.n - 1
        extra: dict[str, Any] = {}
        if last and job.include_usage and profile.usage_on_finish_chunk:
            extra["usage"] = usage(job, profile, prices)
        yield Piece(wait, chunk([choice(c, None, job.finish_reason)], **extra), 0)
        wait = 0.0
    if job.include_usage and not profile.usage_on_finish_chunk:
        yield Piece(0.0, chunk([], usage=usage(job, profile, prices)), 0)
    yield Piece(0.0, DONE, 0)
