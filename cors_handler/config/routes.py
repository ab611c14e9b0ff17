"""Routes compiled: a list of route settings (the main policy's, or one route source's) into RoutePolicy objects.

Each route's own lists are compiled; what it leaves out is the top level's
(the very same compiled objects, so routes that inherit share one matcher).
Host entries are checked against what the route's source may serve
(``route_sources``), and names and (host, path) entries against what every
source compiled so far holds (``Taken``): a conflict names both sources.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from ..cors.hosts import HostPattern, parse_host_pattern, pattern_within
from ..cors.model import DEFAULT_ROUTE, DEVELOPMENT, PRODUCTION, RoutePolicy
from ..cors.origins import DevelopmentOrigins, OriginMatcher
from . import lint
from .errors import Finding, Findings
from .settings import RouteSettings, Settings
from .values import Judge, Written, judge_origins, judge_tokens, origin_list, regex_list, tokens_list

MAX_AGE_BROWSER_CAP = 86400
# (id of the origin list, id of the regex list) -> the matcher compiled from them, and the two lists
Matchers = dict[tuple[int, int], tuple[OriginMatcher, object, object]]
SOURCE_SUFFIXES = (".yaml", ".yml", ".json")  # the files of the routes directory that are route sources


def compile_route(
    name: str,
    prefix: str,
    setting: str,
    written: Written,
    values: dict[str, Any],
    enabled: bool,
    environment: str,
    matchers: Matchers,
    development: DevelopmentOrigins | None,
    out: Findings,
) -> RoutePolicy:
    own = written.own
    credentials = written.credentials
    judge = Judge(setting, environment == PRODUCTION, own, out)
    if credentials and environment == DEVELOPMENT and "allow_credentials" in own:
        out.add(lint.check_credentials_in_development(f"{setting}allow_credentials"))
    judge_origins(judge, written)
    judge_tokens(judge, written)
    methods, any_method = written.methods[0], written.methods[1] is not None
    if any_method and methods and "allow_methods" in own:
        out.error(f"{setting}allow_methods", "method_wildcard_not_alone", "'*' must be the only entry",
                  "remove '*' to list the methods, or keep only '*'")  # fmt: skip
    max_age = values["max_age"]
    if "max_age" in own:
        if max_age < 0:
            out.error(f"{setting}max_age", "max_age_negative", "must be >= 0 seconds", "max_age: 0 (no caching)")
        elif max_age > MAX_AGE_BROWSER_CAP:
            out.warn(
                f"{setting}max_age",
                "max_age_above_browser_cap",
                f"{max_age} is above {MAX_AGE_BROWSER_CAP}: Firefox caps at 86400 s and Chromium at 7200 s",
                f"max_age: {MAX_AGE_BROWSER_CAP}",
            )
    # One matcher per pair of written lists: routes that inherit both share the top level's (and its RE2 set).
    # Keyed by identity, so the table keeps the lists alive: a list freed (another source's) never lends its id.
    key = (id(written.origins), id(written.regexes))
    held = matchers.get(key)
    origins = held[0] if held is not None else None
    if origins is None:
        base = next((m for (_, r), (m, _, _) in matchers.items() if r == key[1]), None)
        origins = OriginMatcher(
            written.origins.any_at is not None,
            written.origins.exact,
            written.origins.wildcards,
            written.regexes.compiled,
            development,
            base,
        )
        matchers[key] = (origins, written.origins, written.regexes)
    return RoutePolicy(
        name=name,
        path_prefix=prefix,
        enabled=enabled,
        origins=origins,
        methods=methods,
        any_method=any_method,
        headers=written.headers[0],
        any_header=written.headers[1] is not None,
        expose_headers=written.expose[0],
        allow_credentials=credentials,
        max_age=max_age,
        allow_private_network=bool(values["allow_private_network"]),
    )


ROUTE_KEYS = (
    "allow_origins",
    "allow_origin_regex",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
    "allow_private_network",
)


def _normalize_prefix(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def written_lists(
    setting: str, values: dict[str, Any], own: frozenset[str], top: Written | None, production: bool, out: Findings
) -> Written:
    """Compile the lists the route (or the top level, ``top`` None) writes itself; take the top level's otherwise."""

    def tokens(key: str, lower: bool) -> tuple[tuple[str, ...], str | None]:
        return tokens_list(f"{setting}{key}", values[key], lower, out, keep_wildcard=key == "expose_headers")

    origins = values["allow_origins"]
    regexes = values["allow_origin_regex"]
    return Written(
        origins=origin_list(f"{setting}allow_origins", origins, production, out)
        if top is None or "allow_origins" in own
        else top.origins,
        regexes=regex_list(f"{setting}allow_origin_regex", regexes, out)
        if top is None or "allow_origin_regex" in own
        else top.regexes,
        methods=tokens("allow_methods", False) if top is None or "allow_methods" in own else top.methods,
        headers=tokens("allow_headers", True) if top is None or "allow_headers" in own else top.headers,
        expose=tokens("expose_headers", False) if top is None or "expose_headers" in own else top.expose,
        credentials=bool(values["allow_credentials"]),
        own=own,
    )


_KEY_ORDER = ("name", "path_prefix", *ROUTE_KEYS)
_SETTING = re.compile(r"(?:routes\[[0-9]+\]\.)?([a-z_]+)(?:\[([0-9]+)\])?")


def in_written_order(found: Findings) -> list[Finding]:
    """One route's findings in the order of its keys and list entries (a judgement comes after its entry's syntax)."""

    def position(finding: Finding) -> tuple[int, int]:
        m = _SETTING.fullmatch(finding.setting)
        if m is None or m.group(1) not in _KEY_ORDER:
            return len(_KEY_ORDER), 0
        return _KEY_ORDER.index(m.group(1)), int(m.group(2) or 0)

    return sorted(found, key=position)


class RouteScope(NamedTuple):
    """Where a list of routes comes from, and what it may claim.

    ``setting`` names a route in findings (``routes[3].`` for the main policy);
    ``source`` is the route source's file ("" for the main policy); ``owned`` the
    host patterns that source may serve (None: any host; a route without
    ``hosts`` then matches every host).
    """

    setting: Callable[[int], str]
    source: str = ""
    owned: tuple[HostPattern, ...] | None = None


class Taken(NamedTuple):
    """What the routes compiled so far hold, across sources: names, and (host, path, exact) entries."""

    names: dict[str, str]  # route name -> its source ("" for the main policy)
    entries: dict[tuple[str, str, bool], str]  # (host pattern or "", path, exact) -> source


def _route_hosts(setting: str, written: list[str] | None, scope: RouteScope, out: Findings) -> tuple[str, ...] | None:
    """A route's host patterns, normalized; None when one is wrong (the finding says which and why)."""
    if written is None or not written:
        if written is not None:
            out.error(f"{setting}hosts", "hosts_empty", "hosts is empty: the route would match no host",
                      "list the hosts, or leave hosts out")  # fmt: skip
            return None
        if scope.owned is None:
            return ()
        if not scope.owned:
            out.error(f"{setting}hosts", "host_not_owned", f"source {scope.source!r} may serve no host",
                      f"ask the platform team to list hosts in route_sources[{scope.source!r}].hosts")  # fmt: skip
            return None
        return tuple(p.text for p in scope.owned)
    patterns: list[str] = []
    ok = True
    for j, text in enumerate(written):
        pattern = parse_host_pattern(text)
        if isinstance(pattern, str):
            out.error(f"{setting}hosts[{j}]", "host_invalid", pattern, "e.g. hosts: [api.acme.io, '*.acme.io']")
            ok = False
        elif scope.owned is not None and not pattern_within(pattern, scope.owned):
            allowed = ", ".join(p.text for p in scope.owned) or "none"
            out.error(f"{setting}hosts[{j}]", "host_not_owned",
                      f"{pattern.text!r} is not among the hosts source {scope.source!r} may serve ({allowed})",
                      "serve only your own hosts, or ask the platform team to add this host to "
                      f"route_sources[{scope.source!r}].hosts")  # fmt: skip
            ok = False
        elif pattern.text not in patterns:
            patterns.append(pattern.text)
    return tuple(patterns) if ok else None


class TopLevel(NamedTuple):
    """What routes inherit: the main policy's top-level values and their compiled lists, and the mode."""

    values: dict[str, Any]
    written: Written
    environment: str
    matchers: Matchers
    development: DevelopmentOrigins | None
    default: RoutePolicy


def compile_routes(
    routes: Sequence[RouteSettings], scope: RouteScope, taken: Taken, top: TopLevel, out: Findings
) -> list[RoutePolicy]:
    """Compile one list of routes (the main policy's, or one route source's) against what is ``taken``.

    A route holding a name or an entry another source holds is a conflict naming
    both; ``taken`` is only updated by the caller once the list is accepted.
    """
    compiled: list[RoutePolicy] = []
    names: dict[str, str] = {}
    entries: dict[tuple[str, str, bool], str] = {}
    for i, route in enumerate(routes):
        setting = scope.setting(i)
        written_prefix = route.path_prefix.strip()
        prefix = written_prefix if route.path_exact else _normalize_prefix(written_prefix)
        if not prefix.startswith("/") or any(c in prefix for c in "?# \t"):
            out.error(f"{setting}path_prefix", "path_prefix_invalid",
                      f"{route.path_prefix!r} must be a path starting with '/'",
                      f"path_prefix: /{prefix.strip('/')}" if prefix.strip("/") and not any(
                          c in prefix for c in "?# \t") else None)  # fmt: skip
        hosts = _route_hosts(setting, route.hosts, scope, out)
        for host in hosts or ("",):
            entry = (host, prefix, route.path_exact)
            holder = taken.entries.get(entry)
            holder = scope.source if entry in entries else None if holder == scope.source else holder
            if holder is not None and hosts is not None:
                where = "another route" if entry in entries else _source_name(holder)
                shown = f"{prefix!r} on {host}" if host else repr(prefix)
                out.error(f"{setting}path_prefix", "path_prefix_duplicate", f"{shown} is used by {where}",
                          "merge the two routes, or give one another path_prefix or hosts")  # fmt: skip
                break
            entries[entry] = scope.source
        # A route without a name is named after its hosts and prefix (the route label, bounded like the routes).
        name = route.name if route.name is not None else f"{','.join(hosts or ())}{prefix}"
        holder = _name_holder(name, names, taken, scope.source)
        if name != route.name and holder is not None and scope.source:
            name = f"{scope.source}:{name}"  # a derived name that collides is prefixed with its source
            holder = _name_holder(name, names, taken, scope.source)
        if not name.strip():
            out.error(f"{setting}name", "route_name_empty", "route name is empty",
                      "give it a name, or leave name out to use the hosts and path prefix")  # fmt: skip
        elif name == DEFAULT_ROUTE or holder is not None:
            where = "" if holder in (None, scope.source) else f" by {_source_name(holder or '')}"
            out.error(f"{setting}name", "route_name_duplicate", f"route name {name!r} is already used{where}",
                      "names must be unique across every source, and not 'default'")  # fmt: skip
        names[name] = scope.source
        own = frozenset(key for key in ROUTE_KEYS if getattr(route, key) is not None)
        values = {key: getattr(route, key) if key in own else top.values[key] for key in ROUTE_KEYS}
        found = Findings()
        written = written_lists(setting, values, own, top.written, top.environment == PRODUCTION, found)
        compiled_route = compile_route(name, prefix, setting, written, values, route.enabled, top.environment,
                                       top.matchers, top.development, found)  # fmt: skip
        compiled.append(replace(compiled_route, hosts=hosts or (), exact_path=route.path_exact, source=scope.source))
        out.extend(in_written_order(found))
    if not out.has_errors:
        taken.names.update(names)
        taken.entries.update(entries)
    return compiled


def _name_holder(name: str, names: dict[str, str], taken: Taken, source: str) -> str | None:
    """Who holds ``name`` already: this list (``source``), another source, or nobody (a source's own older name)."""
    if name in names:
        return source
    holder = taken.names.get(name)
    return None if holder == source and source else holder


def _source_name(source: str) -> str:
    return "the main policy" if not source else f"route source {source!r}"


def compile_owners(settings: Settings, out: Findings) -> dict[str, tuple[HostPattern, ...]]:
    """``route_sources``: each source file's hosts, as the platform team wrote them."""
    owners: dict[str, tuple[HostPattern, ...]] = {}
    for name, source in settings.route_sources.items():
        setting = f"route_sources[{name!r}]"
        if not name or "/" in name or name.startswith(".") or not name.endswith(SOURCE_SUFFIXES):
            out.error(setting, "route_source_name_invalid",
                      f"{name!r} must be a file name in the routes directory ({', '.join(SOURCE_SUFFIXES)})",
                      "e.g. route_sources: {team-a.yaml: {hosts: [api.team-a.acme.io]}}")  # fmt: skip
        patterns: list[HostPattern] = []
        for j, text in enumerate(source.hosts):
            pattern = parse_host_pattern(text)
            if isinstance(pattern, str):
                out.error(f"{setting}.hosts[{j}]", "host_invalid", pattern, "e.g. hosts: [api.acme.io, '*.acme.io']")
            else:
                patterns.append(pattern)
        owners[name] = tuple(patterns)
    return owners
