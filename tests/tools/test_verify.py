"""How ``verify`` reads an answer as a browser does, and what counts as a difference (no network here).

Every row's expected side is the pipeline's real answer for the case; the
received side is that answer edited the way a proxy or another implementation
might: byte-level edits a browser ignores must agree, the others must name
what changed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cors_handler.tools.cases import ALLOW, Case
from cors_handler.tools.verify import Answer, conclude, differences, expected_answer, parse_url, printable, retry_after

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
    ],
)
def test_retry_after(value: str | None, seconds: float) -> None:
    headers = (("retry-after", value),) if value is not None else ()
    assert retry_after(Answer(429, headers)) == seconds


def test_printable_keeps_a_line_one_line() -> None:
    assert printable("a\nb\x1b[2Jc\u00e9") == "a\\nb\\x1b[2Jc\u00e9"
