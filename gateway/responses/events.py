"""Chat completion chunks, fed one at a time, as Responses streaming events (SSE bytes).

The order is the API's: `response.created`, `response.in_progress`, then per output item
`output_item.added`, its content (`content_part.added` and `output_text.delta`s for the
message, `function_call_arguments.delta`s for a call), its `.done` events and
`output_item.done`; last `response.completed` (or `response.incomplete` after a length
cut), or `response.failed` when the upstream breaks. Every event carries the next
`sequence_number`.

The message item closes when the first tool call starts, as OpenAI's own stream never
interleaves them; tool calls, which some providers interleave by index, stay open until
the finish_reason and close in order. Usage may come on the finish chunk or on a chunk
of its own after it, so the final event waits for `finish()` ([DONE] or the stream's end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.responses.answer import (
    ResponseHead,
    arguments,
    call_id,
    call_item,
    ending,
    item_id,
    message_item,
    output_text,
    response_object,
    response_usage,
)

MESSAGE, CALL = "message", "function_call"
ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded"})  # what a response's error.code may say


@dataclass(slots=True)
class _Item:
    index: int
    kind: str
    id: str
    pieces: list[str] = field(default_factory=list)  # text, or arguments, as they came
    call_id: str = ""
    name: str = ""
    added: bool = False
    done: bool = False
    status: str = "in_progress"
    delta_prefix: bytes = b""  # a delta event's JSON up to its "delta" value, built once per item

    def body(self) -> dict[str, Any]:
        if self.kind == MESSAGE:
            return message_item(self.id, "".join(self.pieces) if self.done or self.pieces else None, self.status)
        return call_item(self.id, self.call_id, self.name, "".join(self.pieces) if self.done else "", self.status)


class ResponseEvents:
    """One stream's translator: `start()`, `feed(chunk)` per parsed chunk, then `finish()` or `fail(...)`."""

    __slots__ = ("_calls", "_ended", "_finish_reason", "_head", "_items", "_last_response", "_message", "_out",
                 "_sequence", "_usage")

    def __init__(self, head: ResponseHead) -> None:
        self._head = head
        self._sequence = 0
        self._items: list[_Item] = []
        self._message: _Item | None = None  # the open message item
        self._calls: dict[int, _Item] = {}  # chat tool call index -> its item
        self._usage: Any = None
        self._finish_reason: Any = None
        self._ended = False
        self._out: list[bytes] = []
        self._last_response: dict[str, Any] | None = None

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`: send them as soon as the upstream has answered."""
        self._begin()
        return self._flush()

    def feed(self, chunk: Any) -> bytes:
        """The events one chat chunk makes (often none: a role-only or an empty delta)."""
        if self._ended or not isinstance(chunk, dict):
            return b""
        self._begin()  # a caller that skipped start() still gets the response opened first
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self._text(content)
                calls = delta.get("tool_calls")
                if isinstance(calls, list):
                    for call in calls:
                        if isinstance(call, dict):
                            self._call(call)
            if choice.get("finish_reason") and self._finish_reason is None:
                self._finish_reason = choice["finish_reason"]
                self._close_all()
        return self._flush()

    def finish(self) -> bytes:
        """The end of the upstream's stream: close what is open, then the final event with usage."""
        if self._ended:
            return b""
        self._begin()
        self._close_all()
        if not self._items:  # an empty answer is one empty message, as a whole answer is
            self._message = self._open(MESSAGE)
            self._close_all()
        self._ended = True
        status, reason = ending(self._finish_reason)
        final = response_object(self._head, status, [item.body() for item in self._items],
                                response_usage(self._usage), reason)
        self._emit({"type": "response.completed" if status == "completed" else "response.incomplete",
                    "response": final})
        return self._flush()

    def fail(self, message: str, code: str = "server_error") -> bytes:
        """`response.failed` for an upstream that broke mid-stream; the output so far stays in it."""
        if self._ended:
            return b""
        self._begin()
        self._ended = True
        for item in self._items:
            if not item.done:
                item.status, item.done = "incomplete", True
        error = {"code": code if code in ERROR_CODES else "server_error", "message": message}
        failed = response_object(self._head, "failed", [item.body() for item in self._items],
                                 response_usage(self._usage), error=error)
        self._emit({"type": "response.failed", "response": failed})
        return self._flush()

    @property
    def response(self) -> dict[str, Any] | None:
        """The final response object once the stream ended (for a stored record), else None."""
        return None if not self._ended else self._last_response

    # Output items.

    def _begin(self) -> None:
        if self._sequence == 0:
            shell = response_object(self._head, "in_progress", [], None)
            self._emit({"type": "response.created", "response": shell})
            self._emit({"type": "response.in_progress", "response": shell})

    def _text(self, content: str) -> None:
        item = self._message
        if item is None:
            item = self._message = self._open(MESSAGE)
        item.pieces.append(content)
        self._raw(item.delta_prefix + orjson.dumps(content))

    def _call(self, delta: dict[str, Any]) -> None:
        index = delta.get("index")
        if not isinstance(index, int):
            index = self._unnumbered(delta.get("id"))
        item = self._calls.get(index)
        if item is None:
            if self._message is not None:
                self._close(self._message)
            item = self._calls[index] = self._open(CALL)
        if not item.call_id and isinstance(delta.get("id"), str):
            item.call_id = delta["id"]
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        if not item.name and isinstance(function.get("name"), str):
            item.name = function["name"]
        piece = arguments(function.get("arguments"))
        if piece:
            item.pieces.append(piece)
        if not item.added and item.name:
            self._add(item)
            piece = "".join(item.pieces)  # the arguments held back until the name came
        if item.added and piece:
            self._raw(item.delta_prefix + orjson.dumps(piece))

    def _unnumbered(self, given_id: Any) -> int:
        """The index of a call delta without one: the last call's, unless it names a new call id."""
        last = max(self._calls, default=None)
        if last is None:
            return 0
        new = isinstance(given_id, str) and given_id and given_id != self._calls[last].call_id
        return last + 1 if new else last

    def _open(self, kind: str) -> _Item:
        index = len(self._items)
        item = _Item(index, kind, item_id(self._head, "msg" if kind == MESSAGE else "fc", index))
        self._items.append(item)
        if kind == MESSAGE:
            self._add(item)
            self._emit({"type": "response.content_part.added", "item_id": item.id, "output_index": index,
                        "content_index": 0, "part": output_text("")})
            item.delta_prefix = _delta_prefix("response.output_text.delta", item, ',"content_index":0,"logprobs":[]')
        return item

    def _add(self, item: _Item) -> None:
        if item.kind == CALL:
            item.call_id = call_id(item.call_id, self._head, item.index)
            item.delta_prefix = _delta_prefix("response.function_call_arguments.delta", item, "")
        item.added = True
        self._emit({"type": "response.output_item.added", "output_index": item.index, "item": item.body()})

    def _close_all(self) -> None:
        open_items = [item for item in self._items if not item.done]
        status, _reason = ending(self._finish_reason)
        for item in open_items:
            last = item is self._items[-1]
            self._close(item, "incomplete" if status == "incomplete" and last else "completed")

    def _close(self, item: _Item, status: str = "completed") -> None:
        if item.done:
            return
        if not item.added:
            self._add(item)
        item.done, item.status = True, status
        text = "".join(item.pieces)
        place = {"item_id": item.id, "output_index": item.index}
        if item.kind == MESSAGE:
            self._message = None
            self._emit({"type": "response.output_text.done", **place, "content_index": 0, "text": text,
                        "logprobs": []})
            self._emit({"type": "response.content_part.done", **place, "content_index": 0,
                        "part": output_text(text)})
        else:
            self._emit({"type": "response.function_call_arguments.done", **place, "arguments": text})
        self._emit({"type": "response.output_item.done", "output_index": item.index, "item": item.body()})

    # Bytes out.

    def _emit(self, event: dict[str, Any]) -> None:
        event["sequence_number"] = self._sequence
        self._sequence += 1
        if "response" in event:
            self._last_response = event["response"]
        self._out.append(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")

    def _raw(self, prefix_and_delta: bytes) -> None:
        """A delta event from its prebuilt prefix: no dict and no re-encoding of the fixed fields per chunk."""
        self._out.append(prefix_and_delta + b',"sequence_number":' + str(self._sequence).encode() + b"}\n\n")
        self._sequence += 1

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out


def _delta_prefix(kind: str, item: _Item, extra: str) -> bytes:
    fixed = f'{{"type":"{kind}","item_id":"{item.id}","output_index":{item.index}{extra},"delta":'
    return f"event: {kind}\ndata: {fixed}".encode()
