"""Features: what a request may need from an upstream beyond plain text, per endpoint.

A feature changes the shape of an answer (tool calls, JSON, log-probabilities, several
choices, vectors of a given size), so a route that cannot honour it must not be sent the
request: dropping the parameter would answer something else with a 200. Profiles say
which features each kind honours; a deployment overrides that per provider and per route.
"""

from __future__ import annotations

from collections.abc import Mapping

CHAT, COMPLETIONS, EMBEDDINGS, RERANK, RESPONSES = "chat", "completions", "embeddings", "rerank", "responses"
NATIVE_RESPONSES = "responses.native"  # the upstream serves /v1/responses itself

# Each feature: the parameter a refusal names, and what it is, for people reading a 400.
FEATURES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    CHAT: {
        "tools": ("tools", "tool (function) calling"),
        "tool_streaming": ("stream", "streamed tool calls"),
        "json_object": ("response_format", "JSON mode (response_format json_object)"),
        "json_schema": ("response_format", "structured output (response_format json_schema)"),
        "logprobs": ("logprobs", "log-probabilities"),
        "n": ("n", "several choices (n > 1)"),
        "vision": ("messages", "image inputs"),
        "audio": ("messages", "audio inputs"),
        "files": ("messages", "file inputs"),
        "audio_output": ("modalities", "audio output"),
        "web_search": ("web_search_options", "web search"),
        "structured_outputs": ("structured_outputs", "vLLM's guided decoding"),
    },
    COMPLETIONS: {
        "logprobs": ("logprobs", "log-probabilities"),
        "n": ("n", "several choices (n > 1)"),
        "echo": ("echo", "the prompt echoed back"),
        "suffix": ("suffix", "insertion (suffix)"),
    },
    EMBEDDINGS: {
        # Never a reason to exclude a route: the gateway encodes floats itself where needed.
        "base64": ("encoding_format", "base64-encoded vectors"),
        "dimensions": ("dimensions", "shortened vectors (dimensions)"),
    },
    RERANK: {},  # scores for a query's documents: nothing a route may lack but the endpoint itself
    RESPONSES: {
        # The upstream serves /v1/responses itself. Without it the gateway translates to chat,
        # which carries everything but what only OpenAI's side runs (gateway.responses.features).
        "native": ("input", "the Responses API itself (built-in tools, background responses, ...)"),
    },
}

# The parameters that only mean something with a feature: a route that has the feature is
# sent them whatever its parameter table says.
FEATURE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "tools": ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"),
    "json_object": ("response_format",),
    "json_schema": ("response_format",),
    "logprobs": ("logprobs", "top_logprobs"),
    "n": ("n",),
    "audio_output": ("audio", "modalities"),
    "web_search": ("web_search_options",),
    "structured_outputs": ("structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
                           "guided_decoding_backend", "guided_whitespace_pattern"),
    "echo": ("echo",),
    "suffix": ("suffix",),
    "base64": ("encoding_format",),
    "dimensions": ("dimensions",),
}

ALL: Mapping[str, frozenset[str]] = {endpoint: frozenset(names) for endpoint, names in FEATURES.items()}
NONE: Mapping[str, frozenset[str]] = {endpoint: frozenset() for endpoint in FEATURES}


def qualified(per_endpoint: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """{"chat": {"tools"}} as {"chat.tools"}: one set a request's needs are a subset of."""
    return frozenset(f"{endpoint}.{name}" for endpoint, names in per_endpoint.items() for name in names)


def declared(features: frozenset[str], overrides: Mapping[str, bool]) -> frozenset[str]:
    """`features` (qualified) with a config's `capabilities` applied: `tools: true` declares the
    feature on every endpoint it exists on, `completions.logprobs: false` on one."""
    out = set(features)
    for name, honoured in overrides.items():
        for feature in expand(name):
            (out.add if honoured else out.discard)(feature)
    return frozenset(out)


def expand(name: str) -> list[str]:
    """The qualified features a config key names; [] for an unknown one."""
    endpoint, _, feature = name.rpartition(".")
    if endpoint:
        return [name] if feature in FEATURES.get(endpoint, {}) else []
    return [f"{e}.{name}" for e, names in FEATURES.items() if name in names]


def known_names() -> list[str]:
    return sorted({name for names in FEATURES.values() for name in names})
