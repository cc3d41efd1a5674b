"""Every request parameter the gateway knows, by endpoint: OpenAI's, and the common extensions.

A parameter known for the endpoint is sent where the provider's table has it; one known only
for another endpoint is never sent (a chat request's `suffix`); one the gateway does not know
at all goes to the kinds that are their API's authority (OpenAI, vLLM), which judge it.
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.features import FEATURE_PARAMS, FEATURES

# vLLM's sampling and decoding extensions, accepted on both text endpoints.
VLLM_SAMPLING = frozenset({
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop_token_ids", "priority",
    "skip_special_tokens", "include_stop_str_in_output", "spaces_between_special_tokens", "length_penalty",
    "use_beam_search", "truncate_prompt_tokens", "prompt_logprobs", "allowed_token_ids", "bad_words",
    "logits_processors", "return_tokens_as_token_ids", "cache_salt", "request_id", "kv_transfer_params",
    "vllm_xargs", "structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "guided_decoding_backend", "guided_whitespace_pattern",
})

_SHARED = frozenset({
    "temperature", "top_p", "max_tokens", "n", "stop", "presence_penalty", "frequency_penalty", "logit_bias",
    "seed", "user", "logprobs",
})

PARAMS: Mapping[str, frozenset[str]] = {
    "chat": _SHARED | VLLM_SAMPLING | {
        "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls",
        "functions", "function_call", "reasoning_effort", "verbosity", "service_tier", "store", "metadata",
        "modalities", "audio", "prediction", "web_search_options", "safety_identifier", "prompt_cache_key",
        "chat_template", "chat_template_kwargs", "continue_final_message", "add_generation_prompt", "documents",
        "echo", "mm_processor_kwargs", "reasoning",
    },
    "completions": _SHARED | VLLM_SAMPLING | {
        "echo", "suffix", "best_of", "response_format", "add_special_tokens",
    },
    "embeddings": frozenset({
        "encoding_format", "dimensions", "user", "truncate_prompt_tokens", "add_special_tokens", "priority",
        "normalize", "embed_dtype", "request_id",
    }),
    # The Cohere/Jina shape; `query` and `documents` are the request itself.
    "rerank": frozenset({"top_n", "return_documents", "truncate_prompt_tokens", "priority", "request_id"}),
}

KNOWN: frozenset[str] = frozenset().union(*PARAMS.values())

# Per endpoint: parameter -> the features that give it meaning there.
OWNERS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    endpoint: {param: tuple(f for f in names if param in FEATURE_PARAMS.get(f, ()))
               for param in {p for f in names for p in FEATURE_PARAMS.get(f, ())}}
    for endpoint, names in FEATURES.items()
}
