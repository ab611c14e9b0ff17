"""In-process benchmark of the protocol fast path: the Python cost of one preflight, without sockets.

Feeds whole request heads to ``FastPathProtocol.data_received`` on a transport that
only records what is written, the way uvloop calls it for one read, so the time per
request is exactly cors-handler's own Python work on the hit path (thread CPU time, so other load on
the machine does not count; the event loop's
read and write calls excluded). Next to it, the same for the constant-bytes Protocol
baseline (loadtests/baselines.py): the difference is what the service adds. Then the
same fast path on 1,000 rotating allowed origins (cached, each head known to the head
memo) and on new refused origins (every request a cache miss, decided and answered in
the protocol), the bench's two other fast-path scenarios.

    python -m loadtests.protobench [--requests 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from cors_handler.config.compile import compile_settings
from cors_handler.config.settings import load_settings
from cors_handler.http.app import CorsHandlerApp
from cors_handler.http.fastpath import FastPathProtocol
from cors_handler.serve.events import configure_logging

from .baselines import ConstantBytesProtocol, allowed_answer
from .scenarios import ALLOWED_ORIGIN, PATH, POLICY, ROTATING_ORIGINS


def head(origin: str) -> bytes:
    return (f"OPTIONS {PATH} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nOrigin: {origin}\r\n"
            "Access-Control-Request-Method: PUT\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n").encode()  # fmt: skip


HEAD = head(ALLOWED_ORIGIN)


class RecordingTransport:
    """What the protocols call on a transport. ``write`` counts the bytes, and keeps them when ``keep`` is set
    (tests compare them; the bench only counts, so a long run holds no answers)."""

    def __init__(self, peer: str = "127.0.0.1", keep: bool = False) -> None:
        self.peer = peer
        self.written = 0
        self.writes: list[bytes] | None = [] if keep else None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": (self.peer, 40000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.writes is not None:
            self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, *args: Any) -> None: ...


def fast_path_connection(app: CorsHandlerApp, loop: asyncio.AbstractEventLoop, transport: RecordingTransport) -> Any:
    """A FastPathProtocol for ``app`` as uvicorn builds one, connected to ``transport``."""
    config = Config(app, http="httptools", loop="none", log_level="warning", access_log=False)
    config.load()
    protocol = FastPathProtocol.for_app(app, 10.0)(config, ServerState(), {}, loop)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol


def _fast_path(loop: asyncio.AbstractEventLoop, keep: bool = False) -> Any:
    app = CorsHandlerApp(compile_settings(load_settings(**POLICY)).policy)
    return fast_path_connection(app, loop, RecordingTransport(keep=keep))


def _constant(keep: bool = False) -> Any:
    ConstantBytesProtocol.ANSWER = allowed_answer()
    protocol = ConstantBytesProtocol()
    protocol.connection_made(RecordingTransport(keep=keep))  # type: ignore[arg-type]
    return protocol


def measure(requests: int, rounds: int, answers: dict[str, list[bytes]] | None = None) -> dict[str, float]:
    """Nanoseconds per request, best of ``rounds``: the fast path per scenario and the constant-bytes baseline.

    ``answers`` gets every write of each scenario's connection, warm-ups included (for tests: the bench only
    counts bytes, so a long run holds no answers)."""
    keep = answers is not None
    loop = asyncio.new_event_loop()
    try:
        protocols = {"cors-handler fast path": _fast_path(loop, keep), "constant-bytes Protocol": _constant(keep)}
        rotating = [head(f"https://t{n}.tenants.example.com") for n in range(ROTATING_ORIGINS)]
        workloads: dict[str, tuple[Any, Callable[[int], list[bytes]]]] = {
            "cors-handler fast path": (protocols["cors-handler fast path"], lambda _: [HEAD] * requests),
            "constant-bytes Protocol": (protocols["constant-bytes Protocol"], lambda _: [HEAD] * requests),
            f"fast path, {ROTATING_ORIGINS} rotating origins": (
                _fast_path(loop, keep), lambda _: [rotating[n % ROTATING_ORIGINS] for n in range(requests)]),
            "fast path, new refused origins (misses)": (
                _fast_path(loop, keep), lambda r: [head(f"https://f{n}.r{r}.example.org") for n in range(requests)]),
        }  # fmt: skip
        best = dict.fromkeys(workloads, float("inf"))
        for round_ in range(rounds):
            for name, (protocol, heads) in workloads.items():
                receive = protocol.data_received
                for data in heads(-1 - round_)[:1000]:  # warm up (another round's origins for the misses)
                    receive(data)
                sent = heads(round_)
                start = time.thread_time()
                for data in sent:
                    receive(data)
                best[name] = min(best[name], (time.thread_time() - start) / len(sent) * 1e9)
        assert protocols["cors-handler fast path"].transport.written > 0
        if answers is not None:
            answers.update({name: protocol.transport.writes for name, (protocol, _) in workloads.items()})
    finally:
        loop.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging(level=POLICY["log_level"])  # as the bench's server logs (the misses' rejection lines)
    costs = measure(args.requests, args.rounds)
    for name, ns in costs.items():
        print(f"{name:40} {ns:8.0f} ns per request")
    ours, limit = costs["cors-handler fast path"], costs["constant-bytes Protocol"]
    print(f"added by cors-handler: {ours - limit:.0f} ns per request")


if __name__ == "__main__":
    main()
