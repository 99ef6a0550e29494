"""OpenTelemetry traces, when the standard OTEL_* variables ask for them (off by default).

On when `OTEL_TRACES_EXPORTER` is `otlp` or `console`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
(or its traces variant) is set; `OTEL_SDK_DISABLED=true` wins. Then every request
is a server span named after its route (`GET tenants.CurrentTenant`, not the URL,
which holds ids), continuing the caller's trace from a W3C `traceparent` header,
and every log line written inside it carries `trace_id` and `span_id`, so a log
line leads to its trace. The exporter reads its own settings from the standard
variables (endpoint, headers, timeout, service name via OTEL_SERVICE_NAME).
"""

from __future__ import annotations

import logging
import os

from flask import Flask, g, request
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def _wanted() -> str | None:
    """Which exporter the environment asks for, or None."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter in {"otlp", "console"}:
        return exporter
    if exporter == "none":
        return None
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def _exporter(kind: str) -> SpanExporter:
    if kind == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class TraceContextFilter(logging.Filter):
    """trace_id and span_id (hex, as trace backends show them) on every record made
    inside a recorded span."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.get_current_span().get_span_context()
        if span.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


def _start_span(tracer: trace.Tracer) -> None:
    parent = propagate.extract(request.headers)
    name = f"{request.method} {request.endpoint or 'unmatched'}"
    span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
    span.set_attribute("http.request.method", request.method)
    span.set_attribute("http.route", request.url_rule.rule if request.url_rule else "unmatched")
    g.wafaa_span = span
    g.wafaa_trace_token = context.attach(trace.set_span_in_context(span, parent))


def _end_span(error: BaseException | None = None) -> None:
    span = g.pop("wafaa_span", None)
    if span is None:
        return
    status = g.get("wafaa_status")
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end()
    context.detach(g.pop("wafaa_trace_token"))


def _record_status(response):
    g.wafaa_status = response.status_code
    return response


def init_app(app: Flask, *, processor: SpanProcessor | None = None) -> None:
    """`processor`: tests give one with an in-memory exporter."""
    kind = _wanted()
    if processor is None and kind is None:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "wafaa")}))
    provider.add_span_processor(processor or BatchSpanProcessor(_exporter(kind)))
    tracer = provider.get_tracer("wafaa")
    app.extensions["wafaa_tracer_provider"] = provider

    def start() -> None:
        _start_span(tracer)

    # First of the before_request hooks, so that every log line of the request
    # (the access line included) is inside the span.
    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.after_request(_record_status)
    app.teardown_request(_end_span)
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_wafaa", False) and not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())
