"""The browser is the judge: headless Chromium -> real Traefik (from the chart) -> cors-handler | demo API.

Each test checks the outcome in the page (fetch resolves, or rejects with a CORS error in
the console) and the preflight's arrival and status at cors-handler's /metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ..deploy.stack import Stack
from .conftest import Tab
from .harness import PageServer

pytestmark = pytest.mark.e2e

JSON = "application/json"


def app(pages: PageServer) -> str:
    return pages.origin("app.pvpipe.test")


def partner(pages: PageServer) -> str:
    return pages.origin("partner.pvpipe.test")


def assert_cors_failure(tab: Tab, result: dict[str, object], detail: str) -> None:
    assert result.get("error") == "TypeError: Failed to fetch", result
    assert any(detail in text for text in tab.cors_errors()), tab.console


def test_allowed_origin_put_patch_delete_with_custom_headers_and_an_exposed_header(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(app(pages))
    before = production.preflights(result="allowed", route="default")
    production.backend.seen.clear()
    for method in ("PUT", "PATCH", "DELETE"):
        headers = {"X-Request-Id": f"rid-{method}", "Content-Type": JSON}
        body = None if method == "DELETE" else json.dumps({"name": "widget"})
        # one URL per method: Chromium caches a preflight per URL, for every method it allowed
        result = tab.fetch(f"{production.api}/api/items/{method.lower()}", method, headers, body)
        assert result["status"] == 200, (result, tab.console)
        assert result["body"]["method"] == method
        assert result["requestId"] == f"rid-{method}"  # readable only because it is exposed
    assert production.preflights(result="allowed", route="default") - before == 3
    assert [(m, p) for m, p, _ in production.backend.seen] == [
        ("PUT", "/api/items/put"), ("PATCH", "/api/items/patch"), ("DELETE", "/api/items/delete")
    ]  # fmt: skip
    assert tab.console == []


def test_credentials_include_with_a_cookie_succeeds_only_where_the_policy_allows_credentials(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(partner(pages))
    tab.context.add_cookies([{"name": "session", "value": "s3cr3t", "url": f"{production.api}/"}])
    result = tab.fetch(f"{production.api}/api/v2/orders", "PUT", {"Content-Type": JSON}, "{}", "include")
    assert result["status"] == 200, (result, tab.console)
    assert result["body"]["cookie"] == "session=s3cr3t"

    # the same request where the policy (the default route) allows partner but not credentials
    allowed_before = production.preflights(result="allowed", route="default")
    result = tab.fetch(f"{production.api}/api/orders", "PUT", {"Content-Type": JSON}, "{}", "include")
    assert_cors_failure(tab, result, "'Access-Control-Allow-Credentials' header in the response is ''")
    assert production.preflights(result="allowed", route="default") - allowed_before == 1  # answered, without ACAC
    # and without credentials the same origin and path succeed
    result = tab.fetch(f"{production.api}/api/orders", "PUT", {"Content-Type": JSON}, "{}", "omit")
    assert result["status"] == 200 and result["body"]["cookie"] is None


def test_star_methods_and_headers_with_credentials_cover_authorization_in_the_browser(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    """Issue 28: '*' with credentials echoes the method and every header, Authorization included, which a
    credentialed Chromium accepts (a literal '*' it would read as a name and refuse)."""
    tab = open_tab(partner(pages))
    tab.context.add_cookies([{"name": "session", "value": "s3cr3t", "url": f"{production.api}/"}])
    before = production.preflights(result="allowed", route="open")
    headers = {"Authorization": "Bearer t0k3n", "X-Trace": "t-1", "Content-Type": JSON}
    result = tab.fetch(f"{production.api}/api/open/orders", "PATCH", headers, "{}", "include")
    assert result["status"] == 200, (result, tab.console)
    assert (result["body"]["method"], result["body"]["cookie"]) == ("PATCH", "session=s3cr3t")
    assert production.preflights(result="allowed", route="open") - before == 1
    assert tab.console == []


@pytest.mark.parametrize(
    ("host", "method", "headers", "reason", "console"),
    [
        ("evil.pvpipe.test", "PUT", {}, "origin_not_allowed", "No 'Access-Control-Allow-Origin' header"),
        ("app.pvpipe.test", "PURGE", {}, "method_not_allowed", "No 'Access-Control-Allow-Origin' header"),
        ("app.pvpipe.test", "PUT", {"X-Secret": "1"}, "header_not_allowed", "No 'Access-Control-Allow-Origin' header"),
    ],
    ids=["disallowed-origin", "disallowed-method", "disallowed-header"],
)
def test_disallowed_preflights_fail_in_the_browser_and_are_counted_with_their_reason(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab],
    host: str, method: str, headers: dict[str, str], reason: str, console: str,
) -> None:  # fmt: skip
    tab = open_tab(pages.origin(host))
    before = {r: production.rejections(r) for r in ("origin_not_allowed", "method_not_allowed", "header_not_allowed")}
    production.backend.seen.clear()
    result = tab.fetch(f"{production.api}/api/items", method, headers)
    assert_cors_failure(tab, result, console)
    after = {r: production.rejections(r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {r: (1 if r == reason else 0) for r in before}
    assert production.backend.seen == []  # the actual request was never sent


def test_max_age_lets_the_browser_skip_the_second_preflight(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(app(pages))
    for route, path, expected_preflights in (("default", "/api/items/cached", 1), ("live", "/api/live/feed", 2)):
        before = production.preflights(result="allowed", route=route)
        for _ in range(2):
            result = tab.fetch(f"{production.api}{path}", "PUT", {"X-Request-Id": "same"})
            assert result["status"] == 200, (result, tab.console)
        # max_age 86400 (Chromium caps it at 2 h): one preflight; the live route's max_age 0: one per request
        assert production.preflights(result="allowed", route=route) - before == expected_preflights, route


def test_development_mode_allows_localhost_on_any_port_and_production_does_not(
    development: Stack, production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(pages.origin("localhost"))  # the page server's port is an arbitrary free port
    before = development.preflights(result="allowed", route="default")
    result = tab.fetch(f"{development.api}/api/items", "PUT", {"X-Request-Id": "dev"})
    assert result["status"] == 200, (result, tab.console)
    assert development.preflights(result="allowed", route="default") - before == 1

    before = production.rejections("origin_not_allowed")
    result = tab.fetch(f"{production.api}/api/items", "PUT", {"X-Request-Id": "dev"})
    assert_cors_failure(tab, result, "No 'Access-Control-Allow-Origin' header")
    assert production.rejections("origin_not_allowed") - before == 1


def test_per_route_override_on_api_v2_has_its_own_origin_list(
    production: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(app(pages))
    assert tab.fetch(f"{production.api}/api/reports", "DELETE")["status"] == 200
    before = production.rejections("origin_not_allowed", route="v2")
    result = tab.fetch(f"{production.api}/api/v2/reports", "DELETE")
    assert_cors_failure(tab, result, "No 'Access-Control-Allow-Origin' header")
    assert production.rejections("origin_not_allowed", route="v2") - before == 1
    partner_tab = open_tab(partner(pages))
    assert partner_tab.fetch(f"{production.api}/api/v2/reports", "DELETE")["status"] == 200


def test_rate_limited_preflights_fail_in_the_browser_after_the_burst(
    limited: Stack, pages: PageServer, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(app(pages))
    before = limited.preflights(result="rate_limited")
    # distinct URLs, so that each fetch needs its own preflight; every one comes from 127.0.0.1
    results = [tab.fetch(f"{limited.api}/api/items/{i}", "PUT") for i in range(5)]
    assert [r.get("status") for r in results[:3]] == [200, 200, 200], results
    for result in results[3:]:
        assert_cors_failure(tab, result, "No 'Access-Control-Allow-Origin' header")  # the 429 carries no ACAO
    assert limited.preflights(result="rate_limited") - before == 2
