import ipaddress
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cors_handler.cors import origins as origins_module
from cors_handler.cors.origins import (
    DevelopmentOrigins,
    OriginMatcher,
    PatternError,
    WildcardPattern,
    compile_regex,
    ipv4_literal,
    parse_origin,
    parse_pattern,
    parse_request_origin,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("https://app.example.com:80", "https://app.example.com:80"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
        ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ("chrome-extension://abcdefgh", "chrome-extension://abcdefgh"),
        ("http://localhost:08080", "http://localhost:8080"),
    ],
    ids=[
        "already-normal",
        "scheme-and-host-lowercased",
        "default-https-port-dropped",
        "default-http-port-dropped",
        "other-port-kept",
        "port-80-on-https-kept",
        "ipv6-with-port",
        "ipv6-compressed",
        "ipv4-with-port",
        "extension-scheme",
        "port-leading-zero-dropped",
    ],
)
def test_parse_origin_normalizes(raw: str, normalized: str) -> None:
    parsed = parse_origin(raw)
    assert parsed is not None
    assert parsed.serialize() == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "", "null", "app.example.com", "https://", "https://app.example.com/", "https://app.example.com/path",
        "https://user@app.example.com", "https://app.example.com:", "https://app.example.com:65536",
        "https://app..example.com", "https://.example.com", "https://-bad.example.com", "https://a b.com",
        "https://app.example.com\r\nX-Injected: 1", "https://[::1", "https://[zz::1]", "https://app.example.com?x",
        "https://ex\u00e4mple.com", "1https://a.com", "https://app.example.com:8080:1",
    ],
)  # fmt: skip
def test_parse_origin_rejects_malformed(raw: str) -> None:
    assert parse_origin(raw) is None


@given(st.text(alphabet="ab-._", min_size=1, max_size=12))
def test_reg_name_check_is_the_label_rule(host: str) -> None:
    """The string tests of _valid_reg_name against the rule they stand for: no label empty or starting with '-'."""
    labels = host.split(".")
    assert origins_module._valid_reg_name(host) == all(label and not label.startswith("-") for label in labels)


def test_ipv4_literal_is_strict_dotted_decimal() -> None:
    assert ipv4_literal("172.16.21.5") == ipaddress.IPv4Address("172.16.21.5")
    for host in ("172.016.21.5", "0x7f.0.0.1", "127.1", "256.1.1.1", "1.2.3.4.5", "localhost", "2130706433"):
        assert ipv4_literal(host) is None, host


def test_parse_pattern_kinds() -> None:
    assert parse_pattern("*") == "*"
    assert parse_pattern("null") == "null"
    assert parse_pattern("HTTPS://App.Example.com:443") == "https://app.example.com"
    wildcard = parse_pattern("https://*.example.com")
    assert wildcard == WildcardPattern("https://*.example.com", "https", ".example.com", None)
    assert parse_pattern("http://*.example.com:8080") == WildcardPattern(
        "http://*.example.com:8080", "http", ".example.com", 8080
    )


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("app.example.com", "needs a scheme"),
        ("https://app.example.com/", "without path or trailing slash"),
        ("https://app.example.com/api", "without path"),
        ("https://a*.example.com", "whole first label"),
        ("https://*.*.example.com", "whole first label"),
        ("https://app.*.com", "whole first label"),
        ("https://*.example.com:*", "whole first label"),
        ("https://*.10.0.0.1", "domain name"),
        ("https://bad host", "not a valid origin"),
    ],
    ids=[
        "no-scheme",
        "trailing-slash",
        "path",
        "partial-label-wildcard",
        "two-wildcard-labels",
        "inner-wildcard",
        "wildcard-port",
        "wildcard-over-ip-address",
        "space-in-host",
    ],
)
def test_parse_pattern_errors_say_how_to_fix(pattern: str, hint: str) -> None:
    with pytest.raises(PatternError, match=hint):
        parse_pattern(pattern)


def _matcher(*patterns: str, regexes: tuple[str, ...] = (), dev: tuple[str, ...] | None = None) -> OriginMatcher:
    exact, wildcards, allow_any = set(), [], False
    for text in patterns:
        parsed = parse_pattern(text)
        if parsed == "*":
            allow_any = True
        elif isinstance(parsed, WildcardPattern):
            wildcards.append(parsed)
        else:
            exact.add(parsed)
    development = None if dev is None else DevelopmentOrigins(tuple(ipaddress.IPv4Network(c) for c in dev))
    compiled = tuple((r, compile_regex(r)) for r in regexes)
    return OriginMatcher(allow_any, frozenset(exact), tuple(wildcards), compiled, development)


def _allows(matcher: OriginMatcher, origin: str) -> bool:
    return matcher.match(origin, parse_origin(origin) if origin != "null" else None) is not None


def test_exact_match_is_normalized() -> None:
    m = _matcher("https://app.example.com", "http://localhost:3000")
    for origin in ("https://app.example.com", "https://APP.example.com", "https://app.example.com:443"):
        assert _allows(m, origin), origin
    for origin in ("http://app.example.com", "https://app.example.com:8443", "https://app.example.co",
                   "https://xapp.example.com", "https://app.example.com.evil.com", "http://localhost:3001",
                   "http://localhost"):  # fmt: skip
        assert not _allows(m, origin), origin


def test_wildcard_subdomain_dot_boundary() -> None:
    m = _matcher("https://*.example.com")
    for origin in ("https://a.example.com", "https://a.b.example.com", "https://A.Example.com:443"):
        assert _allows(m, origin), origin
    refused = ("https://example.com", "https://evilexample.com", "http://a.example.com",
               "https://a.example.com:8443", "https://a.example.com.evil.com", "https://example.com.a")  # fmt: skip
    for origin in refused:
        assert not _allows(m, origin), origin


def test_wildcard_port_is_part_of_pattern() -> None:
    m = _matcher("http://*.example.com:8080")
    assert _allows(m, "http://a.example.com:8080")
    assert not _allows(m, "http://a.example.com")
    assert not _allows(m, "http://a.example.com:8081")


def test_shared_prefix_and_suffix_origins_do_not_bleed() -> None:
    m = _matcher("https://foo.com", "https://bar.com")
    for origin in ("https://barfoo.com", "https://foo.com.bar.com", "https://foobar.com", "https://bar.co"):
        assert not _allows(m, origin), origin


def test_regex_matches_whole_normalized_origin() -> None:
    m = _matcher(regexes=(r"https://[a-z0-9-]+\.preview\.example\.com",))
    assert _allows(m, "https://pr-12.preview.example.com")
    assert _allows(m, "https://PR-12.preview.example.com:443")
    assert not _allows(m, "https://pr-12.preview.example.com.evil.com")  # fullmatch, not search
    assert not _allows(m, "http://pr-12.preview.example.com")


def test_compile_regex_reports_re2_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        compile_regex("(a")
    with pytest.raises(ValueError, match="invalid perl operator"):
        compile_regex("(?=lookahead)")


def test_null_only_when_listed_exactly() -> None:
    assert not _allows(_matcher("*"), "null")
    assert not _allows(_matcher("https://*.example.com", regexes=(".*",)), "null")
    assert _allows(_matcher("null"), "null")


def test_any_origin() -> None:
    m = _matcher("*")
    assert _allows(m, "https://anything.test")
    assert m.match("https://x.test", parse_origin("https://x.test")) == "any origin (*)"


SEED_CIDRS = ("172.16.21.0/24", "172.16.19.0/24", "192.168.1.0/24")


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost", "http://localhost:3000", "https://localhost:8443", "http://127.0.0.1:5173",
        "http://127.255.255.254", "http://[::1]:3000", "https://[::1]",
        "http://172.16.21.0", "http://172.16.21.255", "http://172.16.21.42:8080", "https://172.16.19.7",
        "http://192.168.1.1:3000",
    ],
)  # fmt: skip
def test_development_allows_loopback_and_private_cidrs(origin: str) -> None:
    assert _allows(_matcher("https://app.example.com", dev=SEED_CIDRS), origin)


@pytest.mark.parametrize(
    "origin",
    [
        "http://172.16.22.1", "http://172.16.20.255", "http://192.168.2.1", "http://10.0.0.1",
        "ftp://localhost", "ws://localhost:3000", "http://localhost.evil.com", "http://evil-localhost",
        "http://[::ffff:127.0.0.1]", "http://[::ffff:172.16.21.5]", "http://172.016.021.005",
        "http://[::2]",
    ],
)  # fmt: skip
def test_development_boundaries(origin: str) -> None:
    assert not _allows(_matcher("https://app.example.com", dev=SEED_CIDRS), origin)


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "http://[::1]", "http://172.16.21.5"])
def test_production_matcher_has_no_development_origins(origin: str) -> None:
    assert not _allows(_matcher("https://app.example.com", dev=None), origin)


def test_matched_rule_is_described() -> None:
    m = _matcher("https://a.com", "https://*.b.com", regexes=("https://c[0-9]\\.com",), dev=SEED_CIDRS)
    assert m.match("https://a.com", parse_origin("https://a.com")) == "exact https://a.com"
    assert m.match("https://x.b.com", parse_origin("https://x.b.com")) == "wildcard https://*.b.com"
    assert m.match("https://c1.com", parse_origin("https://c1.com")) == "regex https://c[0-9]\\.com"
    assert m.match("http://172.16.19.9", parse_origin("http://172.16.19.9")) == (
        "development: private network 172.16.19.0/24"
    )


# ------------------------------------------------- indexed matcher vs one-by-one reference
#
# The matcher indexes wildcards by domain, runs the regexes as one RE2 set and the CIDRs by
# address arithmetic. The reference below is the plain scan in configuration order the index
# replaces: every pattern tried in turn, the first match names the rule. Large random
# policies over a small alphabet of labels, so patterns overlap (several wildcards and
# regexes match one origin) and the origins are near misses of each other.

LABELS = ["a", "b", "api", "app", "x-y", "c0", "example", "evil", "com", "net", "io"]
DIFF_EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))


def reference_match(
    exact: list[str], wildcards: list[WildcardPattern], regexes: list[str], cidrs: list[str] | None, origin: str
) -> str | None:
    if origin == "null":
        return "exact null" if "null" in exact else None
    parsed = parse_origin(origin)
    assert parsed is not None
    normalized = parsed.serialize()
    if normalized in exact:
        return f"exact {normalized}"
    for wildcard in wildcards:
        same_kind = (parsed.scheme, parsed.port) == (wildcard.scheme, wildcard.port)
        if same_kind and parsed.host.endswith(wildcard.suffix) and len(parsed.host) > len(wildcard.suffix):
            return f"wildcard {wildcard.text}"
    for text in regexes:
        if compile_regex(text).fullmatch(normalized) is not None:
            return f"regex {text}"
    if cidrs is None or parsed.scheme not in ("http", "https"):
        return None
    if parsed.host in ("localhost", "[::1]"):
        return f"development: loopback {parsed.host}"
    address = ipv4_literal(parsed.host)
    if address is None:
        return None
    if address.is_loopback:
        return "development: loopback 127.0.0.0/8"
    return next((f"development: private network {c}" for c in cidrs if address in ipaddress.IPv4Network(c)), None)


def _host(rng: random.Random, low: int = 1, high: int = 4) -> str:
    return ".".join(rng.choice(LABELS) for _ in range(rng.randint(low, high)))


def _origin(rng: random.Random, host: str) -> str:
    scheme = rng.choice(["https", "https", "http", "wss"])
    port = rng.choice(["", "", ":443", ":80", ":8443"])
    if rng.random() < 0.2:
        host = host.upper()
    return f"{scheme}://{host}{port}"


def _random_policy(rng: random.Random, size: int) -> tuple[list[str], list[str], list[str]]:
    origins: list[str] = []
    for _ in range(size):
        if rng.random() < 0.5:
            origins.append(_origin(rng, _host(rng)))
        else:
            scheme, port = rng.choice(["https", "http"]), rng.choice(["", "", ":8443"])
            origins.append(f"{scheme}://*.{_host(rng, 1, 3)}{port}")
    templates = [r"https://[a-z0-9-]+\.{d}", r"https?://{d}(:[0-9]+)?", r"https://({l}|{m})\.{d}",
                 r"^https://{l}\..*$", r"wss://{d}", r"https://{l}-?[0-9]*\.{d}(:8443)?"]  # fmt: skip
    regexes = []
    for _ in range(rng.randint(0, max(1, size // 20))):
        template = rng.choice(templates)
        domain = _host(rng, 1, 2).replace(".", r"\.")
        regexes.append(template.format(d=domain, l=rng.choice(LABELS), m=rng.choice(LABELS)))
    cidrs = [f"{rng.choice([10, 172, 192])}.{rng.randrange(256)}.0.0/{rng.choice([8, 16, 24])}" for _ in range(5)]
    cidrs = [str(ipaddress.IPv4Network(c, strict=False)) for c in cidrs]
    return origins, regexes, cidrs


def _probes(rng: random.Random, origins: list[str], count: int) -> list[str]:
    probes = ["null", "http://localhost:3000", "https://[::1]", "http://127.0.0.9", "http://10.1.2.3"]
    for _ in range(count):
        roll = rng.random()
        if roll < 0.4 and origins:  # a configured pattern, instantiated and perturbed
            pattern = rng.choice(origins).replace("*", _host(rng, 1, 2))
            scheme, _, rest = pattern.partition("://")
            host, _, port = rest.partition(":")
            variants = [host, f"{_host(rng, 1, 1)}.{host}", host.partition(".")[2] or host]
            probes.append(_origin(rng, rng.choice(variants)))
            probes.append(f"{scheme}://{host}" + (f":{port}" if port else ""))
        elif roll < 0.6:
            probes.append(f"http://{rng.choice([10, 172, 192, 127])}.{rng.randrange(256)}.{rng.randrange(3)}.7")
        else:
            probes.append(_origin(rng, _host(rng)))
    return probes


@settings(max_examples=DIFF_EXAMPLES, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(1, 2000), dev=st.booleans())
def test_indexed_matcher_agrees_with_one_by_one_reference(seed: int, size: int, dev: bool) -> None:
    rng = random.Random(seed)
    origins, regexes, cidrs = _random_policy(rng, size)
    if rng.random() < 0.1:
        origins.append("null")
    matcher = _matcher(*origins, regexes=tuple(regexes), dev=tuple(cidrs) if dev else None)
    exact = [p for p in map(parse_pattern, origins) if isinstance(p, str)]
    wildcards = [p for p in map(parse_pattern, origins) if isinstance(p, WildcardPattern)]
    for origin in _probes(rng, origins, 300):
        if origin != "null" and parse_origin(origin) is None:
            continue  # a perturbation that is not an origin at all (a malformed preflight)
        expected = reference_match(exact, wildcards, regexes, list(cidrs) if dev else None, origin)
        assert _rule(matcher, origin) == expected, origin


def _rule(matcher: OriginMatcher, origin: str) -> str | None:
    return matcher.match(origin, parse_origin(origin) if origin != "null" else None)


def test_several_matching_rules_name_the_first_configured() -> None:
    wildcards = ("https://*.b.example.com", "https://*.example.com", "https://*.a.b.example.com")
    regexes = ("https://z\\..*", "https://.*", "https://z\\.q")
    m = _matcher(*wildcards, regexes=regexes, dev=("10.0.0.0/8", "10.1.0.0/16"))
    assert _rule(m, "https://x.a.b.example.com") == "wildcard https://*.b.example.com"
    assert _rule(m, "https://x.example.com") == "wildcard https://*.example.com"
    assert _rule(m, "https://z.q") == "regex https://z\\..*"
    assert _rule(m, "http://10.1.2.3") == "development: private network 10.0.0.0/8"


def test_regexes_are_tried_in_turn_when_re2_cannot_build_the_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # RE2 refuses to compile a set whose DFA would not have enough memory: the matcher
    # then falls back to one regex after the other, with the same answers.
    monkeypatch.setattr(origins_module._RegexSet, "MAX_MEMORY", 1 << 10)
    regexes = tuple(rf"https://[a-z]+\.r{i}\.example\.com" for i in range(50))
    m = _matcher("https://a.com", regexes=regexes)
    assert m._regex_set is None
    assert _rule(m, "https://ok.r42.example.com") == f"regex {regexes[42]}"
    assert _rule(m, "https://ok.r50.example.com") is None


# Issue 29 item 8: Fetch's origin-or-null grammar (whatwg/fetch 301650c), generated independently of the parser.
_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_labels = st.text(_LOWER_ALNUM, min_size=1, max_size=8) | st.builds(
    lambda a, mid, b: a + mid + b,
    st.sampled_from(_LOWER_ALNUM), st.text(_LOWER_ALNUM + "-", max_size=6), st.sampled_from(_LOWER_ALNUM),
)  # fmt: skip
_domains = st.lists(_labels, min_size=1, max_size=4).map(".".join).filter(lambda h: not h[-1:].isdigit() or "." in h)
_schemes = st.sampled_from(["https", "http", "wss", "chrome-extension", "moz-extension", "web+app"])
_ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))


def _serialize_ipv6(address: ipaddress.IPv6Address) -> str:
    """The URL standard's IPv6 serializer: the first longest run of two or more zero hextets becomes '::'."""
    pieces = [format(int.from_bytes(address.packed[i : i + 2], "big"), "x") for i in range(0, 16, 2)]
    best, best_len, i = -1, 1, 0
    while i < 8:
        j = i
        while j < 8 and pieces[j] == "0":
            j += 1
        if j - i > best_len:
            best, best_len = i, j - i
        i = max(j, i + 1)
    if best < 0:
        return ":".join(pieces)
    return ":".join(pieces[:best]) + "::" + ":".join(pieces[best + best_len :])


_ipv6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{_serialize_ipv6(ipaddress.IPv6Address(n))}]")
serialized_origins = st.builds(lambda s, h, p: f"{s}://{h}{p}", _schemes, _domains | _ipv6, _ports)


@given(serialized_origins)
def test_every_serialized_origin_is_read(origin: str) -> None:
    parsed = parse_request_origin(origin)
    assert parsed is not None, origin
    assert parsed == parse_origin(origin)  # the same tuple the configured patterns are compared with


@given(serialized_origins, st.data())
def test_an_upper_case_letter_makes_it_malformed(origin: str, data: st.DataObject) -> None:
    letters = [i for i, c in enumerate(origin) if c.isalpha() and c.islower()]
    i = data.draw(st.sampled_from(letters))
    assert parse_request_origin(origin[:i] + origin[i].upper() + origin[i + 1 :]) is None
    assert parse_origin(origin[:i] + origin[i].upper() + origin[i + 1 :]) is not None  # a configured pattern may


@given(serialized_origins, st.data())
def test_percent_encoding_makes_it_malformed(origin: str, data: st.DataObject) -> None:
    start = origin.index("://") + 3
    i = data.draw(st.integers(start, len(origin) - 1))
    assert parse_request_origin(f"{origin[:i]}%{ord(origin[i]):02x}{origin[i + 1 :]}") is None


@pytest.mark.parametrize(
    "host",
    ["[::0.0.0.1]", "[::ffff:1.2.3.4]", "[01::1]", "[A::1]", "[1:2:3:4:5:6::7]", "[1:0::1:2:3:4:5]"],
    ids=["dotted-quad", "mapped-v4", "leading-zero", "upper-hex", "elides-one-hextet", "elides-one-hextet-inside"],
)
def test_ipv6_spellings_no_browser_writes_are_malformed(host: str) -> None:
    assert parse_origin(f"http://{host}") is not None  # Python reads them ...
    assert parse_request_origin(f"http://{host}") is None  # ... Fetch's grammar does not have them
