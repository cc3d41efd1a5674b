"""OpenAI itself: the reference every other profile is a variation of."""

from providers.features import ALL
from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="openai",
    base_url="https://api.openai.com/v1",
    params={
        **OPENAI_SAMPLING,
        "max_completion_tokens": Bounds(1),
        "logprobs": ANY,
        "top_logprobs": Bounds(0, 20),
        "response_format": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "parallel_tool_calls": ANY,
        "functions": ANY,
        "function_call": ANY,
        "reasoning_effort": ANY,
        "verbosity": ANY,
        "service_tier": ANY,
        "store": ANY,
        "metadata": ANY,
        "modalities": ANY,
        "prediction": ANY,
        "audio": ANY,
        "web_search_options": ANY,
        "safety_identifier": ANY,
        "prompt_cache_key": ANY,
        # completions
        "echo": ANY,
        "suffix": ANY,
        "best_of": Bounds(1, 20),
        # embeddings
        "encoding_format": ANY,
        "dimensions": Bounds(1),
    },
    features={**ALL, "chat": ALL["chat"] - {"structured_outputs"}},
    forwards_unknown=True,
)
