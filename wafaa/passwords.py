"""Password hashing with bcrypt, and the rules a new password must meet.

Every verification costs exactly one bcrypt check, whether or not the account
exists or the password is even acceptable, so response times do not reveal which
emails have accounts.
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import bcrypt
from flask import Flask, current_app

from wafaa.admission import stepped_out
from wafaa.cpu_affinity import unpin_this_thread
from wafaa.errors import Busy

MIN_PASSWORD_LENGTH = 12
# bcrypt only reads the first 72 bytes; longer passwords are refused outright
# rather than silently truncated.
MAX_PASSWORD_BYTES = 72


def password_problem(password: str) -> str | None:
    """Why `password` cannot be set, or None if it can."""
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        return "Password must be valid Unicode text."
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if len(encoded) > MAX_PASSWORD_BYTES:
        return f"Password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt ignores the rest)."
    if "\x00" in password:
        # bcrypt stops reading at a NUL byte: everything after it would be ignored.
        return "Password must not contain NUL characters."
    return None


def _rounds() -> int:
    return current_app.config["BCRYPT_ROUNDS"]


class HashingGate:
    """Bounds the CPU this worker process spends on bcrypt, and the threads that
    logins take, so that a flood of logins cannot starve the rest of the API.

    At most `slots` hashes run at once (bcrypt releases the GIL: each takes a
    core), on threads of the lowest CPU priority (_lower_priority), so that a
    request of the API is never queued behind a password check for a core. A hash
    waits for a slot `wait` seconds at most, give or take half: a flood's
    connections are held meanwhile, on a sleeping thread with neither the GIL nor
    a database connection, and come back spread out rather than all at once. At
    most `logins` logins are in progress (hashing, or waiting to); one more is
    refused at once. Either refusal is a 503 with Retry-After (wafaa.errors.Busy).
    Every login, whatever its email, passes the same gates: waiting tells nothing.

    Under a flood of failed logins (wafaa.ratelimit.check_login_failure_budget) a
    login's check also takes the host's one slot (`host`, HostSlot), shared by the
    workers: one core hashes, and the others are the API's. Busy cores at the
    lowest priority still cost the API's tail: on the 2-core reference machine
    two idle-class busy loops raised an idle request's p99 2.8x, one loop 2.1x
    (docs/performance.md).
    """

    def __init__(self, slots: int, logins: int, wait: float, host: HostSlot) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._logins = threading.BoundedSemaphore(logins)
        self._wait = wait
        self._held = threading.local()
        self._host = host

    @contextmanager
    def login(self) -> Iterator[None]:
        if not self._logins.acquire(blocking=False):
            raise Busy()
        try:
            yield
        finally:
            self._logins.release()

    def hold(self) -> None:
        """Wait as long as a login that gets no slot does, for a login refused for
        another reason (the service-wide failure budget): a flood's refusals must
        not come back faster than its waits."""
        with stepped_out():
            time.sleep(self._jittered_wait())

    def _jittered_wait(self) -> float:
        return self._wait * random.uniform(0.5, 1.5)

    @contextmanager
    def slot(self, host_wide: bool = False) -> Iterator[None]:
        """A hashing slot for this thread, for as long as the block runs, and with
        `host_wide` the host's one slot too, within the same wait. A login takes it
        before anything else (before its database round trips), so that a login
        that must wait costs nothing but the wait."""
        if getattr(self._held, "slot", False):  # this thread has one already
            yield
            return
        deadline = time.monotonic() + self._jittered_wait()
        with stepped_out():
            got_slot = self._slots.acquire(timeout=deadline - time.monotonic())
        if not got_slot:
            raise Busy()
        on_host = False
        try:
            if host_wide:
                with stepped_out():
                    on_host = self._host.acquire(deadline)
                if not on_host:
                    raise Busy()
            self._held.slot = True
            yield
        finally:
            self._held.slot = False
            if on_host:
                self._host.release()
            self._slots.release()

    def run(self, function: Callable[..., bytes], *args: bytes) -> bytes:
        """`function(*args)` in a hashing slot, on a low-priority thread."""
        with self.slot():
            future = _hashing_threads().submit(function, *args)
            with stepped_out():
                return future.result()


class HostSlot:
    """One holder at a time among the processes that open the same file (the
    workers of one gunicorn instance), by an exclusive flock on it, and among this
    process's threads, by a lock (threads share their process's flock). Without a
    file, this process alone."""

    POLL_SECONDS = 0.01  # flock cannot wait with a timeout; a held login polls

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._file: tuple[int, int] | None = None

    def acquire(self, deadline: float) -> bool:
        """True once held; False at `deadline` (time.monotonic())."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        if self._path is None:
            return True
        descriptor = self._descriptor()
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._lock.release()
                    return False
                time.sleep(self.POLL_SECONDS)

    def release(self) -> None:
        if self._path is not None:
            fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
        self._lock.release()

    def _descriptor(self) -> int:
        # Opened by each process itself: a descriptor inherited across fork would
        # share its flock with the parent's.
        if self._file is None or self._file[0] != os.getpid():
            self._file = (os.getpid(), os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return self._file[1]


# Where Linux's idle scheduling class is missing: bcrypt niced this much below the
# API instead (not 19: logins must still finish when the API keeps the cores busy).
HASHING_NICE = 10
_threads: tuple[int, ThreadPoolExecutor] | None = None
_threads_lock = threading.Lock()


def _lower_priority() -> None:
    """Run this hashing thread in Linux's SCHED_IDLE class: any other thread that
    wakes (a request of the API, PostgreSQL, Redis) takes the core at once, where a
    nice value only shortens the hash's turns (measured with `make bench`'s flood:
    p99 x2.4-2.8 of idle against x3-3.7 at nice 10 or 19). The hash gets whatever
    the API leaves: under 32 connections of API load, ~1 s instead of 0.25 s.
    Lowering one's own priority needs no privilege; each thread has its own.
    Nor is it pinned to its worker's CPU (wafaa.cpu_affinity): a hash takes any
    CPU that is free."""
    unpin_this_thread()
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        try:
            os.setpriority(os.PRIO_PROCESS, thread, HASHING_NICE)
        except (AttributeError, OSError):
            pass


def _hashing_threads() -> ThreadPoolExecutor:
    """The process's hashing threads (made after a fork, never inherited, and only
    as many as are ever busy at once, 64 at most); the gates' semaphores decide
    how many hashes run."""
    global _threads
    with _threads_lock:
        if _threads is None or _threads[0] != os.getpid():
            _threads = (os.getpid(), ThreadPoolExecutor(64, "wafaa-bcrypt", _lower_priority))
        return _threads[1]


def gate() -> HashingGate:
    return current_app.extensions["wafaa_hashing_gate"]


def init_app(app: Flask) -> None:
    app.extensions["wafaa_hashing_gate"] = HashingGate(
        app.config["PASSWORD_HASH_CONCURRENCY"],
        app.config["LOGIN_CONCURRENCY"],
        app.config["PASSWORD_HASH_WAIT_MS"] / 1000,
        HostSlot(app.config["PASSWORD_HASH_LOCK_FILE"]),
    )


def _hashpw(password: bytes, salt: bytes) -> bytes:
    """bcrypt, in one of the process's hashing slots."""
    return gate().run(bcrypt.hashpw, password, salt)


def hash_password(password: str) -> str:
    """Hash a new password, which must meet today's rules."""
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    return rehash(password)


def rehash(password: str) -> str:
    """Hash an existing password, just verified, at the configured cost.

    No rules: a password set under older rules (say, shorter) must keep working
    when BCRYPT_ROUNDS goes up. A login only re-hashes a password bcrypt can take
    (hash_with_salt returned a candidate for it).
    """
    return _hashpw(password.encode("utf-8"), bcrypt.gensalt(_rounds())).decode("ascii")


DUMMY_PASSWORD = b"wafaa-dummy-password"


def hash_with_salt(password: str, salt: str) -> str | None:
    """The presented password hashed with an account's salt (wafaa_login_salt), for
    the database to compare with the stored hash: the one bcrypt check of a login.

    A password bcrypt cannot take (over 72 bytes, a NUL) costs the same check, on
    a dummy with the same salt, and gives None: no match. So does a stored hash
    that is not bcrypt, checked at today's cost.
    """
    # surrogatepass: a lone surrogate cannot match any stored password, but must
    # cost the same bcrypt check as any other wrong password, not an exception.
    candidate = password.encode("utf-8", "surrogatepass")
    usable = len(candidate) <= MAX_PASSWORD_BYTES and b"\x00" not in candidate
    try:
        hashed = _hashpw(candidate if usable else DUMMY_PASSWORD, salt.encode("ascii"))
    except ValueError:  # not a bcrypt salt (UnicodeEncodeError is one too)
        _hashpw(DUMMY_PASSWORD, bcrypt.gensalt(_rounds()))
        return None
    return hashed.decode("ascii") if usable else None


def salt_rounds(salt: str) -> int:
    """The cost factor of a bcrypt salt or hash ($2b$12$...), 0 if unreadable."""
    try:
        return int(salt.split("$")[2])
    except (IndexError, ValueError):
        return 0
