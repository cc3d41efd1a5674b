"""Rerank as each provider answers it: vLLM's and Novita's Cohere/Jina shape at `/rerank`,
DeepInfra's bare scores at `/v1/inference/{model}`.

A document's score is the share of its words found in the query (deterministic, so a test
knows the order); tokens are four bytes of text each, the query counted once per document,
as a cross-encoder reads it.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.errors import FakeError, fail

BYTES_PER_TOKEN = 4


def score(query: str, document: str) -> float:
    words = document.lower().split()
    asked = set(query.lower().split())
    return round(sum(word in asked for word in words) / len(words), 6) if words else 0.0


def tokens(query: str, documents: list[str]) -> int:
    return sum(-(-len(query.encode()) // BYTES_PER_TOKEN) + -(-len(d.encode()) // BYTES_PER_TOKEN)
               for d in documents)


def cohere_answer(kind: str, body: Any, error_shape: str) -> dict[str, Any]:
    """vLLM's and Novita's `POST /rerank` answer."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not isinstance(body.get("documents"), list):
        raise fail(error_shape, 400, "query (a string) and documents (an array) are required", param="documents")
    query = body["query"]
    texts = [d["text"] if isinstance(d, dict) else d for d in body["documents"]]
    if not all(isinstance(t, str) for t in texts):
        raise fail(error_shape, 400, "documents must be strings", param="documents")
    order = sorted(range(len(texts)), key=lambda i: -score(query, texts[i]))[:body.get("top_n") or len(texts)]
    results = [{"index": i, "relevance_score": score(query, texts[i]),
                **({"document": {"text": texts[i]}} if body.get("return_documents", True) else {})} for i in order]
    used = tokens(query, texts)
    usage = {"total_tokens": used} if kind == "vllm" else {"prompt_tokens": used, "completion_tokens": 0,
                                                             "total_tokens": used}
    return {"id": "rerank-fake", "model": body.get("model"), "results": results, "usage": usage}


def inference_answer(body: Any, price_in_per_mtok: float) -> dict[str, Any]:
    """DeepInfra's `POST /v1/inference/{model}` answer for a reranker: one query per document."""
    queries, documents = (body.get("queries"), body.get("documents")) if isinstance(body, dict) else (None, None)
    if not isinstance(queries, list) or not isinstance(documents, list) or len(queries) != len(documents):
        raise FakeError(422, b'{"detail":[{"loc":["body","queries"],"msg":"queries and documents must have the '
                             b'same length","type":"value_error"}]}')
    used = sum(tokens(q, [d]) for q, d in zip(queries, documents, strict=True))
    return {"scores": [score(q, d) for q, d in zip(queries, documents, strict=True)], "input_tokens": used,
            "request_id": None, "inference_status": {"status": "succeeded", "runtime_ms": 3,
                                                     "cost": used * price_in_per_mtok / 1e6, "tokens_generated": 0,
                                                     "tokens_input": used}}
