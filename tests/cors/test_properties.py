"""Property-based tests: the service's answers agree with a small specification.

The specification below is written from the Fetch standard and
../shared/design.md, independently of ``cors_handler``: origins compared as
(scheme, host, port) tuples with default ports dropped and case folded,
wildcards as "one or more labels under the domain", ``null`` only when listed,
methods compared case-sensitively, header names case-insensitively, ``*``
never covering Authorization. Requests are built to be hard: origins that
share prefixes and suffixes with the allowed ones (foo.com / barfoo.com /
foo.com.evil.net), case and port variants, trailing characters, arbitrary
text. Each property runs through ``Runtime.answer`` (pipeline.py) — the same code
path the server runs — so the rendered headers are checked too.

Budget: ``EXAMPLES`` examples for each policy/request property (two of them),
``EXAMPLES`` for each parser property; set HYPOTHESIS_EXAMPLES to run more.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors_handler.cors.headers import MAX_REQUEST_HEADER_NAMES, HeaderListError, parse_header_list
from cors_handler.cors.model import Policy
from cors_handler.cors.origins import parse_origin
from cors_handler.serve.pipeline import Runtime

from ..conftest import make_policy

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "600"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Hosts chosen to collide: shared prefixes, shared suffixes, the allowed
# domain inside another one, IP literals and localhost.
HOSTS = [
    "foo.com",
    "bar.com",
    "barfoo.com",
    "foobar.com",
    "foo.com.evil.net",
    "evil-foo.com",
    "sub.foo.com",
    "a.sub.foo.com",
    "foo.co",
    "localhost",
    "127.0.0.1",
    "10.0.0.7",
    "192.168.1.20",
]
SCHEMES = ["https", "http"]
PORTS: list[int | None] = [None, 443, 80, 8443]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "QUERY"]
HEADERS = ["content-type", "x-request-id", "authorization", "x-api-key", "x-custom"]
WILDCARD_DOMAINS = ["foo.com", "bar.com", "sub.foo.com"]
REGEXES = [r"^https://[a-z0-9-]+\.foo\.com$", r"^https://(bar|baz)\.com(:8443)?$"]
DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}
DEV_CIDRS = ["192.168.1.0/24"]
TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


# ---------------------------------------------------------------- the specification


@dataclass(frozen=True)
class SpecPolicy:
    origins: tuple[str, ...]  # exact origins, "*", "null" or "https://*.domain"
    regexes: tuple[str, ...]
    methods: tuple[str, ...]  # or ("*",)
    headers: tuple[str, ...]  # or containing "*"
    credentials: bool
    environment: str
    expose: tuple[str, ...] = ()  # sent as written on allowed preflights ('*' only without credentials)

    def settings(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "dev_private_cidrs": DEV_CIDRS,
            "allow_origins": list(self.origins),
            "allow_origin_regex": list(self.regexes),
            "allow_methods": list(self.methods),
            "allow_headers": list(self.headers),
            "allow_credentials": self.credentials,
            "expose_headers": list(self.expose),
            "rate_limit": {"enabled": False},
        }


def spec_origin_tuple(origin: str) -> tuple[str, str, int | None] | None:
    """scheme://host[:port] -> (scheme, host, port), default port filled in; None if not a serialized origin."""
    scheme, sep, rest = origin.partition("://")
    scheme = scheme.lower()
    if not sep or not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme):
        return None
    if rest.startswith("["):
        literal, bracket, port_text = rest[1:].partition("]")
        try:
            host = f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:
            return None
        if not bracket or (port_text and not port_text.startswith(":")):
            return None
        port_text = port_text[1:]
        explicit = bool(rest.rpartition("]")[2])
    else:
        host, explicit_sep, port_text = rest.partition(":")
        host = host.lower()
        explicit = bool(explicit_sep)
        labels = host.split(".")
        if not all(re.fullmatch(r"[a-z0-9_][a-z0-9_\-]*", label) for label in labels):
            return None
    if explicit:
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
            return None
        return scheme, host, int(port_text)
    return scheme, host, DEFAULT_PORT.get(scheme)


def spec_development_origin(policy: SpecPolicy, scheme: str, host: str) -> bool:
    """Outside production: localhost, loopback and the configured private networks, any port."""
    if policy.environment == "production" or scheme not in ("http", "https"):
        return False
    if host in ("localhost", "[::1]"):
        return True
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address.is_loopback or any(address in ipaddress.IPv4Network(n) for n in DEV_CIDRS)


def spec_request_spelling(origin: str) -> bool:
    """Fetch's origin-or-null (whatwg/fetch 301650c) on what a browser can send: lower case, no
    percent-encoding, an IPv6 literal of lower-case hextets without leading zeros or a dotted quad,
    '::' standing for two or more hextets (at most six written beside it)."""
    if origin != origin.lower() or "%" in origin:
        return False
    if "://[" not in origin:
        return True
    literal = origin.partition("://[")[2].partition("]")[0]
    hextets = [h for h in literal.split(":") if h]
    if any(not re.fullmatch(r"0|[1-9a-f][0-9a-f]{0,3}", h) for h in hextets):
        return False
    return len(hextets) <= 6 if "::" in literal else len(hextets) == 8


def spec_origin_allowed(policy: SpecPolicy, origin: str) -> bool:
    if origin == "null":  # design: `*` covers null too
        return "null" in policy.origins or "*" in policy.origins
    if not spec_request_spelling(origin):
        return False  # invalid_preflight
    request = spec_origin_tuple(origin)
    if request is None:
        return False
    scheme, host, port = request
    for allowed in policy.origins:
        if allowed == "*":
            return True
        if "://*." in allowed:
            allowed_scheme, _, domain = allowed.partition("://*.")
            if scheme == allowed_scheme and port == DEFAULT_PORT[scheme] and host.endswith("." + domain):
                return True
        elif allowed != "null" and spec_origin_tuple(allowed) == request:
            return True
    normalized = f"{scheme}://{host}" + ("" if port == DEFAULT_PORT.get(scheme) else f":{port}")
    if any(re.fullmatch(pattern, normalized) for pattern in policy.regexes):
        return True
    return spec_development_origin(policy, scheme, host)


def spec_decision(policy: SpecPolicy, origin: str, method: str, requested: list[str]) -> str:
    """'allowed' or the reason the design names for the first failed check."""
    if not spec_origin_allowed(policy, origin):
        return "origin_not_allowed"  # or invalid_preflight: either way, not allowed
    if "*" not in policy.methods and method not in policy.methods and method not in ("GET", "HEAD", "POST"):
        return "method_not_allowed"  # the CORS-safelisted methods pass whether listed or not
    listed = {h.lower() for h in policy.headers}
    for name in requested:
        name = name.lower()
        # '*' covers any name; Authorization only with credentials (without, Fetch's '*' never covers it)
        if name in listed or ("*" in listed and (name != "authorization" or policy.credentials)):
            continue
        return "header_not_allowed"
    return "allowed"


# ---------------------------------------------------------------- strategies


def origin_from(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}" + ("" if port is None else f":{port}")


plain_origins = st.builds(origin_from, st.sampled_from(SCHEMES), st.sampled_from(HOSTS), st.sampled_from(PORTS))
wildcards = st.builds(lambda d: f"https://*.{d}", st.sampled_from(WILDCARD_DOMAINS))


@st.composite
def spec_policies(draw: st.DrawFn) -> SpecPolicy:
    environment = draw(st.sampled_from(["production", "staging", "development"]))
    credentials = draw(st.booleans())
    origins = draw(st.lists(st.one_of(plain_origins, wildcards, st.just("null")), min_size=1, max_size=4))
    if not credentials and environment != "production" and draw(st.integers(0, 9)) == 0:
        origins.append("*")
    regexes = draw(st.lists(st.sampled_from(REGEXES), max_size=1))
    methods = ["*"] if draw(st.booleans()) else draw(st.lists(st.sampled_from(METHODS), min_size=1))
    headers = draw(st.lists(st.sampled_from(HEADERS), max_size=3))
    if draw(st.booleans()):
        headers.append("*")
    exposable = ["x-request-id", "X-Trace", "etag"] + ([] if credentials else ["*"])
    expose = draw(st.lists(st.sampled_from(exposable), max_size=3, unique=True))
    return SpecPolicy(
        tuple(dict.fromkeys(origins)),
        tuple(regexes),
        tuple(dict.fromkeys(methods)),
        tuple(dict.fromkeys(headers)),
        credentials,
        environment,
        tuple(expose),
    )


def case_variant(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def request_origins(draw: st.DrawFn, policy: SpecPolicy) -> str:
    """Mostly near misses of the policy's own origins; sometimes exact hits or noise."""
    listed = [o for o in policy.origins if o not in ("*", "null") and "://*." not in o]
    base = draw(st.sampled_from(listed)) if listed and draw(st.booleans()) else draw(plain_origins)
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return base
    if kind == 1:
        return case_variant(draw, base)
    if kind == 2:  # suffix tricks: foo.com.evil.net, foo.comevil, trailing slash or dot
        return base + draw(st.sampled_from([".evil.net", "evil", "/", ".", "_", "`", "%60", ":443", ":8443", "\t"]))
    if kind == 3:  # prefix tricks: barfoo.com, evil-foo.com, sub.foo.com
        scheme, _, host = base.partition("://")
        return f"{scheme}://" + draw(st.sampled_from(["bar", "evil-", "sub.", "a.sub.", "x"])) + host
    if kind == 4:  # scheme downgrade or upgrade
        return base.replace("https://", "http://", 1) if base.startswith("https") else base.replace("http", "https", 1)
    if kind == 5:
        return draw(st.sampled_from(["null", "NULL", "", "*", "https://", "https://foo.com/path"]))
    if kind == 6:
        return draw(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40))
    return draw(wildcards).replace("*", draw(st.sampled_from(["x", "a.b", "", "-"])))


header_names = st.one_of(st.sampled_from(HEADERS), st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True))


def headers_for(origin: str, method: str, request_headers: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", origin.encode("latin-1")), (b"access-control-request-method", method.encode("latin-1"))]
    if request_headers:
        headers.append((b"access-control-request-headers", request_headers.encode("latin-1")))
    return headers


_compiled: dict[SpecPolicy, Runtime] = {}


def runtime_for(policy: SpecPolicy) -> Runtime:
    """Compile each generated policy once; shrinking revisits the same ones often."""
    if policy not in _compiled:
        compiled: Policy = make_policy(**policy.settings())
        _compiled[policy] = Runtime(compiled)
    return _compiled[policy]


def headers_of(response: Any) -> dict[str, str]:
    return {name.decode(): value.decode("latin-1") for name, value in response.headers}


# ---------------------------------------------------------------- properties


@PROPERTY
@given(data=st.data())
def test_decision_agrees_with_the_specification(data: st.DataObject) -> None:
    policy = data.draw(spec_policies(), label="policy")
    origin = data.draw(request_origins(policy), label="origin")
    method = data.draw(st.sampled_from(METHODS), label="method")
    requested = data.draw(st.lists(header_names, max_size=4), label="request headers")
    _, response = runtime_for(policy).answer("/api", headers_for(origin, method, ", ".join(requested)), None)
    expected = spec_decision(policy, origin, method, requested)
    headers = headers_of(response)

    if expected == "allowed":
        assert response.status == 204, (expected, response)
        if "*" in policy.origins and not policy.credentials:
            assert headers["access-control-allow-origin"] == "*"
        else:
            assert headers["access-control-allow-origin"] == origin  # the request's bytes, exactly
        assert ("access-control-allow-credentials" in headers) == policy.credentials
        assert headers.get("access-control-expose-headers") == (", ".join(policy.expose) or None)
    else:
        assert response.status in (400, 403), (expected, response)
        assert "access-control-allow-origin" not in headers
        assert "access-control-allow-credentials" not in headers
        assert "access-control-expose-headers" not in headers
        if expected != "origin_not_allowed":
            assert response.reason == expected


@PROPERTY
@given(data=st.data())
def test_credentialed_allow_never_uses_a_wildcard(data: st.DataObject) -> None:
    policy = data.draw(spec_policies().filter(lambda p: p.credentials), label="policy")
    origin = data.draw(request_origins(policy), label="origin")
    method = data.draw(st.sampled_from(METHODS if "*" in policy.methods else policy.methods), label="method")
    _, response = runtime_for(policy).answer("/api", headers_for(origin, method, ""), None)
    headers = headers_of(response)
    if response.status == 204:
        assert headers["access-control-allow-origin"] == origin
        assert headers["access-control-allow-credentials"] == "true"
        assert "*" not in headers["access-control-allow-methods"].split(", ")
        assert "Origin" in headers["vary"]


@PROPERTY
@given(
    credentials=st.booleans(),
    listed=st.lists(st.sampled_from(HEADERS), max_size=2, unique=True),
    requested=st.lists(st.one_of(header_names, st.sampled_from(["Authorization", "AUTHORIZATION"])), max_size=6),
    method=st.sampled_from(METHODS),
)
def test_star_echoes_the_request_and_covers_authorization_only_with_credentials(
    credentials: bool, listed: list[str], requested: list[str], method: str
) -> None:
    """Issue 28: '*' methods and headers echo the request, with or without credentials; without
    credentials Authorization passes only when listed beside '*' (Fetch), with them always."""
    policy = SpecPolicy(("https://foo.com",), (), ("*",), (*listed, "*"), credentials, "production")
    _, response = runtime_for(policy).answer("/api", headers_for("https://foo.com", method, ",".join(requested)), None)
    names = sorted({name.lower() for name in requested})
    covered = credentials or "authorization" in listed or "authorization" not in names
    headers = headers_of(response)
    assert response.status == (204 if covered else 403), response
    if covered:
        assert headers["access-control-allow-methods"] == method
        assert headers.get("access-control-allow-headers") == (", ".join(names) or None)
    else:
        assert response.reason == "header_not_allowed"


latin1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=200)


@PROPERTY
@given(policy=spec_policies(), origin=latin1, method=latin1, request_headers=latin1)
def test_arbitrary_header_values_never_raise_and_never_allow_by_mistake(
    policy: SpecPolicy, origin: str, method: str, request_headers: str
) -> None:
    _, response = runtime_for(policy).answer("/api", headers_for(origin, method, request_headers), None)
    headers = headers_of(response)
    assert response.status in (204, 400, 403)
    if response.status == 204:
        assert spec_origin_allowed(policy, origin)
        assert headers["access-control-allow-origin"] in (origin, "*")
    else:
        assert "access-control-allow-origin" not in headers


# ---------------------------------------------------------------- parsers


@PROPERTY
@given(
    scheme=st.sampled_from(SCHEMES),
    host=st.sampled_from(HOSTS),
    port=st.sampled_from(PORTS),
    data=st.data(),
)
def test_origin_parsing_normalizes_case_and_default_ports(
    scheme: str, host: str, port: int | None, data: st.DataObject
) -> None:
    written = case_variant(data.draw, origin_from(scheme, host, port))
    parsed = parse_origin(written)
    assert parsed is not None
    assert (parsed.scheme, parsed.host) == (scheme, host)
    assert parsed.port == (None if port in (None, DEFAULT_PORT[scheme]) else port)
    assert parse_origin(parsed.serialize()) == parsed


@PROPERTY
@given(text=latin1)
def test_origin_parsing_never_raises_and_is_idempotent(text: str) -> None:
    parsed = parse_origin(text)
    if parsed is not None:
        assert parse_origin(parsed.serialize()) == parsed
        assert spec_origin_tuple(parsed.serialize()) is not None


@PROPERTY
@given(
    names=st.lists(header_names, max_size=8),
    separators=st.lists(st.sampled_from([",", ", ", " ,", ",,", "\t,\t", " , , "]), min_size=8, max_size=8),
    data=st.data(),
)
def test_header_list_parsing_sorts_dedupes_and_folds_case(
    names: list[str], separators: list[str], data: st.DataObject
) -> None:
    written = "".join(case_variant(data.draw, name) + sep for name, sep in zip(names, separators, strict=False))
    assert parse_header_list(written) == tuple(sorted({name.lower() for name in names}))


@PROPERTY
@given(text=latin1)
def test_header_list_parsing_accepts_exactly_comma_lists_of_tokens(text: str) -> None:
    items = [item.strip(" \t") for item in text.split(",")]
    names = {item.lower() for item in items if item}
    valid = all(set(item) <= TCHAR for item in items) and len(names) <= MAX_REQUEST_HEADER_NAMES
    try:
        parsed = parse_header_list(text)
    except HeaderListError:
        assert not valid
    else:
        assert valid
        assert parsed == tuple(sorted(names))
