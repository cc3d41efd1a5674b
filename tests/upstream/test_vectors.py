"""Specifications of the gateway's own base64 embeddings: OpenAI's encoding of the same floats."""

from __future__ import annotations

import base64
import sys
from array import array

import orjson
import pytest

from gateway.upstream.vectors import encoded


def test_floats_become_little_endian_float32_base64_as_openai_sends_them() -> None:
    vector = [0.1, -2.5, 3, 1e-8]
    doc = orjson.loads(encoded({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                                "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
    raw = base64.b64decode(doc["data"][0]["embedding"])
    expected = array("f", vector)
    if sys.byteorder == "big":
        expected.byteswap()
    assert raw == expected.tobytes()
    assert doc["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


def test_an_already_encoded_vector_is_left_as_it_is() -> None:
    assert orjson.loads(encoded({"data": [{"embedding": "AAAAPw=="}]}))["data"][0]["embedding"] == "AAAAPw=="


@pytest.mark.parametrize("data", [None, [{"embedding": ["x"]}], [{"embedding": [1e300]}], ["not an item"],
                                  [{"embedding": [True]}]])
def test_what_is_not_a_float_vector_is_no_answer(data: object) -> None:
    assert encoded({"data": data}) is None
