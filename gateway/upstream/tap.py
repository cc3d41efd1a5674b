"""Reading usage out of an SSE stream as it passes by.

Streams stay bytes: only an event that carries usage, or one that must be dropped,
is parsed. Content deltas are counted so that a stream cut short can still be billed.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.accounting.usage import Usage, usage_from_doc
from providers import Profile

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_DELTA = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')
_EVENT_END = b"\n\n"


class StreamTap:
    """Passes SSE bytes through, taking usage out of the events that carry it.

    `feed` returns what the client should get now: every complete event, unchanged,
    except the usage chunk when the client did not ask for one, a usage-carrying
    finish chunk (split into OpenAI's two chunks), and deltas the profile drops.
    """

    __slots__ = ("_profile", "_wants_usage", "_tail", "usage", "deltas")

    def __init__(self, profile: Profile, wants_usage: bool) -> None:
        self._profile = profile
        self._wants_usage = wants_usage
        self._tail = b""
        self.usage: Usage | None = None
        self.deltas = 0  # content-bearing events seen: one token each on every server we know

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        end = _last_event_end(data)
        if end < 0:
            self._tail = data
            return b""
        ready, self._tail = data[:end], data[end:]
        self.deltas += len(_DELTA.findall(ready))
        if _USAGE.search(ready) is None and not self._has_dropped_delta(ready):
            return ready
        end = b"\r\n\r\n" if b"\r\n\r\n" in ready else _EVENT_END  # keep the upstream's framing
        return b"".join(self._rewrite(event, end) for event in ready.split(end) if event)

    def flush(self) -> bytes:
        """Whatever is left when the upstream ends without a final blank line."""
        rest, self._tail = self._tail, b""
        return rest

    def _has_dropped_delta(self, ready: bytes) -> bool:
        return any(text.encode() in ready for text in self._profile.dropped_deltas)

    def _rewrite(self, event: bytes, end: bytes) -> bytes:
        payload = _data_of(event)
        if payload is None or payload == b"[DONE]":
            return event + end
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event + end
        if self._is_dropped(doc):
            self.deltas -= 1
            return b""
        usage = usage_from_doc(doc, self._profile)
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

    def _is_dropped(self, doc: Any) -> bool:
        if not self._profile.dropped_deltas or not isinstance(doc, dict):
            return False
        for choice in doc.get("choices") or ():
            text = (choice.get("delta") or {}).get("content", choice.get("text"))  # chat, or completions
            if text in self._profile.dropped_deltas and not choice.get("finish_reason"):
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


def _last_event_end(data: bytes) -> int:
    """Index just past the last complete event, or -1; SSE allows LF or CRLF framing."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    if lf < 0 and crlf < 0:
        return -1
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def _data_of(event: bytes) -> bytes | None:
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None
