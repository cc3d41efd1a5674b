"""JSON documents of non-streaming answers: completions, embeddings, usage and model lists."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from .answer import Answer, answer_for, new_call_id
from .features import ToolCall
from .job import Job
from .logprobs import chat_logprobs, legacy_logprobs
from .pricing import Prices
from .profiles import Profile

EMBEDDING_DIM = 8  # a vector's length unless a provider that honours `dimensions` is asked otherwise


def usage(job: Job, profile: Profile, prices: Prices) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": job.prompt_tokens,
                           "completion_tokens": job.completion_tokens,
                           "total_tokens": job.prompt_tokens + job.completion_tokens}
    if profile.kind == "deepinfra":
        out["estimated_cost"] = prices.estimated_usd(job.prompt_tokens, job.completion_tokens)
    return out


def completion(job: Job, profile: Profile, prices: Prices, ident: str,
               created: int) -> dict[str, Any]:
    answer = answer_for(job)
    if job.endpoint == "chat":
        choices = [chat_choice(i, answer, job.asked.top_logprobs) for i in range(job.n)]
        obj = "chat.completion"
    else:
        top = job.asked.top_logprobs
        logprobs = None if top is None else legacy_logprobs(answer.pieces, answer.offsets, top)
        choices = [{"index": i, "text": answer.text, "finish_reason": answer.finish_reason,
                    "logprobs": logprobs} for i in range(job.n)]
        obj = "text_completion"
    return {"id": ident, "object": obj, "created": created, "model": job.model,
            "choices": choices, "usage": usage(job, profile, prices)}


def chat_choice(index: int, answer: Answer, top_logprobs: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    content_tokens = answer.pieces
    if answer.tool_call is not None:
        message = {"role": "assistant", "content": None,
                   "tool_calls": [tool_call(new_call_id(), answer.tool_call)]}
        content_tokens = ()
    logprobs = None if top_logprobs is None else chat_logprobs(content_tokens, top_logprobs)
    return {"index": index, "message": message, "finish_reason": answer.finish_reason,
            "logprobs": logprobs}


def tool_call(call_id: str, call: ToolCall, arguments: str | None = None) -> dict[str, Any]:
    """One entry of `tool_calls`; a stream's first chunk passes `arguments=""`."""
    return {"id": call_id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments if arguments is None else arguments}}


def embeddings(job: Job, profile: Profile, prices: Prices) -> dict[str, Any]:
    data = []
    length = job.asked.dimensions or EMBEDDING_DIM
    for index, text in enumerate(job.inputs):
        vector = embedding_vector(text, length)
        value: Any = vector
        if job.asked.base64:  # little-endian float32, as OpenAI packs it
            value = base64.b64encode(struct.pack(f"<{length}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    use = usage(job, profile, prices)
    use.pop("completion_tokens")
    return {"object": "list", "data": data, "model": job.model, "usage": use}


def embedding_vector(text: str, length: int = EMBEDDING_DIM) -> list[float]:
    """A stable vector per input, so equal inputs embed equally across runs.

    Each block of eight values is the nibbles of one CRC: of the text for the first block,
    of "1:text", "2:text", ... after it, so a shorter vector is a prefix of a longer one.
    """
    values: list[float] = []
    block = 0
    while len(values) < length:
        seed = zlib.crc32((f"{block}:{text}" if block else text).encode())
        values.extend(((seed >> (k * 4)) % 16) / 16 for k in range(EMBEDDING_DIM))
        block += 1
    return values[:length]


def model_list(models: list[str], profile: Profile, prices: Prices, context_len: int,
               created: int) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(m, profile, prices, context_len, created)
                                       for m in models]}


def model_card(model: str, profile: Profile, prices: Prices, context_len: int,
               created: int) -> dict[str, Any]:
    card: dict[str, Any] = {"id": model, "object": "model", "created": created,
                            "owned_by": profile.owned_by}
    if profile.kind == "deepinfra":
        card["metadata"] = {"context_length": context_len, "max_tokens": context_len,
                            "pricing": {"input_tokens": prices.in_per_mtok,
                                        "output_tokens": prices.out_per_mtok}}
    elif profile.kind == "novita":
        # Novita publishes prices in units of 1/10,000 USD per million tokens.
        card.update(input_token_price_per_m=round(prices.in_per_mtok * 10_000),
                    output_token_price_per_m=round(prices.out_per_mtok * 10_000), context_size=context_len,
                    max_output_tokens=context_len)
    elif profile.kind == "vllm":
        card.update(root=model, parent=None, max_model_len=context_len)
    return card
