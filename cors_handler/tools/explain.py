"""What ``cors-handler explain`` says about one preflight, beyond the response itself.

The decision is never taken here: ``pipeline.preview`` runs the service's own
pipeline and hands over the response and the decision it took. This module
only words it for a human: the rule that matched, every refused header, and
for a refused origin the allowed set and the nearest miss ("http:// given,
https:// allowed"), so the fix is obvious.
"""

from __future__ import annotations

import difflib

from ..cors.decide import SAFELISTED_METHODS, Allowed, Decision, Invalid, Violation
from ..cors.model import RoutePolicy
from ..cors.origins import NULL_ORIGIN, ParsedOrigin, WildcardPattern, parse_origin, parse_pattern
from ..serve.responses import DISABLED, NOT_PREFLIGHT, RATE_LIMITED, Response


def _port(origin: ParsedOrigin) -> str:
    return "the default port" if origin.port is None else f"port {origin.port}"


def _against_exact(given: ParsedOrigin, allowed: ParsedOrigin) -> str | None:
    if given.host != allowed.host:
        return None
    if given.scheme != allowed.scheme and given.port == allowed.port:
        return f"{given.scheme}:// given, {allowed.scheme}:// allowed ({allowed.serialize()})"
    if given.scheme == allowed.scheme and given.port != allowed.port:
        return f"{_port(given)} given, {allowed.serialize()} allows {_port(allowed)}"
    if given.scheme != allowed.scheme:
        return f"{given.serialize()} given, {allowed.serialize()} allowed (scheme and port differ)"
    return None


def _against_wildcard(given: ParsedOrigin, wildcard: WildcardPattern) -> str | None:
    apex = wildcard.suffix[1:]
    under = given.host == apex or given.host.endswith(wildcard.suffix)
    if not under:
        return None
    if given.host == apex:
        return f"{wildcard.text} covers subdomains of {apex}, never {apex} itself: list {given.serialize()}"
    if given.scheme != wildcard.scheme:
        return f"{given.scheme}:// given, {wildcard.scheme}:// allowed ({wildcard.text})"
    if given.port != wildcard.port:
        allowed_port = "the default port" if wildcard.port is None else f"port {wildcard.port}"
        return f"{_port(given)} given, {wildcard.text} allows {allowed_port}"
    return None


def nearest_miss(route: RoutePolicy, origin: str) -> str | None:
    """Why an origin just missed an allowed one: scheme, port, apex, or the closest allowed spelling."""
    if origin == NULL_ORIGIN:
        return "null is allowed only when listed (or by '*')"
    given = parse_origin(origin)
    if given is None:
        return None
    rules = route.origins.describe()
    exact: list[ParsedOrigin] = []
    for rule in rules:
        if rule.startswith(("regex:", "development:")) or rule in ("*", NULL_ORIGIN):
            continue
        pattern = parse_pattern(rule)
        if isinstance(pattern, WildcardPattern):
            hint = _against_wildcard(given, pattern)
        else:
            parsed = parse_origin(pattern)
            if parsed is None:
                continue
            exact.append(parsed)
            hint = _against_exact(given, parsed)
        if hint:
            return hint
    close = difflib.get_close_matches(given.serialize(), [o.serialize() for o in exact], n=1, cutoff=0.8)
    return f"closest allowed origin: {close[0]}" if close else None


def explanation(route: RoutePolicy, origin: str, response: Response, decision: Decision | None) -> list[str]:
    """The lines between ``route:`` and ``response:``: what was decided and why."""
    if response.result == DISABLED:
        return ["decision: disabled (route_disabled): preflights on this route are refused"]
    if response.result == NOT_PREFLIGHT:
        return ["decision: not a preflight (Origin and Access-Control-Request-Method are both needed)"]
    if response.result == RATE_LIMITED:  # pragma: no cover - preview is never rate limited
        return ["decision: rate limited"]
    if decision is None or isinstance(decision, Invalid):
        message = decision.message if decision is not None else response.body.decode(errors="replace")
        return [f"decision: invalid (invalid_preflight): {message}"]
    if isinstance(decision, Allowed):
        return ["decision: allowed", f"rule: {decision.rule}"]
    return _violation(route, origin, decision)


def _violation(route: RoutePolicy, origin: str, violation: Violation) -> list[str]:
    lines = [f"decision: rejected ({violation.error_type}): {violation.message}"]
    if violation.rule:
        lines.append(f"origin rule: {violation.rule}")
    if violation.error_type == "origin_not_allowed":
        lines.append(f"allowed origins: {', '.join(route.origins.describe()) or '(none)'}")
        miss = nearest_miss(route, origin)
        if miss:
            lines.append(f"nearest miss: {miss}")
    elif violation.error_type == "method_not_allowed":
        listed = [m for m in route.methods if m not in SAFELISTED_METHODS]
        lines.append(f"allowed methods: GET, HEAD, POST (always){''.join(', ' + m for m in listed)}")
    elif violation.error_type == "header_not_allowed":
        lines.append(f"refused headers: {', '.join(violation.refused)}")
        headers = ", ".join((["*"] if route.any_header else []) + list(route.headers)) or "(none)"
        lines.append(f"allowed headers: {headers}")
        if route.any_header and "authorization" in violation.refused:  # the one name '*' leaves out: why
            lines.append("note: without credentials '*' covers every header but authorization (Fetch); "
                         "list authorization beside '*'")  # fmt: skip
    return lines
