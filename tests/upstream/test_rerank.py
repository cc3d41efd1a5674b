"""Specifications of rerank through a real gateway process: the Cohere/Jina shape from every
route that has it (vLLM's and Novita's own, DeepInfra's scores turned into it), billed at the
route's input price, with the provider's own figure where it sends one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.call import read_call
from gateway.errors import GatewayError
from gateway.upstream.rerank import ranked
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

KEY, ADMIN = "sk-rerank-team", "admin-rerank"
PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 0.0}  # 2,000 nano-dollars a token read
MODELS = {"vllm": "BAAI/bge-reranker-v2-m3", "novita": "baai/bge-reranker-v2-m3",
          "deepinfra": "Qwen/Qwen3-Reranker-0.6B"}
QUERY = "capital of france"
DOCUMENTS = ["Berlin is in Germany", "Paris is the capital of France", {"text": "France exports wine"}]


@pytest.fixture(scope="module", params=sorted(MODELS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[GatewayProcess, FakeProvider]]:
    kind = request.param
    with FakeProvider(kind, models=[MODELS[kind]]) as fake:
        provider = {"kind": kind, "base_url": fake.base_url, "api_key": fake.api_key}
        if kind == "vllm":  # a pool member, no key
            provider = {"kind": kind, "endpoints": [fake.base_url]}
        config = {"server": {"admin_key": ADMIN}, "routing": {"models_poll_s": 0}, "providers": {kind: provider},
                  "models": {"reranker": {"routes": [{"provider": kind, "model": MODELS[kind], "price": PRICE,
                                                      "context_window": 8192}]}},
                  "teams": {"search": {"keys": [KEY]}}}
        with GatewayProcess(config) as gw:
            yield gw, fake


def rerank(gw: GatewayProcess, **body: Any) -> httpx.Response:
    return httpx.post(gw.base_url + "/rerank", headers={"authorization": f"Bearer {KEY}"}, timeout=10,
                      json={"model": "reranker", "query": QUERY, "documents": DOCUMENTS, **body})


def last_record(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/admin/requests/{request_id}", headers={"authorization": f"Bearer {ADMIN}"}).json()


def test_every_route_answers_in_the_cohere_shape_best_first(served: tuple[GatewayProcess, FakeProvider]) -> None:
    gw, _ = served
    answer = rerank(gw, top_n=2)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == [1, 2]  # Paris first; two of three
    assert results[0]["document"] == {"text": "Paris is the capital of France"}
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    bare = rerank(gw, return_documents=False).json()["results"]
    assert len(bare) == 3 and all("document" not in r for r in bare)


def test_a_rerank_is_billed_for_the_tokens_read_at_the_routes_input_price(
        served: tuple[GatewayProcess, FakeProvider]) -> None:
    gw, fake = served
    answer = rerank(gw)
    record = last_record(gw, answer.headers["x-request-id"])
    assert record["endpoint"] == "rerank" and record["status"] == 200 and record["completion_tokens"] == 0
    read = 3 * 5 + 5 + 8 + 5  # the query (17 bytes: 5 tokens) beside each document, and the documents
    assert record["prompt_tokens"] == read
    assert record["table_cost_nano"] == read * 2000
    if fake.kind == "deepinfra":  # its own cost figure is what is charged, as for its chat
        assert record["cost_nano"] == record["provider_cost_nano"] == round(read * 0.03 * 1000)
        sent = [r for r in fake.requests if r.method == "POST"][-1]
        assert sent.path == f"/v1/inference/{MODELS['deepinfra']}"
        assert sent.json == {"queries": [QUERY] * 3, "documents": [
            "Berlin is in Germany", "Paris is the capital of France", "France exports wine"]}
    else:
        assert record["cost_nano"] == read * 2000


@pytest.mark.parametrize(("body", "param"), [
    ({"query": ""}, "query"), ({"documents": []}, "documents"), ({"documents": [1]}, "documents[0]"),
    ({"top_n": 0}, "top_n"), ({"stream": True}, "stream"), ({"top_n": "2"}, "top_n"),
])
def test_a_bad_rerank_request_is_a_400_naming_the_field(served: tuple[GatewayProcess, FakeProvider],
                                                        body: dict[str, Any], param: str) -> None:
    gw, fake = served
    before = len(fake.requests)
    answer = rerank(gw, **body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert len(fake.requests) == before


@pytest.mark.parametrize("scores", [None, "0.5", [0.9], [0.9, 0.1, float("nan")], [0.9, True, 0.1],
                                    [0.1, 0.2, 0.3, 0.4]])
def test_scores_that_are_not_one_finite_number_per_document_are_a_retryable_502(scores: Any) -> None:
    call = read_call(orjson.dumps({"model": "reranker", "query": QUERY, "documents": DOCUMENTS}), "rerank")
    with pytest.raises(GatewayError) as caught:
        ranked({"scores": scores, "input_tokens": 9}, call, "deepinfra", "estimated_cost")
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (502, "upstream_invalid_response", True)
