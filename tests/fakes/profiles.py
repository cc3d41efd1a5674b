"""Per-provider facts a fake imitates: paths, error shapes and streaming quirks.

The values follow docs/providers.md; where that file marks a fact unconfirmed
(NetMind, Deeptrin) the fake behaves like OpenAI. Optional request features (tools,
response_format, logprobs, base64 and shortened embeddings) are the exception: a fake
honours only those its provider documents, so tests meet the providers that lack one.
"""

from __future__ import annotations

from dataclasses import dataclass

LLAMA_8B = "meta-llama/Meta-Llama-3.1-8B-Instruct"

# Request features a provider may honour. One it does not honour is ignored as a real
# server ignores an unknown field: plain text, float vectors, no logprobs.
TOOLS = "tools"  # chat `tools`/`tool_choice`, streamed tool calls included
JSON_OBJECT = "json_object"  # chat response_format {"type": "json_object"}
JSON_SCHEMA = "json_schema"  # chat response_format {"type": "json_schema"}
LOGPROBS = "logprobs"  # chat `logprobs`/`top_logprobs` and the completions' integer `logprobs`
BASE64_EMBEDDINGS = "base64_embeddings"  # embeddings encoding_format "base64"
DIMENSIONS = "dimensions"  # embeddings `dimensions`

EVERY_FEATURE = frozenset({TOOLS, JSON_OBJECT, JSON_SCHEMA, LOGPROBS, BASE64_EMBEDDINGS, DIMENSIONS})


@dataclass(frozen=True, slots=True)
class Profile:
    kind: str
    prefix: str  # path prefix of the real base URL
    error_shape: str  # "openai", "deepinfra" or "vllm"; see errors.py
    validation_status: int  # 422 where the provider is a FastAPI app that says so
    usage_on_finish_chunk: bool  # DeepInfra: usage rides on the finish_reason chunk
    null_usage_in_chunks: bool  # OpenAI: every chunk says "usage": null when usage is asked for
    include_usage_default: bool
    eos_delta: str | None  # a literal end-of-sequence delta sent before the finish chunk
    lowercase_ids: bool
    stream_options_needs_stream: bool
    max_n: int | None
    max_stop: int | None
    owned_by: str
    default_models: tuple[str, ...]
    default_api_key: str | None
    default_price_in: float  # USD per million tokens
    default_price_out: float
    # What the provider documents (docs/providers.md, "Features per provider"); nothing
    # is assumed where its documentation is silent.
    features: frozenset[str]

    def honours(self, feature: str) -> bool:
        return feature in self.features


def _openai_like(kind: str, prefix: str, models: tuple[str, ...], **overrides: object) -> Profile:
    values: dict[str, object] = dict(
        kind=kind,
        prefix=prefix,
        error_shape="openai",
        validation_status=400,
        usage_on_finish_chunk=False,
        null_usage_in_chunks=True,
        include_usage_default=False,
        eos_delta=None,
        lowercase_ids=False,
        stream_options_needs_stream=False,
        max_n=128,
        max_stop=4,
        owned_by=kind,
        default_models=models,
        default_api_key="sk-fake",
        default_price_in=0.03,
        default_price_out=0.05,
        features=frozenset(),
    )
    values.update(overrides)
    return Profile(**values)  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    "openai": _openai_like("openai", "/v1", ("gpt-4o-mini",), owned_by="system",
                           features=EVERY_FEATURE),
    "netmind": _openai_like("netmind", "/inference-api/openai/v1", (LLAMA_8B,)),
    "deeptrin": _openai_like("deeptrin", "/inference-api/openai/v1", (LLAMA_8B,)),
    "novita": _openai_like(
        "novita", "/v3/openai", ("meta-llama/llama-3.1-8b-instruct",), lowercase_ids=True,
        features=frozenset({TOOLS, JSON_OBJECT, JSON_SCHEMA, LOGPROBS}),  # embeddings: floats only
    ),
    "deepinfra": _openai_like(
        "deepinfra",
        "/v1/openai",
        (LLAMA_8B,),
        error_shape="deepinfra",
        validation_status=422,
        usage_on_finish_chunk=True,
        null_usage_in_chunks=False,
        include_usage_default=True,
        eos_delta="</s>",
        max_n=4,
        max_stop=16,
        features=frozenset({TOOLS, JSON_OBJECT}),
    ),
    "vllm": _openai_like(
        "vllm",
        "/v1",
        ("tiny",),
        error_shape="vllm",
        null_usage_in_chunks=False,
        stream_options_needs_stream=True,
        max_n=None,
        max_stop=None,
        default_api_key=None,
        default_price_in=0.0,
        default_price_out=0.0,
        features=EVERY_FEATURE,  # tools need a tool parser on the real server; assumed running with one
    ),
}


def profile_for(kind: str) -> Profile:
    try:
        return PROFILES[kind]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown provider kind {kind!r}; expected one of {known}") from None
