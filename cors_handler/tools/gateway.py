"""``cors-handler gateway-routes``: the Gateway API preflight HTTPRoutes for the teams' route sources.

The Gateway API has no router priority. Among the rules a request matches it
prefers the most specific hostname, then an Exact path, the longest PathPrefix,
a method match, the most header matches (HTTPRouteRule in
``apis/v1/httproute_types.go``). A catch-all preflight rule on ``/`` therefore
loses to every team route with a longer path, and the team's own CORS filter or
backend answers instead of cors-handler. The preflight rules must repeat the
hostnames and path of each CORS route they serve, adding ``method: OPTIONS``
and a match on ``Access-Control-Request-Method``: on the same hostname and path
as the team's route, they are the more specific.

The chart renders those rules for the main policy's routes
(``templates/gateway-httproute.yaml``). The routes teams declare in their own
files of the routes directory change without a ``helm upgrade``, so this
command prints theirs, for a GitOps repository, in exactly the chart's shape:
one HTTPRoute per route (named ``<service>-preflight-<route>`` like the chart's
scopes), each path as written and with a trailing ``/`` for a PathPrefix (as
many characters as a team's ``/api/``, however a Gateway counts "the longest
prefix"), an Exact path as Exact, one Exact header match per method (Core
conformance; a ``RegularExpression`` is implementation-specific), split within
the API's limits (16 hostnames, 16 rules, 128 matches per HTTPRoute, 64 per
rule) as the chart splits them. The policy is loaded exactly as ``check`` loads
it, and only sources in force as written are printed (as ``tools.middleware``
judges them: an HTTPRoute rule our checks refuse answers no origin, not what its
team meant); otherwise their findings and nothing else (exit 2), so a pipeline
never commits a half. Why a second statement of the chart's template: a team's
pipeline has the policy and this command, not the chart;
``tests/deploy/test_gateway_routes.py`` renders the chart and compares.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml

from ..config.compile import Compiled, build
from ..config.errors import ConfigError, Finding, Findings
from ..cors.model import RoutePolicy

GROUP_VERSION = "gateway.networking.k8s.io/v1"
REQUEST_METHOD = "Access-Control-Request-Method"
# The chart's gatewayAPI.methods: requested methods routed to cors-handler besides those the routes allow, so
# that it also refuses (rather than the API seeing) the usual methods a route does not allow.
DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HEADER_MATCHES = ("Exact", "RegularExpression")
# The HTTPRoute CRD's limits (kubebuilder markers and CEL rules of apis/v1/httproute_types.go).
MAX_HOSTNAMES, MAX_RULES, MAX_MATCHES, MAX_MATCHES_PER_RULE = 16, 16, 128, 64
MAX_NAME = 253  # metadata.name: an RFC 1123 subdomain
MAX_PATH = 1024  # HTTPPathMatch.value
# Gateway API Hostname: names only (no IP address, no '_'), lower case, an optional leading "*." label.
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_IP = re.compile(r"\[.*\]|[0-9.]+")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# HTTPPathMatch's CEL rules: URL path characters or %-escapes only, no "//", dot segments, encoded "/" or "#".
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Options:
    """Where the HTTPRoutes attach and what they send preflights to: the chart's ``gatewayAPI`` values."""

    parent_refs: tuple[str, ...]  # NAME[/NAMESPACE[/SECTION]] (parse_parent_ref)
    service: str
    port: int
    namespace: str | None = None  # None: the namespace `kubectl apply -n` (or kustomize) gives them
    header_match: str = "Exact"
    methods: tuple[str, ...] = DEFAULT_METHODS
    hostnames: bool = True  # False: like API routes that name no hostnames and take their listener's


@dataclass(frozen=True)
class Scope:
    """One route's preflight rules: its hostnames and path, and the route it serves (for names and annotations)."""

    route: RoutePolicy
    hostnames: tuple[str, ...]
    path: dict[str, str]  # {type: PathPrefix | Exact, value}


def parse_parent_ref(text: str) -> dict[str, str] | str:
    """``NAME[/NAMESPACE[/SECTION]]`` as a ParentReference, or why it is not one."""
    parts = text.split("/")
    if len(parts) > 3:
        return f"{text!r}: at most NAME/NAMESPACE/SECTION"
    ref: dict[str, str] = {}
    for key, value, pattern, limit in zip(
        ("name", "namespace", "sectionName"), parts, (_SUBDOMAIN, _LABEL, _SUBDOMAIN), (253, 63, 253), strict=False
    ):
        if not pattern.fullmatch(value) or len(value) > limit:
            return f"{text!r}: {key} {value!r} is not a Kubernetes name (lower-case letters, digits, '-', '.')"
        ref[key] = value
    return ref


def path_problem(value: str) -> str | None:
    """Why an HTTPRoute may not match ``value`` (its CEL rules, which a CRD schema check does not run), or None."""
    if len(value) > MAX_PATH:
        return f"{len(value)} characters: an HTTPRoute path holds at most {MAX_PATH}"
    if any(bad in value for bad in _PATH_FORBIDDEN) or value.endswith(("/.", "/..")):
        return f"{value!r} has '//', a dot segment, an encoded '/' or '#'"
    if not _PATH_CHARS.fullmatch(value):
        return f"{value!r} has characters outside a URL path (write them %-encoded, as requests spell them)"
    return None


def hostname_problem(host: str) -> str | None:
    """Why ``host`` (a normalized route host) cannot be an HTTPRoute hostname, or None."""
    if _IP.fullmatch(host):
        return f"{host} is an IP address, and HTTPRoute hostnames are names only"
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        return f"{host!r} is not a Gateway API hostname (letters, digits, '-' and '.'; no '_')"
    return None


def scopes(routes: Iterable[RoutePolicy], out: Findings) -> list[Scope]:
    """Each route's hostnames and path as the chart writes them; a finding per route no HTTPRoute can repeat."""
    found: list[Scope] = []
    for route in routes:
        setting = f"{route.source}: route {route.name}"
        hosts_ok = True
        for host in route.hosts:
            problem = hostname_problem(host)
            if problem:
                out.error(f"{setting} hosts", "gateway_hostname_invalid", problem,
                          "route it with the Traefik IngressRoute, or name the host by its DNS name")  # fmt: skip
                hosts_ok = False
        value = route.path_prefix if route.exact_path else route.path_prefix.rstrip("/") or "/"
        problem = path_problem(value)
        if problem:
            out.error(f"{setting} path", "gateway_path_invalid", f"a preflight rule cannot repeat it: {problem}",
                      "write the path as the requests spell it")  # fmt: skip
        elif hosts_ok:
            kind = "Exact" if route.exact_path else "PathPrefix"
            found.append(Scope(route, route.hosts, {"type": kind, "value": value}))
    return found


def methods_for(routes: Iterable[RoutePolicy], extra: Sequence[str]) -> tuple[str, ...]:
    """The methods the Exact header matches name, as the chart's ``preflightMethods``: ``extra``, then each
    route's allowed methods in order (the main policy's top level first, as the chart lists it), once each
    (``*`` names none: list the methods it should route with ``--methods``)."""
    methods = [*extra, *(m for r in routes if not r.any_method for m in r.methods)]
    return tuple(dict.fromkeys(m for m in methods if m != "*"))


def object_name(service: str, route: RoutePolicy) -> str:
    """``<service>-preflight-<route>``, the chart's name for a route's preflight HTTPRoute, when that is a
    Kubernetes name (an RFC 1123 subdomain) with room for a split's ``-N``. Any other route name (an
    HTTPRoute's ``ns/name/rules[0]``, a derived ``host/path``) is written as ``tools.middleware`` writes
    it: lower-cased, each run of other characters than a-z and 0-9 one '-', cut to fit, and the first 8
    hex digits of the SHA-256 of the name as written: the same route always gets the same name, two never one.
    """
    base = f"{service}-preflight-"
    room = MAX_NAME - len(base) - 4  # the chart's "-N" of a split
    if len(route.name) <= room and _SUBDOMAIN.fullmatch(base + route.name):
        return base + route.name
    digest = hashlib.sha256(route.name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    readable = re.sub(r"[^a-z0-9]+", "-", route.name.lower()).strip("-")[: room - 9].rstrip("-")
    return f"{base}{readable}-{digest}" if readable else f"{base}{digest}"


def _rule(path: dict[str, str], options: Options, methods: tuple[str, ...]) -> dict[str, Any]:
    variants = [path]
    if path["type"] == "PathPrefix" and path["value"] != "/":
        variants.append({"type": "PathPrefix", "value": path["value"] + "/"})
    headers = (
        [[{"type": "Exact", "name": REQUEST_METHOD, "value": m}] for m in methods]
        if options.header_match == "Exact"
        else [[{"type": "RegularExpression", "name": REQUEST_METHOD, "value": ".+"}]]
    )
    matches = [{"path": dict(v), "method": "OPTIONS", "headers": h} for v in variants for h in headers]
    return {"matches": matches, "backendRefs": [{"name": options.service, "port": options.port}]}


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def render(found: Sequence[Scope], options: Options, methods: tuple[str, ...]) -> list[dict[str, Any]]:
    """The HTTPRoutes, split as the chart splits them: per hostname chunk and rule chunk, named ``-1``, ``-2``."""
    per_rule = 2 * (len(methods) if options.header_match == "Exact" else 1)
    rules_per_route = min(MAX_RULES, MAX_MATCHES // per_rule)
    objects: list[dict[str, Any]] = []
    parents = [r for r in map(parse_parent_ref, options.parent_refs) if isinstance(r, dict)]
    for scope in found:
        names = list(scope.hostnames) if options.hostnames else []
        host_chunks = _chunks(names, MAX_HOSTNAMES) if names else [[]]
        path_chunks = _chunks([scope.path], rules_per_route)
        count = len(host_chunks) * len(path_chunks)
        base = object_name(options.service, scope.route)
        for h, hostnames in enumerate(host_chunks):
            for p, paths in enumerate(path_chunks):
                metadata: dict[str, Any] = {"name": f"{base}-{h * len(path_chunks) + p + 1}" if count > 1 else base}
                if options.namespace:
                    metadata["namespace"] = options.namespace
                metadata["labels"] = {"app.kubernetes.io/name": options.service,
                                      "app.kubernetes.io/component": "preflight",
                                      "app.kubernetes.io/managed-by": "cors-handler-gateway-routes"}  # fmt: skip
                metadata["annotations"] = {"cors-handler/route-source": scope.route.source,
                                           "cors-handler/route": scope.route.name}  # fmt: skip
                spec: dict[str, Any] = {"parentRefs": parents}
                if hostnames:
                    spec["hostnames"] = list(hostnames)
                spec["rules"] = [_rule(path, options, methods) for path in paths]
                objects.append({"apiVersion": GROUP_VERSION, "kind": "HTTPRoute", "metadata": metadata, "spec": spec})
    return objects


class _Dumper(yaml.SafeDumper):
    """No anchors and aliases: a reviewer reads every match whole, and some GitOps tools refuse aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: Sequence[dict[str, Any]]) -> str:
    """YAML documents, each opened by ``---``, keys in the order written (as kubectl and a reviewer read them)."""
    return "".join(
        "---\n" + yaml.dump(o, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
        for o in objects
    )


class Printed(NamedTuple):
    """What the command prints: the YAML documents (stdout) and the printed sources' warnings (stderr)."""

    text: str
    warnings: tuple[Finding, ...]


def argument_findings(options: Options) -> list[Finding]:
    """The arguments judged like settings: names Kubernetes accepts, method tokens, parent references."""
    out = Findings()
    for text in options.parent_refs:
        ref = parse_parent_ref(text)
        if isinstance(ref, str):
            out.error("--parent-ref", "parent_ref_invalid", ref, "e.g. --parent-ref public/gateway-system/https")
    if not _LABEL.fullmatch(options.service):
        out.error("--service", "service_invalid", f"{options.service!r} is not a Service name (an RFC 1123 label)")
    if options.namespace is not None and not _LABEL.fullmatch(options.namespace):
        out.error("--namespace", "namespace_invalid", f"{options.namespace!r} is not a namespace (an RFC 1123 label)")
    for method in options.methods:
        if not _TOKEN.fullmatch(method):
            out.error("--methods", "method_invalid", f"{method!r} is not a method token")
    return list(out)


def _error(setting: str, code: str, message: str, fix: str | None = None) -> ConfigError:
    found = Findings()
    found.error(setting, code, message, fix)
    return ConfigError(found)


def routes_in_force(compiled: Compiled, source: str | None) -> tuple[list[RoutePolicy], tuple[Finding, ...]]:
    """The routes of ``source`` (every source when None) and their warnings; raises ConfigError unless each
    chosen source is in force as written (as ``middleware`` judges it: a refused HTTPRoute rule answers no
    origin, which is not what its team meant, so its preflights are not routed here on the strength of it)."""
    reports = {r.name: r for r in compiled.sources}
    if source is not None and source not in reports:
        known = ", ".join(reports) or "none"
        raise _error("--source", "route_source_unknown",
                     f"{source} is not a route source of {compiled.routes_dir} (its route sources: {known})",
                     "give the name of one of its files")  # fmt: skip
    chosen = [source] if source is not None else sorted(reports)
    failing = Findings()
    for name in chosen:
        report = reports[name]
        if not report.valid or any(f.is_error for f in report.findings):
            failing.extend(report.findings)
            failing.error(name, "route_source_not_in_force",
                          f"{name} is not in force as written: its preflight routes would not match what answers",
                          "fix its errors (cors-handler check --routes-dir), then print again")  # fmt: skip
    if failing.has_errors:
        raise ConfigError(failing)
    warnings = tuple(f for name in chosen for f in reports[name].findings)
    return [r for r in compiled.policy.all_routes() if r.source and r.source in chosen], warnings


def source_routes(
    overrides: Mapping[str, Any], source: str | None, options: Options, arguments: Sequence[Finding] = ()
) -> Printed:
    """The preflight HTTPRoutes of ``source``'s routes in force (every source's when None), as YAML; raises
    ConfigError with every reason there are none. ``overrides``: the flags that are settings, as for ``check``."""
    arguments = [*arguments, *argument_findings(options)]
    try:
        compiled = build(overrides)
    except ConfigError as exc:
        raise ConfigError([*arguments, *exc.findings]) from None
    if arguments:
        raise ConfigError(arguments)
    if compiled.routes_dir is None:
        raise _error("--routes-dir", "routes_dir_missing", "no routes directory: the main policy's routes are the "
                     "chart's to route", "give --routes-dir DIR (or set CORS_ROUTES_DIR)")  # fmt: skip
    routes, warnings = routes_in_force(compiled, source)
    out = Findings()
    found = scopes(routes, out)
    methods = methods_for([compiled.policy.table.default, *routes], options.methods)
    if options.header_match == "Exact" and 2 * len(methods) > MAX_MATCHES_PER_RULE:
        out.error("--methods", "too_many_methods",
                  f"{len(methods)} methods to match exactly, and an HTTPRoute rule holds at most "
                  f"{MAX_MATCHES_PER_RULE} matches (32 methods, each on a path with and without its trailing slash)",
                  "use --header-match RegularExpression, or match fewer methods")  # fmt: skip
    out.raise_if_errors()
    return Printed(dump(render(found, options, methods)), warnings)
