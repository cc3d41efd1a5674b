"""Error bodies in each provider's shape, and the exception that carries one out of a handler."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                 403: "permission_error", 404: "invalid_request_error", 429: "requests"}
_VLLM_TYPES = {400: "BadRequestError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError",
               429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailableError"}
_DEFAULT_MESSAGES = {
    400: "Bad request", 401: "Invalid API key", 403: "Forbidden", 404: "Not found",
    429: "Rate limit reached for requests", 500: "Internal server error",
    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
}


class FakeError(Exception):
    """A finished error response; handlers raise it and the dispatcher sends it."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers={
            "Content-Type": self.content_type, **self.headers})


def error_body(shape: str, status: int, message: str, *, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The JSON error document `shape` ("openai", "deepinfra", "vllm", "vllm_flat") uses."""
    if shape == "deepinfra":
        return {"error": {"message": message}}
    if shape in ("vllm", "vllm_flat"):
        kind = _VLLM_TYPES.get(status, "InternalServerError")
        fields = {"message": message, "type": kind, "param": param, "code": status}
        return {"object": "error", **fields} if shape == "vllm_flat" else {"error": fields}
    kind = _OPENAI_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def fail(shape: str, status: int, message: str, *, param: str | None = None,
         code: str | None = None) -> FakeError:
    body = error_body(shape, status, message, param=param, code=code)
    return FakeError(status, orjson.dumps(body))


def invalid(shape: str, validation_status: int, param: str, message: str) -> FakeError:
    """A rejected request parameter; FastAPI-style providers answer 422 with `detail`."""
    if validation_status == 422:
        detail = [{"loc": ["body", param], "msg": message, "type": "value_error"}]
        return FakeError(422, orjson.dumps({"detail": detail}))
    return fail(shape, validation_status, f"{param}: {message}", param=param)


def canned_failure(shape: str, status: int, content_type: str) -> bytes:
    """The body of an injected failure when the test gave none."""
    message = _DEFAULT_MESSAGES.get(status, f"HTTP {status}")
    if shape == "deepinfra" and status == 429:
        message = "Model is busy, please try again later"
    if content_type.startswith("text/html"):
        return f"<html><body><h1>{status} {message}</h1></body></html>".encode()
    if not content_type.startswith("application/json"):
        return message.encode()
    code = "rate_limit_exceeded" if status == 429 else None
    return orjson.dumps(error_body(shape, status, message, code=code))
