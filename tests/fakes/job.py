"""Turns a request body into a Job: what to generate and how many tokens it costs.

The token model is deliberately simple so tests can predict usage exactly:
a prompt token is a whitespace-separated word (a token id when the prompt is
a list of ids), and every choice generates min(limit, completion_tokens) tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import FakeError, invalid
from .features import NOTHING_ASKED, Asked, read_asked
from .profiles import Profile

LEGACY_COMPLETIONS_MAX_TOKENS = 16  # OpenAI's default for /completions


@dataclass(frozen=True, slots=True)
class Job:
    endpoint: str  # "chat", "completions" or "embeddings"
    model: str
    stream: bool
    include_usage: bool
    n: int
    prompt_tokens: int
    tokens_per_choice: int
    finish_reason: str
    inputs: tuple[str, ...] = ()  # embeddings only: one vector per item
    asked: Asked = NOTHING_ASKED  # the optional features asked for that the provider honours

    @property
    def completion_tokens(self) -> int:
        return self.tokens_per_choice * self.n


def count_words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def count_message_tokens(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            total += sum(count_words(p.get("text")) for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
        else:
            total += count_words(content)
    return total


def prompt_items(prompt: Any) -> list[Any] | None:
    """The prompts of a completions/embeddings body, or None when the value has no valid form."""
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list):
        return None
    if all(_is_int(x) for x in prompt):
        return [prompt] if prompt else []
    if all(isinstance(x, str) or (isinstance(x, list) and all(map(_is_int, x))) for x in prompt):
        return list(prompt)
    return None


def count_prompt_tokens(items: list[Any]) -> int:
    return sum(len(x) if isinstance(x, list) else count_words(x) for x in items)


def parse_job(endpoint: str, body: Any, profile: Profile, error_shape: str,
              completion_tokens: int) -> Job:
    """Validate `body` as the provider would and describe the work; raises FakeError."""

    def bad(param: str, message: str) -> FakeError:
        return invalid(error_shape, profile.validation_status, param, message)

    if not isinstance(body, dict):
        raise bad("body", "request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("model", "field required")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream and profile.stream_options_needs_stream:
        raise bad("stream_options", "Stream options can only be defined when `stream=True`.")
    _check_sampling(body, profile, bad)

    if endpoint == "embeddings":
        items = prompt_items(body.get("input"))
        if items is None:
            raise bad("input", "must be a string, a list of strings or a list of token ids")
        return Job(endpoint, model, False, False, 1, count_prompt_tokens(items), 0, "stop",
                   inputs=tuple(map(str, items)), asked=read_asked(endpoint, body, profile, bad))

    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad("messages", "must be a non-empty list")
        prompt_tokens = count_message_tokens(messages)
        default_limit = None
    else:
        items = prompt_items(body.get("prompt"))
        if items is None:
            raise bad("prompt", "must be a string, a list of strings or token ids")
        prompt_tokens = count_prompt_tokens(items)
        default_limit = LEGACY_COMPLETIONS_MAX_TOKENS

    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = default_limit
    elif not _is_int(limit) or limit < 0:
        raise bad("max_tokens", "must be a non-negative integer")
    per_choice = completion_tokens if limit is None else min(limit, completion_tokens)
    finish = "length" if limit is not None and limit <= completion_tokens else "stop"

    include_usage = profile.include_usage_default
    if isinstance(options, dict) and "include_usage" in options:
        include_usage = options["include_usage"] is True
    return Job(endpoint, model, stream, include_usage, body.get("n") or 1, prompt_tokens,
               per_choice, finish, asked=read_asked(endpoint, body, profile, bad))


def _check_sampling(body: dict[str, Any], profile: Profile,
                    bad: Callable[[str, str], FakeError]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and (not _is_number(temperature) or not 0 <= temperature <= 2):
        raise bad("temperature", "ensure this value is between 0 and 2")
    top_p = body.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise bad("top_p", "ensure this value is greater than 0 and at most 1")
    n = body.get("n")
    too_many = profile.max_n is not None and _is_int(n) and n > profile.max_n
    if n is not None and (not _is_int(n) or n < 1 or too_many):
        raise bad("n", f"ensure this value is between 1 and {profile.max_n or 'unbounded'}")
    stop = body.get("stop")
    if isinstance(stop, list) and profile.max_stop is not None and len(stop) > profile.max_stop:
        raise bad("stop", f"ensure this value has at most {profile.max_stop} items")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
