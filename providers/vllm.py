"""A self-hosted vLLM server: extra sampling fields, load gauges on /metrics, no key needed."""

from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="vllm",
    base_url="http://127.0.0.1:8000/v1",
    params={
        **OPENAI_SAMPLING,
        "max_completion_tokens": Bounds(1),
        "top_k": ANY,
        "min_p": Bounds(0, 1),
        "repetition_penalty": Bounds(0, None, low_open=True),
        "min_tokens": Bounds(0),
        "ignore_eos": ANY,
        "stop_token_ids": ANY,
        "priority": ANY,
        "logprobs": ANY,
        "top_logprobs": ANY,
        "response_format": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "parallel_tool_calls": ANY,  # false caps a "required" tool_choice at one call
        "echo": ANY,
        "encoding_format": ANY,
        "dimensions": ANY,
    },
    has_load_metrics=True,
    needs_api_key=False,
)
