"""The request path of the three proxied endpoints, top to bottom.

auth -> read -> model -> plan routes -> admit -> (adapt -> upstream)* -> respond or relay -> settle
"""

from __future__ import annotations

import fnmatch
import time

import orjson
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.accounting.admission import Reservation
from gateway.accounting.settlement import Outcome
from gateway.accounting.usage import Usage, usage_from_doc
from gateway.auth import Identity
from gateway.call import Call, read_call
from gateway.config import ModelConfig, TeamConfig
from gateway.errors import GatewayError
from gateway.ids import new_id
from gateway.routing import Candidate, Endpoint, Route
from gateway.service import Gateway
from gateway.upstream.adapt import upstream_body
from gateway.upstream.client import Opened
from gateway.upstream.relay import RelayResponse, StreamEnd
from gateway.upstream.tap import StreamTap


async def chat_completions(request: Request) -> Response:
    return await proxy(request, "chat")


async def completions(request: Request) -> Response:
    return await proxy(request, "completions")


async def embeddings(request: Request) -> Response:
    return await proxy(request, "embeddings")


async def proxy(request: Request, endpoint: str) -> Response:
    gw: Gateway = request.app.state.gateway
    started = time.monotonic()
    request_id = request.headers.get("x-request-id") or new_id()
    headers = {"x-request-id": request_id}
    try:
        identity = gw.keys.authenticate(request.headers.get("authorization"))
        call = read_call(await read_body(request, gw.config.server.max_body_bytes), endpoint)
        model = find_model(gw, call.model, identity.team)
        routes = gw.router.plan(model, call, request.headers.get("x-gateway-route"))
        reservation = await gw.admitter.admit(call, model, identity.team)
    except GatewayError as error:
        gw.metrics.refused(error.status)
        return error.response(headers)
    headers.update(reservation.headers)
    return await forward(gw, call, model, routes, reservation, identity, started, headers)


async def forward(gw: Gateway, call: Call, model: ModelConfig, routes: list[Candidate],
                  reservation: Reservation, identity: Identity, started: float, headers: dict[str, str]) -> Response:
    """Try the planned routes in order until one answers; never retry after the first byte."""
    attempts = 0
    tried: list[Endpoint] = []  # a second try within a pool goes to another member
    refusal: GatewayError | None = None  # a route's own refusal of the parameters
    failure: GatewayError | None = None  # the last upstream failure
    for route, room_only in routes:
        if attempts >= gw.config.routing.max_attempts:
            break
        try:
            body = upstream_body(call, route.provider, route.upstream_model)
        except GatewayError as error:
            refusal = refusal or error
            continue
        endpoint = gw.router.begin(route, tried, room_only)
        if endpoint is None:  # the pool filled up, or another request took the probe, since the plan
            continue
        tried.append(endpoint)
        attempts += 1
        try:
            opened = await gw.upstream.open(route.provider, endpoint.url + call.path, body,
                                            stream=call.stream, request_id=headers["x-request-id"])
        except GatewayError as error:
            gw.router.failed(route, endpoint, error)
            gw.metrics.upstream_failed(route.name, error)
            failure = error
            if error.retryable:
                continue
            break
        except BaseException:  # cancelled: the attempt must not stay counted in flight
            gw.router.release(route, endpoint)
            raise
        gw.router.opened(route, endpoint, started=opened.started, first_byte_at=opened.first_byte_at,
                         stream=call.stream)
        headers.update({"x-gateway-provider": route.name, "x-gateway-upstream-model": route.upstream_model,
                        "x-gateway-attempts": str(attempts)})
        if call.stream:
            return _relay(gw, call, route, endpoint, opened, reservation, identity, started, headers)
        return _respond(gw, call, route, endpoint, opened, reservation, identity, started, headers)
    error = failure or refusal or GatewayError(503, f"no route of model '{model.name}' is available",
                                               type="service_unavailable", code="no_route_available")
    if attempts:
        headers["x-gateway-attempts"] = str(attempts)
    outcome = Outcome(identity.team.name, identity.key_id, model.name, "", error.status, Usage(), None,
                      started, headers["x-request-id"], attempts=attempts)
    # Settled with no usage: nothing is billed for a request no upstream served.
    response = error.response(headers)
    response.background = BackgroundTask(gw.settler.settle, reservation, outcome)
    return response


def _respond(gw: Gateway, call: Call, route: Route, endpoint: Endpoint, opened: Opened,
             reservation: Reservation, identity: Identity, started: float, headers: dict[str, str]) -> Response:
    try:
        usage = usage_from_doc(orjson.loads(opened.first), route.provider.profile) or Usage()
    except orjson.JSONDecodeError:
        usage = Usage()
    gw.router.end(route, endpoint, status=200, started=opened.started, first_byte_at=opened.first_byte_at,
                  ended_at=opened.first_byte_at, completion_tokens=usage.completion_tokens // call.n, stream=False)
    outcome = _served(identity, call, route, opened, headers, 200, usage, started, opened.first_byte_at, False)
    return Response(opened.first, status_code=200, headers=headers, media_type="application/json",
                    background=BackgroundTask(gw.settler.settle, reservation, outcome))


def _relay(gw: Gateway, call: Call, route: Route, endpoint: Endpoint, opened: Opened,
           reservation: Reservation, identity: Identity, started: float, headers: dict[str, str]) -> RelayResponse:
    async def settle(end: StreamEnd) -> None:
        usage = end.tap.usage or Usage(prompt_tokens=estimate_prompt_tokens(call),
                                       completion_tokens=max(end.tap.deltas, 0))
        gw.router.end(route, endpoint, status=end.status, started=opened.started, first_byte_at=opened.first_byte_at,
                      ended_at=end.ended_at, completion_tokens=usage.completion_tokens // call.n, stream=True)
        await gw.settler.settle(reservation, _served(identity, call, route, opened, headers, end.status, usage,
                                                     started, end.ended_at, True))

    tap = StreamTap(route.provider.profile, call.wants_usage)
    finish = route.provider.abandoned_streams == "finish"
    return RelayResponse(opened, tap, route.provider.timeouts, headers, settle, finish_abandoned=finish)


def _served(identity: Identity, call: Call, route: Route, opened: Opened, headers: dict[str, str], status: int,
            usage: Usage, started: float, upstream_ended: float, stream: bool) -> Outcome:
    """The outcome of a request an upstream answered, for settlement."""
    return Outcome(identity.team.name, identity.key_id, call.model, route.name, status, usage, route.price, started,
                   headers["x-request-id"], attempts=int(headers["x-gateway-attempts"]), stream=stream,
                   upstream_started=opened.started, first_byte_at=opened.first_byte_at, upstream_ended=upstream_ended)


def estimate_prompt_tokens(call: Call) -> int:
    """Prompt tokens for a stream that ended before its usage came: about 4 bytes a token."""
    return -(-call.prompt_tokens_bound // 4)


def find_model(gw: Gateway, name: str, team: TeamConfig) -> ModelConfig:
    model = gw.config.models.get(name)
    if model is None:
        raise GatewayError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in team.models):
        raise GatewayError(403, f"Team '{team.name}' is not allowed to use model '{name}'.", param="model",
                           type="permission_error", code="model_not_allowed")
    return model


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise GatewayError(400, "the client closed the connection while sending the body") from None
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than this gateway's limit of {limit} bytes.",
                        code="request_too_large")
