"""A streamed answer as pieces: each SSE event, the wait before it, and the tokens it bills."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .answer import Answer, answer_for, new_call_id
from .bodies import tool_call, usage
from .job import Job
from .logprobs import chat_logprobs, legacy_logprobs
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

    Choices advance in lock step: step i carries piece i of every choice, and only
    the first write of a step waits (ttft for the first step, token delay after).
    """
    chat = job.endpoint == "chat"
    null_usage = job.include_usage and profile.null_usage_in_chunks
    answer = answer_for(job)
    choices = ChoiceDeltas(answer, chat, job.asked.top_logprobs)

    def chunk(deltas: list[dict[str, Any]], **extra: Any) -> bytes:
        payload: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk" if chat else
                                   "text_completion", "created": created, "model": job.model,
                                   "choices": deltas}
        if null_usage:
            payload["usage"] = None
        payload.update(extra)
        return event(payload)

    wait = ttft_s
    if chat:
        for c in range(job.n):
            yield Piece(wait, chunk([choices.opening(c)]), 0)
            wait = 0.0
    for step, tokens in enumerate(answer.tokens):
        for c in range(job.n):
            yield Piece(wait, chunk([choices.step(c, step)]), tokens)
            wait = 0.0
        wait = token_delay_s
    if answer.pieces:
        wait = 0.0  # the end follows the last piece at once; ttft still applies to an empty answer
    if profile.eos_delta is not None and answer.tool_call is None:  # it is content: none in a tool call
        for c in range(job.n):
            yield Piece(wait, chunk([choices.text(c, profile.eos_delta)]), 0)
            wait = 0.0
    for c in range(job.n):
        extra: dict[str, Any] = {}
        if c == job.n - 1 and job.include_usage and profile.usage_on_finish_chunk:
            extra["usage"] = usage(job, profile, prices)
        yield Piece(wait, chunk([choices.finish(c)], **extra), 0)
        wait = 0.0
    if job.include_usage and not profile.usage_on_finish_chunk:
        yield Piece(0.0, chunk([], usage=usage(job, profile, prices)), 0)
    yield Piece(0.0, DONE, 0)


class ChoiceDeltas:
    """The `choices` entries of one stream's chunks, in OpenAI's chat or completions shape.

    A tool call opens with its id, name and empty arguments, then sends the arguments in
    fragments; content and completions text carry their token's logprobs when asked.
    """

    def __init__(self, answer: Answer, chat: bool, top_logprobs: int | None) -> None:
        self.answer = answer
        self.chat = chat
        self.top = top_logprobs
        self.call_ids: dict[int, str] = {}  # a choice's tool-call id, named in its opening chunk

    def opening(self, index: int) -> dict[str, Any]:
        delta: dict[str, Any] = {"role": "assistant", "content": ""}
        if self.answer.tool_call is not None:
            self.call_ids[index] = new_call_id()
            entry = tool_call(self.call_ids[index], self.answer.tool_call, arguments="")
            delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **entry}]}
        return self._choice(index, delta)

    def step(self, index: int, step: int) -> dict[str, Any]:
        piece = self.answer.pieces[step]
        if self.answer.tool_call is not None:
            return self._choice(index, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        logprobs = None
        if self.top is not None and self.chat:
            logprobs = chat_logprobs((piece,), self.top)
        elif self.top is not None:
            logprobs = legacy_logprobs((piece,), (self.answer.offsets[step],), self.top)
        return self.text(index, piece, logprobs)

    def text(self, index: int, text: str, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": text, "finish_reason": None, "logprobs": logprobs}
        return self._choice(index, {"content": text}, logprobs=logprobs)

    def finish(self, index: int) -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": "", "finish_reason": self.answer.finish_reason, "logprobs": None}
        return self._choice(index, {}, self.answer.finish_reason)

    def _choice(self, index: int, delta: dict[str, Any], finish: str | None = None,
                logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
