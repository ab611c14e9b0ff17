"""A candidate policy that refuses the page changes nothing for the page, while its counter moves.

Headless Chromium -> real Traefik (from the chart, with ``candidatePolicy``) -> cors-handler
with the chart's --candidate: the live policy allows the page's origin, the candidate allows
only another one. Every fetch must still succeed with no CORS error, and every preflight
must be counted as live=allowed, candidate=origin_not_allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..deploy.stack import Stack, start_stack
from .conftest import Tab
from .harness import PageServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shadowed(pages: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    app, partner = pages.origin("app.pvpipe.test"), pages.origin("partner.pvpipe.test")
    policy = {"allow_origins": [app, partner]}
    candidate = {"environment": "production", "allow_origins": [partner]}  # drops the page's origin
    stack = start_stack(Path(tmp_path_factory.mktemp("candidate")), "production",
                        {"policy": policy, "candidatePolicy": candidate})  # fmt: skip
    yield stack
    stack.stop()


def refused_by_candidate(stack: Stack) -> float:
    return stack.count("cors_candidate_decisions_total", route="default", live="allowed",
                       candidate="origin_not_allowed")  # fmt: skip


def test_a_candidate_that_refuses_the_page_changes_nothing_for_it(
    shadowed: Stack, pages: PageServer, open_tab: Callable[..., Any]
) -> None:
    tab: Tab = open_tab(pages.origin("app.pvpipe.test"))
    before_refused, before_allowed = refused_by_candidate(shadowed), shadowed.preflights(result="allowed")
    for i in range(3):  # one URL each: Chromium preflights each one (its preflight cache is per URL)
        result = tab.fetch(f"{shadowed.api}/api/items/{i}", "PUT", {"Content-Type": "application/json"},
                           json.dumps({"i": i}))  # fmt: skip
        assert result["status"] == 200, (result, tab.console)
        assert result["body"]["method"] == "PUT"
    assert tab.console == []  # no CORS error: the live policy answered
    assert shadowed.preflights(result="allowed") - before_allowed == 3
    assert refused_by_candidate(shadowed) - before_refused == 3  # ... and the candidate would have refused each
    lines = [json.loads(line) for line in shadowed.handler.logs().splitlines() if "decides differently" in line]
    assert {line["origin"] for line in lines} == {pages.origin("app.pvpipe.test")}
