"""A self-hosted vLLM server: extra sampling fields, load gauges on /metrics, no key needed.

Image, audio and file inputs depend on the model a server runs: a route serving a
multimodal model declares them (`capabilities: {vision: true}`).
"""

from providers.params import VLLM_SAMPLING
from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="vllm",
    base_url="http://127.0.0.1:8000/v1",
    endpoints=frozenset({"chat", "completions", "embeddings", "rerank"}),
    params={
        **OPENAI_SAMPLING,
        "top_n": Bounds(1),
        "return_documents": ANY,
        **dict.fromkeys(VLLM_SAMPLING, ANY),
        "max_completion_tokens": Bounds(1),
        "min_p": Bounds(0, 1),
        "repetition_penalty": Bounds(0, None, low_open=True),
        "min_tokens": Bounds(0),
        "logprobs": ANY,
        "top_logprobs": ANY,
        "response_format": ANY,
        "tools": ANY,
        "tool_choice": ANY,
        "parallel_tool_calls": ANY,
        "reasoning_effort": ANY,
        "chat_template": ANY,
        "chat_template_kwargs": ANY,
        "continue_final_message": ANY,
        "add_generation_prompt": ANY,
        "documents": ANY,
        "mm_processor_kwargs": ANY,
        "echo": ANY,
        "add_special_tokens": ANY,
        "encoding_format": ANY,
        "dimensions": ANY,
        "normalize": ANY,
        "embed_dtype": ANY,
    },
    features={
        "chat": frozenset({"tools", "tool_streaming", "json_object", "json_schema", "logprobs", "n",
                           "structured_outputs"}),
        "completions": frozenset({"logprobs", "n", "echo"}),
        "embeddings": frozenset({"base64", "dimensions"}),
        "responses": frozenset({"native"}),
    },
    forwards_unknown=True,
    publishes_windows=True,
    has_load_metrics=True,
    needs_api_key=False,
)
