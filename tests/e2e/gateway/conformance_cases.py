"""Every preflight case of the Gateway API conformance test HTTPRouteCORS, and the cases it leaves out, as data.

The suite (kubernetes-sigs/gateway-api ``conformance/tests/httproute-cors.go``) sends each request
to a Gateway and compares the answer with ``CompareRoundTrip`` (``conformance/utils/http/http.go``):
the status must be one of ``StatusCodes``; only for a 200 or 204 are headers compared, by
lower-cased name, a repeated header's values joined with ``,``: each ``ValidHeaderValues`` entry
must equal one of its alternatives (the suite lists both orders of a two-item list), each
``Headers`` entry must equal its value, no ``AbsentHeaders`` name may be present, and with
``IgnoreWhitespace`` the spaces are removed from both sides first. ``compare`` does exactly that.

Its actual-request cases (GET and PUT requests that reach the echo backend) are not ours:
cors-handler answers preflights only. One preflight case needs a ``*`` origin with credentials
(route ``cors-wildcard-methods-headers``), which the specification answers by echoing any origin
and cors-handler refuses by design: ``REFUSED_BY_DESIGN`` names it, with the answer we give instead.

``ADDED`` are the cases the issue names that the suite leaves out: hostnames on the route, a
disallowed method and header, ``null`` under ``*``, a wildcard's dot boundary, an apex under ``*.``;
with a few more of the same kind (ports, schemes, an Exact path, credentials with ``*`` methods
and headers). The routes are in ``httproute-cors.yaml`` beside this file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROUTES_FILE = Path(__file__).with_name("httproute-cors.yaml")
# The conformance routes name no hostnames: any Host reaches them (the suite sends the Gateway's address).
GATEWAY_HOST = "gateway.conformance.test"
# Origins the main policy of the e2e test allows (none of the cases' origins): what a broader route answers.
MAIN_ORIGINS = ["https://app.example.com"]
PREFLIGHT_STATUSES = (200, 204)


@dataclass(frozen=True)
class Expected:
    """The suite's ``http.Response`` for one case."""

    statuses: tuple[int, ...] = PREFLIGHT_STATUSES
    valid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # ValidHeaderValues: one of these
    headers: Mapping[str, str] = field(default_factory=dict)  # Headers: exactly this
    absent: tuple[str, ...] = ()  # AbsentHeaders
    ignore_whitespace: bool = False  # IgnoreWhitespace


@dataclass(frozen=True)
class Case:
    """One preflight: the request, and the answer expected."""

    id: str
    name: str  # the suite's TestCaseName, or what an added case checks
    path: str
    origin: str
    method: str  # Access-Control-Request-Method
    request_headers: str | None = None  # Access-Control-Request-Headers
    expected: Expected = Expected()
    host: str = GATEWAY_HOST

    def request(self) -> bytes:
        """The preflight as bytes on the wire (HTTP/1.1, kept alive)."""
        lines = [f"OPTIONS {self.path} HTTP/1.1", f"Host: {self.host}", f"Origin: {self.origin}",
                 f"Access-Control-Request-Method: {self.method}"]  # fmt: skip
        if self.request_headers is not None:
            lines.append(f"Access-Control-Request-Headers: {self.request_headers}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def compare(expected: Expected, status: int, headers: Iterable[tuple[str, str]]) -> list[str]:
    """What differs from ``expected`` as the suite's ``CompareRoundTrip`` judges it; empty when the answer passes."""
    if status not in expected.statuses:
        return [f"expected status code to be one of {list(expected.statuses)}, got {status}"]
    if status not in PREFLIGHT_STATUSES:
        return []  # the suite compares headers only for 200 and 204
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.lower(), []).append(value)
    actual = {name: ",".join(values) for name, values in joined.items()}

    def squeeze(text: str) -> str:
        return text.replace(" ", "") if expected.ignore_whitespace else text

    problems = []
    for name, alternatives in expected.valid.items():
        if name.lower() not in actual:
            problems.append(f"expected {name} header to be set")
        elif squeeze(actual[name.lower()]) not in [squeeze(a) for a in alternatives]:
            got = actual[name.lower()]
            problems.append(f"expected {name} header to be set to one of {list(alternatives)}, got {got}")
    for name, value in expected.headers.items():
        if name.lower() not in actual:
            problems.append(f"expected {name} header to be set")
        elif squeeze(actual[name.lower()]) != squeeze(value):
            problems.append(f"expected {name} header to be set to {value}, got {actual[name.lower()]}")
    problems += [f"expected {name} header to not be set" for name in expected.absent if name.lower() in actual]
    return problems


def _both(a: str, b: str) -> tuple[str, str]:
    """A two-item list in either order, as the suite writes it."""
    return f"{a}, {b}", f"{b}, {a}"


_CORS_1_ALLOWED = Expected(
    valid={
        "access-control-allow-methods": _both("GET", "OPTIONS"),
        "access-control-allow-headers": _both("x-header-1", "x-header-2"),
        "access-control-expose-headers": _both("x-header-3", "x-header-4"),
        "access-control-max-age": ("3600",),
        "access-control-allow-credentials": ("true",),
    },
    ignore_whitespace=True,
)


def _cors_1(origin: str) -> Expected:
    return Expected(valid={"access-control-allow-origin": (origin,), **_CORS_1_ALLOWED.valid}, ignore_whitespace=True)


def _any_origin(origin: str) -> Expected:
    return Expected(valid={"access-control-allow-origin": (origin, "*"), "access-control-allow-methods": ("PUT",)},
                    absent=("Access-Control-Allow-Credentials",))  # fmt: skip


HEADERS_1_2 = "x-header-1, x-header-2"
REFUSED = Expected(statuses=(403,), absent=("access-control-allow-origin",))

# In the order of httproute-cors.go; the names are its TestCaseName values.
CONFORMANCE = [
    Case("exact-origin", "CORS preflight request from an exact matching origin should be allowed",
         "/cors-1", "https://www.foo.com", "GET", HEADERS_1_2, _cors_1("https://www.foo.com")),
    Case("wildcard-origin", "CORS preflight request from a wildcard matching origin should be allowed",
         "/cors-1", "https://www.bar.com", "GET", HEADERS_1_2, _cors_1("https://www.bar.com")),
    Case("wildcard-any-number-of-labels",
         "CORS preflight request from a wildcard matching any number of periods left to '*' should be allowed",
         "/cors-1", "https://xpto.www.bar.com", "GET", HEADERS_1_2, _cors_1("https://xpto.www.bar.com")),
    Case("non-matching-origin", "CORS preflight request from a non-matching origin should not be allowed",
         "/cors-1", "https://foobar.com", "GET", None,
         Expected(statuses=(200, 204, 403), absent=("access-control-allow-origin",))),
    Case("wildcard-methods-post",
         "CORS preflight request with POST method should be allowed by allowMethods with wildcard",
         "/cors-2", "https://www.foo.com", "POST", None,
         Expected(valid={"access-control-allow-methods": ("POST", "*")},
                  headers={"access-control-allow-origin": "https://www.foo.com"},
                  absent=("access-control-allow-credentials",))),
    Case("no-credentials-header",
         "CORS preflight request should not receive access-control-allow-credentials header without "
         "access-control-allow-credentials set to true",
         "/cors-2", "https://www.foo.com", "POST", None, Expected(absent=("Access-Control-Allow-Credentials",))),
    Case("any-origin", "CORS preflight request from a wildcard origin should return header with '*' or with the "
         "requested Origin", "/cors-wildcard-origin", "https://foobar.com", "PUT", None,
         _any_origin("https://foobar.com")),
    Case("any-origin-with-port", "CORS preflight request from a wildcard origin containing a port should return "
         "header with '*' or with the requested Origin", "/cors-wildcard-origin", "https://foobar.com:12345", "PUT",
         None, _any_origin("https://foobar.com:12345")),
    Case("wildcards-with-credentials", "CORS preflight request requesting specific method and headers should be "
         "allowed and always echo the origin with allowCredentials set to true",
         "/cors-wildcard-methods-headers", "https://other.foo.com", "PUT", HEADERS_1_2,
         Expected(valid={"access-control-allow-origin": ("https://other.foo.com",),
                         "access-control-allow-methods": ("PUT",),
                         "access-control-allow-headers": _both("x-header-1", "x-header-2"),
                         "access-control-allow-credentials": ("true",)}, ignore_whitespace=True)),
    Case("wildcards-without-credentials", "CORS preflight request requesting specific method and headers should "
         "hide access-control-allow-credentials headers with allowCredentials set to false",
         "/cors-wildcard-methods-headers-unauth", "https://other.foo.com", "PUT", HEADERS_1_2,
         Expected(valid={"access-control-allow-origin": ("https://other.foo.com", "*"),
                         "access-control-allow-methods": ("PUT", "*"),
                         "access-control-allow-headers": (*_both("x-header-1", "x-header-2"), "*")},
                  absent=("access-control-allow-credentials",), ignore_whitespace=True)),
]  # fmt: skip

# The conformance case that needs a '*' origin with credentials: cors-handler refuses the rule (a finding
# naming HTTPRoute gateway-conformance-infra/cors-wildcard-methods-headers rules[0] allowOrigins[0]) and
# every preflight on its path, never answering it from a broader route.
REFUSED_BY_DESIGN = {"wildcards-with-credentials": REFUSED}
REFUSED_RULE_SETTING = (
    "HTTPRoute gateway-conformance-infra/cors-wildcard-methods-headers rules[0].filters[0].cors.allowOrigins[0]"
)

_HOSTS_ALLOWED = Expected(headers={"access-control-allow-origin": "https://www.foo.com",
                                   "access-control-allow-methods": "PUT", "access-control-max-age": "60"})  # fmt: skip

ADDED = [
    Case("disallowed-method", "a method neither listed nor safelisted is refused", "/cors-1", "https://www.foo.com",
         "DELETE", None, REFUSED),
    Case("disallowed-header", "a request header not listed is refused", "/cors-1", "https://www.foo.com", "GET",
         "x-header-1, x-header-5", REFUSED),
    Case("safelisted-method-not-listed", "POST is safelisted: allowed though allowMethods names GET and OPTIONS only",
         "/cors-1", "https://www.foo.com", "POST", None, _cors_1("https://www.foo.com")),
    Case("null-under-any-origin", "'*' covers Origin: null, answered '*'", "/cors-wildcard-origin", "null", "PUT",
         None, Expected(headers={"access-control-allow-origin": "*"}, absent=("access-control-allow-credentials",))),
    Case("null-not-listed", "Origin: null is refused where allowOrigins does not name '*'", "/cors-1", "null", "GET",
         None, REFUSED),
    Case("dot-boundary", "*.bar.com does not cover evilbar.com", "/cors-1", "https://evilbar.com", "GET", None,
         REFUSED),
    Case("suffix-trick", "*.bar.com does not cover www.bar.com.evil.test", "/cors-1", "https://www.bar.com.evil.test",
         "GET", None, REFUSED),
    Case("apex-under-wildcard-origin", "*.bar.com does not cover its apex bar.com", "/cors-1", "https://bar.com",
         "GET", None, REFUSED),
    Case("wildcard-other-port", "*.bar.com is on the default port only", "/cors-1", "https://www.bar.com:8443",
         "GET", None, REFUSED),
    Case("other-scheme", "https://www.foo.com does not cover http://www.foo.com", "/cors-1", "http://www.foo.com",
         "GET", None, REFUSED),
    Case("path-segment-boundary", "/cors-1 does not cover /cors-10: the main policy answers", "/cors-10",
         "https://www.foo.com", "GET", None, REFUSED),
    Case("hostname-exact", "a rule with spec.hostnames answers its host", "/cors-hosts/orders",
         "https://www.foo.com", "PUT", None, _HOSTS_ALLOWED, host="api.team-a.test"),
    Case("hostname-wildcard-with-port", "*.shop.team-a.test covers eu.shop.team-a.test, the Host's port dropped",
         "/cors-hosts", "https://www.foo.com", "PUT", None, _HOSTS_ALLOWED, host="eu.shop.team-a.test:8443"),
    Case("hostname-apex-under-wildcard", "*.shop.team-a.test does not cover shop.team-a.test: the main policy "
         "answers", "/cors-hosts", "https://www.foo.com", "PUT", None, REFUSED, host="shop.team-a.test"),
    Case("hostname-other-host", "another host is not the rule's: the main policy answers", "/cors-hosts",
         "https://www.foo.com", "PUT", None, REFUSED),
    Case("exact-path", "an Exact match answers its path", "/cors-exact", "https://www.foo.com", "PUT", None,
         _HOSTS_ALLOWED, host="api.team-a.test"),
    Case("exact-path-is-not-a-prefix", "an Exact match does not cover the paths below it", "/cors-exact/x",
         "https://www.foo.com", "PUT", None, REFUSED, host="api.team-a.test"),
    Case("credentials-echo-wildcards", "with credentials, '*' methods and headers echo the request, authorization "
         "included", "/cors-credentialed", "https://www.foo.com", "PATCH", "x-header-1, authorization",
         Expected(headers={"access-control-allow-origin": "https://www.foo.com",
                           "access-control-allow-methods": "PATCH",
                           "access-control-allow-credentials": "true", "access-control-max-age": "5"},
                  valid={"access-control-allow-headers": _both("x-header-1", "authorization")},
                  ignore_whitespace=True)),
]  # fmt: skip


def expected_answer(case: Case) -> Expected:
    """What cors-handler must answer: the suite's expectation, or ours for a case refused by design."""
    return REFUSED_BY_DESIGN.get(case.id, case.expected)
