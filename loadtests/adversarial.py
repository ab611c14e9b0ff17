"""What does an adversarial request cost the server, next to an ordinary rejection?

Starts the real service (``cors-handler serve`` on a loopback port), then sends
each case ``--requests`` times, every one on a fresh connection (several cases
end with the server closing the connection, so the baseline does the same).
For every case it prints the status seen, the server's CPU time per request
(from /proc/<pid>/schedstat: nanoseconds the event-loop thread ran, immune to
the client's own cost and to other load on the machine), the client-side
median latency, the ratio of CPU per request against the ordinary rejection
measured in the same run, and the server's RSS growth over the case.

    python -m loadtests.adversarial [--requests 1000]

Megabyte-sized cases send a tenth as many requests (the client's own sending
dominates otherwise); the per-request figures stay comparable.

Then the held connections: 16 and 100 connections that each send a request the
ASGI app must take (a body) and 256 KiB of tiny pipelined requests behind it in
one write, and never read. The server queues at most MAX_PIPELINED_REQUESTS of
them per connection and leaves the rest of the read unparsed until the queue
drains (``http.protocol``): it prints the RSS growth and its cost per connection.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Server, exchange, rss_kib

GOOD = b"https://app.example.com"
HEAD = b"OPTIONS /api HTTP/1.1\r\nHost: bench\r\n"
POLICY = {
    "allow_origins": [GOOD.decode()],
    "allow_headers": ["content-type", "x-request-id"],
    "rate_limit": {"enabled": False},
    "log_level": "warning",
}


def preflight(origin: bytes = GOOD, extra: bytes = b"") -> bytes:
    request = HEAD + b"Origin: " + origin + b"\r\nAccess-Control-Request-Method: GET\r\n" + extra
    return request + b"Connection: close\r\n\r\n"


def acrh(value: bytes) -> bytes:
    return preflight(extra=b"Access-Control-Request-Headers: " + value + b"\r\n")


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expected_status: int
    large: bool = False


BASELINE = "ordinary rejection (403)"
CASES = [
    Case(BASELINE, preflight(b"https://evil.example.com"), 403),
    Case("ordinary allow (204)", preflight(), 204),
    Case("ACRH: 1 MB of commas", acrh(b"," * 1_000_000), 431, large=True),
    Case("ACRH: 1 MB of spaces", acrh(b" " * 1_000_000), 431, large=True),
    Case("ACRH: 1000 empty items", acrh(b", " * 1000), 204),
    Case("ACRH: 4000 commas", acrh(b"," * 4000), 204),
    Case("ACRH: 100 distinct names", acrh(b",".join(b"x%d" % i for i in range(100))), 403),
    Case("ACRH: 800 distinct names", acrh(b",".join(b"x%d" % i for i in range(800))), 400),
    Case("ACRH: 5000 commas (over limit)", acrh(b"," * 5000), 400),
    Case("1000 ACRH header lines", preflight(extra=b"Access-Control-Request-Headers: x-request-id\r\n" * 1000), 431),
    Case("64 KB header", preflight(extra=b"X-Big: " + b"y" * 65536 + b"\r\n"), 431, large=True),
    Case("5000 headers", preflight(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(5000))), 431),
    Case("malformed request line", b"OPTIONS /api HTTP/1.1 extra\r\nHost: bench\r\n\r\n", 400),
    Case("invalid header bytes", preflight(extra=b"X-Bad\x01: v\r\n"), 400),
    Case("CR inside Origin", preflight(GOOD + b"\rX-Injected: yes"), 400),
    Case("non-ASCII Origin", preflight(b"https://\xe4pp.example.com"), 400),
    Case("duplicate Origin", preflight(extra=b"Origin: https://evil.example.com\r\n"), 400),
]


def send(port: int, raw: bytes) -> tuple[int, float]:
    """One request on a fresh connection; (status, seconds until the server closed)."""
    started = time.perf_counter()
    data = exchange(port, raw)
    return (int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0), time.perf_counter() - started


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


@dataclass(frozen=True)
class Result:
    case: Case
    statuses: frozenset[int]
    cpu_us: float
    median_us: float
    rss_growth_kib: int


def run_case(server: Server, case: Case, requests: int) -> Result:
    count = max(1, requests // 10) if case.large else requests
    send(server.port, case.raw)  # warm-up
    pid = server.proc.pid
    rss_before, cpu_before = rss_kib(pid), cpu_ns(pid)
    outcomes = [send(server.port, case.raw) for _ in range(count)]
    cpu = (cpu_ns(pid) - cpu_before) / count / 1000
    return Result(
        case,
        frozenset(status for status, _ in outcomes),
        cpu,
        statistics.median(seconds for _, seconds in outcomes) * 1e6,
        rss_kib(pid) - rss_before,
    )


def measure(requests: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), POLICY, {}, [])
        try:
            results = [run_case(server, case, requests) for case in CASES]
            health = server.request("GET", "/health", fresh=True).status
            if health != 200:
                raise RuntimeError(f"/health answered {health} after the adversarial cases")
        finally:
            server.stop()
        if "Traceback" in server.logs():
            raise RuntimeError("the server logged a traceback:\n" + server.logs())
    return results


PIPELINED_FIRST = b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nContent-Length: 1\r\n\r\nx"
TINY = b"OPTIONS / HTTP/1.1\r\n\r\n"


def held_pipelines(server: Server, connections: int, size: int = 256 * 1024) -> tuple[int, int]:
    """(RSS before, RSS peak) in KiB while ``connections`` clients hold ``size`` bytes of pipelined requests unread."""
    before = rss_kib(server.proc.pid)
    held = []
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(PIPELINED_FIRST + TINY * (size // len(TINY)))
            held.append(sock)
        peak, deadline = 0, time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(server.proc.pid))
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()
    return before, peak


def measure_held(counts: tuple[int, ...] = (16, 100)) -> list[tuple[int, int, int]]:
    """(connections, RSS before, RSS peak) for each count, each on a fresh server."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            server = Server(Path(tmp), POLICY, {}, [])
            try:
                exchange(server.port, preflight())  # warm up
                rows.append((count, *held_pipelines(server, count)))
            finally:
                server.stop()
    return rows


def report_held(rows: list[tuple[int, int, int]]) -> str:
    lines = ["pipelined behind a request with a body, 256 KiB per connection, never read:"]
    for count, before, peak in rows:
        growth = peak - before
        lines.append(f"  {count:>4} connections: RSS {before / 1024:.1f} -> {peak / 1024:.1f} MiB "
                     f"(+{growth / 1024:.1f} MiB, {growth / count:.0f} KiB per connection)")  # fmt: skip
    return "\n".join(lines)


def report(results: list[Result]) -> str:
    baseline = next(r.cpu_us for r in results if r.case.name == BASELINE)
    header = ("case", "status", "server CPU us/req", "x rejection", "median us", "RSS growth KiB")
    lines = ["{:<34} {:>7} {:>18} {:>12} {:>10} {:>15}".format(*header)]
    for r in results:
        status = ",".join(str(s) for s in sorted(r.statuses))
        flag = "" if r.statuses == {r.case.expected_status} else f"  (expected {r.case.expected_status})"
        lines.append(
            f"{r.case.name:<34} {status:>7} {r.cpu_us:>18.1f} {r.cpu_us / baseline:>12.2f} "
            f"{r.median_us:>10.0f} {r.rss_growth_kib:>15}{flag}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per case (a tenth for 1 MB cases)")
    args = parser.parse_args()
    print(report(measure(args.requests)))
    print(report_held(measure_held()))


if __name__ == "__main__":
    main()
