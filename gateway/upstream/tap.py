"""Reading usage out of an SSE stream as it passes by.

Streams stay bytes: only an event that carries usage, or one that must be dropped,
is parsed. Content deltas are counted so that a stream cut short can still be billed.
The upstream is untrusted: an event is bounded in size, and whatever an event holds
(any JSON, any usage) is passed on or ignored, never an exception.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.accounting.usage import InvalidUsage, Usage, usage_from_doc
from gateway.upstream.body import loads_lenient
from providers import Profile

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_DELTA = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')
_EVENT_END = b"\n\n"
_DONE_ENDS = (b"[DONE]\n\n", b"[DONE]\r\n\r\n")


class EventTooLarge(Exception):
    """An SSE event grew past the configured size without ending."""


class StreamTap:
    """Passes SSE bytes through, taking usage out of the events that carry it.

    `feed` returns what the client should get now: every complete event, unchanged,
    except the usage chunk when the client did not ask for one, a usage-carrying
    finish chunk (split into OpenAI's two chunks), and deltas the profile drops.
    """

    __slots__ = ("_profile", "_wants_usage", "_max_event_bytes", "_tail", "usage", "deltas", "invalid_usage",
                 "saw_event", "complete")
    _delta = _DELTA  # what a content-bearing event looks like, for counting

    def __init__(self, profile: Profile, wants_usage: bool, max_event_bytes: int = 16 << 20) -> None:
        self._profile = profile
        self._wants_usage = wants_usage
        self._max_event_bytes = max_event_bytes
        self._tail = b""
        self.usage: Usage | None = None
        self.deltas = 0  # content-bearing events seen: one token each on every server we know
        self.invalid_usage: str | None = None  # why the upstream's usage could not be billed, if it could not
        self.saw_event = False  # a stream that ends without one complete event is no answer
        self.complete = False  # its last event (`data: [DONE]`) has passed

    def feed(self, chunk: bytes) -> bytes:
        """What the client should get now; raises EventTooLarge past the size of one event."""
        data = self._tail + chunk if self._tail else chunk
        end = last_event_end(data)
        if end < 0:
            if len(data) > self._max_event_bytes:
                raise EventTooLarge(f"an event grew past {self._max_event_bytes} bytes")
            self._tail = data
            return b""
        ready, self._tail = data[:end], data[end:]
        if len(self._tail) > self._max_event_bytes:
            raise EventTooLarge(f"an event grew past {self._max_event_bytes} bytes")
        self.saw_event = True
        self.deltas += len(self._delta.findall(ready))
        if ready.endswith(_DONE_ENDS):
            self.complete = self.complete or ends_with_done(ready)
        if not self._wanted(ready):
            return ready
        end = b"\r\n\r\n" if b"\r\n\r\n" in ready else _EVENT_END  # keep the upstream's framing
        return b"".join(self._rewrite(event, end) for event in ready.split(end) if event)

    def flush(self) -> bytes:
        """What is left when the upstream ends without a final blank line: read as a whole event
        (its usage counts like any other's) and framed as one, so every client reads it."""
        rest, self._tail = self._tail, b""
        if not rest.strip():
            return rest
        end = b"\r\n\r\n" if rest.endswith(b"\r\n") else _EVENT_END
        return self.feed(rest.rstrip(b"\r\n") + end)

    def failure(self, message: str, kind: str) -> bytes:
        """The event that ends a stream the gateway cannot finish: an error the OpenAI SDK raises."""
        return b"data: " + orjson.dumps({"error": {"message": message, "type": kind, "param": None,
                                                   "code": kind}}) + b"\n\n"

    def _wanted(self, ready: bytes) -> bool:
        """Whether some of these events must be read: one carries usage, or one is dropped."""
        return _USAGE.search(ready) is not None or any(text.encode() in ready for text in self._profile.dropped_deltas)

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        payload = data_of(event)
        if payload is None or payload == b"[DONE]":
            return event + end
        try:
            doc = loads_lenient(payload)  # NaN in a usage figure: read, then refused as usage
        except ValueError:
            return event + end
        if not isinstance(doc, dict):
            return event + end
        if self._is_dropped(doc):
            self.deltas -= 1
            return b""
        try:
            usage = usage_from_doc(doc, self._profile)
        except InvalidUsage as error:
            self.invalid_usage = self.invalid_usage or str(error)
            return event + end  # the client gets the upstream's bytes; the gateway bills its own count
        if usage is None:
            return event + end
        self.usage = usage
        if not doc.get("choices"):
            return event + end if self._wants_usage else b""
        # Usage on a chunk with choices (DeepInfra's finish chunk): give the client
        # OpenAI's shape, the finish chunk without usage, then a `choices: []` chunk.
        doc["usage"] = None
        out = b"data: " + orjson.dumps(doc) + end
        if self._wants_usage:
            out += b"data: " + orjson.dumps(usage_chunk(doc, usage)) + end
        return out

    def _is_dropped(self, doc: dict[str, Any]) -> bool:
        choices = doc.get("choices")
        if not self._profile.dropped_deltas or not isinstance(choices, list):
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")  # chat, or completions
            if isinstance(text, str) and text in self._profile.dropped_deltas and not choice.get("finish_reason"):
                return True
        return False


def usage_chunk(template: dict[str, Any], usage: Usage) -> dict[str, Any]:
    """OpenAI's final stream chunk: no choices, the whole request's usage."""
    return {
        "id": template.get("id"), "object": template.get("object", "chat.completion.chunk"),
        "created": template.get("created"), "model": template.get("model"), "choices": [],
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.prompt_tokens + usage.completion_tokens},
    }


def last_event_end(data: bytes) -> int:
    """Index just past the last complete event, or -1; SSE allows LF or CRLF framing."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    if lf < 0 and crlf < 0:
        return -1
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def ends_with_done(ready: bytes) -> bool:
    """Whether the last of these complete events is `data: [DONE]`, the end of an OpenAI stream."""
    line = ready.rstrip(b"\r\n").rpartition(b"\n")[2]
    return line.startswith(b"data:") and line[5:].strip() == b"[DONE]"


def data_of(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None
