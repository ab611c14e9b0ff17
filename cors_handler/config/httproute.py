"""Kubernetes Gateway API HTTPRoute CORS filters, translated into routes of our own format.

Pure: YAML documents already parsed by the routes-directory loader in, plain route
dicts (``RouteSettings`` keys plus ``hosts``, ``path_exact``, ``refused``) and findings out.
An HTTPRoute inherits nothing from our main policy: every CORS key is set here, as
kubernetes-sigs/gateway-api ``apis/v1/httproute_types.go`` (HTTPCORSFilter,
HTTPRouteRule, HTTPPathMatch), ``apis/v1/shared_types.go`` (CORSOrigin, HeaderName,
Hostname) and ``geps/gep-1767/index.md`` define them:

* ``allowOrigins`` omitted or empty: no origin matches ("If the request Origin
  does not match the configured allowed origins, the gateway ... doesn't set the
  relevant cross-origin response headers"), so every preflight is refused.
* ``allowMethods`` omitted: none listed; "The CORS-safelisted methods are always
  allowed, regardless of whether they are specified" (GET, HEAD, POST, which
  ``cors.decide`` lets through whatever the list says).
* ``allowHeaders`` and ``exposeHeaders`` omitted: none.
* ``allowCredentials`` omitted: "When set to false or omitted the gateway will
  omit the header" (GEP: "Omitting the field, and setting it to false both mean false").
* ``maxAge`` omitted: 5 ("+kubebuilder:default=5", "the gateway sets the
  response header Access-Control-Max-Age: 5 by default"); minimum 1.

Validation follows the kubebuilder markers (list sizes, patterns, enums, ``*``
only alone, listType=set: no duplicates); where our own checks are stricter the
rule is refused: a ``*`` origin, or ``scheme://*`` (any host of one scheme,
judged like ``*``), with credentials (the specification answers by echoing any
origin), and wildcard origins our grammar refuses (``https://*.com``, a label
starting with ``-``).

Findings and what they do, so that the loader can decide what still applies:
an error in a rule's filters (``HTTPRoute ns/name rules[i].filters...``) comes with
the rule's routes marked ``refused`` (compiled as "refuse every origin": fail
closed, the paths never fall to a broader route); an error in a match (an invalid
path, a ``RegularExpression`` one we cannot serve: ``httproute_path_regex``) skips it;
an error at the HTTPRoute level (``hostnames``, list sizes) refuses every CORS
route of that HTTPRoute; an error of a document (not a Kubernetes object, an
HTTPRoute without a name or spec) has no route to refuse: the source cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..cors.origins import DEFAULT_PORTS, PatternError, WildcardPattern, parse_pattern
from . import lint
from .errors import Findings

GROUP, HTTPROUTE = "gateway.networking.k8s.io", "HTTPRoute"

# Our route key -> the HTTPCORSFilter field it comes from (relative to ``GatewayRoute.where``).
# allow_origin_regex holds its "scheme://*" entries (the list indexes differ).
FIELD_NAMES: dict[str, str] = {
    "allow_origins": "allowOrigins", "allow_origin_regex": "allowOrigins", "allow_methods": "allowMethods",
    "allow_headers": "allowHeaders", "expose_headers": "exposeHeaders", "allow_credentials": "allowCredentials",
    "max_age": "maxAge",
}  # fmt: skip

# The kubebuilder markers of apis/v1 (httproute_types.go, shared_types.go).
MAX_HOSTNAMES, MAX_RULES, MAX_MATCHES, MAX_MATCHES_PER_ROUTE, MAX_FILTERS = 16, 16, 64, 128, 16
MAX_ORIGINS, MAX_METHODS, MAX_HEADERS = 64, 9, 64  # allowOrigins; allowMethods; allowHeaders, exposeHeaders
MAX_ORIGIN_LENGTH, MAX_HEADER_NAME_LENGTH, MAX_HOSTNAME_LENGTH, MAX_PATH_LENGTH = 253, 256, 253, 1024
MAX_AGE_DEFAULT, MAX_AGE_RANGE = 5, (1, 2**31 - 1)  # default=5, Minimum=1; the field is an int32
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")  # HTTPMethodWithWildcard
CORS_KEYS = ("allowOrigins", "allowCredentials", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge")

_CORS_ORIGIN = re.compile(
    r"\*|(?P<scheme>http(s)?)://(?P<host>(\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:(?P<port>[0-9]{1,5}))?"
)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # Namespace
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")
# The host of a normalized origin (cors.origins lower-cases it): a reg-name or a bracketed IPv6 literal.
_ANY_HOST = r"(?:[a-z0-9_.\-]+|\[[0-9a-f:.]+\])"


class GatewayRoute(NamedTuple):
    """One route in our format and where it was written (how findings name it)."""

    route: dict[str, Any]
    where: str  # e.g. "HTTPRoute team-a/orders rules[0].filters[1].cors"


def is_gateway_document(doc: Any) -> bool:
    """A Gateway API object (apiVersion ``gateway.networking.k8s.io/*`` and a kind), or a List holding one."""
    return _is_gateway_object(doc) or (_is_list(doc) and any(_is_gateway_object(item) for item in doc["items"]))


def _is_gateway_object(doc: Any) -> bool:
    if not isinstance(doc, Mapping):
        return False
    api, kind = doc.get("apiVersion"), doc.get("kind")
    return isinstance(api, str) and api.startswith(f"{GROUP}/") and isinstance(kind, str) and bool(kind)


def _is_list(doc: Any) -> bool:
    kind = doc.get("kind") if isinstance(doc, Mapping) else None
    return isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)


def gateway_routes(documents: list[Any], source: str, out: Findings) -> list[GatewayRoute]:
    """Every route the HTTPRoute CORS filters of one file declare, in document order; findings into ``out``."""
    routes: list[GatewayRoute] = []
    for label, doc in _flatten(documents):
        setting = f"{source} {label}"
        if not isinstance(doc, Mapping) or not isinstance(doc.get("apiVersion"), str) or not doc.get("kind"):
            out.error(setting, "not_kubernetes", "not a Kubernetes object: a mapping with apiVersion and kind",
                      f"write HTTPRoute documents (apiVersion: {GROUP}/v1, kind: HTTPRoute)")  # fmt: skip
        elif doc["kind"] == HTTPROUTE and str(doc["apiVersion"]).startswith(f"{GROUP}/"):
            routes += _HTTPRoute(doc, setting, out).routes()
        else:
            out.warn(setting, "kind_ignored", f"{doc['apiVersion']} {doc['kind']} is not an HTTPRoute: ignored")
    return routes


def _flatten(documents: list[Any]) -> list[tuple[str, Any]]:
    """The objects of a file: a ``kind: List``'s (or ``HTTPRouteList``'s) items in its place; no empty documents."""
    objects: list[tuple[str, Any]] = []
    for k, doc in enumerate(documents):
        if doc is None:
            continue  # an empty document (a trailing '---')
        if _is_list(doc):
            objects += [(f"documents[{k}].items[{m}]", item) for m, item in enumerate(doc["items"])]
        else:
            objects.append((f"documents[{k}]", doc))
    return objects


def _strings(value: Any, setting: str, limit: int, out: Findings) -> list[str] | None:
    """A list of strings within ``limit`` entries (None, with an error, otherwise); absent or null is empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        out.error(setting, "httproute_invalid", "must be a list of strings")
        return None
    if len(value) > limit:
        out.error(setting, "httproute_invalid", f"{len(value)} entries: the API allows at most {limit}")
        return None
    return value


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_cors(item: Any) -> bool:
    return isinstance(item, Mapping) and item.get("type") == "CORS"


def _set_entries(values: list[str], setting: str, out: Findings, wildcard_alone: bool) -> bool:
    """listType=set (no duplicates) and, where the API says so, ``*`` only alone; True when both hold."""
    ok = True
    for j, value in enumerate(values):
        if value in values[:j]:
            out.error(f"{setting}[{j}]", "httproute_invalid", f"{value!r} is listed twice (the API rejects duplicates)")
            ok = False
    if wildcard_alone and "*" in values and len(values) > 1:
        out.error(f"{setting}[{values.index('*')}]", "httproute_invalid", "'*' must be the only entry",
                  "keep only '*', or list the values without it")  # fmt: skip
        ok = False
    return ok


class _HTTPRoute:
    """One HTTPRoute document read into routes, its findings reported as they are found."""

    def __init__(self, doc: Mapping[str, Any], label: str, out: Findings) -> None:
        self.out = out
        metadata = doc.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        name, namespace = metadata.get("name"), metadata.get("namespace") or "default"
        self.name = f"{namespace}/{name}"
        self.prefix = f"HTTPRoute {self.name}"
        self.readable = True
        if not isinstance(name, str) or not name or "/" in name:
            out.error(f"{label}.metadata.name", "httproute_invalid", "an HTTPRoute needs metadata.name")
            self.readable = False
        elif not isinstance(namespace, str) or not _LABEL.fullmatch(namespace):
            out.error(f"{self.prefix} metadata.namespace", "httproute_invalid",
                      f"{namespace!r} is not a namespace name (RFC 1123 label)")  # fmt: skip
            self.readable = False
        self.spec = doc.get("spec")
        if self.readable and not isinstance(self.spec, Mapping):
            out.error(f"{self.prefix} spec", "httproute_invalid", "an HTTPRoute needs a spec mapping")
            self.readable = False

    def routes(self) -> list[GatewayRoute]:
        if not self.readable:
            return []
        assert isinstance(self.spec, Mapping)
        scoped = self.hostnames()
        refuse_all, hosts = scoped is None, scoped or []
        rules = self.spec.get("rules")
        if not isinstance(rules, list):  # absent: the default rule (PathPrefix "/") has no CORS filter
            if rules is not None:
                self.out.error(f"{self.prefix} spec.rules", "httproute_invalid", "must be a list of rules")
            return []
        if len(rules) > MAX_RULES:
            self.out.error(f"{self.prefix} spec.rules", "httproute_invalid",
                           f"{len(rules)} rules: the API allows at most {MAX_RULES}")  # fmt: skip
            refuse_all = True
        total = sum(len(r["matches"]) for r in rules if isinstance(r, Mapping) and isinstance(r.get("matches"), list))
        if total > MAX_MATCHES_PER_ROUTE:
            self.out.error(f"{self.prefix} spec.rules", "httproute_invalid",
                           f"{total} matches in all: the API allows at most {MAX_MATCHES_PER_ROUTE}")  # fmt: skip
            refuse_all = True
        routes: list[GatewayRoute] = []
        for i, rule in enumerate(rules):
            routes += self.rule(i, rule, hosts, refuse_all)
        return routes

    def hostnames(self) -> list[str] | None:
        """spec.hostnames lower-cased; None (every route of the HTTPRoute refused) when one is invalid."""
        assert isinstance(self.spec, Mapping)
        setting = f"{self.prefix} spec.hostnames"
        values = _strings(self.spec.get("hostnames"), setting, MAX_HOSTNAMES, self.out)
        if values is None:
            return None
        hosts: list[str] = []
        for j, value in enumerate(values):
            host = value.lower()
            if len(host) > MAX_HOSTNAME_LENGTH or not _HOSTNAME.fullmatch(host):
                self.out.error(f"{setting}[{j}]", "httproute_invalid",
                               f"{value!r} is not a host name or a '*.' wildcard (Hostname)")  # fmt: skip
                return None
            if host != value:
                self.out.warn(f"{setting}[{j}]", "httproute_invalid", f"{value!r}: the API requires lower case",
                              f"write {host!r}")  # fmt: skip
            if host not in hosts:
                hosts.append(host)
        return hosts

    def rule(self, i: int, rule: Any, hosts: list[str], refuse_all: bool) -> list[GatewayRoute]:
        at = f"{self.prefix} rules[{i}]"
        if not isinstance(rule, Mapping):
            self.out.error(at, "httproute_invalid", "a rule must be a mapping")
            return []
        backends = rule.get("backendRefs")
        for b, backend in enumerate(backends if isinstance(backends, list) else []):
            if isinstance(backend, Mapping) and any(_is_cors(x) for x in _list(backend.get("filters"))):
                self.out.warn(f"{at}.backendRefs[{b}].filters", "httproute_backend_cors_ignored",
                              "a CORS filter on a backend is implementation-specific and ignored: a preflight is "
                              "answered before any backend is chosen", "move it to the rule's filters")  # fmt: skip
        filters = _list(rule.get("filters"))
        found = [(f, x) for f, x in enumerate(filters) if _is_cors(x)]
        if not found:
            return []
        refused = refuse_all
        if len(filters) > MAX_FILTERS:
            self.out.error(f"{at}.filters", "httproute_invalid", f"the API allows at most {MAX_FILTERS} filters")
            refused = True
        if len(found) > 1:
            self.out.error(f"{at}.filters[{found[1][0]}]", "httproute_invalid", "CORS filter cannot be repeated")
            refused = True
        for f, item in enumerate(filters):
            if isinstance(item, Mapping) and item.get("cors") is not None and item.get("type") != "CORS":
                self.out.error(f"{at}.filters[{f}].cors", "httproute_invalid",
                               "filter.cors must be nil if the filter.type is not CORS")  # fmt: skip
                refused = True
        where = f"{at}.filters[{found[0][0]}].cors"
        values, ok = _cors(found[0][1].get("cors"), where, self.out)
        if refused or not ok:
            values.update(allow_origins=[], allow_origin_regex=[], refused=True)
        base, scope = f"{self.name}/rules[{i}]", {"hosts": hosts} if hosts else {}
        return [
            GatewayRoute({"name": base if j is None else f"{base}/matches[{j}]", "path_prefix": path,
                          "path_exact": exact, **{k: list(v) if isinstance(v, list) else v  # no list shared
                                                  for k, v in {**scope, **values}.items()}}, where)
            for j, path, exact in self.paths(at, rule.get("matches"))
        ]  # fmt: skip

    def paths(self, at: str, matches: Any) -> list[tuple[int | None, str, bool]]:
        """(match index or None when the rule has one match, path, exact) for each match we can serve."""
        if matches is None or matches == []:
            return [(None, "/", False)]  # +kubebuilder:default={{path:{type: "PathPrefix", value: "/"}}}
        if not isinstance(matches, list):
            self.out.error(f"{at}.matches", "httproute_invalid", "must be a list of matches")
            return []
        if len(matches) > MAX_MATCHES:
            self.out.error(f"{at}.matches", "httproute_invalid", f"the API allows at most {MAX_MATCHES} matches")
        paths: list[tuple[int | None, str, bool]] = []
        for j, match in enumerate(matches):
            setting = f"{at}.matches[{j}]"
            if not isinstance(match, Mapping):
                self.out.error(setting, "httproute_invalid", "a match must be a mapping")
                continue
            ignored = [key for key in ("method", "headers", "queryParams") if match.get(key) not in (None, [])]
            if ignored:
                self.out.warn(f"{setting}.{ignored[0]}", "httproute_match_ignored",
                              f"matches on {', '.join(ignored)} are ignored: the CORS policy answers every "
                              "preflight on the path", "match on the path alone")  # fmt: skip
            path = _path(match.get("path"), f"{setting}.path", self.out)
            if path is not None and all((p, e) != path for _, p, e in paths):
                paths.append((None if len(matches) == 1 else j, *path))
        return paths


def _path(value: Any, setting: str, out: Findings) -> tuple[str, bool] | None:
    """An Exact or PathPrefix match as (path, exact), validated as HTTPPathMatch's rules say; None to skip it."""
    if value is None:
        return "/", False
    if not isinstance(value, Mapping):
        out.error(setting, "httproute_invalid", "must be a mapping with type and value")
        return None
    kind, path = _or(value.get("type"), "PathPrefix"), _or(value.get("value"), "/")  # null is unset (pruned)
    if kind == "RegularExpression":
        out.error(f"{setting}.type", "httproute_path_regex",
                  "RegularExpression path matches are implementation-specific and not served: preflights on "
                  "these paths are not answered by this rule", "use PathPrefix or Exact matches")  # fmt: skip
        return None
    if kind not in ("Exact", "PathPrefix"):
        out.error(f"{setting}.type", "httproute_invalid", f"{kind!r}: must be Exact, PathPrefix or RegularExpression")
        return None
    problem = None
    if not isinstance(path, str) or not path.startswith("/"):
        problem = "must be an absolute path starting with '/'"
    elif len(path) > MAX_PATH_LENGTH:
        problem = f"longer than {MAX_PATH_LENGTH} characters"
    elif any(part in path for part in _PATH_FORBIDDEN) or path.endswith(("/..", "/.")):
        problem = "must not contain '//', '/./', '/../', '%2f', '#' nor end with '/.' or '/..'"
    elif not _PATH_CHARS.fullmatch(path):
        problem = "holds characters a path may not (RFC 3986 pchar and '/')"
    if problem is not None:
        out.error(f"{setting}.value", "httproute_invalid", f"{path!r} {problem}")
        return None
    return path, kind == "Exact"


def _cors(cors: Any, where: str, out: Findings) -> tuple[dict[str, Any], bool]:
    """Our CORS keys from one HTTPCORSFilter, and False when the rule must be refused (errors reported)."""
    values: dict[str, Any] = {
        "allow_origins": [], "allow_origin_regex": [], "allow_methods": [], "allow_headers": [],
        "expose_headers": [], "allow_credentials": False, "max_age": MAX_AGE_DEFAULT,
        "allow_private_network": False, "enabled": True,
    }  # fmt: skip
    if not isinstance(cors, Mapping):
        out.error(where, "httproute_invalid", "filter.cors must be specified for CORS filter.type")
        return values, False
    for key in cors:
        if key not in CORS_KEYS:
            out.warn(f"{where}.{key}", "httproute_unknown_field", f"{key!r} is not a field of HTTPCORSFilter: ignored")
    ok = True
    credentials = _or(cors.get("allowCredentials"), False)
    if not isinstance(credentials, bool):
        out.error(f"{where}.allowCredentials", "httproute_invalid", "must be true or false")
        credentials, ok = False, False
    max_age = _or(cors.get("maxAge"), MAX_AGE_DEFAULT)
    if isinstance(max_age, bool) or not isinstance(max_age, int) or not MAX_AGE_RANGE[0] <= max_age <= MAX_AGE_RANGE[1]:
        out.error(f"{where}.maxAge", "httproute_invalid", f"{max_age!r}: must be whole seconds from 1 to 2147483647")
        max_age, ok = MAX_AGE_DEFAULT, False
    methods = _tokens(cors.get("allowMethods"), f"{where}.allowMethods", MAX_METHODS, out, True)
    headers = _tokens(cors.get("allowHeaders"), f"{where}.allowHeaders", MAX_HEADERS, out, False)
    expose = _tokens(cors.get("exposeHeaders"), f"{where}.exposeHeaders", MAX_HEADERS, out, False)
    if expose is not None and credentials and "*" in expose:
        # "the gateway cannot use the * in the Access-Control-Expose-Headers response header" (HTTPCORSFilter)
        out.warn(f"{where}.exposeHeaders[{expose.index('*')}]", "httproute_expose_wildcard",
                 "'*' with allowCredentials exposes nothing (a credentialed browser reads it as a header name): "
                 "left out", "list the response headers to expose")  # fmt: skip
        expose = [name for name in expose if name != "*"]
    origins = _origins(cors.get("allowOrigins"), f"{where}.allowOrigins", credentials, out)
    if methods is None or headers is None or expose is None or origins is None:
        return values, False
    exact, regexes = origins
    if not exact and not regexes:
        out.warn(f"{where}.allowOrigins", "httproute_no_origin",
                 "no origin is allowed: every preflight on this rule's paths is refused",
                 "list the origins that may call these paths")  # fmt: skip
        ok = False
    values.update(allow_origins=exact, allow_origin_regex=regexes, allow_methods=methods, allow_headers=headers,
                  expose_headers=expose, allow_credentials=credentials, max_age=max_age)  # fmt: skip
    return values, ok


def _tokens(value: Any, setting: str, limit: int, out: Findings, methods: bool) -> list[str] | None:
    """allowMethods (the HTTPMethodWithWildcard enum) or a header-name list (HeaderName); None when invalid."""
    values = _strings(value, setting, limit, out)
    if values is None:
        return None
    ok = True
    for j, name in enumerate(values):
        if methods and name not in (*METHODS, "*"):
            out.error(f"{setting}[{j}]", "httproute_invalid", f"{name!r} is not one of {', '.join(METHODS)} or '*'",
                      f"write {name.upper()!r}" if name.upper() in METHODS else None)  # fmt: skip
            ok = False
        elif not methods and (len(name) > MAX_HEADER_NAME_LENGTH or not _HEADER_NAME.fullmatch(name)):
            out.error(f"{setting}[{j}]", "httproute_invalid", f"{name!r} is not a header name (HeaderName)")
            ok = False
    ok = _set_entries(values, setting, out, wildcard_alone=not setting.endswith("exposeHeaders")) and ok
    return values if ok else None


def _origins(value: Any, setting: str, credentials: bool, out: Findings) -> tuple[list[str], list[str]] | None:
    """allowOrigins as (our allow_origins, our allow_origin_regex); None when the rule must be refused."""
    values = _strings(value, setting, MAX_ORIGINS, out)
    if values is None:
        return None
    ok = _set_entries(values, setting, out, wildcard_alone=True)
    exact: list[str] = []
    regexes: list[str] = []
    for j, text in enumerate(values):
        name = f"{setting}[{j}]"
        m = _CORS_ORIGIN.fullmatch(text)
        if len(text) > MAX_ORIGIN_LENGTH or m is None:
            out.error(name, "httproute_invalid", f"{text!r} is not '*' nor http(s)://host[:port] (CORSOrigin)")
            ok = False
            continue
        port = m.group("port")
        if port is not None and not 1 <= int(port) <= 65535:
            out.error(name, "httproute_invalid", f"{text!r}: the port must be from 1 to 65535")
            ok = False
            continue
        any_host = text == "*" or m.group("host") == "*"
        if any_host and credentials:
            out.error(name, "httproute_any_origin_with_credentials",
                      f"{text!r} with allowCredentials: the specification echoes any origin with credentials, "
                      "which lets every site read credentialed responses; this rule is refused",
                      "list the origins, or set allowCredentials: false")  # fmt: skip
            ok = False
        elif text == "*":
            exact.append(text)
        elif any_host:
            # "scheme://*" (a wildcard by itself matches all hosts), judged like '*': one regex over the
            # normalized origin (lower case, the scheme's default port dropped, as cors.origins compares).
            scheme = m.group("scheme")
            suffix = "" if port is None or int(port) == DEFAULT_PORTS[scheme] else f":{int(port)}"
            regexes.append(f"{scheme}://{_ANY_HOST}{suffix}")
        elif (problem := _our_grammar(text)) is not None:
            out.error(name, "httproute_origin_refused", f"{problem}; this rule is refused",
                      "list the origins, or a wildcard under your own registrable domain")  # fmt: skip
            ok = False
        else:
            exact.append(text)
    return (exact, regexes) if ok else None


def _our_grammar(text: str) -> str | None:
    """Why our origin grammar (``cors.origins.parse_pattern``) and linter refuse ``text``, or None."""
    try:
        pattern = parse_pattern(text)
    except PatternError as exc:
        return str(exc)
    if isinstance(pattern, WildcardPattern) and (finding := lint.check_wildcard("", pattern)) is not None:
        return finding.message
    return None
