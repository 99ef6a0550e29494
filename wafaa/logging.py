"""JSON log lines on stdout, each carrying the request, tenant and user it belongs to.

One access-log line per request (method, path, status, duration). Paths are logged
without their query string, request bodies and headers are never logged, and extra
fields whose names suggest a secret are masked, so a password or token cannot reach
the log by accident.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from wafaa.admission import received_at

# A client-supplied request id is kept only if it is short and plain, so it is
# safe to echo in a header and a log line.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
SECRET_NAME = re.compile(r"pass|secret|token|authoriz|hash|cookie", re.IGNORECASE)
MASK = "[redacted]"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_CONTEXT_ATTRS = ("request_id", "tenant_id", "user_id")


def current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (so test capture sees it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


class RequestContextFilter(logging.Filter):
    """Adds request_id, tenant_id and user_id to records made inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            context = vars(g._get_current_object())  # one lookup of `g`, not one per name
            for name in _CONTEXT_ATTRS:
                value = context.get(name)
                if value is not None and not hasattr(record, name):
                    setattr(record, name, str(value))
        return True


@functools.lru_cache(maxsize=1024)
def _is_secret(name: str) -> bool:
    """Field names are few and the same on every line: each is matched once."""
    return bool(SECRET_NAME.search(name))


def _message_and_fields(record: logging.LogRecord) -> tuple[str, dict]:
    """A line's message, and what it says beyond it: the fields of a message
    logged as a dict (gunicorn.conf.py's ready line: `event` is the message) and
    the extra fields, secrets masked alike, and the type (only) of an exception."""
    if isinstance(record.msg, dict) and not record.args:
        message, fields = str(record.msg.get("event", "")), {k: v for k, v in record.msg.items() if k != "event"}
    else:
        message, fields = record.getMessage(), {}
    fields.update((name, value) for name, value in vars(record).items() if name not in _STANDARD_ATTRS)
    fields = {name: MASK if _is_secret(name) else value for name, value in fields.items() if name[:1] != "_"}
    if record.exc_info and record.exc_info[1] is not None:
        # The type only: exception messages can quote data, tracebacks belong in
        # an error tracker, not in the log stream.
        fields["error_type"] = type(record.exc_info[1]).__qualname__
    return message, fields


# One encoder for every line: json.dumps with options builds a new one per call.
_LINE_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the names log pipelines recognise without a
    mapping: `timestamp` (ISO 8601, UTC), `level` and `severity` (the same; the
    second is what Google Cloud Logging and others read), `logger`, `message`.
    A message logged as a dict (gunicorn.conf.py's ready line) gives fields of
    the line, not a quoted string."""

    def format(self, record: logging.LogRecord) -> str:
        message, fields = _message_and_fields(record)
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "severity": record.levelname,
            "logger": record.name,
            "message": message,
        }
        line.update(fields)
        return _LINE_ENCODER.encode(line)


class ConsoleFormatter(logging.Formatter):
    """For a person at a terminal (`make run`): time, level, logger, message, then
    the fields as key=value. Same masking as the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        message, fields = _message_and_fields(record)
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{when} {record.levelname:<7} {record.name}: {message}" + (f"  {pairs}" if pairs else "")


FORMATTERS = {"json": JsonFormatter, "console": ConsoleFormatter}


def configure(level: str, log_format: str = "json") -> None:
    """Route every logger through one handler on stdout (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_wafaa", False):
            root.removeHandler(handler)
    handler = _Stdout()
    handler._wafaa = True  # type: ignore[attr-defined]
    handler.setFormatter(FORMATTERS[log_format]())
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # No line shows where it was logged from, nor the thread or process: the
    # logging HOWTO's optimisations, which spare every record a walk up the stack
    # (the access line is written once per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Werkzeug's request lines duplicate the access log and include query strings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


access_log = logging.getLogger("wafaa.access")


def _start_request() -> None:
    incoming = request.environ.get(_REQUEST_ID_ENVIRON, "")
    g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    context, current = g._get_current_object(), request._get_current_object()
    response.headers[REQUEST_ID_HEADER] = context.get("request_id") or ""
    # From the request's arrival (wafaa.admission), as the metrics time it: its
    # wait for a turn included.
    duration_ms = round((time.perf_counter() - received_at(current.environ)) * 1000, 2)
    access_log.info(
        "request",
        extra={
            "method": current.method,
            "path": current.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "remote_addr": current.remote_addr,
        },
    )
    return response


def init_app(app: Flask) -> None:
    configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    # First in, last out: the request id exists before any other hook runs, and
    # the access line is written after every other after_request hook.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request_funcs.setdefault(None, []).insert(0, _finish_request)
