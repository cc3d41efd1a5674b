"""The ASGI application: routes, lifespan, and errors that always read as OpenAI's."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
from typing import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import admin
from gateway.config import Config, load_config
from gateway.errors import GatewayError
from gateway.proxy import find_model, proxy
from gateway.server import GatewayProtocol
from gateway.service import Gateway

log = logging.getLogger("gateway")
CONFIG_ENV = "GATEWAY_CONFIG"


class GatewayApp:
    """The ASGI app: the proxied endpoints go straight to their handlers, the rest to Starlette.

    This table is the only one for the three proxied paths; Starlette's router never sees
    them. Every hot-path request is a POST to one of them and its handler answers every
    GatewayError itself, so Starlette's routing and middleware stack would only add work
    (measured: about a fifth of a worker's CPU per request). The cost of the shortcut:
    middleware added to the Starlette app does not see proxied requests; wrap this app
    instead.
    """

    PROXIED = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}

    def __init__(self, starlette: Starlette, gateway: Gateway) -> None:
        self.starlette = starlette
        self.state = starlette.state
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.PROXIED.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.starlette(scope, receive, send)
            return
        if scope["method"] != "POST":
            await GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}; use POST",
                               headers={"allow": "POST"}).send(send)
            return
        try:
            await proxy(self.gateway, endpoint, scope, receive, send)
        except Exception:  # before the exchange owned the request: nothing is held, say so and log it
            log.exception("unexpected error on POST %s", scope["path"])
            with contextlib.suppress(Exception):  # the response may have started: then the client is told nothing
                await GatewayError(500, "The gateway failed to handle this request; it has been logged.",
                                   type="server_error", code="internal_error").send(send)


def create_app(config: Config, gateway: Gateway | None = None) -> GatewayApp:
    gw = gateway or Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{name:path}", get_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *admin.routes(),
        ],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return GatewayApp(app, gw)


def app_from_env() -> GatewayApp:
    """Factory for uvicorn workers: each loads the config file named in $GATEWAY_CONFIG."""
    config = load_config(os.environ[CONFIG_ENV])
    GatewayProtocol.configure(config.server)
    return create_app(config)


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        team = (await gw.keys.authenticate(request.headers.get("authorization"))).team
    except GatewayError as error:
        return error.response()
    created = int(gw.started_at)
    data = [{"id": name, "object": "model", "created": created, "owned_by": "gateway"}
            for name in gw.config.models if any(fnmatch.fnmatchcase(name, p) for p in team.models)]
    return _json({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        team = (await gw.keys.authenticate(request.headers.get("authorization"))).team
        model = find_model(gw, request.path_params["name"], team)
    except GatewayError as error:
        return error.response()
    return _json({"id": model.name, "object": "model", "created": int(gw.started_at), "owned_by": "gateway"})


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    ready, detail = await request.app.state.gateway.ready()
    return _json({"status": "ready" if ready else "not ready", "detail": detail}, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.gateway.metrics.exposition()
    return Response(body, media_type=content_type)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"Unknown path {request.url.path}", 405: f"Method {request.method} is not allowed on "
               f"{request.url.path}"}.get(exc.status_code, str(exc.detail))
    return GatewayError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None).response()


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return GatewayError(500, "The gateway failed to handle this request; it has been logged.",
                        type="server_error", code="internal_error").response()


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")
