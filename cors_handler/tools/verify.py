"""``cors-handler verify``: send every case (``tools.cases``) to one URL and compare what a browser would conclude.

The expected answer of a case is the service's own: ``pipeline.preview``
runs the pipeline ``serve`` runs on the policy given. Expected and received
answers go through the same reading, Fetch's CORS check (``conclude``), and
only what changes a browser's conclusion is compared: allowed or not, the
Access-Control-Allow-Origin kind (the origin or ``*``), credentials, the
methods and headers the answer covers (a browser caches them for max-age),
max-age, and the X-CORS-Preflight marker that shows cors-handler answered at
all. Header order, spelling of lists, status codes among refusals, bodies and
a preflight's Access-Control-Expose-Headers are not compared: no browser acts
on them (it reads exposed headers on actual responses only).

The received answer is read from the raw bytes as a browser reads it
(``parse_head``): values trimmed of whitespace as Fetch trims them, fields
read on past a malformed line as Chromium does. A lenient client that reads
less (http.client keeps ``https://evil ``'s trailing space, and stops at a
line like ``X-Pad : 1``) would miss a grant a browser sees; so whatever RFC
9112's grammar does not allow in the head is a disagreement on its own,
named. Values are read strictly (``delta_seconds``: ASCII digits only), so
no value a server sends can raise.

Requests go to the given URL only (its host and port; no redirect is
followed), spaced by ``1/rate`` seconds: a fixed spacing, so no second ever
holds more than ``rate`` + 1 of them. A 429 is waited out (its Retry-After,
capped) and retried a bounded number of times within a bounded total wait;
one that stays 429 makes its case unreachable, never a disagreement. After
a few consecutive connection failures the remaining cases are not sent.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..cors.model import Policy
from ..serve.pipeline import preview
from .cases import Case
from .wire import Answer, Unreachable, delta_seconds, drain, read_answer

AGREE, DISAGREE, UNREACHABLE = "agree", "disagree", "unreachable"
MARKER = "x-cors-preflight"
SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
MAX_RETRIES = 5  # per case, on 429
MAX_RETRY_AFTER = 30.0  # seconds waited for one 429 at most
RETRY_BUDGET = 120.0  # seconds waited for 429s in one run at most
MAX_CONSECUTIVE_FAILURES = 3  # connection failures in a row before the rest is not sent
NO_MARKER = "no X-CORS-Preflight marker: cors-handler did not answer (the route in front does not reach it)"
GET_ANSWERED_BY_SERVICE = (
    "the GET was answered by cors-handler itself (405, Allow: OPTIONS): --actual checks the CORS headers "
    "an edge (the chart's Traefik middleware) adds to the API's responses; give the edge's URL"
)


# The request fields a case sends, spelled as browsers send them.
HOST = b"host"
WIRE_NAMES = {
    b"origin": b"Origin",
    HOST: b"Host",
    b"access-control-request-method": b"Access-Control-Request-Method",
    b"access-control-request-headers": b"Access-Control-Request-Headers",
    b"access-control-request-private-network": b"Access-Control-Request-Private-Network",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where every request goes: the URL's scheme, host and port, nothing else."""

    scheme: str
    host: str
    port: int

    def authority(self) -> bytes:
        """The Host field: the host (an IPv6 literal in brackets), and the port unless the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return (host if self.port == default else f"{host}:{self.port}").encode("ascii")


def parse_url(url: str) -> Target:
    """``http[s]://host[:port]`` (a trailing ``/`` allowed); ValueError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.username is not None or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} must be scheme://host[:port]: the paths come from the policy or --path")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{url!r}: the host is not a valid international domain name (IDNA)") from None
    if any(c in host for c in " \t\r\n/\\@") or not host.isprintable():
        raise ValueError(f"{url!r}: the host {host!r} has characters a host name cannot have")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def _items(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True, slots=True)
class Conclusion:
    """What a browser concludes from an answer to a case (Fetch's CORS check), and what it would cache."""

    status: int
    marker: bool
    allowed: bool
    why: str  # why the browser refuses; "" when allowed
    allow_origin: str | None
    allow_credentials: bool
    methods: list[str] | None = None  # preflights: the methods the answer covers (sorted)
    headers: list[str] | None = None  # preflights: the header names it covers (lower case, sorted)
    max_age: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _refusal(case: Case, answer: Answer) -> str:
    """Why a browser refuses the answer to ``case``, or "" (Fetch: CORS check, then the preflight's checks)."""
    origin = answer.get("access-control-allow-origin")
    if origin is None:
        return "no Access-Control-Allow-Origin"
    if origin == "*" and case.credentials:
        return "Access-Control-Allow-Origin * with credentials"
    if origin not in ("*", case.origin):
        return f"Access-Control-Allow-Origin {origin!r} is not the origin"
    if case.credentials and answer.get("access-control-allow-credentials") != "true":
        return "no Access-Control-Allow-Credentials: true for a credentialed request"
    if case.actual:
        return ""
    if not 200 <= answer.status <= 299:
        return f"status {answer.status}"
    wildcard_ok = not case.credentials
    methods = _items(answer.get("access-control-allow-methods"))
    if case.method not in methods and case.method not in SAFELISTED_METHODS and not (wildcard_ok and "*" in methods):
        return f"Access-Control-Allow-Methods does not cover {case.method}"
    names = {n.lower() for n in _items(answer.get("access-control-allow-headers"))}
    for name in _items(case.request_headers):
        star = wildcard_ok and "*" in names and name.lower() != "authorization"
        if name.lower() not in names and not star:
            return f"Access-Control-Allow-Headers does not cover {name}"
    if case.private_network and answer.get("access-control-allow-private-network") != "true":
        return "no Access-Control-Allow-Private-Network: true"
    return ""


def conclude(case: Case, answer: Answer) -> Conclusion:
    why = _refusal(case, answer)
    preflight = not case.actual
    max_age = answer.get("access-control-max-age")
    return Conclusion(
        status=answer.status,
        marker=answer.get(MARKER) is not None,
        allowed=not why,
        why=why,
        allow_origin=answer.get("access-control-allow-origin"),
        allow_credentials=answer.get("access-control-allow-credentials") == "true",
        methods=sorted(set(_items(answer.get("access-control-allow-methods")))) if preflight else None,
        headers=sorted({n.lower() for n in _items(answer.get("access-control-allow-headers"))}) if preflight else None,
        max_age=delta_seconds(max_age) if preflight else None,
    )


def expected_answer(policy: Policy, case: Case) -> Answer:
    """The service's own answer (an actual GET: the preflight answer, whose decision the edge must follow)."""
    headers = case.headers()
    if case.actual:
        headers.append((b"access-control-request-method", b"GET"))
    _, response, _ = preview(policy, case.path, headers)
    return Answer(response.status, tuple((n.decode(), v.decode("latin-1")) for n, v in response.headers))


def differences(case: Case, expected: Conclusion, actual: Conclusion) -> list[str]:
    """Why a browser would act differently on the received answer than on the expected one (empty: agree)."""
    reasons = []
    if not case.actual and expected.marker and not actual.marker:
        reasons.append(NO_MARKER)
    if expected.allowed and not actual.allowed:
        reasons.append(f"expected allowed, a browser would refuse: {actual.why}")
    elif actual.allowed and not expected.allowed:
        reasons.append(
            f"expected refused ({expected.why}), a browser would allow (Access-Control-Allow-Origin "
            f"{actual.allow_origin})"
        )
    elif actual.allowed:
        if (expected.allow_origin == "*") != (actual.allow_origin == "*"):
            reasons.append(f"Access-Control-Allow-Origin {actual.allow_origin}, expected {expected.allow_origin}")
        if expected.allow_credentials != actual.allow_credentials:
            reasons.append(
                f"Access-Control-Allow-Credentials {'true' if actual.allow_credentials else 'absent'}, "
                f"expected {'true' if expected.allow_credentials else 'absent'}"
            )
        for name, verb, want, got in (
            ("Access-Control-Allow-Methods", "covers", expected.methods, actual.methods),
            ("Access-Control-Allow-Headers", "covers", expected.headers, actual.headers),
            ("Access-Control-Max-Age", "is", expected.max_age, actual.max_age),
        ):
            if want != got:
                reasons.append(f"{name} {verb} {_show(got)}, expected {_show(want)}")
    return reasons


def _show(value: object) -> str:
    if value is None or value == []:
        return "nothing"
    return ", ".join(value) if isinstance(value, list) else str(value)


def retry_after(answer: Answer) -> float:
    """Seconds a 429 asks to wait (delta-seconds or an HTTP date), 1 when absent or unreadable, capped."""
    value = answer.get("retry-after") or ""
    seconds = delta_seconds(value)
    if seconds is not None:
        return float(min(seconds, MAX_RETRY_AFTER))
    try:
        waited = email.utils.parsedate_to_datetime(value).timestamp() - time.time() if value else 1.0
    except (TypeError, ValueError, OverflowError, IndexError):
        waited = 1.0
    return min(max(waited, 0.0), MAX_RETRY_AFTER)


@dataclass
class Sender:
    """Requests to one Target, at most ``rate`` per second, 429s waited out within bounds."""

    target: Target
    timeout: float
    rate: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    retry_budget: float = RETRY_BUDGET
    _next: float = field(default=0.0, init=False)

    def _pace(self) -> None:
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + 1.0 / self.rate

    def _once(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]]) -> Answer:
        self._pace()
        target = self.target
        deadline = time.monotonic() + self.timeout
        # A case for a route on its own host names it; the others ask the URL's authority.
        host = next((value for name, value in headers if name.lower() == HOST), target.authority())
        lines = [
            f"{method} {path} HTTP/1.1".encode("ascii"),
            b"Host: " + host,
            f"User-Agent: cors-handler-verify/{__version__}".encode(),
            b"Connection: close",
            *(name + b": " + value for name, value in headers if name.lower() != HOST),
        ]
        try:
            with socket.create_connection((target.host, target.port), timeout=self.timeout) as raw:
                conn = raw
                if target.scheme == "https":
                    conn = ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
                with conn:
                    conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n")

                    def recv() -> bytes:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("timed out")
                        conn.settimeout(left)
                        return conn.recv(65536)

                    answer, rest = read_answer(recv)
                    drain(recv, answer, rest)
                    return answer
        except OSError as exc:  # refused, reset, timed out, TLS (ssl.SSLError is an OSError)
            raise Unreachable(f"{target.host}:{target.port}: {str(exc) or type(exc).__name__}") from exc
        except Unreachable as exc:
            raise Unreachable(f"{target.host}:{target.port}: {exc}") from None

    def send(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Answer:
        """One request; a 429 is retried after its Retry-After (at most MAX_RETRIES times, within the budget)."""
        answer = self._once(method, path, headers)
        retries = 0
        while answer.status == 429:
            wait = retry_after(answer)
            if retries == MAX_RETRIES or wait > self.retry_budget:
                raise Unreachable(f"still rate limited (429) after {retries} retries")
            self.retry_budget -= wait
            self.sleep(wait)
            retries += 1
            answer = self._once(method, path, headers)
        return answer


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    verdict: str
    expected: Conclusion
    actual: Conclusion | None
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        """One entry of ``verify --format json``'s ``cases`` (the shape is fixed; see docs/operations.md)."""
        case = self.case
        return {
            "id": case.id,
            "route": case.route,
            "path": case.path,
            "origin": case.origin,
            "method": case.method,
            "request_headers": case.request_headers,
            "credentials": case.credentials,
            "private_network": case.private_network,
            "verdict": self.verdict,
            "expected": self.expected.as_dict(),
            "actual": self.actual.as_dict() if self.actual is not None else {},
            "reasons": self.reasons,
        }


def check(policy: Policy, case: Case, sender: Sender) -> Result:
    """Send one case and compare; raises Unreachable when there is no answer to compare."""
    expected = conclude(case, expected_answer(policy, case))
    answer = sender.send("GET" if case.actual else "OPTIONS", case.path, [
        (WIRE_NAMES[name], value) for name, value in case.headers()
    ])  # fmt: skip
    actual = conclude(case, answer)
    reasons = [f"the answer's head is malformed: {defect}" for defect in answer.defects]
    reasons += differences(case, expected, actual)
    if case.actual and answer.status == 405 and answer.get("allow") == "OPTIONS":
        reasons.insert(0, GET_ANSWERED_BY_SERVICE)
    return Result(case, DISAGREE if reasons else AGREE, expected, actual, reasons)


def run(policy: Policy, cases: list[Case], sender: Sender) -> list[Result]:
    """Every case in order; after MAX_CONSECUTIVE_FAILURES unreachable in a row the rest is not sent."""
    # preview builds a Runtime per case, tables sized by cache_size (32 ms each at a million); no answer depends on it
    policy = replace(policy, cache_size=1)
    results: list[Result] = []
    failures = 0
    for case in cases:
        reason = f"not sent: the {MAX_CONSECUTIVE_FAILURES} cases before it got no answer"
        if failures < MAX_CONSECUTIVE_FAILURES:
            try:
                results.append(check(policy, case, sender))
                failures = 0
                continue
            except Unreachable as exc:
                failures += 1
                reason = str(exc)
        expected = conclude(case, expected_answer(policy, case))
        results.append(Result(case, UNREACHABLE, expected, None, [reason]))
    return results


def summary(results: list[Result]) -> dict[str, int]:
    counts = {verdict: sum(r.verdict == verdict for r in results) for verdict in (AGREE, DISAGREE, UNREACHABLE)}
    return {"cases": len(results), **counts}


def summary_line(results: list[Result]) -> str:
    s = summary(results)
    return f"verify: {s['cases']} cases, {s['agree']} agree, {s['disagree']} disagree, {s['unreachable']} unreachable"


def text_lines(results: list[Result]) -> list[str]:
    """One line per case that does not agree, then the summary."""
    lines = [f"{r.verdict}: {r.case.id}: {'; '.join(r.reasons)}" for r in results if r.verdict != AGREE]
    return [*(printable(line) for line in lines), summary_line(results)]


def printable(text: str) -> str:
    """Reasons quote what the server sent: its control characters are escaped, so a line stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def json_document(results: list[Result]) -> dict[str, Any]:
    return {"summary": summary(results), "cases": [r.as_dict() for r in results]}
