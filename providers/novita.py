"""Novita AI: lower-case model ids, a wide parameter list, OpenAI-style stream usage."""

from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="novita",
    base_url="https://api.novita.ai/v3/openai",
    params={
        **OPENAI_SAMPLING,
        "repetition_penalty": Bounds(0, None, low_open=True),
        "top_k": Bounds(0),
        "min_p": Bounds(0, 1),
        "logprobs": ANY,
        "top_logprobs": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "response_format": ANY,
        "encoding_format": ANY,
        "dimensions": Bounds(1),
    },
    renames={"max_completion_tokens": "max_tokens"},
    lowercase_model_ids=True,
    abandoned_streams="finish",  # its 499s are billed: reading on costs nothing and gives the usage
)
