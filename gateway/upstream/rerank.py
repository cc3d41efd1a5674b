"""Rerank at a provider that takes it as bare inference (DeepInfra): queries and documents in,
scores out, turned into the Cohere/Jina answer every other route gives.

DeepInfra's rerankers answer `POST /v1/inference/{model}` with `{"queries": [...],
"documents": [...]}` (one query per document) by `{"scores": [...], "input_tokens": n,
"inference_status": {"cost": usd, ...}}`. The answer the client gets is the one vLLM and
Novita give: results by relevance, best first, `top_n` of them, each with its index (and its
document unless `return_documents` is false), and usage with the tokens read.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.call import Call
from gateway.errors import GatewayError
from gateway.ids import new_id

INFERENCE_BESIDE = "/openai"  # the OpenAI base URL ends so; /inference is its sibling


def inference_request(call: Call, upstream_model: str) -> tuple[dict[str, Any], str, str]:
    """(body, path, the end of the base URL the path replaces) for a rerank sent as inference."""
    texts = [_text(document) for document in call.body["documents"]]
    return ({"queries": [call.body["query"]] * len(texts), "documents": texts},
            f"/inference/{upstream_model}", INFERENCE_BESIDE)


def ranked(doc: dict[str, Any], call: Call, provider: str, cost_field: str | None) -> dict[str, Any]:
    """The Cohere/Jina answer for bare scores; a 502 (another route may answer) when they are not
    one finite number per document."""
    documents = call.body["documents"]
    scores = doc.get("scores")
    if not isinstance(scores, list) or len(scores) != len(documents) or not all(_finite(s) for s in scores):
        raise GatewayError(502, f"provider '{provider}' sent an invalid response: not one score per document",
                           type="upstream_error", code="upstream_invalid_response", retryable=True)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top_n = call.body.get("top_n")
    if top_n is not None:
        order = order[:top_n]
    with_documents = call.body.get("return_documents") is not False
    results = [{"index": i, "relevance_score": float(scores[i]),
                **({"document": {"text": _text(documents[i])}} if with_documents else {})} for i in order]
    answer: dict[str, Any] = {"id": f"rerank-{new_id()}", "object": "list", "model": call.model, "results": results}
    tokens = doc.get("input_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        usage: dict[str, Any] = {"prompt_tokens": tokens, "total_tokens": tokens}
        status = doc.get("inference_status")
        cost = status.get("cost") if isinstance(status, dict) else None
        if cost_field and cost is not None:
            usage[cost_field] = cost  # read as the provider's own figure, as its chat usage is
        answer["usage"] = usage
    return answer


def _text(document: Any) -> str:
    return document["text"] if isinstance(document, dict) else document


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
