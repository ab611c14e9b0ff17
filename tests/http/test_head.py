"""The strict head reader agrees with llhttp (httptools) on every head it accepts, and accepts real preflights.

Differential and property-based: heads are generated from a grammar with the
spellings that have split parsers before (trailing and leading whitespace,
tabs, fragments, obs-fold, bare LF, NUL/DEL/obs-text, framing and connection
headers in any case, sizes around the head bounds) and then mutated byte by
byte. Whenever the reader accepts a head, httptools, driven as uvicorn drives
it, must read exactly one complete, bodiless, kept-alive, non-upgrade OPTIONS
HTTP/1.1 request from the same bytes with the same path and the same values
for the headers the pipeline reads, inside the protocol's head bounds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import httptools
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cors_handler.http import head as head_module
from cors_handler.http.head import MAX_HEAD_BYTES, MAX_HEADERS, Head, read_head

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "1500"))
PIPELINE_HEADERS = {b"origin", b"access-control-request-method", b"access-control-request-headers",
                    b"access-control-request-private-network", b"x-forwarded-for", b"host"}  # fmt: skip
FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"proxy-connection", b"upgrade", b"expect"}


@dataclass
class Parsed:
    """What httptools reports for some bytes, collected as uvicorn's protocol collects it."""

    messages: int = 0
    complete: int = 0
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    method: bytes = b""
    version: str = ""
    keep_alive: bool = False
    upgrade: bool = False
    error: str = ""

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.method, self.version = self.parser.get_method(), self.parser.get_http_version()
        self.keep_alive, self.upgrade = self.parser.should_keep_alive(), self.parser.should_upgrade()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def parse(data: bytes) -> Parsed:
    parsed = Parsed()
    parser = parsed.parser = httptools.HttpRequestParser(parsed)  # type: ignore[attr-defined]
    parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn sets it
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        parsed.error = "upgrade"
    except httptools.HttpParserError as exc:
        parsed.error = repr(exc)
    return parsed


def assert_agrees(data: bytes, head: Head) -> None:
    parsed = parse(data)
    assert not parsed.error, parsed.error
    assert (parsed.messages, parsed.complete, parsed.body) == (1, 1, b"")
    assert (parsed.method, parsed.version, parsed.keep_alive, parsed.upgrade) == (b"OPTIONS", "1.1", True, False)
    assert httptools.parse_url(parsed.url).path == head.raw_path
    lowered = [(name.lower(), value) for name, value in parsed.headers]
    assert not FRAMING & {name for name, _ in lowered}
    assert [(n, v) for n, v in lowered if n in PIPELINE_HEADERS] == head.headers
    # inside the protocol's bounds (protocol.py counts these exactly so), so no 431 either
    assert len(parsed.headers) <= MAX_HEADERS
    assert len(parsed.url) + sum(len(n) + len(v) + 4 for n, v in parsed.headers) <= MAX_HEAD_BYTES


# -- generated heads --------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = ["Origin", "origin", "ORIGIN", "Access-Control-Request-Method", "access-control-request-headers",
         "Access-Control-Request-Private-Network", "X-Forwarded-For", "Host", "Content-Length",
         "Transfer-Encoding", "Connection", "Proxy-Connection", "Upgrade", "Expect", "Keep-Alive",
         "X-Note"]  # fmt: skip
VALUES = ["https://app.example.com", "PUT", "PUT ", " PUT", "\tPUT\t", "content-type, x-a", "true", "true ",
          "198.51.100.7", "0", "5", "chunked", "close", "keep-alive", "upgrade", "100-continue", "", " ", "a\x00b",
          "a\x7fb", "a\x80b", "a\rb", "a\nb", "a\r\n b", "h2c"]  # fmt: skip
TARGETS = ["/", "/api/items", "/api/v2#x", "/off#x", "/a?b=1#f", "/a%20b", "/%zz", "//x", "/a b", "/a\x80",
           '/a"b', "/a<b>", "/a\\b", "/a{b}", "/a|b", "/a^b", "/a`b", "/a;b=c", "/@:", "*", "http://x/api",
           ""]  # fmt: skip

names = st.one_of(st.sampled_from(NAMES), st.text(TCHAR, min_size=1, max_size=12))
values = st.one_of(st.sampled_from(VALUES), st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=12))
separators = st.sampled_from([":", ": ", ":\t", ":  ", " :", ""])
line_ends = st.sampled_from(["\r\n"] * 12 + ["\n", "\r", "\r\n "])
targets = st.one_of(st.sampled_from(TARGETS), st.text("/abc?=&%#;:@!$'()*+,-._~", max_size=12).map("/".__add__))
request_lines = st.tuples(
    st.sampled_from(["OPTIONS"] * 8 + ["options", "GET", "OPTIONS "]),
    targets,
    st.sampled_from(["HTTP/1.1"] * 8 + ["HTTP/1.0", "HTTP/1.10", "http/1.1", "HTTP/2.0", "HTTP/1.1 "]),
)


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    method, target, version = draw(request_lines)
    lines = [f"{method} {target} {version}"]
    for name, sep, value in draw(st.lists(st.tuples(names, separators, values), max_size=8)):
        lines.append(name + sep + value)
    ends = draw(st.lists(line_ends, min_size=len(lines) + 1, max_size=len(lines) + 1))
    text = "".join(line + end for line, end in zip(lines, ends[:-1], strict=True)) + "\r\n"
    return text.encode("latin-1")


@st.composite
def clean_heads(draw: st.DrawFn) -> bytes:
    """Heads inside the subset, mostly: where a difference would matter most."""
    target = draw(st.text("/abcAZ09-._~!$&'()*+,;=:@%?", max_size=16))
    lines = [f"OPTIONS /{target} HTTP/1.1"]
    value_chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t")
    pairs = st.tuples(names, st.sampled_from([":", ": ", ":\t", ":  "]), st.text(value_chars, max_size=16))
    lines += [name + sep + value for name, sep, value in draw(st.lists(pairs, max_size=8))]
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(heads() | clean_heads()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from([0x20, 0x09, 0x0D, 0x0A, 0x00, 0x7F, 0x80, 0x3A, 0x23, 0x3F, 0x25, 0x41]))
        if op == "insert":
            data[at:at] = bytes([byte])
        elif at < len(data):
            data[at : at + 1] = b"" if op == "delete" else bytes([byte])
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(clean_heads(), heads(), mutated()))
@example(b"OPTIONS /a HTTP/1.1\r\nAccess-Control-Request-Method: PUT \r\n\r\n")
@example(b"OPTIONS /off#x HTTP/1.1\r\nOrigin: https://a.example.com\r\n\r\n")
@example(b"OPTIONS /a HTTP/1.1\r\nProxy-Connection: close\r\n\r\n")
@example(b"OPTIONS /a HTTP/1.1\r\nOrigin: x\r\n\r\nOPTIONS /b HTTP/1.1\r\n\r\n")
def test_whatever_the_reader_accepts_httptools_reads_the_same_way(data: bytes) -> None:
    head = read_head(data)
    if head is not None:
        assert_agrees(data, head)


# The head grammar written with ordinary (backtracking) quantifiers: head.py's possessive form must match the same.
_BACKTRACKING_HEAD = re.compile(
    rb"OPTIONS (/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*) HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*(?:[!-~][\t -~]*)?\r\n)*"
    rb"\r\n"
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(clean_heads(), heads(), mutated()))
@example(b"OPTIONS /a HTTP/1.1\r\nX:  \r\n\r\n")
@example(b"OPTIONS /a HTTP/1.1\r\nX: \t\r\n\r\n\r\n")
def test_the_possessive_grammar_matches_what_the_backtracking_one_does(data: bytes) -> None:
    assert _BACKTRACKING_HEAD.pattern != head_module._HEAD.pattern
    ours, theirs = head_module._HEAD.fullmatch(data), _BACKTRACKING_HEAD.fullmatch(data)
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert ours.groups() == theirs.groups()


def preflight(*lines: str, target: str = "/api/items") -> bytes:
    return (f"OPTIONS {target} HTTP/1.1\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n").encode("latin-1")


ACCEPTED = {
    "browser preflight": preflight(
        "Host: api.example.com",
        "Origin: https://app.example.com",
        "Access-Control-Request-Method: PUT",
        "Access-Control-Request-Headers: content-type,x-request-id",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        "Accept: */*",
    ),
    "through traefik": preflight(
        "Host: api.example.com",
        "Origin: https://app.example.com",
        "Access-Control-Request-Method: GET",
        "X-Forwarded-For: 198.51.100.7",
        "X-Forwarded-Host: api.example.com",
        "X-Forwarded-Proto: https",
        "Accept-Encoding: gzip",
    ),
    "trailing whitespace kept": preflight("Origin: https://a.example.com", "Access-Control-Request-Method: PUT \t"),
    "no space after colon": preflight("Origin:https://a.example.com", "Access-Control-Request-Method:GET"),
    "query string": preflight("Origin: https://a.example.com", target="/api/items?page=2&x=%41"),
    "private network": preflight("Origin: http://intranet", "Access-Control-Request-Private-Network: true"),
    "empty value": preflight("Origin: https://a.example.com", "X-Empty:"),
    "no headers at all": preflight(),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_the_reader_accepts_ordinary_preflights_and_agrees(name: str) -> None:
    data = ACCEPTED[name]
    head = read_head(data)
    assert head is not None
    assert_agrees(data, head)


REFUSED = {
    "fragment": preflight("Origin: https://a.example.com", target="/off#x"),
    "proxy-connection": preflight("Proxy-Connection: close"),
    "connection": preflight("Connection: keep-alive"),
    "content-length 0": preflight("Content-Length: 0"),
    "upgrade": preflight("Upgrade: h2c"),
    "expect": preflight("Expect: 100-continue"),
    "chunked": preflight("TRANSFER-ENCODING: chunked"),
    "obs-fold": preflight("Access-Control-Request-Headers: a,", " b"),
    "space before colon": preflight("Origin : https://a.example.com"),
    "bare LF": b"OPTIONS / HTTP/1.1\nOrigin: x\r\n\r\n",
    "obs-text": preflight("X-Note: caf\xe9"),
    "HTTP/1.0": preflight().replace(b"HTTP/1.1", b"HTTP/1.0"),
    "absolute form": preflight(target="http://x/api"),
    "two heads": preflight() + preflight(),
    "a body after the head": preflight() + b"{}",
    "too many headers": preflight(*(f"X-H{i}: v" for i in range(MAX_HEADERS + 1))),
    "near the size bound": preflight("X-Pad:" + "p" * (MAX_HEAD_BYTES - MAX_HEADERS)),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_the_reader_leaves_everything_else_to_httptools(name: str) -> None:
    assert read_head(REFUSED[name]) is None


@pytest.mark.parametrize(
    "size",
    [MAX_HEAD_BYTES - MAX_HEADERS - 1, MAX_HEAD_BYTES - MAX_HEADERS],
    ids=["one-byte-under-the-bound", "at-the-bound"],
)
def test_heads_at_the_size_bound_are_read_within_the_protocols_count(size: int) -> None:
    """The largest heads the reader accepts: ``Name:value`` lines count one byte more each in protocol.py."""
    lines = [f"X-{i}:v" for i in range(MAX_HEADERS - 1)]
    base = len(preflight(*lines, "X-Pad:"))
    data = preflight(*lines, "X-Pad:" + "p" * (size - base))
    assert len(data) == size
    head = read_head(data)
    assert head is not None
    assert_agrees(data, head)
