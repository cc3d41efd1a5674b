"""FakeProvider: one upstream LLM provider as a real HTTP server on loopback.

Each kind imitates the quirks docs/providers.md lists for it (usage placement,
error shapes, id case, vLLM gauges) so gateway tests meet them over a socket.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from . import bodies, rerank
from .engine import Engine
from .errors import FakeError, canned_failure, fail
from .job import Job, parse_job
from .pricing import Prices
from .profiles import profile_for
from .records import Bill, ReceivedRequest
from .server import BackgroundServer, Handler
from .sse import stream_pieces

RANDOM_FAILURE_STATUSES = (500, 502, 503)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 64 * 1024 * 1024  # aiohttp's 1 MiB default would refuse long test prompts


class FakeProvider:
    """A provider of `kind` ("openai", "netmind", "deeptrin", "novita", "deepinfra", "vllm").

    `api_key=None` means the kind's default: "sk-fake", or no auth at all for vLLM.
    Faults (`latency_s`, `hang`, `fail_next`, `fail_rate`) apply to the three POST
    endpoints only, so model listing and vLLM health/metrics probes stay predictable.
    Attributes below that are not underscored may be changed while it runs.
    """

    def __init__(self, kind: str = "openai", api_key: str | None = None,
                 models: list[str] | None = None, *, ttft_s: float = 0.0,
                 token_delay_s: float = 0.0, completion_tokens: int = 8, latency_s: float = 0.0,
                 price_in_per_mtok: float | None = None, price_out_per_mtok: float | None = None,
                 max_running: int | None = None, max_model_len: int = 8192,
                 flat_errors: bool = False, hang: bool = False, fail_rate: float = 0.0,
                 seed: int = 0) -> None:
        self.profile = profile_for(kind)
        self.kind = kind
        self.api_key = api_key if api_key is not None else self.profile.default_api_key
        chosen = list(models) if models is not None else list(self.profile.default_models)
        self.models = [m.lower() for m in chosen] if self.profile.lowercase_ids else chosen
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s
        self.completion_tokens = completion_tokens
        self.latency_s = latency_s
        self.prices = Prices(
            self.profile.default_price_in if price_in_per_mtok is None else price_in_per_mtok,
            self.profile.default_price_out if price_out_per_mtok is None else price_out_per_mtok)
        self.max_model_len = max_model_len
        flat = flat_errors and kind == "vllm"
        self.error_shape = "vllm_flat" if flat else self.profile.error_shape
        self.hang = hang
        self.fail_rate = fail_rate
        self.metrics_delay_s = 0.0  # a saturated CPU vLLM server answers /metrics this late
        self.requests: list[ReceivedRequest] = []
        self.probes: list[ReceivedRequest] = []  # vLLM /health and /metrics, kept apart
        self.ledger: list[Bill] = []
        self._engine = Engine(max_running)
        self._failures: deque[FakeError] = deque()
        self._rng = random.Random(seed)
        self._open_streams = 0
        self._server = BackgroundServer(self._make_app, name=f"fake-{kind}")

    # Lifecycle, usable from any thread.

    def start(self) -> FakeProvider:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`, where vLLM's /health and /metrics live."""
        if self._server.port is None:
            raise RuntimeError("fake provider not started")
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, with the path prefix the real provider's has."""
        return self.origin + self.profile.prefix

    # Test controls and observations.

    @property
    def open_streams(self) -> int:
        return self._open_streams

    @property
    def running(self) -> int:
        return sum(self._engine.running.values())

    @property
    def waiting(self) -> int:
        return sum(self._engine.waiting.values())

    def fail_next(self, n: int = 1, status: int = 503, body: bytes | None = None,
                  content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
        """Make the next `n` POSTs fail this way; body None is the provider's usual one."""
        if body is None:
            body = canned_failure(self.error_shape, status, content_type)
        for _ in range(n):
            self._failures.append(FakeError(status, body, content_type, dict(headers or {})))

    def kill_engine(self) -> None:
        """/health turns 503 and generation requests get 500, as after a vLLM engine crash."""
        self._engine.alive = False

    def revive_engine(self) -> None:
        self._engine.alive = True

    def reset(self) -> None:
        """Forget recorded requests, bills and pending failures."""
        self.requests.clear()
        self.probes.clear()
        self.ledger.clear()
        self._failures.clear()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Block until `condition()` holds (e.g. a bill arrived); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met within %.1fs" % timeout)
            time.sleep(0.005)

    async def await_until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """`wait_until` for asyncio tests, yielding to the test's own loop meanwhile."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met within %.1fs" % timeout)
            await asyncio.sleep(0.005)

    # The HTTP side; everything below runs on the server's own loop.

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        prefix = self.profile.prefix
        for endpoint, path in (("chat", "/chat/completions"), ("completions", "/completions"),
                               ("embeddings", "/embeddings")):
            app.router.add_post(prefix + path, self._handler(endpoint))
        app.router.add_get(prefix + "/models", self._list_models)
        if self.kind in ("vllm", "novita"):
            app.router.add_post(prefix + "/rerank", self._rerank)
        if self.kind == "deepinfra":  # beside its OpenAI base (/v1/openai), as the real one
            app.router.add_post("/v1/inference/{model:.+}", self._rerank)
        if self.kind == "vllm":
            app.router.add_get("/health", self._health)
            app.router.add_get("/metrics", self._metrics)
        return app

    def _handler(self, endpoint: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await self._serve(request, endpoint)
            except FakeError as error:
                return error.response()
        return handle

    async def _serve(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        body = _parse_json(await request.read())
        self.requests.append(_received(request, body))
        await self._inject_faults()
        self._authorize(request)
        if not self._engine.alive:
            raise fail(self.error_shape, 500, "EngineCore encountered an issue")
        job = parse_job(endpoint, body, self.profile, self.error_shape, self.completion_tokens)
        self._check_model(job.model)
        if job.stream:
            return await self._stream(request, job)
        return await self._answer(request, job)

    async def _inject_faults(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.hang:
            await asyncio.get_running_loop().create_future()  # ends only by cancellation
        if self._failures:
            raise self._failures.popleft()
        if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            status = self._rng.choice(RANDOM_FAILURE_STATUSES)
            raise FakeError(status, canned_failure(self.error_shape, status, "application/json"))

    def _authorize(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise fail(self.error_shape, 401, "Incorrect API key provided", code="invalid_api_key")

    def _check_model(self, model: str) -> None:
        if model in self.models:
            return
        message = f"The model `{model}` does not exist"
        raise fail(self.error_shape, 404, message, param="model", code="model_not_found")

    async def _answer(self, request: web.Request, job: Job) -> web.Response:
        """A non-streaming answer, sent after the time generating it would take.

        A client that leaves while it is generated is still billed in full, as
        Novita bills its 499s.
        """
        async with self._engine.slot(job.model):
            duration = 0.0
            if job.endpoint != "embeddings":
                duration = self.ttft_s + self.token_delay_s * max(0, job.tokens_per_choice - 1)
            try:
                if duration > 0:
                    await asyncio.sleep(duration)
            except asyncio.CancelledError:
                self._bill(job, job.completion_tokens, disconnected=True)
                raise
            self._bill(job, job.completion_tokens, disconnected=_gone(request))
        if job.endpoint == "embeddings":
            doc = bodies.embeddings(job, self.profile, self.prices)
        else:
            doc = bodies.completion(job, self.profile, self.prices, _new_id(job), int(time.time()))
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _stream(self, request: web.Request, job: Job) -> web.StreamResponse:
        """Headers, then a slot, then one write per piece until [DONE] or the client leaves."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
        except ConnectionResetError:
            return response
        pieces = stream_pieces(job, self.profile, self.prices, _new_id(job), int(time.time()),
                               self.ttft_s, self.token_delay_s)
        async with self._engine.slot(job.model):
            written, disconnected = 0, False
            self._open_streams += 1
            try:
                for piece in pieces:
                    if piece.delay_s > 0:
                        await asyncio.sleep(piece.delay_s)
                    if _gone(request):
                        disconnected = True
                        break
                    await response.write(piece.data)
                    written += piece.tokens
                else:
                    await response.write_eof()
            except ConnectionResetError:
                disconnected = True
            except asyncio.CancelledError:
                disconnected = True
                raise
            finally:
                self._open_streams -= 1
                self._bill(job, written, disconnected)
        return response

    def _bill(self, job: Job, completion_tokens: int, disconnected: bool) -> None:
        self.ledger.append(Bill(
            prompt_tokens=job.prompt_tokens, completion_tokens=completion_tokens,
            cost_usd_nano=self.prices.cost_nano(job.prompt_tokens, completion_tokens),
            disconnected=disconnected, model=job.model, stream=job.stream,
            endpoint=job.endpoint, ended_at=time.monotonic()))

    async def _rerank(self, request: web.Request) -> web.Response:
        try:
            body = _parse_json(await request.read())
            self.requests.append(_received(request, body))
            await self._inject_faults()
            self._authorize(request)
            model = request.match_info.get("model") or (body.get("model") if isinstance(body, dict) else None)
            self._check_model(model if isinstance(model, str) else "")
            doc = (rerank.inference_answer(body, self.prices.in_per_mtok) if self.kind == "deepinfra"
                   else rerank.cohere_answer(self.kind, body, self.error_shape))
        except FakeError as error:
            return error.response()
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _list_models(self, request: web.Request) -> web.Response:
        self.requests.append(_received(request, None))
        try:
            self._authorize(request)
        except FakeError as error:
            return error.response()
        doc = bodies.model_list(self.models, self.profile, self.prices, self.max_model_len,
                                int(time.time()))
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        self.probes.append(_received(request, None))
        return web.Response(status=200 if self._engine.alive else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.probes.append(_received(request, None))
        if self.metrics_delay_s:
            await asyncio.sleep(self.metrics_delay_s)
        text = self._engine.metrics_text(self.models, list(self.ledger))
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _received(request: web.Request, body: Any) -> ReceivedRequest:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return ReceivedRequest(request.path, headers, body, time.monotonic(), request.method)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _new_id(job: Job) -> str:
    prefix = "chatcmpl-" if job.endpoint == "chat" else "cmpl-"
    return prefix + uuid.uuid4().hex[:24]
