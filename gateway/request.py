"""A client's HTTP request before it is a call: its id, and its body read within limits.

The body must stay under `server.max_body_bytes` (413); that it arrives within
`server.body_timeout_s` is the server's to enforce (gateway.server: 408, at no cost per
request). A client still sending an oversized body is read to its end (within bounds)
before the 413 goes out, so that it can read the answer: closing on a sender leaves it a
connection reset, which the openai SDK retries as a network error.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import Receive, Scope

from gateway.config import ServerConfig
from gateway.errors import GatewayError
from gateway.ids import new_id

MAX_REQUEST_ID = 128
PROXY_HEADERS = frozenset((b"x-request-id", b"authorization", b"content-length", b"x-gateway-route"))
DRAIN_FACTOR = 8  # an oversized body is read on to this many times the limit before the gateway gives up


def proxy_headers(scope: Scope) -> dict[bytes, str]:
    """The request headers the proxy path reads (PROXY_HEADERS), the first of each, in one pass over
    the request's headers instead of one per header (names arrive lowercased, as ASGI has them)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in PROXY_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


def request_id(given: str | None) -> str:
    """The client's `x-request-id` when it is a fit label (visible ASCII, at most 128), else a new one."""
    if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable() and " " not in given:
        return given
    return new_id()


async def read_body(receive: Receive, declared: str | None, server: ServerConfig) -> bytes:
    """The whole body; a 413 past `max_body_bytes`, a 400 if the client left while sending it."""
    limit = server.max_body_bytes
    deadline = time.monotonic() + server.body_timeout_s  # for reading on past the limit only
    if declared and declared.isdigit() and int(declared) > limit:
        await _drain(receive, deadline, 0, limit)
        raise too_large(limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(400, "the client closed the connection while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            break
        if not message.get("more_body", False):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)
    await _drain(receive, deadline, size, limit)
    raise too_large(limit)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than this gateway's limit of {limit} bytes.",
                        code="request_too_large", headers={"connection": "close"})


async def _drain(receive: Receive, deadline: float, size: int, limit: int) -> None:
    """Read and drop the rest of a body, within the body's deadline and DRAIN_FACTOR x the limit."""
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            while size <= DRAIN_FACTOR * limit:
                message = await receive()
                size += len(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    return asyncio.get_running_loop().time() + max(deadline - time.monotonic(), 0.0)
