"""Faults under load, on loopback: a replica set behind real Traefik, and a client that checks every answer.

``Load`` sends preflights at a bounded rate over kept-alive connections, in a thread of its
own, and records every one: when it was sent, when it was answered, and what came back (the
status, the CORS and security headers and the body: everything but Date and framing) or
how it failed (reset, closed, timed out).

``Cluster`` plays Kubernetes for the chart's Deployment: ``Pod`` processes run
``cors-handler serve`` on the policy of a ConfigMap-like mount (kubelet's ``..data`` symlink
layout, swapped atomically on update), and Traefik's file configuration is rewritten from
the rendered chart objects whenever the Service's ready endpoints change, ``ENDPOINT_DELAY``
after the event that changes them, as the endpoints controller and Traefik's Kubernetes
provider would (the issue measured 1.6 s from a SIGKILL to the endpoint removal in force).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..conftest import Server, merge_headers
from .chart import RELEASE
from .traefik import Traefik, dynamic_config

ENDPOINT_DELAY = 1.0  # seconds from a pod's change to the endpoint change, before Traefik's own reaction
SIGNATURE_HEADERS = ("access-control-", "vary", "x-cors-preflight", "cache-control", "content-type", "x-content-type",
                     "x-frame-options", "referrer-policy", "allow", "retry-after", "x-ratelimit")  # fmt: skip

Signature = tuple[int, tuple[tuple[str, str], ...], bytes]


def signature(status: int, headers: Mapping[str, str], body: bytes) -> Signature:
    """What a browser's CORS check reads from an answer (and the body): never Date, framing or Connection."""
    kept = tuple(sorted((k, v) for k, v in headers.items() if k.startswith(SIGNATURE_HEADERS)))
    return status, kept, body


@dataclass(frozen=True)
class Preflight:
    name: str  # a readable id: "app-put", "partner-get", ...
    path: str
    headers: tuple[tuple[str, str], ...]

    def wire(self, host: str) -> bytes:
        lines = [f"OPTIONS {self.path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def ask(self, server: Server) -> Signature:
        """The answer of one replica, asked directly: the reference an answer through Traefik must equal."""
        result = server.request("OPTIONS", self.path, list(self.headers), fresh=True)
        return signature(result.status, result.headers, result.body)


@dataclass
class Sample:
    sent: float
    answered: float
    request: str
    answer: Signature | None  # None: failed on the wire
    error: str = ""


@dataclass
class Load:
    """Preflights at ``rate`` per second over ``connections`` kept-alive connections, until stopped or ``limit`` s."""

    port: int
    host: str
    preflights: Sequence[Preflight]
    rate: float
    connections: int = 16
    limit: float = 120.0  # the run stops by itself after this many seconds
    timeout: float = 5.0  # an answer later than this is a failure (browsers wait longer; nobody should)
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.limit + self.timeout + 5)

    def _run(self) -> None:
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:  # pragma: no cover - uvloop is a dependency of the service
            runner = asyncio.Runner()
        with runner:
            runner.run(self._main())

    async def _main(self) -> None:
        deadline = self.started + self.limit
        interval = self.connections / self.rate
        requests = itertools.cycle(self.preflights)
        await asyncio.gather(*(self._connection(i * interval / self.connections, interval, deadline, requests)
                               for i in range(self.connections)))  # fmt: skip

    async def _connection(self, offset: float, interval: float, deadline: float, requests: Any) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        due = time.monotonic() + offset
        while not self._stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + interval, time.monotonic() - interval)  # keep the rate; never a burst to catch up
            preflight: Preflight = next(requests)
            sent = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", self.port), self.timeout
                    )
                assert reader is not None
                writer.write(preflight.wire(f"{self.host}:{self.port}"))
                status, headers, body = await asyncio.wait_for(read_response(reader), self.timeout)
                self.samples.append(Sample(sent, time.monotonic(), preflight.name, signature(status, headers, body)))
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                self.samples.append(Sample(sent, time.monotonic(), preflight.name, None, error))
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = merge_headers([(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)])
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0


@dataclass
class Report:
    name: str
    requests: int
    failures: int
    by_kind: dict[str, int]
    longest_gap_ms: float  # the longest time without a good answer
    p99_ms: float

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items())) or "none"
        return (f"{self.name}: {self.requests} preflights, {self.failures} failed ({kinds}), "
                f"longest gap {self.longest_gap_ms:.0f} ms, p99 {self.p99_ms:.1f} ms")  # fmt: skip


def judge(
    samples: Sequence[Sample], accepted: Callable[[Sample], set[Signature]], name: str, start: float, end: float
) -> Report:
    """Every sample sent in [start, end): a failure unless its answer is one ``accepted`` allows for it.

    The longest gap is the longest time within [start, end] in which no good answer arrived (to any
    preflight, whenever sent): how long the whole load was held up at worst.
    """
    window = [s for s in samples if start <= s.sent < end]
    kinds: dict[str, int] = {}
    for sample in window:
        if sample.answer is None:
            kind = sample.error
        elif sample.answer not in accepted(sample):
            kind = f"{sample.answer[0]} unexpected"
        else:
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
    good = sorted(s.answered for s in samples if start <= s.answered <= end and s.answer in accepted(s))
    gap = max(b - a for a, b in itertools.pairwise([start, *good, end]))
    latencies = sorted(s.answered - s.sent for s in window)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return Report(name, len(window), sum(kinds.values()), kinds, gap * 1000, p99 * 1000)


class Pod:
    """One replica: a ``cors-handler serve`` process reading its policy from a ConfigMap-like mount."""

    serial = itertools.count(1)

    def __init__(self, workdir: Path, policy: Mapping[str, Any], port: int = 0) -> None:
        self.name = f"pod-{next(self.serial)}"
        self.workdir = workdir
        self.mount = workdir / self.name
        self.mount.mkdir()
        self._configmap_version = itertools.count(1)
        self.update_configmap(policy)
        (self.mount / "policy.yaml").symlink_to("..data/policy.yaml")
        self.logs: list[str] = []
        self.server = self._start(port)

    def _start(self, port: int) -> Server:
        return Server(self.workdir, None, {}, ["--policy", str(self.mount / "policy.yaml")], port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def update_configmap(self, policy: Mapping[str, Any]) -> None:
        """kubelet's atomic update of a mounted ConfigMap: a new ..<version> directory, ..data swapped to it."""
        version = self.mount / f"..v{next(self._configmap_version)}"
        version.mkdir()
        (version / "policy.yaml").write_text(yaml.safe_dump(dict(policy)))
        staged = self.mount / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.mount / "..data")

    def kill(self) -> None:
        """SIGKILL: no drain (an OOM kill, a crash)."""
        self.server.proc.kill()
        self.server.proc.wait()
        self._keep_logs()

    def terminate(self) -> None:
        """SIGTERM: the drain (/ready 503, shutdown_delay of serving, then exit)."""
        self.server.proc.send_signal(signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP: the process hangs with its socket open (the kernel still accepts connections), as a
        stalled process does; a lost node's pods never answer either."""
        self.server.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.server.proc.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout: float) -> int:
        code = self.server.proc.wait(timeout=timeout)
        self._keep_logs()
        return code

    def restart(self) -> None:
        """The container restarted in its pod (restartPolicy Always): the same address, the same mount."""
        self.server = self._start(self.server.port)

    def _keep_logs(self) -> None:
        self.server._log.close()
        self.logs.append(self.server.logs())

    def stop(self) -> None:
        if self.server.proc.poll() is None:
            self.server.stop()
            self.logs.append(self.server.logs())


class Cluster:
    """The Service's ready endpoints as Traefik sees them, changed ``ENDPOINT_DELAY`` after the pod event."""

    def __init__(self, workdir: Path, docs: list[dict[str, Any]], other_services: Mapping[str, str]) -> None:
        self.workdir, self.docs, self.other_services = workdir, docs, dict(other_services)
        self.pods: list[Pod] = []  # every pod ever started, for the logs
        self.ready: list[Pod] = []
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def start_pod(self, policy: Mapping[str, Any]) -> Pod:
        pod = Pod(self.workdir, policy)
        self.pods.append(pod)
        return pod

    def start_pods(self, policy: Mapping[str, Any], count: int) -> list[Pod]:
        """``count`` pods started together (each returns once ready), as a ReplicaSet creates them."""
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.start_pod(policy), range(count)))

    def config(self) -> dict[str, Any]:
        return dynamic_config(self.docs, {RELEASE: [p.url for p in self.ready], **self.other_services})

    def publish(self, proxy: Traefik) -> None:
        with self._lock:
            proxy.reconfigure(self.config())

    def later(self, proxy: Traefik, change: Callable[[list[Pod]], None], delay: float = ENDPOINT_DELAY) -> None:
        """Apply ``change`` to the ready endpoints after ``delay`` and publish them (a timer thread)."""

        def apply() -> None:
            with self._lock:
                change(self.ready)
                proxy.reconfigure(self.config())

        timer = threading.Timer(delay, apply)
        self._timers.append(timer)
        timer.start()

    def settle(self) -> None:
        for timer in self._timers:
            timer.join()

    def stop(self) -> list[str]:
        """Stop every pod; the logs of every process any pod ran."""
        self.settle()
        with ThreadPoolExecutor(len(self.pods) or 1) as pool:
            list(pool.map(Pod.stop, self.pods))
        return [log for pod in self.pods for log in pod.logs]
