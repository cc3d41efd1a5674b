"""The ASGI application: routes, lifespan, and errors that always read as OpenAI's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any, AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway import admin
from gateway.config import Config, ConfigError, load_config_text, read_config_text
from gateway.errors import GatewayError
from gateway.proxy import allows, find_model, proxy
from gateway.request import request_id
from gateway.responses.stored import from_bytes, response_not_found
from gateway.server import GatewayProtocol
from gateway.service import Gateway
from gateway.store import StoreUnavailable

log = logging.getLogger("gateway")
CONFIG_ENV = "GATEWAY_CONFIG"
# What a browser client may read of an answer besides the basics.
EXPOSED_HEADERS = ["x-request-id", "x-gateway-provider", "x-gateway-upstream-model", "x-gateway-attempts",
                   "x-gateway-dropped-params", "retry-after", "x-should-retry", "x-ratelimit-limit-requests",
                   "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
                   "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]


class GatewayApp:
    """The ASGI app: the proxied endpoints go straight to their handlers, the rest to Starlette.

    This table is the only one for the three proxied paths; Starlette's router never sees
    them. Every hot-path request is a POST to one of them and its handler answers every
    GatewayError itself, so Starlette's routing and middleware stack would only add work
    (measured: about a fifth of a worker's CPU per request). The cost of the shortcut:
    middleware added to the Starlette app does not see proxied requests; wrap this app
    instead.
    """

    PROXIED = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings",
               "/v1/responses": "responses", "/v1/rerank": "rerank"}

    def __init__(self, starlette: Starlette, gateway: Gateway) -> None:
        self.starlette = starlette
        self.state = starlette.state
        self.gateway = gateway
        origins = gateway.config.server.cors_origins
        # Browsers call from another origin; with none configured, nothing is added to any request.
        self._cors = CORSMiddleware(self._dispatch, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                                    allow_headers=["*"], expose_headers=EXPOSED_HEADERS,
                                    max_age=600) if origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None:
            await self._cors(scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.PROXIED.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.starlette(scope, receive, send if scope["type"] != "http" else with_request_id(scope, send))
            return
        if scope["method"] != "POST":
            await GatewayError(405, f"Method {scope['method']} is not allowed on {scope['path']}; use POST",
                               headers={"allow": "POST"}).send(send, {"x-request-id": request_id_of(scope)})
            return
        try:
            await proxy(self.gateway, endpoint, scope, receive, send)
        except Exception:  # before the exchange owned the request: nothing is held, say so and log it
            log.exception("unexpected error on POST %s", scope["path"])
            with contextlib.suppress(Exception):  # the response may have started: then the client is told nothing
                await GatewayError(500, "The gateway failed to handle this request; it has been logged.",
                                   type="server_error", code="internal_error").send(send)


def request_id_of(scope: Scope) -> str:
    """The client's x-request-id if it is a usable one, else a new one."""
    return request_id(Headers(scope=scope).get("x-request-id"))


def with_request_id(scope: Scope, send: Send) -> Send:
    """`send`, with the request's id added to the response's headers, as every proxied answer has it."""
    header = (b"x-request-id", request_id_of(scope).encode("latin-1"))

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)
    return sending


def create_app(config: Config, gateway: Gateway | None = None, *, path: str | None = None,
               text: str | None = None, owns_process: bool = False) -> GatewayApp:
    """The app for `config`; `path` and `text` say where it came from, for a reload to read it again;
    `owns_process` as for Gateway."""
    gw = gateway or Gateway(config, path=path, text=text, owns_process=owns_process)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        hangup = ReloadOnHangup(gw)
        try:
            yield
        finally:
            hangup.close()
            await gw.stop()

    app = Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{name:path}", get_model, methods=["GET"]),
            Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
            Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
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


class ReloadOnHangup:
    """SIGHUP reloads the config, as `POST /admin/reload` does (a worker's supervisor forwards it)."""

    early = False  # a SIGHUP that came while the app was starting: reloaded once it has

    @classmethod
    def defer_until_started(cls) -> None:
        """Until the app has started, a SIGHUP is remembered, not the end of the process (its default)."""
        signal.signal(signal.SIGHUP, lambda signum, frame: setattr(cls, "early", True))

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGHUP, self._hangup)
        if ReloadOnHangup.early:
            ReloadOnHangup.early = False
            self._hangup()

    def close(self) -> None:
        self._loop.remove_signal_handler(signal.SIGHUP)

    def _hangup(self) -> None:
        task = self._loop.create_task(self._reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self) -> None:
        try:
            reloaded = await self._gw.reloader.reload()
        except (ConfigError, StoreUnavailable) as error:
            log.error("SIGHUP: config reload refused, the running config stays: %s", error)
            return
        log.info("SIGHUP: config version %d applied: changed %s", reloaded.version,
                 ", ".join(reloaded.changed) or "nothing")


def app_from_env() -> GatewayApp:
    """Factory for uvicorn workers: each loads the config file named in $GATEWAY_CONFIG."""
    ReloadOnHangup.defer_until_started()
    path = os.environ[CONFIG_ENV]
    text = read_config_text(path)
    config = load_config_text(text, path)
    GatewayProtocol.configure(config.server)
    return create_app(config, path=path, text=text, owns_process=True)


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        team = (await gw.keys.authenticate(request.headers.get("authorization"), request.scope)).team
    except GatewayError as error:
        return error.response()
    created = int(gw.started_at)
    data = [{"id": name, "object": "model", "created": created, "owned_by": "gateway"}
            for name in gw.config.models if allows(team.models, name)]
    return _json({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        team = (await gw.keys.authenticate(request.headers.get("authorization"), request.scope)).team
        model = find_model(gw.config, request.path_params["name"], team)
    except GatewayError as error:
        return error.response()
    return _json({"id": model.name, "object": "model", "created": int(gw.started_at), "owned_by": "gateway"})


async def get_response(request: Request) -> Response:
    """A stored Responses answer, to the team that made it (any other team's id is not found)."""
    async def act(gw: Gateway, team: str, response_id: str) -> Response:
        stored = from_bytes(await gw.store.get_response(team, response_id))
        if stored is None or stored.team != team:
            raise response_not_found(response_id)
        return _json(stored.response)
    return await _stored_response(request, act)


async def delete_response(request: Request) -> Response:
    async def act(gw: Gateway, team: str, response_id: str) -> Response:
        if not await gw.store.delete_response(team, response_id):
            raise response_not_found(response_id)
        return _json({"id": response_id, "object": "response", "deleted": True})
    return await _stored_response(request, act)


async def _stored_response(request: Request, act: Any) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        team = (await gw.keys.authenticate(request.headers.get("authorization"), request.scope)).team.name
        return await act(gw, team, request.path_params["response_id"])
    except GatewayError as error:
        return error.response()
    except StoreUnavailable:
        return GatewayError(503, "The store is unavailable; retry shortly.", type="service_unavailable",
                            code="store_unavailable", headers={"retry-after": "1"}).response()


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
