"""Every connection state has a deadline: hundreds of connections held in each state all close in time.

States (http/protocol.py): idle after an answer (keep_alive_timeout, lowered
here from its 5 s), and, with client_timeout, a new connection that sends nothing, a lone CRLF after an
answer, a partial head, a slow body. The server's descriptor count
(/proc/PID/fd) must come back to its baseline.
"""

from __future__ import annotations

import os
import select
import socket
import time
from pathlib import Path

import pytest

from ..conftest import Server, read_responses, rss_kib

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

CLIENT_TIMEOUT = 2.0
KEEP_ALIVE_SECONDS = 1.5
PER_STATE = 100
PREFLIGHT = (
    b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n\r\n"
)
# state -> (bytes sent first, whether an answer comes, bytes sent after it, deadline, whether a 408 ends it)
STATES = {
    "idle after an answer": (PREFLIGHT, True, b"", KEEP_ALIVE_SECONDS, False),
    "lone CRLF after an answer": (PREFLIGHT, True, b"\r\n", CLIENT_TIMEOUT, False),
    "nothing sent": (b"", False, b"", CLIENT_TIMEOUT, False),
    "partial head": (PREFLIGHT[:40], False, b"", CLIENT_TIMEOUT, True),
    "partial head pipelined after a request": (PREFLIGHT + PREFLIGHT[:40], True, b"", CLIENT_TIMEOUT, True),
    # answered at its head: the stalled body closes the connection without a second answer
    "slow body": (
        PREFLIGHT.replace(b"\r\n\r\n", b"\r\nContent-Length: 10\r\n\r\nabc"),
        True,
        b"",
        CLIENT_TIMEOUT,
        False,
    ),
}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("mode", ["fast", "asgi"])
def test_connections_in_every_state_close_by_their_deadline(tmp_path: Path, mode: str) -> None:
    policy = {"rate_limit": {"enabled": False}, "client_timeout": CLIENT_TIMEOUT,
              "keep_alive_timeout": KEEP_ALIVE_SECONDS}  # fmt: skip
    server = Server(tmp_path, policy, {}, [] if mode == "fast" else ["--no-fast-path"])
    try:
        time.sleep(0.5)
        baseline = open_fds(server.proc.pid)
        held: list[tuple[str, socket.socket, float]] = []
        for state, (first, answered, after, _, _) in STATES.items():
            for _ in range(PER_STATE):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                if first:
                    sock.sendall(first)
                if answered:
                    assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 204 "), state
                if after:
                    sock.sendall(after)
                held.append((state, sock, time.monotonic()))
        assert open_fds(server.proc.pid) >= baseline + len(held)
        closed_after: dict[str, list[float]] = {state: [] for state in STATES}
        timeouts: dict[str, int] = dict.fromkeys(STATES, 0)
        waiting = {sock: (state, since) for state, sock, since in held}
        give_up = time.monotonic() + KEEP_ALIVE_SECONDS + 5
        while waiting and time.monotonic() < give_up:
            readable, _, _ = select.select(list(waiting), [], [], 0.5)
            for sock in readable:
                data = sock.recv(65536)
                state, since = waiting[sock]
                timeouts[state] += data.startswith(b"HTTP/1.1 408 ")
                if not data:
                    closed_after[state].append(time.monotonic() - since)
                    del waiting[sock]
                    sock.close()
        assert not waiting, f"{len(waiting)} connections still open: {sorted({s for s, _ in waiting.values()})}"
        for state, (_, _, _, deadline, times_out) in STATES.items():
            seen = closed_after[state]
            assert len(seen) == PER_STATE, state
            assert deadline - 0.5 <= min(seen) and max(seen) <= deadline + 2.5, (state, min(seen), max(seen))
            assert timeouts[state] == (PER_STATE if times_out else 0), state
        deadline = time.monotonic() + 5
        while open_fds(server.proc.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_fds(server.proc.pid) == baseline
        assert server.request("GET", "/health", fresh=True).status == 200
    finally:
        server.stop()
    assert "Traceback" not in server.logs()


@pytest.mark.parametrize("mode", ["fast", "asgi"])
def test_a_client_that_never_reads_is_bounded_and_then_dropped(tmp_path: Path, mode: str) -> None:
    """Pipelined preflights written for 3 s, nothing read: the server stops reading, memory stays flat,
    and the connection is gone within keep-alive + client_timeout of the client going quiet."""
    policy = {"rate_limit": {"enabled": False}, "client_timeout": CLIENT_TIMEOUT,
              "keep_alive_timeout": KEEP_ALIVE_SECONDS}  # fmt: skip
    server = Server(tmp_path, policy, {}, [] if mode == "fast" else ["--no-fast-path"])
    try:
        time.sleep(0.3)
        baseline, rss_before = open_fds(server.proc.pid), rss_kib(server.proc.pid)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        burst, sent, stop = PREFLIGHT * 100, 0, time.monotonic() + 3
        while time.monotonic() < stop:
            try:
                sent += sock.send(burst)
            except BlockingIOError:
                time.sleep(0.01)
        quiet = time.monotonic()
        grown = rss_kib(server.proc.pid) - rss_before
        assert grown < 20 * 1024, f"RSS grew {grown} KiB after {sent // len(PREFLIGHT)} requests written"
        while (
            open_fds(server.proc.pid) > baseline
            and time.monotonic() < quiet + KEEP_ALIVE_SECONDS + 2 * CLIENT_TIMEOUT + 2
        ):
            time.sleep(0.2)
        assert open_fds(server.proc.pid) == baseline, "the server still holds the connection"
        sock.close()
        assert server.request("GET", "/health", fresh=True).status == 200
    finally:
        server.stop()
    assert "Traceback" not in server.logs()
