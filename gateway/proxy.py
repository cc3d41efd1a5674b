"""The request path of the proxied endpoints (chat, completions, embeddings, responses), top to bottom.

auth -> read -> model -> plan routes -> admit -> exchange: (adapt -> upstream)* -> respond or relay -> settle

Everything before admission holds nothing and answers its own refusal; from admission on,
the `Exchange` owns the request until its one settlement.
"""

from __future__ import annotations

import fnmatch
import functools
import time
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from gateway.auth import Identity
from gateway.call import Call, read_call
from gateway.config import Config, ModelConfig, TeamConfig
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.request import proxy_headers, read_body, request_id
from gateway.responses.call import read_responses_call, refuse_unservable

if TYPE_CHECKING:
    from gateway.service import Gateway


async def proxy(gw: Gateway, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.monotonic()
    headers = proxy_headers(scope)
    reply_headers = {"x-request-id": request_id(headers.get(b"x-request-id"))}
    identity: Identity | None = None
    call: Call | None = None
    try:
        identity = await gw.keys.authenticate(headers.get(b"authorization"), scope)
        # The config this request runs on to its settlement: a reload swaps both, never between
        # these two reads, and a request in flight keeps the ones it started with.
        config, router = gw.config, gw.router
        raw = await read_body(receive, headers.get(b"content-length"), config.server)
        if endpoint == "responses":
            call = await read_responses_call(raw, gw.store, identity.team.name, config.server.max_output_tokens,
                                             config.server.max_body_bytes)
        else:
            call = read_call(raw, endpoint, config.server.max_output_tokens)
        model = find_model(config, call.model, identity.team)
        if call.responses is not None:
            refuse_unservable(call, (route.features for route in router.routes[model.name]))
        routes = router.plan(model, call, headers.get(b"x-gateway-route"))
        reservation = await gw.admitter.admit(call, (route for route, _ in routes), identity.team)
    except GatewayError as error:
        gw.metrics.refused(error.status)
        await error.send(send, reply_headers)
        if gw.request_log is not None:
            gw.request_log.refused(reply_headers["x-request-id"], error, identity, call, started)
        return
    reply_headers.update(reservation.headers)
    async with Exchange(gw, config, router, call, model, identity, reservation, started, reply_headers, receive,
                        send) as exchange:
        await exchange.run(routes)


@functools.lru_cache(maxsize=4096)
def allows(patterns: tuple[str, ...], name: str) -> bool:
    """Whether a team's model patterns admit a configured model's name; asked once per pair (the
    glob match cost 5% of a request's CPU), and only for names the config serves."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def find_model(config: Config, name: str, team: TeamConfig) -> ModelConfig:
    model = config.models.get(name)
    if model is None:
        raise GatewayError(404, f"The model '{name[:200]}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
    if not allows(team.models, name):
        raise GatewayError(403, f"Team '{team.name}' is not allowed to use model '{name}'.", param="model",
                           type="permission_error", code="model_not_allowed")
    return model
