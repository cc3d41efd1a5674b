"""One admitted request, from its reservation to its one settlement: its attempts, its answer.

The exchange owns what the request holds: the reservation, settled exactly once when the
exchange closes, and the current attempt's router slot, given back exactly once. `async
with` closes it however the block ends: an answer, an upstream error, a client gone, an
exception, a cancellation at shutdown. Until its settlement is done (or handed to the
outbox) it is counted in `Gateway.inflight`, so that a shutdown waits for it before the
store is closed.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Send

from gateway.accounting.admission import Reservation
from gateway.accounting.settlement import Outcome
from gateway.accounting.usage import InvalidUsage, Usage, estimate, output_bytes, usage_from_doc
from gateway.auth import Identity
from gateway.call import Call
from gateway.config import Config, ModelConfig
from gateway.errors import GatewayError
from gateway.responses.delivery import Delivery, TranslatingTap
from gateway.routing import Candidate, Endpoint, Route, Router
from gateway.routing.attempt import Attempt
from gateway.store import StoreUnavailable
from gateway.upstream.adapt import upstream_body
from gateway.upstream.client import Opened, invalid_response
from gateway.upstream.relay import SHUTDOWN, Relay
from gateway.upstream.rerank import ranked
from gateway.upstream.tap import StreamTap
from gateway.upstream.vectors import encoded
from providers.features import NATIVE_RESPONSES

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger("gateway.exchange")


class Exchange:
    def __init__(self, gw: Gateway, config: Config, router: Router, call: Call, model: ModelConfig,
                 identity: Identity, reservation: Reservation, started: float, headers: dict[str, str],
                 receive: Receive, send: Send) -> None:
        self._gw = gw
        self._config = config  # what the request started on; a reload meanwhile does not change it
        self._router = router
        self._call = call
        self._model = model
        self._identity = identity
        self._reservation = reservation
        self._started = started
        self._headers = headers
        self._receive = receive
        self._send = send
        self.attempts = 0
        self._attempt: Attempt | None = None
        self._tries: list[Attempt] = []
        self._route: Route | None = None
        self._opened: Opened | None = None
        self._relay: Relay | None = None
        self._tap: StreamTap | TranslatingTap | None = None
        self._responded = False
        self._delivery: Delivery | None = None  # a Responses request's answer: native or translated
        self.status = 0
        self._usage = Usage()
        self._estimated: str | None = None  # why the usage billed is the gateway's own count
        self._error_code: str | None = None  # what the client was told went wrong
        self._upstream_ended = 0.0

    async def __aenter__(self) -> Exchange:
        self._gw.inflight.enter()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> bool:
        try:
            if error is not None:
                await self._ended_by(error)
        finally:
            if self._attempt is not None:
                self._attempt.abandon()
            try:
                # Cancelled again while settling, the settlement goes to the outbox (it is
                # idempotent), which the shutdown flushes before it closes the store.
                await self._settle()
            finally:
                self._gw.inflight.leave()
        if isinstance(error, asyncio.CancelledError):
            # The server's shutdown cancelled this request, and it is now answered and settled: done,
            # not an error for the server to log.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        return error is not None

    async def run(self, routes: list[Candidate]) -> None:
        """Try the planned routes in order until one answers; never retry after the first byte."""
        gw, call = self._gw, self._call
        tried: list[Endpoint] = []  # a second try within a pool goes to another member
        refusal: GatewayError | None = None  # a route's own refusal of the parameters
        failure: GatewayError | None = None  # the last upstream failure
        for route, room_only in routes:
            if self.attempts >= self._config.routing.max_attempts:
                break
            try:
                outgoing = upstream_body(call, route)
            except GatewayError as error:
                refusal = refusal or error
                continue
            attempt = Attempt.begin(self._router, route, tried, room_only)
            if attempt is None:  # the pool filled up, or another request took the probe, since the plan
                continue
            tried.append(attempt.endpoint)
            self._tries.append(attempt)
            self.attempts += 1
            self._attempt = attempt
            try:
                opened = await gw.upstream.open(route.provider, outgoing.url(attempt.endpoint.url), outgoing.body,
                                                stream=call.stream, request_id=self._headers["x-request-id"])
            except GatewayError as error:
                attempt.failed(error)
                self._attempt = None
                gw.metrics.upstream_failed(route.name, error)
                failure = error
                if error.retryable:
                    continue
                break
            attempt.answered(opened.started, opened.first_byte_at, call.stream)
            self._route, self._opened = route, opened
            if call.responses is not None:
                self._delivery = Delivery(call.responses, NATIVE_RESPONSES in route.features)
            self._headers.update({"x-gateway-provider": route.name, "x-gateway-upstream-model": route.upstream_model,
                                  "x-gateway-attempts": str(self.attempts)})
            if outgoing.dropped:
                self._headers["x-gateway-dropped-params"] = ", ".join(outgoing.dropped)
            await (self._relay_stream(attempt) if call.stream else self._respond(attempt))
            return
        if self.attempts:
            self._headers["x-gateway-attempts"] = str(self.attempts)
        error = failure or refusal or GatewayError(503, f"no route of model '{self._model.name}' is available",
                                                   type="service_unavailable", code="no_route_available")
        self.status = error.status  # settled with no usage: nothing is billed for a request no upstream served
        self._error_code = error_code(error)
        self._responded = True
        if error.status == 429:  # the provider's limit, not the team's: its headroom would mislead
            self._headers = {k: v for k, v in self._headers.items() if not k.startswith("x-ratelimit-")}
        await error.send(self._send, self._headers)

    async def _respond(self, attempt: Attempt) -> None:
        opened = self._opened
        assert opened is not None and opened.doc is not None and self._route is not None
        doc, failure = opened.doc, None
        profile = self._route.provider.profile
        if self._call.endpoint == "rerank" and profile.rerank_by_inference:
            try:  # bare scores, as the Cohere/Jina answer (and its usage)
                doc = ranked(doc, self._call, self._route.name, profile.cost_field)
            except GatewayError as error:
                failure = error
        self._usage = self._reported(doc)
        self.status, self._upstream_ended = 200, opened.first_byte_at
        attempt.finished(200, opened.first_byte_at, self._usage.completion_tokens // self._call.n, stream=False)
        self._attempt = None
        answer = opened.first if doc is opened.doc else orjson.dumps(doc)
        if failure is None:
            answer, failure = await self._final_answer(answer, doc)
        self._responded = True
        if failure is not None:
            self.status, self._error_code = 502, error_code(failure)
            await failure.send(self._send, self._headers)
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()]
        await self._send({"type": "http.response.start", "status": 200,
                          "headers": [(b"content-type", b"application/json"),
                                      (b"content-length", b"%d" % len(answer)), *headers]})
        await self._send({"type": "http.response.body", "body": answer})

    async def _final_answer(self, answer: bytes, doc: dict) -> tuple[bytes, GatewayError | None]:
        """The body the client gets for a whole answer, or why there is none (a 502)."""
        assert self._route is not None
        if self._delivery is not None:  # a Responses request: the upstream's object, or one from chat's
            try:
                answer = self._delivery.whole(answer, doc)
            except GatewayError as error:
                return answer, error
            await self._store_response()
        elif self._call.wants_base64 and "embeddings.base64" not in self._route.features:
            vectors = encoded(doc)
            if vectors is None:
                return answer, invalid_response(self._route.name, "embeddings that are not float vectors")
            answer = vectors
        return answer, None

    async def _relay_stream(self, attempt: Attempt) -> None:
        assert self._route is not None and self._opened is not None
        provider = self._route.provider
        limit = self._config.upstream.max_event_bytes
        delivery = self._delivery
        self._tap = (delivery.tap(provider.profile, limit) if delivery is not None
                     else StreamTap(provider.profile, self._call.wants_usage, limit))
        self._relay = Relay(self._opened, self._tap, provider.timeouts, self._headers,
                            finish_abandoned=provider.abandoned_streams == "finish",
                            before_end=self._store_response if delivery is not None else None)
        end = await self._relay.run(self._receive, self._send)
        self.status, self._upstream_ended, self._error_code = end.status, end.ended_at, self._relay.error_code
        self._usage = self._stream_usage()
        attempt.finished(end.status, end.ended_at, self._usage.completion_tokens // self._call.n, stream=True)
        self._attempt = None

    async def _store_response(self) -> None:
        """Keep a Responses answer for `previous_response_id`, before the client has all of it (so a
        continuation sent at once finds it); a store that does not answer loses it, not the answer."""
        assert self._delivery is not None
        stored = self._delivery.record(self._identity.team.name)
        if stored is None:
            return
        try:
            await self._gw.store.put_response(self._identity.team.name, *stored, self._config.store.responses_ttl_s)
        except StoreUnavailable:
            log.warning("response %s was not stored (the store did not answer); continuing it will be a 404",
                        stored[0])

    def _reported(self, doc: dict) -> Usage:
        """A whole answer's usage: the upstream's when it can be billed, else the gateway's count."""
        assert self._route is not None
        try:
            usage = usage_from_doc(doc, self._route.provider.profile)
        except InvalidUsage as error:
            self._estimated = "invalid"
            log.warning("provider %s sent usage that cannot be billed (%s); billing the gateway's count",
                        self._route.name, error)
            usage = None
        if usage is not None:
            return usage
        self._estimated = self._estimated or "absent"
        counted = estimate(self._call.prompt_tokens_bound, output_bytes(doc))
        counted.prompt_tokens += self._media_tokens()
        return counted

    def _stream_usage(self) -> Usage:
        """A stream's usage: the upstream's when it came and can be billed, else what passed by."""
        tap = self._tap
        if tap is None:
            return Usage()
        if tap.usage is not None:
            return tap.usage
        if tap.invalid_usage is not None:
            self._estimated = "invalid"
            log.warning("provider %s sent usage that cannot be billed (%s); billing the gateway's count",
                        self._route.name if self._route else "?", tap.invalid_usage)
        else:  # a stream cut short (the client left, the upstream broke) has no usage to send: no fault of its
            self._estimated = "absent" if self.status == 200 else "cut"
        counted = estimate(self._call.prompt_tokens_bound, 0)
        counted.prompt_tokens += self._media_tokens()
        counted.completion_tokens = max(tap.deltas, 0)  # one token a content event, on every server we know
        return counted

    def _media_tokens(self) -> int:
        if self._route is None or not self._call.media:
            return 0
        return self._call.prompt_bound(self._route.part_tokens) - self._call.prompt_tokens_bound

    async def _ended_by(self, error: BaseException) -> None:
        """Whatever ended the exchange other than an answer: the client hears of it, once."""
        shutdown = isinstance(error, asyncio.CancelledError)
        if not shutdown:
            log.error("request %s failed inside the gateway", self._headers.get("x-request-id"), exc_info=error)
        if self._relay is not None and self._relay.started:
            if not shutdown:
                await self._relay.fail(self._send, "the gateway failed while relaying this stream", "server_error")
            self.status = SHUTDOWN if shutdown else 500
            self._error_code = self._relay.error_code
            self._usage = self._stream_usage()
            return
        if self._responded:
            return
        self.status = SHUTDOWN if shutdown else 500
        failure = (GatewayError(503, "The gateway is shutting down; retry on another replica.",
                                type="service_unavailable", code="gateway_shutdown", headers={"retry-after": "1"})
                   if shutdown else GatewayError(500, "The gateway failed to handle this request; it has been logged.",
                                                 type="server_error", code="internal_error"))
        self._error_code = failure.code
        try:
            self._responded = True
            await failure.send(self._send, self._headers)
        except Exception:
            pass  # the client is gone; the settlement below still runs

    async def _settle(self) -> None:
        route, opened = self._route, self._opened
        outcome = Outcome(
            self._identity.team.name, self._identity.key_id, self._call.model, route.name if route else "",
            self.status or 500, self._usage, route.price if route else None, self._started,
            self._headers["x-request-id"], attempts=self.attempts, stream=self._call.stream,
            upstream_started=opened.started if opened else 0.0, first_byte_at=opened.first_byte_at if opened else 0.0,
            upstream_ended=self._upstream_ended, usage_estimated=self._estimated, error_code=self._error_code,
            call=self._call, tries=tuple(self._tries))
        try:
            await self._gw.settler.settle(self._reservation, outcome)
        except Exception:
            log.exception("settling request %s failed", self._headers.get("x-request-id"))


def error_code(error: GatewayError) -> str | None:
    """What a log line and a record name an error by: its OpenAI `code`, else its `type`."""
    return error.code or error.type
