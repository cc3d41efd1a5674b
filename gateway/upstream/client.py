"""Upstream calls: a request sent, its answer read within its deadlines and limits, failures mapped.

The connections are gateway.upstream.http's (keep-alive per origin, httptools parsing): aiohttp's
client, used before, cost four times the CPU a request (bench/upstream_clients.py), and httpx's
pool did not hold up under concurrency (about 2,400 against 250 requests/s through the same proxy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.config import ProviderConfig, UpstreamConfig
from gateway.errors import GatewayError, upstream_error
from gateway.upstream.body import (
    ACCEPTED_ENCODINGS,
    BodyTooLarge,
    UnknownEncoding,
    loads_lenient,
    read_body,
    read_error_body,
)
from gateway.upstream.http import Answer, Pool, Unreachable, target

log = logging.getLogger("gateway.upstream")
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
USER_AGENT = f"llm-gateway/{__version__}"


@dataclass(slots=True)
class Opened:
    """An upstream response past its status line: a whole body, or a stream's first bytes."""

    response: Answer
    status: int
    first: bytes  # the whole body (decoded) when not streaming
    started: float  # monotonic time the request was sent
    first_byte_at: float
    doc: dict[str, Any] | None = None  # the whole body, parsed, when not streaming


def invalid_response(provider: str, what: str) -> GatewayError:
    """A 200 that is no answer: another route may still give one, and nothing is billed."""
    return GatewayError(502, f"provider '{provider}' sent an invalid response: {what}", type="upstream_error",
                        code="upstream_invalid_response", retryable=True)


class UpstreamClient:
    """One pooled session per process, shared by every provider; answers read within `limits`."""

    def __init__(self, limits: UpstreamConfig | None = None) -> None:
        self._limits = limits or UpstreamConfig()
        self._pool: Pool | None = None
        self._heads: dict[tuple[str, bool], bytes] = {}  # (provider, stream) -> its header lines

    async def start(self, providers: dict[str, ProviderConfig] | None = None) -> None:
        self._pool = Pool()
        self.use(providers or {}, self._limits)

    def use(self, providers: dict[str, ProviderConfig], limits: UpstreamConfig) -> None:
        """Serve these providers (their keys and headers) and read answers within these limits."""
        self._heads = {}
        for provider in providers.values():
            self._heads[provider.name, False] = header_block(provider, stream=False)
            self._heads[provider.name, True] = header_block(provider, stream=True)
        self._limits = limits

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    async def open(self, provider: ProviderConfig, url: str, body: bytes, *, stream: bool,
                   request_id: str) -> Opened:
        """Send the request and wait for the first bytes (stream) or the whole body.

        Raises a GatewayError marked retryable when another route could still succeed:
        a refused connection, a timeout before the first byte, 429 or 5xx.
        """
        assert self._pool is not None, "UpstreamClient.start() was not awaited"
        t = provider.timeouts
        where = target(url)
        block = self._heads.get((provider.name, stream)) or header_block(provider, stream=stream)
        if request_id and request_id.isprintable():
            block += b"x-request-id: " + request_id.encode("latin-1", "replace") + b"\r\n"
        data = b"POST %s HTTP/1.1\r\nhost: %s\r\n%scontent-length: %d\r\n\r\n%s" % (
            where.path, where.host_header, block, len(body), body)
        # time.monotonic, not loop.time: uvloop's clock ticks in whole milliseconds.
        started = time.monotonic()
        response = None
        name, limits = provider.name, self._limits
        try:
            async with asyncio.timeout(t.first_byte_s):
                connection = await self._pool.connection(where.origin, t.connect_s)
                response = connection.request(data, where.origin[1])
                await response.head()
                if 300 <= response.status < 400:  # followed, a redirect could point anywhere, inside too
                    response.close()
                    raise GatewayError(502, f"provider '{name}' answered {response.status}, a redirect, which the "
                                       "gateway does not follow (is its base_url current?)", type="upstream_error",
                                       code="upstream_redirect", retryable=True)
                if response.status >= 400:
                    error_body = await read_error_body(response, limits.max_error_body_bytes)
                    response.close()
                    raise upstream_error(response.status, error_body, name, response.headers.get("retry-after"),
                                         hosts=(response.host,))
                if stream:
                    first = await self._first_event_bytes(response, name)
            if stream:
                return Opened(response, response.status, first, started, time.monotonic())
            if response.at_eof():
                # The whole body came with the head, as small answers do: reading it cannot wait,
                # so it needs no deadline (one costs 4 µs, about 2% of what a request costs the worker).
                whole = await read_body(response, limits.max_body_bytes)
            else:
                async with asyncio.timeout(max(t.total_s - (time.monotonic() - started), 0.001)):
                    whole = await read_body(response, limits.max_body_bytes)
            return Opened(response, response.status, whole, started, time.monotonic(), _answer(whole, name))
        except GatewayError:
            _close(response)
            raise
        except TimeoutError:
            _close(response)
            raise GatewayError(504, f"provider '{name}' did not answer within its "
                               f"{t.first_byte_s:g} s first-byte timeout", type="upstream_timeout",
                               code="upstream_timeout", retryable=True) from None
        except BodyTooLarge as exc:
            _close(response)
            raise GatewayError(502, f"provider '{name}' sent an answer too large to relay: {exc} "
                               "(upstream.max_body_bytes)", type="upstream_error", code="upstream_response_too_large",
                               retryable=True) from None
        except UnknownEncoding as exc:
            _close(response)
            raise invalid_response(name, str(exc)) from None
        except Unreachable as exc:
            raise GatewayError(502, f"could not connect to provider '{name}': {exc}",
                               type="upstream_error", code="upstream_unreachable", retryable=True) from None
        except OSError as exc:
            _close(response)
            raise GatewayError(502, f"provider '{name}' failed: {type(exc).__name__}",
                               type="upstream_error", code="upstream_failed", retryable=True) from None
        except asyncio.CancelledError:  # the request is over: a connection mid-answer is not reused
            _close(response)
            raise

    async def _first_event_bytes(self, response: Answer, provider: str) -> bytes:
        """A stream's first bytes, if they are the start of an event stream; never compressed
        (the gateway asks for none)."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise invalid_response(provider, f"a stream in content-encoding {encoding[:40]!r}")
        first = await response.readany()
        if not first:
            raise invalid_response(provider, "the stream ended before its first event")
        if not _looks_like_sse(first):
            raise invalid_response(provider, "not an event stream (starts with "
                                   f"{first.lstrip()[:1].decode('latin-1')!r})")
        return first


def _looks_like_sse(first: bytes) -> bool:
    """Whether bytes can begin an event stream: a field or a comment, or a prefix of one."""
    start = first.lstrip(b"\r\n\t ")[:6]
    return any(start.startswith(field) or field.startswith(start) for field in _SSE_FIELDS)


def _answer(body: bytes, provider: str) -> dict[str, Any]:
    """A non-streamed body as JSON; a 200 that is HTML, truncated or not an object is no answer."""
    try:
        doc = loads_lenient(body)
    except ValueError:
        raise invalid_response(provider, f"not JSON ({len(body)} bytes"
                               f"{', starting ' + repr(body.lstrip()[:1].decode('latin-1')) if body else ''})") from None
    if not isinstance(doc, dict):
        raise invalid_response(provider, f"a JSON {type(doc).__name__}, not an object")
    return doc


def request_headers(provider: ProviderConfig) -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "accept-encoding": ACCEPTED_ENCODINGS, "user-agent": USER_AGENT}
    if provider.api_key:
        headers["authorization"] = f"Bearer {provider.api_key}"
    for name, value in dict(provider.headers).items():  # a provider's own header replaces the gateway's
        for same in [known for known in headers if known.lower() == name.lower()]:
            del headers[same]
        headers[name] = value
    return headers


def header_block(provider: ProviderConfig, *, stream: bool) -> bytes:
    """A provider's request header lines, made once: a stream is asked for uncompressed (it is read
    as it comes, with nothing to inflate in between)."""
    headers = request_headers(provider)
    if stream:
        for name in [known for known in headers if known.lower() == "accept-encoding"]:
            del headers[name]
        headers["accept-encoding"] = "identity"
    lines = []
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or ":" in name or not (name + value).isascii():
            log.warning("provider %s: header %r is not sent (a line break, a colon in its name, or not ASCII)",
                        provider.name, name[:40])
            continue
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("ascii")


def _close(response: Answer | None) -> None:
    if response is not None:
        response.close()
