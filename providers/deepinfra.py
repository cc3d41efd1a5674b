"""DeepInfra: its own ranges, usage with `estimated_cost` on the finish chunk, `</s>` deltas.

Tool calling and JSON mode are documented for its chat models; embeddings come as floats.
"""

from providers.profile import ANY, Bounds, Profile

PROFILE = Profile(
    kind="deepinfra",
    base_url="https://api.deepinfra.com/v1/openai",
    endpoints=frozenset({"chat", "completions", "embeddings", "rerank"}),
    rerank_by_inference=True,
    params={
        "temperature": Bounds(0, 2),
        "top_n": Bounds(1),
        "return_documents": ANY,
        "top_p": Bounds(0, 1, low_open=True),
        "top_k": Bounds(0, 999),
        "min_p": Bounds(0, 1),
        "max_tokens": Bounds(1),
        "n": Bounds(1, 4),
        "stop": ANY,
        "presence_penalty": Bounds(-2, 2),
        "frequency_penalty": Bounds(-2, 2),
        "repetition_penalty": Bounds(0.01, 5),
        "seed": ANY,
        "user": ANY,
        "response_format": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "encoding_format": ANY,
    },
    features={
        "chat": frozenset({"tools", "tool_streaming", "json_object", "n"}),
        "completions": frozenset({"n"}),
        "embeddings": frozenset(),
    },
    renames={"max_completion_tokens": "max_tokens"},
    max_stop=16,
    publishes_windows=True,
    dropped_deltas=("</s>",),
    cost_field="estimated_cost",
)
