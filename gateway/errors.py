"""Errors as OpenAI error objects: `{"error": {"message", "type", "param", "code"}}`.

Every failure on the request path becomes one `GatewayError`; nothing else reaches
the client, and never a traceback.
"""

from __future__ import annotations

import re

import orjson
from starlette.responses import Response
from starlette.types import Send

from gateway.redact import scrub


class GatewayError(Exception):
    """A failure the client sees as one OpenAI-format error response."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.retryable = retryable  # another route may succeed where this one failed

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type,
                                       "param": self.param, "code": self.code}})

    def response(self, headers: dict[str, str] | None = None) -> Response:
        merged = {**self.headers, **(headers or {})}
        return Response(self.body(), status_code=self.status, headers=merged, media_type="application/json")

    async def send(self, send: Send, headers: dict[str, str] | None = None) -> None:
        """This error as the whole response, straight on the ASGI channel."""
        body = self.body()
        merged = {**self.headers, **(headers or {})}
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


# Upstream status -> what the client should see. A provider's 401/403 means the
# gateway's credentials are wrong, not the client's, so the client gets a 502.
_UPSTREAM_STATUS = {400: 400, 401: 502, 402: 502, 403: 502, 404: 404, 408: 504, 409: 409, 413: 413,
                    422: 400, 429: 429, 500: 502, 502: 502, 503: 503, 504: 504}
# Another route may succeed: its own key (401/403), its own capacity (429), its own health (5xx).
_RETRYABLE = frozenset({401, 403, 408, 429})
_TAG = re.compile(rb"<[^>]+>")
MAX_MESSAGE_CHARS = 2_000  # an upstream's message, as relayed
MAX_FIELD_CHARS = 200


def upstream_error(status: int, body: bytes, provider: str, retry_after: str | None = None,
                   hosts: tuple[str, ...] = ()) -> GatewayError:
    """Turn an upstream error response of any shape into the error the client gets.

    What the upstream wrote is bounded and scrubbed of keys, tokens, URLs and addresses
    (`hosts`: the upstream's own) before a tenant sees it.
    """
    client_status = _UPSTREAM_STATUS.get(status, 502 if status >= 500 else 400)
    message, param, code = _read_error_body(body, status)
    message = scrub(message[:MAX_MESSAGE_CHARS], hosts)
    param = None if param is None else scrub(param[:MAX_FIELD_CHARS], hosts)
    code = None if code is None else scrub(code[:MAX_FIELD_CHARS], hosts)
    kind = {429: "rate_limit_error", 404: "invalid_request_error"}.get(
        status, "upstream_error" if client_status >= 500 else "invalid_request_error")
    if status in (401, 403):
        message = f"provider '{provider}' rejected the gateway's credentials: {message}"
        code = "upstream_auth_failed"
    elif client_status >= 500 or status == 429:
        message = f"provider '{provider}' answered {status}: {message}"
    retry_after = (retry_after or "").strip()
    headers = {"retry-after": retry_after} if status == 429 and 0 < len(retry_after) <= 64 else {}
    return GatewayError(client_status, message, type=kind, param=param, code=code, headers=headers,
                        retryable=status in _RETRYABLE or status >= 500)


def _read_error_body(body: bytes, status: int) -> tuple[str, str | None, str | None]:
    """(message, param, code) from OpenAI, DeepInfra 422, flat vLLM, plain text or HTML bodies."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _text_message(body, status), None, None
    if not isinstance(doc, dict):
        return _text_message(body, status), None, None
    error = doc.get("error")
    if isinstance(error, dict):
        return (str(error.get("message") or f"upstream status {status}"), _opt_str(error.get("param")),
                _opt_str(error.get("code")))
    if isinstance(error, str):
        return error, None, None
    detail = doc.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(part) for part in detail[0].get("loc", []) if part != "body"]
        return str(detail[0].get("msg", "invalid request")), ".".join(loc) or None, None
    if isinstance(detail, str):
        return detail, None, None
    if "message" in doc:
        return str(doc["message"]), _opt_str(doc.get("param")), _opt_str(doc.get("code"))
    return _text_message(body, status), None, None


def _text_message(body: bytes, status: int) -> str:
    text = _TAG.sub(b" ", body) if body.lstrip()[:1] == b"<" else body
    text = b" ".join(text.split())[:300].decode("utf-8", "replace")
    return text or f"upstream status {status} with an empty body"


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
