"""A fake OpenAI upstream cheap enough never to be the bottleneck: raw asyncio on uvloop.

Answers POST .../chat/completions with one fixed JSON document, or, when the body asks
to stream, with a fixed number of SSE chunks spaced by a fixed gap; GET .../models lists
the one model. It parses only what it must (the request line and Content-Length) and
writes pre-encoded bytes, so it costs far less per request than any path it serves.

Run: python -m bench.upstream --port 9000 --chunks 20 --gap-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from dataclasses import dataclass

import uvloop

from bench import payloads

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class StreamShape:
    """How every streamed answer is paced."""

    chunks: int = 20
    gap_s: float = 0.010  # between chunks
    first_s: float = 0.0  # before the first chunk (the upstream's own time to first token)


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
            + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_JSON = _response("200 OK", b"application/json", payloads.completion())
_MODELS = _response("200 OK", b"application/json", payloads.models())
_NOT_FOUND = _response("404 Not Found", b"application/json", b'{"error":{"message":"not found"}}')
_LENGTH_REQUIRED = _response("411 Length Required", b"application/json",
                             b'{"error":{"message":"send Content-Length"}}')
_SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
             b"transfer-encoding: chunked\r\n\r\n")


class _Frames:
    """A streamed answer, pre-encoded as HTTP chunks: with the usage event and without."""

    def __init__(self, shape: StreamShape) -> None:
        self.shape = shape
        self.with_usage = self._encode(payloads.stream_events(shape.chunks, with_usage=True))
        self.without_usage = self._encode(payloads.stream_events(shape.chunks, with_usage=False))

    def _encode(self, events: list[bytes]) -> list[bytes]:
        # Content chunks one per write; the finish, usage and [DONE] leave together, as upstreams send them.
        content, tail = events[:self.shape.chunks], b"".join(events[self.shape.chunks:])
        return [_chunked(e) for e in content] + [_chunked(tail) + b"0\r\n\r\n"]


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order, one at a time."""

    def __init__(self, frames: _Frames) -> None:
        self._frames = frames
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._streaming: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._streaming is not None:
            self._streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._streaming is None:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    transport.close()
                return
            head = bytes(self._buffer[:end])
            length = _content_length(head)
            if length is None:
                transport.write(_LENGTH_REQUIRED)
                transport.close()
                return
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4:end + 4 + length])
            del self._buffer[:end + 4 + length]
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0]
            if method == b"POST" and path.endswith(b"/completions"):
                if b'"stream":true' in body or b'"stream": true' in body:
                    frames = (self._frames.with_usage if b'"include_usage":true' in body
                              or b'"include_usage": true' in body else self._frames.without_usage)
                    self._streaming = asyncio.get_running_loop().create_task(self._stream(frames))
                    return
                transport.write(_JSON)
            elif method == b"GET" and path.endswith(b"/models"):
                transport.write(_MODELS)
            else:
                transport.write(_NOT_FOUND)

    async def _stream(self, frames: list[bytes]) -> None:
        transport = self._transport
        assert transport is not None
        shape = self._frames.shape
        try:
            transport.write(_SSE_HEAD)
            if shape.first_s:
                await asyncio.sleep(shape.first_s)
            for i, frame in enumerate(frames):
                if transport.is_closing():
                    return
                if 0 < i < shape.chunks:
                    await asyncio.sleep(shape.gap_s)
                transport.write(frame)
        finally:
            self._streaming = None
        if self._buffer and not transport.is_closing():
            self._serve_buffered()


def _content_length(head: bytes) -> int | None:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0 if lower.startswith(b"get ") else None
    line_end = lower.find(b"\r\n", at + 2)
    value = lower[at + 17:line_end if line_end >= 0 else len(lower)]
    try:
        return int(value.strip())
    except ValueError:
        return None


async def serve(host: str, port: int, shape: StreamShape) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    frames = _Frames(shape)
    server = await loop.create_server(lambda: UpstreamProtocol(frames), host, port, backlog=4096,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="time between two chunks")
    parser.add_argument("--first-ms", type=float, default=0.0, help="time before the first chunk")
    args = parser.parse_args(argv)
    shape = StreamShape(chunks=args.chunks, gap_s=args.gap_ms / 1000, first_s=args.first_ms / 1000)
    uvloop.run(serve(args.host, args.port, shape))


if __name__ == "__main__":
    main()
