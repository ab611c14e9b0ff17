"""The Grafana dashboard, built with Grafana's foundation SDK from the query catalogue.

``python -m monitoring.dashboard`` writes helm/cors-handler/files/dashboard.json (the
chart ships it in a ConfigMap for the Grafana sidecar); ``--check`` fails when the
committed file differs from what this module builds. Every panel's query comes from
``monitoring.queries``, which the monitoring tests verify against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from .queries import BY_NAME, DASHBOARD_RANGE, DASHBOARD_SELECTOR

OUTPUT = Path(__file__).resolve().parents[1] / "helm" / "cors-handler" / "files" / "dashboard.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# (title, unit, [(query name, legend)], grid position x, y, w, h)
TIMESERIES: list[tuple[str, str, list[tuple[str, str]], tuple[int, int, int, int]]] = [
    ("Preflights by result", "reqps", [("requests_by_result", "{{result}}")], (0, 0, 12, 8)),
    ("Rejections by reason", "reqps", [("rejections_by_reason", "{{reason}}")], (12, 0, 12, 8)),
    ("Latency (p50 / p95 / p99)", "s",
     [("p50_latency", "p50"), ("p95_latency", "p95"), ("p99_latency", "p99")], (0, 8, 12, 8)),
    ("Rejected and rate-limited share", "percentunit",
     [("rejected_ratio", "rejected"), ("rate_limited_ratio", "rate limited")], (12, 8, 12, 8)),
    ("Response cache hit ratio", "percentunit", [("cache_hit_ratio", "hit ratio")], (0, 16, 8, 8)),
    ("Cache entries and tracked clients", "short",
     [("cache_entries", "cached responses"), ("limiter_clients", "tracked clients")], (8, 16, 8, 8)),
    ("Policy reloads", "short",
     [("reloads_by_result", "{{result}}"), ("candidate_reloads_by_result", "candidate {{result}}")], (16, 16, 8, 8)),
    ("Scrape availability", "percentunit", [("availability", "{{pod}}")], (0, 24, 12, 6)),
    ("Candidate policy: disagreements by route and pair", "reqps",
     [("candidate_disagreements", "{{route}}: live {{live}}, candidate {{candidate}}")], (0, 30, 12, 8)),
    ("Candidate policy: share of allowed preflights it would refuse", "percentunit",
     [("candidate_refused_ratio", "{{route}}")], (12, 30, 12, 8)),
]  # fmt: skip
# (title, query name, grid position): instant tables, one row per series
TABLES: list[tuple[str, str, tuple[int, int, int, int]]] = [
    ("Policy version per pod", "policy_info", (12, 24, 12, 6)),
]
# The route sources (a routes directory): after the panels above, so that their ids stay what links use.
SOURCES_TIMESERIES = (
    "Route sources by state",
    "short",
    [("sources_valid", "in force"), ("sources_failing", "refused by some pod")],
    (0, 38, 12, 8),
)
SOURCES_TABLE = ("Route source state", "source_state", (12, 38, 12, 8))


def expr(name: str) -> str:
    return BY_NAME[name].render(DASHBOARD_SELECTOR, DASHBOARD_RANGE)


def query_variable(name: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name).datasource(DATASOURCE).query(query).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


def build() -> dict[str, Any]:
    board = (
        dashboard.Dashboard("cors-handler")
        .uid("cors-handler")
        .tags(["cors", "traefik"])
        .readonly()
        .time("now-6h", "now")
        .refresh("30s")
        .with_variable(dashboard.DatasourceVariable("datasource").type("prometheus"))
        .with_variable(query_variable("namespace", "label_values(cors_policy_info, namespace)"))
        .with_variable(query_variable("job", 'label_values(cors_policy_info{namespace="$namespace"}, job)'))
    )
    panels: list[timeseries.Panel | table.Panel] = [
        *(timeseries_panel(spec) for spec in TIMESERIES), *(table_panel(spec) for spec in TABLES),
        timeseries_panel(SOURCES_TIMESERIES), table_panel(SOURCES_TABLE),
    ]  # fmt: skip
    for panel_id, panel in enumerate(panels, start=1):
        board = board.with_panel(panel.id(panel_id))
    result: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(board.build()))
    return result


def timeseries_panel(spec: tuple[str, str, list[tuple[str, str]], tuple[int, int, int, int]]) -> timeseries.Panel:
    title, unit, targets, (x, y, w, h) = spec
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).grid_pos(GridPos(x=x, y=y, w=w, h=h))
    for ref, (name, legend) in zip("ABC", targets, strict=False):
        panel = panel.with_target(prometheus.Dataquery().ref_id(ref).expr(expr(name)).legend_format(legend))
    return panel


def table_panel(spec: tuple[str, str, tuple[int, int, int, int]]) -> table.Panel:
    title, name, (x, y, w, h) = spec
    return (
        table.Panel().title(title).datasource(DATASOURCE).grid_pos(GridPos(x=x, y=y, w=w, h=h))
        .with_target(prometheus.Dataquery().ref_id("A").expr(expr(name)).instant().format(PromQueryFormat.TABLE))
    )  # fmt: skip


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed dashboard is out of date")
    args = parser.parse_args(argv)
    if args.check:
        if OUTPUT.read_text() != render():
            print(f"{OUTPUT} is out of date: run python -m monitoring.dashboard", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
