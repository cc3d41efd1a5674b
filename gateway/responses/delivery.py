"""How a Responses answer reaches the client: as the upstream sent it (a native route), or
translated from chat (any other), whole or streamed; and what of it is stored.

A native stream passes through as bytes; only its last event (`response.completed`,
`.incomplete` or `.failed`) is parsed, for its usage and the response a later request may
continue. A translated stream is chat chunks read by the chat tap (usage, a provider's
quirks) and turned into the API's events as they come.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.accounting.usage import InvalidUsage, Usage, usage_from_doc
from gateway.responses.answer import from_completion
from gateway.responses.events import ResponseEvents
from gateway.responses.request import ResponsesCall
from gateway.responses.stored import record
from gateway.upstream.body import loads_lenient
from gateway.upstream.tap import StreamTap, data_of, last_event_end
from providers import Profile

_FINAL = re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"')
_NATIVE_DELTA = re.compile(rb'"type"\s*:\s*"response\.output_text\.delta"')


class Delivery:
    """One Responses request's answer: `whole` or `tap`, then `record` for the store."""

    __slots__ = ("_call", "_events", "_native", "_tap", "response")

    def __init__(self, call: ResponsesCall, native: bool) -> None:
        self._call = call
        self._native = native
        self._events: ResponseEvents | None = None
        self._tap: NativeTap | None = None
        self.response: dict[str, Any] | None = None  # the answer's response object, once known

    def whole(self, first: bytes, doc: dict[str, Any]) -> bytes:
        """A non-streamed answer's body; a 502 GatewayError when a chat upstream's has no answer."""
        if self._native:
            self.response = doc
            return first
        self.response = from_completion(doc, self._call.head)
        return orjson.dumps(self.response)

    def tap(self, profile: Profile, max_event_bytes: int) -> StreamTap | TranslatingTap:
        if self._native:
            self._tap = NativeTap(profile, max_event_bytes)
            return self._tap
        self._events = ResponseEvents(self._call.head)
        return TranslatingTap(profile, max_event_bytes, self._events)

    def record(self, team: str) -> tuple[str, bytes] | None:
        """(response id, stored record) when the client asked for it to be stored and there is one."""
        if self._events is not None:
            self.response = self._events.response
        elif self._tap is not None:
            self.response = self._tap.response
        response = self.response
        if not self._call.request.store or response is None or not isinstance(response.get("id"), str):
            return None
        return response["id"], record(response, team, self._call.items).to_bytes()


class NativeTap(StreamTap):
    """A native Responses stream, passed through; its final event gives the usage and the response."""

    __slots__ = ("response",)
    _delta = _NATIVE_DELTA

    def __init__(self, profile: Profile, max_event_bytes: int) -> None:
        super().__init__(profile, wants_usage=True, max_event_bytes=max_event_bytes)
        self.response: dict[str, Any] | None = None

    def _wanted(self, ready: bytes) -> bool:
        return _FINAL.search(ready) is not None

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        payload = data_of(event)
        try:
            doc = loads_lenient(payload) if payload else None
        except ValueError:
            return event + end
        response = doc.get("response") if isinstance(doc, dict) else None
        if not isinstance(response, dict) or not _FINAL.search(event):
            return event + end
        self.response = response
        self.complete = True
        try:
            self.usage = usage_from_doc(response, self._profile) or self.usage
        except InvalidUsage as error:
            self.invalid_usage = self.invalid_usage or str(error)
        return event + end

    def failure(self, message: str, kind: str) -> bytes:
        return b"event: error\ndata: " + orjson.dumps({"type": "error", "code": kind, "message": message,
                                                      "param": None}) + b"\n\n"


class TranslatingTap:
    """Chat chunks in, Responses events out; usage and a provider's quirks as the chat tap reads them."""

    __slots__ = ("_chat", "_events")

    def __init__(self, profile: Profile, max_event_bytes: int, events: ResponseEvents) -> None:
        self._chat = StreamTap(profile, wants_usage=True, max_event_bytes=max_event_bytes)
        self._events = events

    @property
    def usage(self) -> Usage | None:
        return self._chat.usage

    @property
    def invalid_usage(self) -> str | None:
        return self._chat.invalid_usage

    @property
    def deltas(self) -> int:
        return self._chat.deltas

    @property
    def saw_event(self) -> bool:
        return self._chat.saw_event

    @property
    def complete(self) -> bool:
        """The chat stream's [DONE] has passed; `flush` then makes the final event."""
        return self._chat.complete

    def feed(self, chunk: bytes) -> bytes:
        return self._translate(self._chat.feed(chunk))

    def flush(self) -> bytes:
        return self._translate(self._chat.flush()) + self._events.finish()

    def failure(self, message: str, kind: str) -> bytes:
        return self._events.fail(message, "rate_limit_exceeded" if kind == "rate_limit_exceeded" else "server_error")

    def _translate(self, ready: bytes) -> bytes:
        if not ready:
            return b""
        out = [self._events.start()]
        end = last_event_end(ready)
        for event in re.split(rb"\r?\n\r?\n", ready[:end] if end > 0 else ready):
            payload = data_of(event)
            if not payload or payload == b"[DONE]":
                continue
            try:
                doc = loads_lenient(payload)
            except ValueError:
                continue  # not a chunk: nothing in it to translate
            out.append(self._events.feed(doc))
        return b"".join(out)
