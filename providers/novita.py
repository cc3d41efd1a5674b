"""Novita AI: lower-case model ids, a wide parameter list, OpenAI-style stream usage.

Its /models publishes prices in units of 1/10,000 USD per million tokens.
"""

from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="novita",
    base_url="https://api.novita.ai/v3/openai",
    endpoints=frozenset({"chat", "completions", "embeddings", "rerank"}),
    params={
        **OPENAI_SAMPLING,
        "top_n": Bounds(1),
        "return_documents": ANY,
        "repetition_penalty": Bounds(0, None, low_open=True),
        "top_k": Bounds(0),
        "min_p": Bounds(0, 1),
        "logprobs": ANY,
        "top_logprobs": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "response_format": ANY,
        "encoding_format": ANY,
    },
    features={
        "chat": frozenset({"tools", "tool_streaming", "json_object", "json_schema", "logprobs", "n"}),
        "completions": frozenset({"logprobs", "n"}),
        "embeddings": frozenset(),
    },
    renames={"max_completion_tokens": "max_tokens"},
    publishes_windows=True,
    lowercase_model_ids=True,
    abandoned_streams="finish",  # its 499s are billed: reading on costs nothing and gives the usage
    published_price_unit_usd=0.0001,
)
