"""Specifications of reading an upstream body: as sent or inflated, never past its cap."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gateway.upstream.body import BodyTooLarge, Decoder, UnknownEncoding


def feed_all(decoder: Decoder, data: bytes, size: int = 1000) -> bytes:
    return b"".join(decoder.feed(data[i:i + size]) for i in range(0, len(data), size))


@pytest.mark.parametrize("encoding, encode", [("", lambda b: b), ("identity", lambda b: b),
                                              ("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_body_under_its_cap_comes_out_as_sent(encoding: str, encode) -> None:
    body = b'{"choices": []}' * 500
    assert feed_all(Decoder(encoding, limit=len(body)), encode(body)) == body


@pytest.mark.parametrize("encoding, encode", [("", lambda b: b), ("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_body_one_byte_over_its_cap_is_refused(encoding: str, encode) -> None:
    with pytest.raises(BodyTooLarge):
        feed_all(Decoder(encoding, limit=999), encode(b"x" * 1000))


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"0" * (64 << 20))  # 64 MB of zeros in about 64 KB
    decoder = Decoder("gzip", limit=1 << 20)
    with pytest.raises(BodyTooLarge):
        feed_all(decoder, bomb, size=len(bomb))  # one chunk: the cap bounds even a single inflate call


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_an_encoding_the_gateway_did_not_ask_for_is_refused(encoding: str) -> None:
    with pytest.raises(UnknownEncoding):
        Decoder(encoding, limit=100)


def test_a_body_that_claims_gzip_but_is_not_is_refused() -> None:
    with pytest.raises(UnknownEncoding):
        Decoder("gzip", limit=100).feed(b"<html>not gzip</html>")
