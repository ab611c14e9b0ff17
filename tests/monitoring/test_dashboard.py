"""The dashboard is built from the verified query catalogue, and docs/monitoring.md shows the same queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..deploy.chart import RELEASE, environment_values, objects, one

pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk is a test dependency")

from monitoring import dashboard
from monitoring.queries import DASHBOARD_RANGE, DASHBOARD_SELECTOR, DOCS_SELECTOR, QUERIES

MONITORING_DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def test_committed_dashboard_is_what_the_sdk_builds() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), "run: python -m monitoring.dashboard"


def test_every_panel_query_is_a_catalogue_query() -> None:
    verified = {q.render(DASHBOARD_SELECTOR, DASHBOARD_RANGE) for q in QUERIES}
    built = dashboard.build()
    exprs = [target["expr"] for panel in built["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    assert set(exprs) <= verified, set(exprs) - verified


def test_the_chart_ships_the_built_dashboard() -> None:
    config_map = one(objects(environment_values("production")), "ConfigMap", f"{RELEASE}-dashboard")
    assert json.loads(config_map["data"]["cors-handler.json"]) == dashboard.build()


def test_the_docs_list_exactly_the_catalogue_queries() -> None:
    section = MONITORING_DOC.read_text().split("\n## Query catalogue\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| [^|]+ \| `([^`]+)` \|$", section, flags=re.MULTILINE)
    assert listed == [q.render(DOCS_SELECTOR) for q in QUERIES]
