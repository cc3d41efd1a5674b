"""An upstream that misbehaves on request: the model id it is asked for names the fault.

Served over real HTTP on loopback (tests.fakes.server). Each fault is what a broken or
hostile OpenAI-compatible server has been seen to do; `served` records what it claimed
to have generated, so a test can compare the gateway's bill with the upstream's truth.
"""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.server import BackgroundServer

PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
LINGER_S = 3.0  # past the gateway's idle timeout in these tests
WORDS = ["Hello", " from", " a", " broken", " upstream", " that", " talks"]  # 7 deltas, 7 tokens
BAD_USAGES = {  # model id -> the usage object it reports (all of them unbillable)
    "usage-strings": {"prompt_tokens": "11", "completion_tokens": "7"},
    "usage-negative": {"prompt_tokens": -11, "completion_tokens": 7},
    "usage-floats": {"prompt_tokens": 11.0, "completion_tokens": 7.5},
    "usage-true": {"prompt_tokens": True, "completion_tokens": 7},
    "usage-huge": {"prompt_tokens": 2**53, "completion_tokens": 7},
    "usage-list": [11, 7],
    "usage-negative-cost": {"prompt_tokens": 11, "completion_tokens": 7, "estimated_cost": -0.5},
    "usage-nan-cost": {"prompt_tokens": 11, "completion_tokens": 7, "estimated_cost": float("nan")},
}


@dataclass
class Served:
    model: str
    stream: bool
    deltas_sent: int = 0


class HostileUpstream:
    def __init__(self, bomb_bytes: int = 1 << 30, error_body_bytes: int = 200 << 20) -> None:
        self.bomb_bytes = bomb_bytes
        self.error_body_bytes = error_body_bytes
        self.served: list[Served] = []
        self.open_streams = 0
        gzip_bomb(bomb_bytes)  # made now: compressing a gigabyte takes seconds, past a first-byte timeout
        self._server = BackgroundServer(self._app, name="hostile-upstream")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/v1"

    def __enter__(self) -> HostileUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Floats only (as DeepInfra's), and none a float32 holds: what base64 cannot encode."""
        body = await request.json()
        self.served.append(Served(body["model"], False))
        return web.json_response({"object": "list", "model": body["model"], "usage": {"prompt_tokens": 3,
                                  "total_tokens": 3}, "data": [{"object": "embedding", "index": 0,
                                                                 "embedding": [1e300, "x", None]}]})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, stream = body["model"], bool(body.get("stream"))
        served = Served(model, stream)
        self.served.append(served)
        if model == "hang":
            await asyncio.Event().wait()
        if model == "html":
            return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        if model == "truncated":
            return web.Response(body=b'{"id":"x","choices":[{"message":{"content":"Hel', content_type="application/json")
        if model == "empty":
            return web.Response(body=b"", content_type="text/event-stream" if stream else "application/json")
        if model == "gzip-bomb":
            return self._bomb()
        if model == "huge-error":
            return await self._huge_error(request)
        if stream:
            return await self._stream(request, served)
        usage = BAD_USAGES.get(model, {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS})
        return _json_response({"id": "c1", "object": "chat.completion", "created": 1, "model": model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": "".join(WORDS)}}],
                               "usage": usage})

    def _bomb(self) -> web.Response:
        return web.Response(body=gzip_bomb(self.bomb_bytes), headers={"content-encoding": "gzip",
                                                                       "content-type": "application/json"})

    async def _huge_error(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500, headers={"content-type": "text/plain"})
        response.content_length = self.error_body_bytes
        await response.prepare(request)
        chunk = b"E" * (1 << 20)
        try:
            for _ in range(self.error_body_bytes // len(chunk)):
                await response.write(chunk)
        except (ConnectionResetError, RuntimeError):
            pass  # the gateway stopped reading: as it should
        return response

    async def _stream(self, request: web.Request, served: Served) -> web.StreamResponse:
        model = served.model
        if model == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        self.open_streams += 1
        try:
            if model == "huge-event":
                await response.write(b'data: {"choices":[{"delta":{"content":"' + b"x" * (4 << 20))
                return response
            for i, word in enumerate(WORDS):
                if model == "reset" and i == 3:
                    request.transport.abort()  # type: ignore[union-attr]
                    return response
                if model == "trickle" and i:
                    await asyncio.sleep(0.3)
                if model == "stall" and i == 3:
                    await asyncio.sleep(30)  # past any idle timeout
                if model == "slow-stream":
                    await asyncio.sleep(0.5)
                await response.write(_event({"id": "c1", "object": "chat.completion.chunk", "model": model,
                                             "choices": [{"index": 0, "delta": {"content": word},
                                                          "finish_reason": None}]}))
                served.deltas_sent += 1
            usage = BAD_USAGES.get(model, {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS})
            last = _event({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [],
                           "usage": usage})
            if model == "no-separator":
                await response.write(last.rstrip(b"\n"))  # the stream ends without the final blank line
                return response
            await response.write(last + b"data: [DONE]\n\n")
            if model == "linger":
                await asyncio.sleep(LINGER_S)  # the body's end comes late, well after the last event
            return response
        finally:
            self.open_streams -= 1


def _event(doc: dict) -> bytes:
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def _json_response(doc: dict) -> web.Response:
    # json.dumps writes NaN where a strict encoder refuses it: as a broken server does.
    return web.Response(body=json.dumps(doc).encode(), content_type="application/json")


@functools.cache
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip body of about a megabyte that inflates to `inflated_bytes` of JSON-looking zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1 << 20)
    parts = [compressor.compress(b'{"padding":"')]
    for _ in range(inflated_bytes // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(b'"}') + compressor.flush())
    return b"".join(parts)
