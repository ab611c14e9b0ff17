"""What this Chromium does for a public page calling a loopback API (Private Network Access).

Chromium replaced PNA preflights (``Access-Control-Request-Private-Network``) with Local
Network Access: a permission, not a preflight header. These tests pin down what the
browser really sends, so that a Chromium that brings PNA preflights back shows up here;
cors-handler's PNA answers (allow and deny) are covered at the HTTP level in
tests/e2e/test_responses_table.py.

The page server's address is overridden to the public address space
(``--ip-address-space-overrides``); the page is on http://localhost (a secure context, as
LNA requires) and calls the development stack on loopback, whose policy has
allow_private_network off: a PNA preflight would be refused as private_network_not_allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..deploy.stack import Stack
from .conftest import Tab, launch
from .harness import PageServer

pytestmark = pytest.mark.e2e

LOOPBACK_DENIED = "Permission was denied for this request to access the `loopback` address space"


@pytest.fixture(scope="module")
def public_page_browser(playwright: Any, pages: PageServer) -> Iterator[Any]:
    browser = launch(playwright, f"--ip-address-space-overrides=127.0.0.1:{pages.port}=public")
    yield browser
    browser.close()


def totals(stack: Stack) -> tuple[float, float, float]:
    return (stack.preflights(), stack.preflights(result="allowed"), stack.rejections("private_network_not_allowed"))


def test_without_local_network_permission_nothing_reaches_the_service(
    development: Stack, pages: PageServer, public_page_browser: Any, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(pages.origin("localhost"), public_page_browser)
    before, seen = totals(development), len(development.backend.seen)
    result = tab.fetch(f"{development.api}/api/items", "PUT", {"X-Request-Id": "pna"})
    assert result.get("error") == "TypeError: Failed to fetch", result
    assert any(LOOPBACK_DENIED in text for text in tab.cors_errors()), tab.console
    assert totals(development) == before  # no preflight of any kind was sent
    assert len(development.backend.seen) == seen


def test_with_local_network_permission_the_preflight_carries_no_private_network_header(
    development: Stack, pages: PageServer, public_page_browser: Any, open_tab: Callable[..., Tab]
) -> None:
    origin = pages.origin("localhost")
    tab = open_tab(origin, public_page_browser)
    tab.context.grant_permissions(["local-network-access"], origin=origin)
    requests, allowed, pna_refused = totals(development)
    result = tab.fetch(f"{development.api}/api/items", "PUT", {"X-Request-Id": "pna"})
    assert result["status"] == 200, (result, tab.console)
    # one ordinary CORS preflight, allowed: with Access-Control-Request-Private-Network it
    # would have been refused (private_network_not_allowed) by this policy
    assert totals(development) == (requests + 1, allowed + 1, pna_refused)
    assert development.backend.seen[-1][:2] == ("PUT", "/api/items")
