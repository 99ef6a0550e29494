"""gunicorn's gthread worker, with the connections shared evenly among the workers
and a connection's next request read by the thread that answered the last.

gunicorn's workers accept from one shared listening socket, and a keep-alive
connection stays with the worker that accepted it. Whichever worker wakes first
takes a burst of new connections: under `make bench`'s 32 connections the split
between two workers was 26/6, 27/5, 30/2, 24/8 (`ss -tnp` during the runs), and
the worker holding more connections answers each of them more slowly, which is
the tail the clients see (docs/performance.md). Behind a load balancer that
keeps its connections open, a split like that lasts until they close.

So a worker leaves a new connection to a sibling holding fewer connections than
itself (by more than SLACK), as Envoy's `exact_balance` connection balancer does
among its threads: it stops accepting for a moment (PAUSE_S) and the sibling,
woken by the same readable socket, takes it. The counts are in memory shared by
the master and its workers (ConnectionBoard, made before the first fork).

Balance never holds a connection back for long: a sibling that is full or
stopping counts as taking none, and one whose main loop has not turned since it
was left a connection STALL_S ago (stopped, hung, or blocked in gunicorn's own
graceful close of a connection, which can take up to 2 s) is passed over.

After answering on a keep-alive connection, gunicorn's thread hands it back to
the worker's main loop (a callback through a pipe, the poller, the thread pool's
queue: a dozen system calls and two thread wake-ups) before the next request on
it is read. A client that sends its next request at once (a proxy's pooled
connection, an API client in a loop) finds the thread still waiting for it
instead, for up to LINGER_S, as long as every connection waiting for a thread
can have one (otherwise one busy connection would keep its thread from the
others); a quieter connection goes back to the poller as before. Taking turns
with the same code without it, under `wrk -c32`: 11 % more `GET /tenants/me`
(docs/performance.md).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import select
import threading
import time
from collections.abc import Iterable

from gunicorn.workers.gthread import ThreadWorker

SLACK = 1  # a sibling is left the connection when it holds at least SLACK + 1 fewer
PAUSE_S = 0.002  # how long a worker that left a connection to a sibling stops accepting
STALL_S = 0.1  # a sibling that has not turned its loop this long after being left one is passed over
ABSENT = -1  # a slot no live worker holds
NOT_ACCEPTING = 2**62  # a worker that takes no connection (full, stopping, not started yet)
LINGER_S = 0.002  # how long a thread waits for the next request on its keep-alive connection


class ConnectionBoard:
    """Per live worker, in shared memory: the connections it holds, and how many
    turns its main loop has made (to tell a live sibling from a stuck one)."""

    def __init__(self, slots: int) -> None:
        self.connections = multiprocessing.RawArray(ctypes.c_longlong, [ABSENT] * slots)
        self.turns = multiprocessing.RawArray(ctypes.c_longlong, slots)

    def claim(self, taken: Iterable[int | None]) -> int | None:
        """In the master, before a fork: a slot no live worker holds (None when
        there are more workers than slots: that worker accepts as gthread does)."""
        held = set(taken)
        for slot in range(len(self.connections)):
            if slot not in held:
                self.connections[slot] = NOT_ACCEPTING  # until the worker's loop runs
                return slot
        return None

    def release(self, slot: int) -> None:
        """In the master, for a worker that is gone."""
        self.connections[slot] = ABSENT


class Balance:
    """One worker's side of the board: what it publishes, and whom it leaves a
    new connection to."""

    def __init__(self, board: ConnectionBoard, slot: int) -> None:
        self.board, self.slot = board, slot
        # Per sibling: its loop's turns and the time when it was first left a
        # connection since it last turned.
        self._left: dict[int, tuple[int, float]] = {}

    def publish(self, connections: int, accepting: bool) -> None:
        self.board.connections[self.slot] = connections if accepting else NOT_ACCEPTING

    def turned(self) -> None:
        self.board.turns[self.slot] += 1

    def sibling_for(self, mine: int, now: float) -> int | None:
        """The sibling to leave a new connection to, if one holds fewer than
        `mine - SLACK` and is still turning its loop."""
        for other, theirs in enumerate(self.board.connections):
            if other == self.slot or theirs < 0 or theirs + SLACK >= mine:
                continue
            turns = self.board.turns[other]
            left = self._left.get(other)
            if left is None or left[0] != turns:  # it has turned since: live
                self._left[other] = (turns, now)
                return other
            if now - left[1] < STALL_S:
                return other
        return None


class BalancedThreadWorker(ThreadWorker):
    """gunicorn.conf.py's post_fork sets `balance` (without one, the worker
    accepts as gunicorn's gthread worker does)."""

    balance: Balance | None = None
    _paused_until = 0.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Connections handed to the thread pool and not yet taken by a thread, and
        # threads answering one: whether a thread may keep waiting on its own.
        self._threads_lock = threading.Lock()
        self._queued = 0
        self._busy = 0

    def accept(self, listener) -> None:
        # A stopping worker balances nothing: what still reaches it, it takes, as
        # gunicorn's own worker does, and publishes that it takes no more.
        balancing = self.alive and self.balance is not None
        if balancing and self.balance.sibling_for(self.nr_conns, time.monotonic()) is not None:
            self._paused_until = time.monotonic() + PAUSE_S
            super().set_accept_enabled(False)
            return
        super().accept(listener)
        self._publish()

    def enqueue_req(self, conn) -> None:
        with self._threads_lock:
            self._queued += 1
        try:
            super().enqueue_req(conn)
        except BaseException:  # the pool is shut down: it will never run
            with self._threads_lock:
                self._queued -= 1
            raise

    def handle(self, conn):
        with self._threads_lock:
            self._queued -= 1
            self._busy += 1
        try:
            # gunicorn's handle answers one request: True keeps the connection open
            # (then it goes back to the main loop), anything else ends or defers it.
            keepalive = super().handle(conn)
            while keepalive is True and self._may_wait_on(conn) and _next_request_within(conn, LINGER_S):
                keepalive = super().handle(conn)
        finally:
            with self._threads_lock:
                self._busy -= 1
        if not self.alive:  # max_requests reached here: stop being counted on at once
            self._publish()
        return keepalive

    def _may_wait_on(self, conn) -> bool:
        # Only while each connection waiting for a thread has one to take (idle,
        # or one the pool may still start): no busy connection keeps a thread
        # from another.
        return self.alive and not conn.is_http2 and self._queued <= self.cfg.threads - self._busy

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self._publish()  # SIGTERM: stop being counted on before the loop notices

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop enables accepting whenever there is room: not during a pause.
        if enabled and time.monotonic() < self._paused_until:
            return
        super().set_accept_enabled(enabled)
        self._publish()

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # gunicorn's own, with the board kept up to date and a pause's end as a deadline.
        self._publish()
        super().wait_for_and_dispatch_events(select_timeout(timeout, self._paused_until, time.monotonic()))
        if self.balance is not None:
            self.balance.turned()

    def _publish(self) -> None:
        # A pause is not a refusal: a pausing worker still counts what it holds.
        if self.balance is not None:
            self.balance.publish(self.nr_conns, self.alive and self.nr_conns < self.worker_connections)


def select_timeout(timeout: float, paused_until: float, now: float) -> float:
    """How long the main loop may wait for events: until a pause that is still
    ahead ends (then it accepts again), else gunicorn's own timeout. A pause
    long past is no deadline (a full worker would spin)."""
    return min(timeout, paused_until - now) if paused_until > now else timeout


def _next_request_within(conn, seconds: float) -> bool:
    """Whether the connection has its next request (or the client's end) to read
    within `seconds`: bytes read ahead with the last one, or the socket readable."""
    if conn.parser.unreader.buf.getvalue():
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(seconds * 1000))
