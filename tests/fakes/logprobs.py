"""Log probabilities in OpenAI's two shapes: chat's per-token entries and the legacy lists.

Every generated token has LOGPROB; the alternatives listed after it are "alt1", "alt2", ...
one nat less likely each, so a test can write the expected document out in full.
"""

from __future__ import annotations

from typing import Any

LOGPROB = -0.5


def chat_logprobs(tokens: tuple[str, ...], top: int) -> dict[str, Any]:
    """A chat choice's `logprobs`: one entry per content token (none for a tool call)."""
    return {"content": [chat_entry(token, top) for token in tokens]}


def chat_entry(token: str, top: int) -> dict[str, Any]:
    entry = _ranked(token, 0)
    entry["top_logprobs"] = [_ranked(token, rank) for rank in range(top)]
    return entry


def legacy_logprobs(tokens: tuple[str, ...], offsets: tuple[int, ...], top: int) -> dict[str, Any]:
    """A completions choice's `logprobs` (`logprobs: k` asked): four lists, one item per token."""
    return {"tokens": list(tokens), "token_logprobs": [LOGPROB] * len(tokens),
            "top_logprobs": [{_alternative(token, rank): LOGPROB - rank for rank in range(top)}
                             for token in tokens],
            "text_offset": list(offsets)}


def _ranked(token: str, rank: int) -> dict[str, Any]:
    text = _alternative(token, rank)
    return {"token": text, "logprob": LOGPROB - rank, "bytes": list(text.encode())}


def _alternative(token: str, rank: int) -> str:
    return token if rank == 0 else f"alt{rank}"
