"""The PromQL queries operators use on cors-handler: one catalogue for docs/monitoring.md and the dashboard.

Each query is a template with two holes: ``{sel}`` (the label matchers that pick the
deployment: ``job="cors-handler"`` in docs/monitoring.md, the dashboard's ``$namespace``/``$job``
variables in Grafana, the test Prometheus's labels in the tests) and ``{range}`` (``5m``,
``$__rate_interval``). The monitoring tests run every query against a real Prometheus
scraping a real cors-handler and check the answer against the traffic they sent, so a
renamed metric or a broken expression fails the build, not the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    name: str
    what: str
    template: str

    def render(self, sel: str, range_: str = "5m") -> str:
        """The query for label matchers ``sel`` (``a="b", c="d"``) and a range like ``5m``."""
        # the templates use <sel> and <range> so that PromQL's own braces need no escaping
        return self.template.replace("<sel>", sel).replace("<range>", range_)


def _rate(metric: str, extra: str = "") -> str:
    matchers = "<sel>" + (f", {extra}" if extra else "")
    return f"rate({metric}{{{matchers}}}[<range>])"


def _quantile(q: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({_rate('cors_request_duration_seconds_bucket')}))"


_ALL = f"sum({_rate('cors_preflight_requests_total')})"
_HITS = f"sum({_rate('cors_response_cache_hits_total')})"
_MISSES = f"sum({_rate('cors_response_cache_misses_total')})"
_REJECTED = _rate("cors_preflight_requests_total", 'result="rejected"')
_RATE_LIMITED = _rate("cors_preflight_requests_total", 'result="rate_limited"')
_CANDIDATE = _rate("cors_candidate_decisions_total")
_LIVE_ALLOWED = _rate("cors_candidate_decisions_total", 'live="allowed"')
_CANDIDATE_REFUSED = _rate("cors_candidate_decisions_total", 'live="allowed", candidate!="allowed"')

QUERIES: tuple[Query, ...] = (
    Query("p50_latency", "p50 latency", _quantile("0.5")),
    Query("p95_latency", "p95 latency", _quantile("0.95")),
    Query("p99_latency", "p99 latency", _quantile("0.99")),
    Query("requests_by_result", "request rate by result",
          f"sum by (result) ({_rate('cors_preflight_requests_total')})"),
    Query("rejections_by_reason", "rejection rate by reason",
          f"sum by (reason) ({_rate('cors_preflight_rejections_total')})"),
    Query("rejection_ratio_by_reason", "rejection ratio by reason",
          f"sum by (reason) ({_rate('cors_preflight_rejections_total')}) / ignoring(reason) group_left {_ALL}"),
    Query("rejected_ratio", "rejected ratio",
          f"sum({_REJECTED}) / {_ALL}"),
    Query("rate_limited_ratio", "rate-limited ratio",
          f"sum({_RATE_LIMITED}) / {_ALL}"),
    Query("cache_hit_ratio", "cache hit ratio", f"{_HITS} / ({_HITS} + {_MISSES})"),
    Query("cache_entries", "cached responses", "sum(cors_response_cache_entries{<sel>})"),
    Query("limiter_clients", "clients tracked by the limiter", "sum(cors_rate_limiter_clients{<sel>})"),
    Query("reloads_by_result", "policy reloads by result",
          "sum by (result) (increase(cors_policy_reloads_total{<sel>}[<range>]))"),
    Query("policy_info", "policy version per pod", "cors_policy_info{<sel>}"),
    Query("policy_versions", "policy versions in force (more than 1 outside a rollout: replicas disagree)",
          "count(count by (version) (cors_policy_info{<sel>}))"),
    Query("availability", "share of successful scrapes", "avg_over_time(up{<sel>}[<range>])"),
    # a source is failing when any pod refuses it (the alert's reading): min over the pods
    Query("sources_valid", "route sources every pod has in force",
          "count(min by (source) (cors_policy_source_valid{<sel>}) == 1)"),
    Query("sources_failing", "route sources some pod refuses (CorsHandlerPolicySourceInvalid)",
          "count(min by (source) (cors_policy_source_valid{<sel>}) == 0)"),
    Query("source_state", "state of each route source (1 in force, 0 refused by some pod)",
          "min by (source) (cors_policy_source_valid{<sel>})"),
    Query("candidate_disagreements", "candidate policy: preflights decided differently, by route and pair",
          # the series whose candidate label equals their live label (agreements) are dropped
          f"(sum by (route, live, candidate) ({_CANDIDATE}) unless on (route, live, candidate) "
          "label_replace(count by (route, live) (cors_candidate_decisions_total{<sel>}), "
          '"candidate", "$1", "live", "(.*)")) > 0'),
    Query("candidate_refused_ratio", "candidate policy: share of what live allows that it would refuse, by route",
          f"sum by (route) ({_CANDIDATE_REFUSED}) / sum by (route) ({_LIVE_ALLOWED})"),
    Query("candidate_reloads_by_result", "candidate policy: reloads by result",
          "sum by (result) (increase(cors_candidate_reloads_total{<sel>}[<range>]))"),
)  # fmt: skip

BY_NAME = {query.name: query for query in QUERIES}

DOCS_SELECTOR = 'job="cors-handler"'
DASHBOARD_SELECTOR = 'namespace="$namespace", job="$job"'
DASHBOARD_RANGE = "$__rate_interval"
