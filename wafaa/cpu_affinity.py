"""Which CPUs a gunicorn worker's threads run on (gunicorn.conf.py, wafaa.passwords).

With one worker per CPU, each worker is pinned to a CPU of its own: the kernel
otherwise moves the workers between the cores (and onto the one a PostgreSQL
backend or Redis was using), and each move costs the worker its warm caches. On
the 2-core reference machine, the same code pinned and unpinned, taking turns
under `wrk -c32`: `GET /tenants/me` at 1,172 req/s against 968, with 1.40 ms of
worker CPU per request against 1.59 ms (docs/performance.md).

A pinned worker's password hashing is not pinned: its hashing threads take
whichever CPU is free (at SCHED_IDLE priority, wafaa.passwords), as before, so
that two logins of one worker do not queue for one core while another idles.

GUNICORN_PIN_WORKERS: `auto` (the default) pins when every CPU this process may
use is a whole CPU of its own (no container quota below its CPU set) and there
is a worker for each; a container limited by quota alone sees every CPU of its
host, and pinning there would crowd its workers onto CPUs other containers use.
`on` pins whatever the CPUs; `off` never pins.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SETTINGS = ("auto", "on", "off")

# This process's CPUs before the worker pinned itself (None: not pinned).
_unpinned: frozenset[int] | None = None


def allowed_cpus() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: nothing to pin
        return frozenset()


def should_pin(setting: str, allowed: frozenset[int], usable: int, workers: int) -> bool:
    setting = (setting or "auto").strip().lower()
    if setting not in SETTINGS:
        raise ValueError(f"GUNICORN_PIN_WORKERS must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if setting == "off" or not allowed:
        return False
    return setting == "on" or (len(allowed) > 1 and usable == len(allowed) and workers >= len(allowed))


def choose_cpu(allowed: Iterable[int], taken: Iterable[int]) -> int:
    """The allowed CPU with the fewest live workers on it, the lowest first: workers
    replaced one at a time (max_requests) keep one per CPU."""
    load = {cpu: 0 for cpu in sorted(allowed)}
    for cpu in taken:
        if cpu in load:
            load[cpu] += 1
    return min(load, key=lambda cpu: (load[cpu], cpu))


def pin_process(cpu: int) -> None:
    """In a new worker, before it starts any thread (threads inherit it)."""
    global _unpinned
    _unpinned = allowed_cpus()
    os.sched_setaffinity(0, {cpu})


def unpin_this_thread() -> None:
    """Give the calling thread back every CPU the worker had before pinning."""
    if _unpinned:
        os.sched_setaffinity(0, _unpinned)
