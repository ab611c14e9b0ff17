import ipaddress

import pytest

from cors_handler.origins import (
    DevelopmentOrigins,
    OriginMatcher,
    PatternError,
    WildcardPattern,
    compile_regex,
    ipv4_literal,
    parse_origin,
    parse_pattern,
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
