"""Fixtures for the browser suite: one Chromium, one page server, one stack per policy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..deploy.stack import Stack, start_stack
from .harness import CHROMIUM, CHROMIUM_FLAGS, PageServer


class Tab:
    """A page in a fresh browser context (its own cookies and preflight cache), opened on an origin."""

    def __init__(self, context: Any, origin: str) -> None:
        self.context = context
        self.console: list[str] = []
        self.page = context.new_page()
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.goto(f"{origin}/", wait_until="load")

    def fetch(self, url: str, method: str = "GET", headers: dict[str, str] | None = None,
              body: str | None = None, credentials: str = "same-origin") -> dict[str, Any]:  # fmt: skip
        """Run fetch() in the page; {status, requestId, body} or {error}."""
        init = {"method": method, "headers": headers or {}, "credentials": credentials}
        if body is not None:
            init["body"] = body
        result: dict[str, Any] = self.page.evaluate("([url, init]) => window.callApi(url, init)", [url, init])
        return result

    def cors_errors(self) -> list[str]:
        return [text for text in self.console if "blocked by CORS policy" in text]


@pytest.fixture(scope="session")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while
    it is active, which would break later tests that call asyncio.run()."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing; scripts/test.sh installs Debian's chromium")
    with sync_api.sync_playwright() as p:
        yield p


def launch(playwright: Any, *extra_flags: str) -> Any:
    """Debian's Chromium with the workplace flags; Playwright gives it a fresh temporary profile."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *extra_flags])


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    browser = launch(playwright)
    yield browser
    browser.close()


@pytest.fixture
def open_tab(chromium: Any) -> Iterator[Callable[..., Tab]]:
    """open_tab(origin[, browser]) -> a Tab in a new context; contexts are closed after the test."""
    contexts: list[Any] = []

    def open_(origin: str, browser: Any = None, **context_options: Any) -> Tab:
        context = (browser or chromium).new_context(**context_options)
        contexts.append(context)
        return Tab(context, origin)

    yield open_
    for context in contexts:
        context.close()


def stack_fixture(environment: str, overrides: Callable[[PageServer], dict[str, Any]]) -> Any:
    """A module-scoped fixture starting the chart's stack for ``environment`` with ``overrides``."""

    @pytest.fixture(scope="module")
    def fixture(pages: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        stack = start_stack(Path(tmp_path_factory.mktemp(environment)), environment, overrides(pages))
        yield stack
        stack.stop()

    return fixture


def production_overrides(pages: PageServer) -> dict[str, Any]:
    """app and partner on /api; only partner, with credentials, on /api/v2; max-age 0 on /api/live; only
    partner, with credentials and '*' methods and headers, on /api/open."""
    app, partner = pages.origin("app.pvpipe.test"), pages.origin("partner.pvpipe.test")
    routes = [
        {"name": "v2", "path_prefix": "/api/v2", "allow_origins": [partner], "allow_credentials": True},
        {"name": "live", "path_prefix": "/api/live", "max_age": 0},
        {"name": "open", "path_prefix": "/api/open", "allow_origins": [partner], "allow_credentials": True,
         "allow_methods": ["*"], "allow_headers": ["*"]},
    ]  # fmt: skip
    return {"policy": {"allow_origins": [app, partner], "routes": routes}}


def limited_overrides(pages: PageServer) -> dict[str, Any]:
    """The service's own limiter with a burst of 3 per client; Traefik's edge limit off."""
    return {
        "policy": {"allow_origins": [pages.origin("app.pvpipe.test")], "rate_limit": {"average": 1, "burst": 3}},
        "traefik": {"rateLimit": {"enabled": False}},
    }


production = stack_fixture("production", production_overrides)
development = stack_fixture("development", lambda pages: {})
limited = stack_fixture("production", limited_overrides)
