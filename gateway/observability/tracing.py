"""OpenTelemetry traces of requests (the `otel` extra), drawn after the fact at settlement.

A request's span and its attempts' child spans are made from the times the request path
records anyway (time.monotonic, turned into epoch nanoseconds here), once the request is
settled: the request path itself neither imports OpenTelemetry nor waits on it. Spans leave
through a BatchSpanProcessor and OTLP over HTTP. Names and attributes follow the GenAI
semantic conventions: span `{gen_ai.operation.name} {gen_ai.request.model}`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.accounting.settlement import Outcome
from gateway.config import TracingConfig
from gateway.redact import without_credentials
from gateway.store import UsageRecord

OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings", "responses": "chat"}
DEFAULT_SERVICE = "llm-gateway"


class Tracer:
    """A Settler observer that turns each settled request into spans."""

    def __init__(self, config: TracingConfig, processor: SpanProcessor | None = None) -> None:
        service = config.service_name or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                        sampler=TraceIdRatioBased(config.sample_ratio))
        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # No endpoint: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and _HEADERS itself.
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint or None))
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("gateway")

    def settled(self, outcome: Outcome, record: UsageRecord) -> None:
        offset_ns = time.time_ns() - time.monotonic_ns()  # monotonic seconds -> epoch ns, as of now

        def epoch_ns(monotonic_s: float) -> int:
            return int(monotonic_s * 1e9) + offset_ns

        operation = OPERATIONS.get(record.endpoint, record.endpoint or "chat")
        span = self._tracer.start_span(f"{operation} {record.model}", kind=SpanKind.SERVER,
                                       start_time=epoch_ns(outcome.started),
                                       attributes=request_attributes(operation, outcome, record))
        if not span.is_recording():  # not sampled
            return
        parent = trace.set_span_in_context(span)
        for attempt in outcome.tries:
            self._attempt_span(attempt, operation, parent, epoch_ns, outcome.ended)
        if record.status >= 400:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", record.error_code or str(record.status))
        span.end(end_time=epoch_ns(outcome.ended))

    def _attempt_span(self, attempt: Any, operation: str, parent: Any, epoch_ns: Any, ended: float) -> None:
        route = attempt.route
        attributes = {"gen_ai.operation.name": operation, "gen_ai.request.model": route.upstream_model,
                      "gen_ai.provider.name": route.provider.kind, "gen_ai.system": route.provider.kind,
                      "gateway.provider": route.name, "url.full": without_credentials(attempt.endpoint.url),
                      "http.response.status_code": attempt.status}
        if attempt.first_byte_at:
            attributes["gateway.ttfb_ms"] = int((attempt.first_byte_at - attempt.began) * 1000)
        span = self._tracer.start_span(f"{operation} {route.upstream_model}", context=parent, kind=SpanKind.CLIENT,
                                       start_time=epoch_ns(attempt.began), attributes=attributes)
        if attempt.error is not None:
            span.set_status(Status(StatusCode.ERROR, attempt.error.message[:200]))
            span.set_attribute("error.type", attempt.error.code or attempt.error.type)
        elif not attempt.status:
            span.set_attribute("error.type", "abandoned")
        span.end(end_time=epoch_ns(attempt.ended or ended))

    def stop(self) -> None:
        """Send what is batched (blocking: call it off the event loop)."""
        self._provider.shutdown()


def request_attributes(operation: str, outcome: Outcome, record: UsageRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation, "gen_ai.request.model": record.model,
        "gen_ai.usage.input_tokens": record.prompt_tokens, "gen_ai.usage.output_tokens": record.completion_tokens,
        "http.response.status_code": record.status, "gateway.team": record.team,
        "gateway.cost_nano": record.cost_nano, "gateway.attempts": record.attempts,
        "gateway.request_id": record.request_id, "gateway.stream": record.stream,
    }
    answered = outcome.tries[-1] if outcome.tries and record.provider else None
    if answered is not None:
        attributes["gen_ai.response.model"] = answered.route.upstream_model
        attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = answered.route.provider.kind
    call = outcome.call
    if call is not None:
        if call.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = call.max_tokens
        temperature = call.body.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            attributes["gen_ai.request.temperature"] = float(temperature)
    if record.usage_estimated:
        attributes["gateway.usage_estimated"] = record.usage_estimated
    return attributes
