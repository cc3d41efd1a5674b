"""JSON documents of non-streaming answers: completions, embeddings, usage and model lists."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from .job import Job
from .pricing import Prices
from .profiles import Profile

EMBEDDING_DIM = 8


def generated_text(tokens: int) -> str:
    return "".join(token_text(i) for i in range(tokens))


def token_text(index: int) -> str:
    return f"tok{index} "


def usage(job: Job, profile: Profile, prices: Prices) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": job.prompt_tokens,
                           "completion_tokens": job.completion_tokens,
                           "total_tokens": job.prompt_tokens + job.completion_tokens}
    if profile.kind == "deepinfra":
        out["estimated_cost"] = prices.estimated_usd(job.prompt_tokens, job.completion_tokens)
    return out


def completion(job: Job, profile: Profile, prices: Prices, ident: str,
               created: int) -> dict[str, Any]:
    text = generated_text(job.tokens_per_choice)
    if job.endpoint == "chat":
        choices = [{"index": i, "message": {"role": "assistant", "content": text},
                    "finish_reason": job.finish_reason, "logprobs": None} for i in range(job.n)]
        obj = "chat.completion"
    else:
        choices = [{"index": i, "text": text, "finish_reason": job.finish_reason, "logprobs": None}
                   for i in range(job.n)]
        obj = "text_completion"
    return {"id": ident, "object": obj, "created": created, "model": job.model,
            "choices": choices, "usage": usage(job, profile, prices)}


def embeddings(job: Job, profile: Profile, prices: Prices) -> dict[str, Any]:
    data = []
    for index, text in enumerate(job.inputs):
        vector = embedding_vector(text)
        value: Any = vector
        if job.base64:
            value = base64.b64encode(struct.pack(f"<{EMBEDDING_DIM}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    use = usage(job, profile, prices)
    use.pop("completion_tokens")
    return {"object": "list", "data": data, "model": job.model, "usage": use}


def embedding_vector(text: str) -> list[float]:
    """A stable vector per input, so equal inputs embed equally across runs."""
    seed = zlib.crc32(text.encode())
    return [((seed >> (k * 4)) % 16) / 16 for k in range(EMBEDDING_DIM)]


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
        card.update(input_token_price_per_m=prices.in_per_mtok,
                    output_token_price_per_m=prices.out_per_mtok, context_size=context_len)
    elif profile.kind == "vllm":
        card.update(root=model, parent=None, max_model_len=context_len)
    return card
