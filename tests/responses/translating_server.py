"""A minimal /v1/responses endpoint on loopback that translates to a fake chat provider and back.

Not the gateway: just the translation's calls in the order the gateway will make them,
so the openai SDK can be pointed at them over a real socket.
"""

from __future__ import annotations

import aiohttp
import orjson
from aiohttp import web

from gateway.errors import GatewayError
from gateway.responses import ResponseEvents, chat_body, from_completion, new_head, read_request
from tests.fakes import FakeProvider
from tests.fakes.server import BackgroundServer


class TranslatingServer:
    """Serves `POST /v1/responses` by sending the translated request to `provider` as `upstream_model`."""

    def __init__(self, provider: FakeProvider, upstream_model: str) -> None:
        self._provider = provider
        self._model = upstream_model
        self._server = BackgroundServer(self._app, name="responses-translator")

    def __enter__(self) -> str:
        """The base URL an SDK client is given."""
        return f"http://127.0.0.1:{self._server.start()}/v1"

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        return app

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        try:
            parsed = read_request(await request.read())
        except GatewayError as error:
            return web.Response(status=error.status, body=error.body(), content_type="application/json")
        body = {**chat_body(parsed, parsed.input_items), "model": self._model}
        head = new_head(parsed.model, parsed.echo)
        headers = {"authorization": f"Bearer {self._provider.api_key}"}
        url = f"{self._provider.base_url}/chat/completions"
        async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as upstream:
            if not parsed.stream:
                return web.json_response(from_completion(await upstream.json(), head), dumps=_dumps)
            answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await answer.prepare(request)
            events = ResponseEvents(head)
            await answer.write(events.start())
            async for line in upstream.content:
                data = line[6:].strip() if line.startswith(b"data: ") else b""
                if data == b"[DONE]":
                    break
                if data:
                    await answer.write(events.feed(orjson.loads(data)))
            await answer.write(events.finish())
            return answer


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
