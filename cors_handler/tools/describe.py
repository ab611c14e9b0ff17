"""What ``check`` prints of a compiled policy: its routes (hosts, paths, sources) and each route source's state."""

from __future__ import annotations

from collections.abc import Iterable

from ..config.errors import Finding
from ..config.sources import SourceReport
from ..cors.model import Policy, RoutePolicy


def format_finding(finding: Finding) -> str:
    """One finding as ``check`` prints it: severity, setting, message and code, then the fix."""
    line = f"{finding.severity.value}: {finding.setting}: {finding.message} [{finding.code}]"
    return f"{line}\n    fix: {finding.fix}" if finding.fix else line


def route_scope(route: RoutePolicy) -> str:
    """Where a route applies, as check and explain print it: hosts, path, and the source it came from."""
    path = f"{'exact path' if route.exact_path else 'path prefix'} {route.path_prefix}"
    hosts = f"hosts {', '.join(route.hosts)}; " if route.hosts else ""
    source = f"; from {route.source}" if route.source else ""
    return f"{hosts}{path}{source}"


def _describe_route(route: RoutePolicy) -> list[str]:
    methods = "*" if route.any_method else ", ".join(route.methods)
    headers = ", ".join((["*"] if route.any_header else []) + list(route.headers)) or "(none)"
    lines = [
        f"route {route.name} ({route_scope(route)}){'' if route.enabled else ': DISABLED (404)'}",
        f"  origins: {', '.join(route.origins.describe()) or '(none: every origin is refused)'}",
        f"  methods: {methods}",
        f"  headers: {headers}",
    ]
    if route.expose_headers:
        lines.append(f"  expose_headers: {', '.join(route.expose_headers)}")
    lines.append(
        f"  credentials: {str(route.allow_credentials).lower()}  max_age: {route.max_age}  "
        f"private_network: {str(route.allow_private_network).lower()}"
    )
    return lines


def describe_policy(policy: Policy, warnings: Iterable[Finding] = ()) -> str:
    rl = policy.rate_limit
    lines = [
        policy.mode_line(),
        f"environment: {policy.environment}",
        f"policy version: {policy.version} (cors_policy_info{{version}}; the program is cors-handler --version)",
        *(line for route in policy.all_routes() for line in _describe_route(route)),
        f"rate_limit: {'on' if rl.enabled else 'off'} ({rl.average} per {rl.period:g}s, burst {rl.burst}, "
        f"depth {rl.depth}, max_clients {rl.max_clients})",
        f"cache_size: {policy.cache_size}",
    ]
    lines += [format_finding(w) for w in warnings]
    return "\n".join(lines)


def source_state(report: SourceReport) -> str:
    if report.valid:
        refused = sum(f.is_error for f in report.findings)  # HTTPRoute rules refused, the rest applied
        return f"applied (digest {report.digest})" + (f", {refused} rule(s) refused: see the errors" if refused else "")
    return "NOT applied: " + ("its last good version answers" if report.applied == "last good" else
                              "its hosts and routes are refused (403)")  # fmt: skip
