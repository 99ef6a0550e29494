"""gunicorn's workers pinned one per CPU (wafaa.cpu_affinity), their password
hashing free to take any CPU, and the setting's cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.servers import GunicornServer
from tests.support import PASSWORD
from wafaa.cpu_affinity import choose_cpu, should_pin

TWO = frozenset({0, 1})


@pytest.mark.parametrize(
    ("setting", "allowed", "usable", "workers", "expected"),
    [
        ("", TWO, 2, 2, True),  # auto: a worker for each CPU of its own
        ("auto", TWO, 2, 3, True),
        ("auto", TWO, 2, 1, False),  # a CPU would have no worker
        ("auto", frozenset(range(64)), 2, 2, False),  # a quota below the CPU set: the host's CPUs
        ("auto", frozenset({3}), 1, 1, False),  # one CPU: nothing to choose
        ("on", frozenset(range(64)), 2, 2, True),
        (" OFF ", TWO, 2, 2, False),
        ("on", frozenset(), 1, 1, False),  # not Linux
    ],
)
def test_when_workers_are_pinned(setting, allowed, usable, workers, expected):
    assert should_pin(setting, allowed, usable, workers) is expected


def test_an_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="GUNICORN_PIN_WORKERS"):
        should_pin("sometimes", TWO, 2, 2)


def test_each_new_worker_takes_the_cpu_with_fewest_workers():
    assert choose_cpu(TWO, []) == 0
    assert choose_cpu(TWO, [0]) == 1
    assert choose_cpu(TWO, [1]) == 0  # worker 0 was replaced: its successor takes CPU 0
    assert choose_cpu(TWO, [0, 1, 0]) == 1
    assert choose_cpu({4, 6}, [4, 9]) == 6  # a CPU no longer allowed counts for nothing


def _affinity(pid: int, tid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(tid)) if Path(f"/proc/{pid}/task/{tid}").exists() else frozenset()


@pytest.mark.gunicorn
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_workers_run_on_a_cpu_each_and_hash_passwords_on_any(migrated, factory):
    allowed = frozenset(os.sched_getaffinity(0))
    world = factory.world()
    with GunicornServer(workers=2, threads=4, env={"GUNICORN_PIN_WORKERS": "on"}) as server:
        workers = server.worker_pids()
        pinned = [_affinity(pid, pid) for pid in workers]
        assert all(len(cpus) == 1 for cpus in pinned) and len(set(pinned)) == 2, pinned
        # A login: whichever worker takes it hashes the password on a thread of
        # its own, which may use every CPU.
        response = requests.post(
            f"{server.url}/api/v1/auth/login", json={"email": world.owner.email, "password": PASSWORD}, timeout=60
        )
        assert response.status_code == 200, response.text
        threads = {pid: [int(tid) for tid in os.listdir(f"/proc/{pid}/task")] for pid in workers}
        free = {pid for pid, tids in threads.items() if any(_affinity(pid, tid) == allowed for tid in tids)}
        assert len(free) == 1, "the hashing thread of the worker that took the login may use every CPU"
        # The worker's own threads (the main one, the request threads) stay pinned.
        for pid, cpus in zip(workers, pinned, strict=True):
            assert _affinity(pid, pid) == cpus


@pytest.mark.gunicorn
def test_an_unknown_setting_stops_gunicorn_before_it_serves(migrated):
    server = GunicornServer(workers=1, threads=2, env={"GUNICORN_PIN_WORKERS": "sometimes"})
    try:
        with pytest.raises(RuntimeError, match="refusing to start: GUNICORN_PIN_WORKERS must be one of"):
            server.start()
    finally:
        server.log.close()
        Path(server.log.name).unlink(missing_ok=True)
