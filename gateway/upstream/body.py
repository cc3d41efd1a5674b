"""An upstream's body read within a cap, decompressed under the same cap.

The gateway inflates gzip and deflate itself, so that a small compressed answer cannot
become gigabytes in memory: a body, compressed or
not, that would pass its cap is refused as soon as it does.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway.upstream.http import Answer

ACCEPTED_ENCODINGS = "gzip, deflate"  # what the gateway asks for; never one it cannot bound


class BodyTooLarge(Exception):
    """An upstream body past its cap; the message says which cap."""


class UnknownEncoding(Exception):
    """An upstream answered in a content-encoding the gateway did not ask for."""


class Decoder:
    """Bytes of one body as sent, decoded, and counted against `limit`."""

    __slots__ = ("_limit", "_size", "_inflate")

    def __init__(self, encoding: str, limit: int) -> None:
        self._limit = limit
        self._size = 0
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._inflate = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib-wrapped, as the RFC says
        else:
            raise UnknownEncoding(f"content-encoding {encoding[:40]!r}")

    def feed(self, chunk: bytes) -> bytes:
        if self._inflate is not None:
            try:
                chunk = self._inflate.decompress(chunk, self._limit - self._size + 1)
            except zlib.error as exc:
                raise UnknownEncoding(f"a body that does not inflate ({exc})") from None
        self._size += len(chunk)
        if self._size > self._limit:
            raise BodyTooLarge(f"the body passed {self._limit} bytes")
        return chunk


async def read_body(response: Answer, limit: int) -> bytes:
    """The whole body, decoded; BodyTooLarge past `limit` (decoded), read no further than that."""
    decoder = Decoder(response.headers.get("content-encoding", ""), limit)
    declared = response.content_length
    if declared is not None and declared > limit and decoder._inflate is None:
        raise BodyTooLarge(f"the body announces {declared} bytes, over {limit}")
    parts = []
    while chunk := await response.readany():
        parts.append(decoder.feed(chunk))
    return b"".join(parts)


async def read_error_body(response: Answer, limit: int) -> bytes:
    """As much of an error body as a message needs: the first `limit` bytes, the rest never read."""
    try:
        decoder = Decoder(response.headers.get("content-encoding", ""), limit)
    except UnknownEncoding:
        return b""
    parts: list[bytes] = []
    try:
        while chunk := await response.readany():
            parts.append(decoder.feed(chunk))
    except (BodyTooLarge, UnknownEncoding):
        pass
    return b"".join(parts)[:limit]


def loads_lenient(data: bytes) -> Any:
    """JSON as upstreams write it: strict first (fast), then allowing NaN and Infinity, which some
    servers put in a usage figure; the figure is then refused by the usage check, not the whole answer."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
