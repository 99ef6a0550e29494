"""gunicorn's workers share new connections evenly (wafaa.balanced_worker),
balance never holds a connection back from a worker that can take it, and a
keep-alive connection's next request is answered however soon or late it comes."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.servers import GunicornServer
from wafaa.balanced_worker import ABSENT, NOT_ACCEPTING, STALL_S, Balance, ConnectionBoard, select_timeout


def _board(*connections: int) -> ConnectionBoard:
    board = ConnectionBoard(len(connections))
    for slot, count in enumerate(connections):
        board.connections[slot] = count
    return board


def test_a_connection_is_left_to_a_sibling_holding_fewer():
    balance = Balance(_board(0, 5, 7), slot=0)
    assert balance.sibling_for(mine=7, now=1.0) == 1
    assert balance.sibling_for(mine=6, now=1.0) is None  # one more than the sibling: take it
    assert balance.sibling_for(mine=3, now=1.0) is None


@pytest.mark.parametrize("sibling", [NOT_ACCEPTING, ABSENT])
def test_a_sibling_that_takes_none_is_never_waited_for(sibling):
    assert Balance(_board(0, sibling), slot=0).sibling_for(mine=30, now=1.0) is None


def test_a_sibling_whose_loop_stopped_turning_is_passed_over():
    board = _board(0, 2)
    balance = Balance(board, slot=0)
    assert balance.sibling_for(mine=10, now=100.0) == 1
    assert balance.sibling_for(mine=10, now=100.0 + STALL_S / 2) == 1  # it may still be waking
    assert balance.sibling_for(mine=10, now=100.0 + 2 * STALL_S) is None  # it has not turned since
    board.turns[1] += 1  # it turned: live again
    assert balance.sibling_for(mine=10, now=200.0) == 1


def test_the_main_loop_waits_for_a_pause_to_end_and_no_longer():
    assert select_timeout(1.0, paused_until=100.002, now=100.0) == pytest.approx(0.002)
    assert select_timeout(1.0, paused_until=0.0, now=100.0) == 1.0  # never paused
    assert select_timeout(1.0, paused_until=99.0, now=100.0) == 1.0  # a pause long over: no spinning
    assert select_timeout(0.5, paused_until=101.0, now=100.0) == 0.5


def test_slots_are_claimed_once_and_given_back():
    board = ConnectionBoard(2)
    assert board.claim([]) == 0
    assert board.connections[0] == NOT_ACCEPTING  # until its loop publishes
    assert board.claim([0]) == 1
    assert board.claim([0, 1]) is None  # more workers than slots: gthread as it is
    board.release(0)
    assert board.connections[0] == ABSENT
    assert board.claim([1]) == 0


def _held(server: GunicornServer) -> dict[int, int]:
    """Established connections to the server's port, per worker (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == server.port and fields[3] == "01":
                inodes.add(fields[9])
    held = {}
    for pid in server.worker_pids():
        fds = Path(f"/proc/{pid}/fd")
        links = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
        held[pid] = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
    return held


def _burst(server: GunicornServer, count: int) -> list[socket.socket]:
    """`count` connections opened at once, each answered once and kept open."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", server.port))
        except BlockingIOError:
            pass
        sockets.append(sock)
    for sock in sockets:
        sock.settimeout(10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for sock in sockets:
        assert sock.recv(65536).startswith(b"HTTP/1.1 "), "every connection is answered"
    return sockets


def _close(sockets: list[socket.socket], server: GunicornServer) -> None:
    for sock in sockets:
        sock.close()
    deadline = time.monotonic() + 10
    while sum(_held(server).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the workers' loops turn and publish their counts


def _both_serving(server: GunicornServer) -> None:
    """Until each worker has taken a connection: both loops are running (a worker
    still loading the app takes none, and the other takes them all meanwhile)."""
    sockets, deadline = [], time.monotonic() + 60
    while min(_held(server).values(), default=0) == 0:
        assert time.monotonic() < deadline, f"a worker never took a connection: {_held(server)}"
        sockets += _burst(server, 1)
        time.sleep(0.05)
    _close(sockets, server)


@pytest.mark.gunicorn
def test_a_burst_of_connections_is_split_evenly_and_again_after_a_worker_is_replaced(migrated):
    with GunicornServer(workers=2, threads=40) as server:
        _both_serving(server)
        for _ in range(3):
            sockets = _burst(server, 32)
            held = _held(server)
            assert sorted(held.values()) in ([16, 16], [15, 17]), held
            _close(sockets, server)
        gone = server.worker_pids()[0]
        os.kill(gone, signal.SIGKILL)
        server.wait_for_workers_replacing([gone])
        _both_serving(server)  # the new worker took the slot its predecessor held
        sockets = _burst(server, 32)
        held = _held(server)
        assert sorted(held.values()) in ([16, 16], [15, 17]), held
        _close(sockets, server)


@pytest.mark.gunicorn
def test_a_stopped_worker_is_not_waited_for(migrated):
    with GunicornServer(workers=2, threads=40) as server:
        _both_serving(server)
        frozen, serving = server.worker_pids()
        os.kill(frozen, signal.SIGSTOP)
        try:
            sockets = _burst(server, 16)  # each answered (a socket timeout otherwise)
            assert _held(server) == {frozen: 0, serving: 16}
            for sock in sockets:
                sock.close()
        finally:
            os.kill(frozen, signal.SIGCONT)


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One response (with a Content-Length) off the socket: (response, bytes after it)."""
    data = buffered
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


REQUEST = b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.gunicorn
def test_a_keep_alive_connection_is_answered_at_once_later_and_pipelined(migrated):
    with GunicornServer(workers=2, threads=8) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        statuses, rest = [], b""
        for pause in (0, 0, 0.2, 0, 1.0):  # within the thread's wait, and well after it
            time.sleep(pause)
            sock.sendall(REQUEST)
            response, rest = _read_response(sock, rest)
            statuses.append(response.split(b"\r\n", 1)[0])
        sock.sendall(REQUEST * 3)  # pipelined: read ahead with the first
        for _ in range(3):
            response, rest = _read_response(sock, rest)
            statuses.append(response.split(b"\r\n", 1)[0])
        assert statuses == [b"HTTP/1.1 200 OK"] * 8
        assert rest == b""


@pytest.mark.gunicorn
def test_busy_connections_do_not_keep_the_threads_from_a_new_one(migrated):
    """Two clients keep ten requests each in flight on a worker of two threads:
    each thread always has its connection's next request at hand, and a new
    connection must still get a thread (gunicorn hands a connection back to its
    queue after every request; the wait for a next request only happens while
    no other connection is waiting)."""
    with GunicornServer(workers=1, threads=2) as server:
        stop, served = threading.Event(), []

        def busy() -> None:
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.settimeout(10)
                sock.sendall(REQUEST * 10)
                count, rest = 0, b""
                while not stop.is_set():
                    _, rest = _read_response(sock, rest)
                    sock.sendall(REQUEST)
                    count += 1
                served.append(count)

        clients = [threading.Thread(target=busy) for _ in range(2)]
        for client in clients:
            client.start()
        try:
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.settimeout(3)  # the busy clients run on: a turn would never come
                sock.sendall(REQUEST)
                response, _ = _read_response(sock)
            assert response.startswith(b"HTTP/1.1 200 ")
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=15)
        assert len(served) == 2 and min(served) > 0, served
