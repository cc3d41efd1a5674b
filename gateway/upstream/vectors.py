"""Embeddings as base64, for the routes whose provider only returns float lists.

OpenAI's base64 form is the vector's little-endian float32 bytes; the SDKs ask for it by
default and decode it as such, so a float list passed on decodes to garbage. The gateway
asks those providers for floats and encodes them itself, byte for byte as OpenAI would.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson


def encoded(doc: dict[str, Any]) -> bytes | None:
    """The answer with every float vector in base64; None when it holds something else."""
    data = doc.get("data")
    if not isinstance(data, list):
        return None
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, str):
            continue  # already base64: a provider that honours it after all
        if not isinstance(vector, list) or not all(type(x) in (float, int) for x in vector):
            return None
        try:
            packed = struct.pack(f"<{len(vector)}f", *vector)
        except (struct.error, OverflowError):  # a value no float32 holds
            return None
        item["embedding"] = base64.b64encode(packed).decode("ascii")
    return orjson.dumps(doc)
