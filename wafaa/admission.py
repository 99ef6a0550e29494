"""How many requests of a worker process run at once.

gunicorn's gthread worker gives every connection a thread (256 of them: logins
held in a login flood sleep on theirs, wafaa.passwords), and every runnable thread
competes for the GIL. Under 32 connections, sixteen threads per worker handed the
GIL to each other at every socket call a request makes (the database, Redis): the
worker's core was 100 % busy with the GIL held about 58 % of the time, and half of
the machine's CPU time went to the kernel (docs/performance.md).

So a request's Python runs only while it holds one of ACTIVE_REQUESTS_PER_WORKER
admissions; the others wait asleep, in arrival order (FairSlots). A request
reads its body before it asks for one (a slow upload must not hold the worker),
and its response is complete before it gives it back (nor a slow reader). Waits
that need no Python step out (`stepped_out`): a login waiting for a hashing slot,
the password check itself, a refused login's held wait (wafaa.passwords), so that
a flood of logins never holds the API's admissions.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from flask import Flask

_held = threading.local()  # the admission this thread holds, if any
RECEIVED_AT = "wafaa.received_at"  # environ key: time.perf_counter() on arrival


def received_at(environ: dict) -> float:
    """When the request arrived at the app's door (before its body and its turn)."""
    return environ.get(RECEIVED_AT) or time.perf_counter()


class FairSlots:
    """A semaphore that serves its waiters first in, first out: a freed slot is
    handed to the oldest waiter, never taken by a thread that just arrived
    (threading.Semaphore lets newcomers barge ahead of waiters, which under load
    gave `make bench` a p99 well above the median's spread)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            handed = threading.Lock()
            handed.acquire()
            self._waiters.append(handed)
        handed.acquire()  # released by release(): the slot is ours

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class Admission:
    """WSGI middleware: at most `slots` requests inside the app at once."""

    def __init__(self, wsgi_app, slots: int, max_body: int) -> None:
        self._wsgi_app = wsgi_app
        self._slots = FairSlots(slots)
        self._max_body = max_body

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        # The access line's and the latency metric's clock start here, so that
        # the wait for a turn counts as the client sees it.
        environ[RECEIVED_AT] = time.perf_counter()
        self._buffer_body(environ)
        self._acquire()
        try:
            response = self._wsgi_app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()
        finally:
            self._release()

    def _acquire(self) -> None:
        self._slots.acquire()
        _held.admission = self

    def _release(self) -> None:
        _held.admission = None
        self._slots.release()

    def _buffer_body(self, environ: dict) -> None:
        """The body, read from the client into memory before admission: at most
        one byte more than MAX_CONTENT_LENGTH, so that wafaa.http_guards can
        still tell a chunked body that is too large. A declared length over the
        limit is not read at all (it is refused with 413 unread)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return  # Werkzeug and the guards answer a malformed length
        if length > self._max_body or (length < 0 and "HTTP_TRANSFER_ENCODING" not in environ):
            return
        stream = environ["wsgi.input"]
        body = stream.read(length if length >= 0 else self._max_body + 1)
        environ["wsgi.input"] = io.BytesIO(body)


@contextmanager
def stepped_out() -> Iterator[None]:
    """Give this thread's admission to another request while the block waits on
    something that needs no Python (a lock, a sleep, a thread of its own), and
    take one back (in turn) after it."""
    admission = getattr(_held, "admission", None)
    if admission is None:  # not in a request, or no admission in this app
        yield
        return
    admission._release()
    try:
        yield
    finally:
        admission._acquire()


def init_app(app: Flask) -> None:
    """Outermost middleware: after everything else has wrapped wsgi_app."""
    app.wsgi_app = Admission(app.wsgi_app, app.config["ACTIVE_REQUESTS_PER_WORKER"], app.config["MAX_CONTENT_LENGTH"])
