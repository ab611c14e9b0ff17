"""How ``verify`` reads an answer as a browser does, and what counts as a difference (no network here).

Every row's expected side is the pipeline's real answer for the case; the
received side is that answer edited the way a proxy or another implementation
might: byte-level edits a browser ignores must agree, the others must name
what changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cors_handler.serve.pipeline import preview
from cors_handler.serve.responses import encode
from cors_handler.tools.cases import ALLOW, Case
from cors_handler.tools.verify import (
    check,
    conclude,
    differences,
    expected_answer,
    parse_url,
    printable,
    retry_after,
)
from cors_handler.tools.wire import MAX_DELTA_SECONDS, Answer, Unreachable, delta_seconds, parse_head, read_answer

from ..conftest import make_policy

POLICY = make_policy(
    allow_origins=["https://app.example.com"],
    allow_methods=["PUT", "DELETE"],
    allow_headers=["content-type", "x-request-id"],
    allow_credentials=True,
    max_age=600,
)
CASE = Case("t", "default", "/", "https://app.example.com", "PUT", "content-type", True, False, ALLOW)

Edit = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]


def replace_header(name: str, value: str | None) -> Edit:
    def edit(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        kept = [(n, v) for n, v in headers if n != name]
        return kept if value is None else [*kept, (name, value)]

    return edit


def received(edit: Edit, case: Case = CASE) -> list[str]:
    want = expected_answer(POLICY, case)
    got = Answer(want.status, tuple(edit(list(want.headers))))
    return differences(case, conclude(case, want), conclude(case, got))


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda h: h, id="same-answer"),
        pytest.param(lambda h: list(reversed(h)), id="header-order"),
        pytest.param(replace_header("access-control-allow-methods", "DELETE,PUT"), id="list-spelling-and-order"),
        pytest.param(replace_header("access-control-allow-headers", "X-Request-Id, Content-Type"), id="header-case"),
        pytest.param(replace_header("vary", None), id="no-vary"),
        pytest.param(replace_header("cache-control", None), id="no-cache-control"),
        pytest.param(lambda h: [*h, ("server", "edge")], id="extra-header"),
    ],
)
def test_what_a_browser_ignores_agrees(edit: Edit) -> None:
    assert received(edit) == []


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        pytest.param(replace_header("x-cors-preflight", None), "no X-CORS-Preflight marker", id="no-marker"),
        pytest.param(replace_header("access-control-allow-origin", None), "no Access-Control-Allow-Origin",
                     id="no-acao"),
        pytest.param(replace_header("access-control-allow-origin", "*"), "* with credentials", id="star-credentials"),
        pytest.param(replace_header("access-control-allow-origin", "https://APP.example.com"), "is not the origin",
                     id="origin-not-echoed-exactly"),
        pytest.param(replace_header("access-control-allow-credentials", None), "Allow-Credentials: true",
                     id="no-acac"),
        pytest.param(replace_header("access-control-allow-methods", "DELETE"), "does not cover PUT", id="method"),
        pytest.param(replace_header("access-control-allow-methods", "PUT, DELETE, PATCH"),
                     "Access-Control-Allow-Methods covers DELETE, PATCH, PUT, expected DELETE, PUT",
                     id="covers-more-methods"),
        pytest.param(replace_header("access-control-allow-headers", "x-request-id"), "does not cover content-type",
                     id="header"),
        pytest.param(replace_header("access-control-allow-headers", "content-type, x-request-id, authorization"),
                     "Access-Control-Allow-Headers covers authorization,", id="covers-more-headers"),
        pytest.param(replace_header("access-control-max-age", "86400"), "Access-Control-Max-Age is 86400, expected 600",
                     id="max-age"),
        pytest.param(replace_header("access-control-max-age", None), "Access-Control-Max-Age is nothing",
                     id="no-max-age"),
        pytest.param(lambda h: [*h, ("access-control-allow-origin", "https://app.example.com")],
                     "is not the origin", id="acao-twice"),
    ],
)  # fmt: skip
def test_what_changes_the_browser_s_conclusion_is_named(edit: Edit, reason: str) -> None:
    reasons = received(edit)
    assert any(reason in r for r in reasons), reasons


def test_a_refusal_answered_differently_still_agrees() -> None:
    """403 or 400, with or without a body: the browser refuses either way."""
    case = Case("t", "default", "/", "https://evil.example", "PUT", None, True, False, None)
    want = expected_answer(POLICY, case)
    assert want.status == 403
    got = Answer(400, (("x-cors-preflight", "enhanced-handler"), ("access-control-allow-credentials", "true")))
    assert differences(case, conclude(case, want), conclude(case, got)) == []


def test_star_covers_methods_and_headers_only_without_credentials() -> None:
    answer = Answer(204, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "*"),
                          ("access-control-allow-headers", "*")))  # fmt: skip
    anonymous = Case("t", "default", "/", "https://a.test", "PATCH", "x-a", False, False, None)
    assert conclude(anonymous, answer).allowed
    authorization = Case("t", "default", "/", "https://a.test", "PATCH", "authorization", False, False, None)
    assert conclude(authorization, answer).why == "Access-Control-Allow-Headers does not cover authorization"


def test_an_actual_response_is_checked_for_origin_and_credentials_only() -> None:
    case = Case("t", "default", "/", "https://app.example.com", "GET", None, True, False, ALLOW, actual=True)
    edge = Answer(200, (("access-control-allow-origin", "https://app.example.com"),
                        ("access-control-allow-credentials", "true")))  # fmt: skip
    want = conclude(case, expected_answer(POLICY, case))
    assert want.allowed and differences(case, want, conclude(case, edge)) == []
    bare = conclude(case, Answer(200, ()))
    assert differences(case, want, bare) == ["expected allowed, a browser would refuse: no Access-Control-Allow-Origin"]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        pytest.param("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080), id="host-port"),
        pytest.param("https://api.example.com/", ("https", "api.example.com", 443), id="https-default-port"),
        pytest.param("http://svc.ns.svc", ("http", "svc.ns.svc", 80), id="http-default-port"),
        pytest.param("http://[::1]:9000", ("http", "::1", 9000), id="ipv6"),
    ],
)
def test_parse_url(url: str, target: tuple[str, str, int]) -> None:
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.port) == target


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://x", id="scheme"),
        pytest.param("http://", id="no-host"),
        pytest.param("http://x/api", id="path"),
        pytest.param("http://x?a=1", id="query"),
        pytest.param("http://u:p@x", id="userinfo"),
        pytest.param("http://x:99999", id="port"),
    ],
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        parse_url(url)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("3", 3.0, id="delta-seconds"),
        pytest.param(None, 1.0, id="absent"),
        pytest.param("soon", 1.0, id="unreadable"),
        pytest.param("100000", 30.0, id="capped"),
        pytest.param("Thu, 01 Jan 1970 00:00:00 GMT", 0.0, id="date-in-the-past"),
        pytest.param("\u00b2", 1.0, id="superscript-two"),  # passes str.isdigit(), float() refuses it
        pytest.param("\u0663", 1.0, id="arabic-indic-three"),  # float() reads it: not delta-seconds all the same
        pytest.param("9" * 5000, 30.0, id="more-digits-than-int-reads"),
        pytest.param("Thu, 01 Jan 99999 00:00:00 GMT", 1.0, id="year-out-of-range"),
        pytest.param("Thu, 01 Jan 1970 99:99:99 GMT", 1.0, id="time-out-of-range"),
        pytest.param("-5", 1.0, id="negative"),
    ],
)
def test_retry_after(value: str | None, seconds: float) -> None:
    headers = (("retry-after", value),) if value is not None else ()
    assert retry_after(Answer(429, headers)) == seconds


def test_printable_keeps_a_line_one_line() -> None:
    assert printable("a\nb\x1b[2Jc\u00e9") == "a\\nb\\x1b[2Jc\u00e9"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("600", 600, id="digits"),
        pytest.param("0600", 600, id="leading-zero"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("\u00b2", None, id="superscript-two"),
        pytest.param("\uff16\uff10\uff10", None, id="fullwidth-digits"),
        pytest.param("6e2", None, id="exponent"),
        pytest.param("+600", None, id="sign"),
        pytest.param("9" * 5000, MAX_DELTA_SECONDS, id="more-digits-than-int-reads"),
    ],
)
def test_delta_seconds_reads_ascii_digits_only(value: str | None, seconds: int | None) -> None:
    assert delta_seconds(value) == seconds


def test_a_max_age_of_superscript_two_is_no_max_age() -> None:
    answer = Answer(204, (("access-control-allow-origin", "https://app.example.com"),
                          ("access-control-max-age", "\u00b2")))  # fmt: skip
    assert conclude(CASE, answer).max_age is None


WIRE = encode(preview(POLICY, "/", [(n.lower().encode(), v.encode()) for n, v in (
    ("origin", CASE.origin), ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "content-type"),
)])[1], b"date: Mon, 07 Dec 2026 18:00:00 GMT\r\n")  # fmt: skip


def test_cors_handler_s_own_bytes_read_without_a_defect() -> None:
    answer = parse_head(WIRE)
    assert answer.defects == () and answer.status == 204
    assert answer.get("access-control-allow-origin") == "https://app.example.com"
    assert conclude(CASE, answer).allowed


@pytest.mark.parametrize(
    ("head", "fields", "defect"),
    [
        pytest.param(b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: \t https://a.test \t\r\n\r\n",
                     [("access-control-allow-origin", "https://a.test")], None, id="value-trimmed-as-fetch-does"),
        pytest.param(b"HTTP/1.1 204\r\nA:b\r\n\r\n", [("a", "b")], None, id="no-reason-no-space"),
        pytest.param(b"HTTP/1.0 200 OK\r\nA: \xe9\r\n\r\n", [("a", "\u00e9")], None, id="obs-text-isomorphic"),
        pytest.param(b"HTTP/1.1 204 No Content\r\nX-Pad : 1\r\nAccess-Control-Allow-Origin: https://a.test\r\n\r\n",
                     [("x-pad", "1"), ("access-control-allow-origin", "https://a.test")],
                     "line 2 'X-Pad : 1' has whitespace before the colon", id="whitespace-before-the-colon"),
        pytest.param(b"HTTP/1.1 204 No Content\r\nA: b\r\n c\r\n\r\n", [("a", "b c")],
                     "line 3 ' c' continues the line before it (obsolete line folding)", id="obs-fold"),
        pytest.param(b"HTTP/1.1 204 No Content\r\njunk\r\nA: b\r\n\r\n", [("a", "b")],
                     "line 2 'junk' has no colon", id="no-colon"),
        pytest.param(b"HTTP/1.1 204 No Content\nA: b\n\n", [("a", "b")], "a line ends in LF without CR",
                     id="bare-lf"),
        pytest.param(b"HTTP/1.1 204 No Content\r\nA: b\rAccess-Control-Allow-Origin: *\r\n\r\n",
                     [("a", "b\rAccess-Control-Allow-Origin: *")], "a control character in the value", id="bare-cr"),
        pytest.param(b"HTTP/1.1 204 No Content\r\nA\x00: b\r\n\r\n", [("a\x00", "b")],
                     "the field name is not a token", id="nul-in-name"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n: b\r\n\r\n", [("", "b")], "the field name is not a token",
                     id="empty-name"),
    ],
)  # fmt: skip
def test_a_head_is_read_as_a_browser_reads_it_with_each_defect_named(
    head: bytes, fields: list[tuple[str, str]], defect: str | None
) -> None:
    answer = parse_head(head)
    assert list(answer.headers) == fields
    if defect is None:
        assert answer.defects == ()
    else:
        assert any(defect in d for d in answer.defects), answer.defects


def test_a_defect_is_a_disagreement_even_when_the_fields_agree() -> None:
    """The reasons come first, then whatever the browser's reading differs in."""

    class Canned:
        def send(self, method: str, path: str, headers: object) -> Answer:
            return parse_head(WIRE.replace(b"\r\nvary:", b"\r\nvary :"))

    result = check(POLICY, CASE, Canned())  # type: ignore[arg-type]
    assert result.verdict == "disagree"
    [reason] = result.reasons  # the fields a browser reads agree: the defect is the one reason
    assert reason.startswith("the answer's head is malformed: line 8 'vary : Origin, Access-Control-Request-Method")
    assert reason.endswith("...' has whitespace before the colon")


def chunks(data: bytes, cuts: list[int]) -> Callable[[], bytes]:
    """``recv`` over ``data`` cut at ``cuts``, then b"" (the end)."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    parts: Iterator[bytes] = iter([data[a:b] for a, b in itertools.pairwise(bounds)])
    return lambda: next(parts, b"")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + WIRE, 204, id="interim-skipped"),
        pytest.param(WIRE + b"HTTP/1.1 500 X\r\n\r\n", 204, id="the-first-final-answer"),
    ],
)
def test_read_answer_returns_the_final_answer(data: bytes, status: int) -> None:
    answer, _ = read_answer(chunks(data, [1, 7, 40, 41]))
    assert answer.status == status


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "closed without an answer", id="closed"),
        pytest.param(WIRE[:30], "closed in the middle", id="cut-short"),
        pytest.param(b"HTTP/1.1 204 X\r\n" + b"a" * 70_000, "over 64 KiB", id="endless-head"),
        pytest.param(b"HTTP/1.1 204 X\r\n" + b"a: b\r\n" * 101 + b"\r\n", "more than 100 header fields",
                     id="too-many-fields"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" * 6 + WIRE, "more than 5 interim", id="endless-interim"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols", id="upgrade"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP answer: 'SSH-2.0-OpenSSH_9.6'", id="not-http"),
        pytest.param(b"HTTP/1.1 099 Low\r\n\r\n", "not an HTTP answer", id="status-below-100"),
        pytest.param(b"HTTP/2 204\r\n\r\n", "not an HTTP answer", id="http-2-status-line"),
    ],
)  # fmt: skip
def test_what_is_no_answer_is_unreachable(data: bytes, reason: str) -> None:
    with pytest.raises(Unreachable, match=reason):
        read_answer(chunks(data, [5, 300]))


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with bytes replaced, inserted and deleted (CR, LF, space, colon, controls and high bytes favoured)."""
    special = st.sampled_from(b"\r\n \t:\x00\x7f\xb2\xff,*0")
    byte = st.one_of(special, st.integers(0, 255))
    edit = st.tuples(st.integers(0, len(data)), st.sampled_from("rid"), byte)

    def apply(edits: list[tuple[int, str, int]]) -> bytes:
        out = bytearray(data)
        for at, kind, value in edits:
            at %= len(out) + 1
            if kind == "i" or at == len(out):
                out[at:at] = bytes([value])
            elif kind == "r":
                out[at] = value
            else:
                del out[at]
        return bytes(out)

    return st.lists(edit, min_size=1, max_size=12).map(apply)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(mutated(WIRE), mutated(b"HTTP/1.1 429 X\r\nretry-after: 3\r\n\r\n"), st.binary(max_size=200)),
       cuts=st.lists(st.integers(0, 400), max_size=4))  # fmt: skip
@example(data=WIRE.replace(b"max-age: 600", b"max-age: \xb2"), cuts=[])
@example(data=b"HTTP/1.1 429 X\r\nretry-after: \xb2\r\n\r\n", cuts=[3])
def test_no_answer_makes_verify_raise(data: bytes, cuts: list[int]) -> None:
    """Whatever bytes come back, split anywhere: an answer that is compared, or Unreachable; nothing else."""
    failure: Unreachable | None = None
    try:
        answer, _ = read_answer(chunks(data, cuts))
    except Unreachable as exc:
        failure = exc
    if failure is not None:
        assert str(failure) and printable(str(failure)).isprintable()  # one line of output, a reason given
        return
    for case in (CASE, Case("t", "default", "/", "https://evil.test", "PUT", None, False, True, None, actual=True)):
        expected = conclude(case, expected_answer(POLICY, case))
        differences(case, expected, conclude(case, answer))
    assert 0.0 <= retry_after(answer) <= 30.0
