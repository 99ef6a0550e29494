"""OpenTelemetry, when configured: a span per request, continuing the caller's
trace, and its ids on every log line of the request. The SDK runs for real with an
in-memory exporter: nothing is sent anywhere."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wafaa import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_requests_are_spans_and_their_log_lines_carry_the_ids(make_app, capsys):
    app = make_app()
    exported = InMemorySpanExporter()
    tracing.init_app(app, processor=SimpleSpanProcessor(exported))
    capsys.readouterr()
    response = app.test_client().get("/api/v1/system/info", headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
    assert response.status_code == 200
    (span,) = exported.get_finished_spans()
    assert span.name == "GET system.info"
    assert format(span.context.trace_id, "032x") == TRACE_ID  # the caller's trace, continued
    assert format(span.parent.span_id, "016x") == PARENT
    assert span.attributes["http.response.status_code"] == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "wafaa.access"]
    assert access and access[-1]["trace_id"] == TRACE_ID
    assert access[-1]["span_id"] == format(span.context.span_id, "016x")


def test_off_unless_the_environment_asks(make_app, monkeypatch):
    assert "wafaa_tracer_provider" not in make_app().extensions
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert "wafaa_tracer_provider" not in make_app().extensions
    monkeypatch.setenv("OTEL_SDK_DISABLED", "")
    assert "wafaa_tracer_provider" in make_app().extensions
