"""The routes directory: one route source per file, each validated, applied and kept on its own.

A platform runs one deployment for many teams: each team owns one file of
``routes_dir`` (a ConfigMap mounted there), the platform team's main policy
says which hosts each file may serve (``route_sources``). Isolation is the
point of this module: a file that fails (unreadable, empty, not YAML, an
unknown key, a bad origin, a host it may not serve, a conflict with another
file) is never applied, and never changes another file's answers:

* on a reload it keeps its last good version (``SourceBook``) while every other
  file reloads;
* at startup, with no last good version, it fails closed: the hosts it owns (or
  the routes it declares, where they can be read) get a route that refuses every
  origin, so no broader route answers for it;
* a conflict (the same host pattern and path, or the same route name, in two
  files) is refused in the newcomer: what is in force keeps it (at startup, the
  file whose name sorts first). A file cannot take another team's host over.

The main policy stays fail-fast (``config.compile``); a source's findings are
its own (``SourceReport``), logged and printed by ``check`` with the file's name.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from ..cors.hosts import HostPattern, parse_host_pattern
from ..cors.model import PRODUCTION, RoutePolicy
from ..cors.origins import OriginMatcher
from .errors import Finding, Findings
from .httproute import FIELD_NAMES, gateway_routes, is_gateway_document
from .policyfile import SETTLE_SECONDS, Identity, PolicyFileError, file_identity, load_yaml_all, read_policy_file
from .routes import SOURCE_SUFFIXES, RouteScope, Taken, TopLevel, compile_routes
from .settings import RouteSettings, value_message

MAX_SOURCES = 10_000  # files read from one directory: the metrics' source label is bounded by it
# What a refused HTTPRoute rule is compiled with before its origins are replaced by none at all.
_REFUSED_MARK = "https://refused.invalid"
# A route that answers no origin: what a failed source's hosts get until it has a good version.
_NO_ORIGIN = OriginMatcher(False, frozenset(), (), (), None)


def source_files(directory: str) -> list[str]:
    """The route sources in ``directory``, by name: visible ``*.yaml``, ``*.yml``, ``*.json`` files (links followed).

    Hidden entries are skipped: a mounted ConfigMap's ``..data`` and ``..<timestamp>``
    directories hold the same files again. Raises OSError when the directory cannot be listed.
    """
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(SOURCE_SUFFIXES):
                continue
            if entry.is_file(follow_symlinks=True):
                names.append(entry.name)
    return sorted(names)[:MAX_SOURCES]


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One source after a (re)load: whether its current file is in force, what is, and every finding."""

    name: str
    valid: bool
    applied: str  # "current", "last good" (the file failed; its previous version answers), "refused" (fail closed)
    findings: tuple[Finding, ...]
    digest: str  # of the bytes in force ("" when refused)


@dataclass
class _InForce:
    data: bytes
    entries: dict[tuple[str, str, bool], str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


class SourceBook:
    """What each source has in force across reloads: its last good bytes and what its routes hold.

    Also the bytes last read of each file with the identity they were read at: a reload
    reads again only the files whose identity (device, inode, size, mtime) changed.
    """

    def __init__(self) -> None:
        self.in_force: dict[str, _InForce] = {}
        self.read: dict[str, tuple[Identity, bytes]] = {}
        # the routes parsed from each file's bytes (immutable settings) and the findings of the parse
        self.parsed: dict[str, tuple[bytes, list[Declared] | None, tuple[Finding, ...]]] = {}


def read_sources(
    directory: str, names: list[str], book: SourceBook, quiet: float
) -> dict[str, bytes | PolicyFileError]:
    """Each source's complete bytes (or why not): unchanged files from the book, the others read together.

    A file is read once, then every file read is checked after one short settle
    (``SETTLE_SECONDS``): one whose identity moved meanwhile, or that was written
    less than ``quiet`` seconds ago, is read again the careful way, one by one
    (``read_policy_file``). A thousand unchanged files cost a thousand stats.
    """
    found: dict[str, bytes | PolicyFileError] = {}
    fresh: dict[str, tuple[Identity, bytes]] = {}
    for name in names:
        path = os.path.join(directory, name)
        before = file_identity(path)
        known = book.read.get(name)
        if before is not None and known is not None and known[0] == before:
            found[name] = known[1]
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            found[name] = PolicyFileError("policy_file_unreadable", f"cannot read {name}: {exc.strerror or exc}")
            continue
        if before is not None:
            fresh[name] = (before, data)
    if fresh:
        time.sleep(SETTLE_SECONDS)
    now = time.time()
    for name, (before, data) in fresh.items():
        path = os.path.join(directory, name)
        settled = file_identity(path) == before and len(data) == before[2]
        if not settled or (quiet and now - before[3] / 1e9 < quiet):
            try:
                data = read_policy_file(path, quiet=quiet)
            except PolicyFileError as exc:
                found[name] = exc
                continue
            before = file_identity(path) or before
        found[name] = data
        book.read[name] = (before, data)
    for name in set(book.read) - set(names):
        del book.read[name]
    return found


class Declared(NamedTuple):
    """A route as its file declares it, and how findings name it.

    ``gateway``: an HTTPRoute rule's route (``config.httproute``): it inherits nothing,
    its findings name the API's fields, and what our stricter checks refuse refuses
    that rule alone (``refused``: the translation refused it already), not the file.
    """

    settings: RouteSettings
    setting: str  # the prefix of its findings' setting, e.g. "team.yaml:routes[3]."
    gateway: bool = False
    refused: bool = False


def parse_source(name: str, data: bytes, out: Findings) -> list[Declared] | None:
    """The routes a source file declares; None when the file as a whole is unusable (the findings say why).

    A file holds ``routes: [...]`` (our format) or Kubernetes Gateway API HTTPRoute documents.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.error(name, "route_source_encoding", f"{name} is not UTF-8 text ({exc.reason})")
        return None
    if not text.strip():
        out.error(name, "route_source_empty", f"{name} is empty", "write `routes: [...]` into it, or delete it")
        return None
    try:
        documents = [doc for doc in load_yaml_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        out.error(name, "route_source_yaml", f"{name}{where}: {problem}")
        return None
    if not documents:
        out.error(name, "route_source_empty", f"{name} holds only comments", "write `routes: [...]` into it")
        return None
    if any(is_gateway_document(doc) for doc in documents):
        return _gateway_declared(name, documents, out)
    if len(documents) != 1 or not isinstance(documents[0], dict) or set(documents[0]) != {"routes"}:
        out.error(name, "route_source_not_routes", f"{name} must hold one mapping with the one key `routes`",
                  "routes: [{path_prefix: /api, allow_origins: [https://app.acme.io]}]")  # fmt: skip
        return None
    items = documents[0]["routes"]
    if not isinstance(items, list):
        out.error(f"{name}:routes", "invalid_value", "routes must be a list of routes", "routes: [...]")
        return None
    routes: list[Declared] = []
    for i, item in enumerate(items):
        try:
            routes.append(Declared(RouteSettings.model_validate(item), f"{name}:routes[{i}]."))
        except ValidationError as exc:
            for err in exc.errors():
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                code = {"extra_forbidden": "unknown_setting", "missing": "missing_setting"}.get(
                    err["type"], "invalid_value"
                )
                out.error(f"{name}:routes[{i}]{where}", code, *value_message(err["loc"], err["msg"], err.get("input")))
    return None if out.has_errors else routes


# What a file may not claim: such a finding fails the whole file, an HTTPRoute's as much as ours.
_CLAIMS = frozenset({"host_not_owned", "path_prefix_duplicate", "route_name_duplicate", "hosts_empty"})


def _refuses_one_rule(name: str, finding: Finding) -> bool:
    """A finding about one rule of an HTTPRoute in file ``name``: that rule is refused, the rest of the file applies."""
    setting = finding.setting
    return setting.startswith(f"{name}:HTTPRoute ") and " rules[" in setting and finding.code not in _CLAIMS


def _gateway_declared(name: str, documents: list[Any], out: Findings) -> list[Declared] | None:
    """HTTPRoute documents as declared routes; None when a document cannot be read at all."""
    translated = Findings()
    declared: list[Declared] = []
    for gateway in gateway_routes(documents, name, translated):
        route = dict(gateway.route)
        refused = bool(route.pop("refused", False))
        if refused:  # compiled to take its hosts and path, then made to refuse every origin
            route.update(allow_origins=[_REFUSED_MARK], allow_origin_regex=[])
        try:
            declared.append(Declared(RouteSettings.model_validate(route), f"{name}:{gateway.where}.", True, refused))
        except ValidationError as exc:  # a translation that is not a route: the file cannot be applied as written
            out.error(f"{name}:{gateway.where}", "route_source_invalid", str(exc.errors()[0]["msg"]))
    found = [replace(finding, setting=f"{name}:{finding.setting}") for finding in translated]
    out.extend(found)
    fails = any(f.is_error and (f.code == "route_source_invalid" or not _refuses_one_rule(name, f)) for f in out)
    return None if fails else declared


def _declared(name: str, data: bytes) -> list[tuple[tuple[str, ...], str, bool]]:
    """(hosts, path, exact) of the routes a failed file declares, as far as they can be read: to refuse them.

    Only what reads as a host pattern is taken: a route whose hosts are all unreadable is
    left out rather than refused on every host.
    """
    try:
        documents = [doc for doc in load_yaml_all(data.decode("utf-8", "replace")) if doc is not None]
    except yaml.YAMLError:
        return []
    if any(is_gateway_document(doc) for doc in documents):
        items: Any = [gateway.route for gateway in gateway_routes(documents, name, Findings())]
    else:
        items = documents[0].get("routes") if len(documents) == 1 and isinstance(documents[0], dict) else None
    found = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("path_prefix"), str):
            continue
        written = item.get("hosts")
        written = [h for h in written if isinstance(h, str)] if isinstance(written, list) else []
        hosts = tuple(p.text for p in map(parse_host_pattern, written) if isinstance(p, HostPattern))
        if written and not hosts:
            continue
        prefix = item["path_prefix"].strip()
        exact = item.get("path_exact") is True
        found.append((hosts, prefix if exact else prefix.rstrip("/") or "/", exact))
    return found


def _refusing(name: str, top: TopLevel, scopes: list[tuple[tuple[str, ...], str, bool]]) -> list[RoutePolicy]:
    """Fail closed: routes on what a failed source owns or declares that refuse every origin (403)."""
    refusing = replace(top.default, name=f"{name}:refused", origins=_NO_ORIGIN, source=name)
    return [replace(refusing, path_prefix=path, exact_path=exact, hosts=hosts) for hosts, path, exact in scopes]


def compile_sources(
    directory: str,
    owners: dict[str, tuple[HostPattern, ...]],
    top: TopLevel,
    taken: Taken,
    book: SourceBook,
    quiet: float = 0.0,
) -> tuple[list[RoutePolicy], list[SourceReport]]:
    """Every source of ``directory`` compiled on its own: the routes in force and a report per source.

    ``taken`` holds the main policy's names and entries; what the book says is in force is
    reserved for its source first, so a newcomer never takes it. Raises OSError when the
    directory cannot be listed (the main policy's ``routes_dir`` is then wrong: fail-fast).
    """
    present = source_files(directory)
    names = sorted({*present, *owners})  # a source the main policy names must be there: missing is failing
    for other, held in book.in_force.items():
        if other in names:
            for entry in held.entries:
                taken.entries.setdefault(entry, other)
            for route_name in held.names:
                taken.names.setdefault(route_name, other)
    routes: list[RoutePolicy] = []
    refusals: list[RoutePolicy] = []
    reports: list[SourceReport] = []
    in_force: dict[str, _InForce] = {}
    contents: dict[str, bytes | PolicyFileError] = read_sources(directory, present, book, quiet)
    for name in set(names) - set(present):
        fix = "create it (the team's ConfigMap), or remove it from route_sources"
        contents[name] = PolicyFileError("route_source_missing", f"{name} is not in the routes directory", fix)
    for name in names:
        found = Findings()
        content = contents.get(name)
        data: bytes | None = None
        if isinstance(content, PolicyFileError):
            found.error(name, content.code.replace("policy_file_", "route_source_"), content.message, content.fix)
        elif content is not None:
            data = content
        compiled = _compile_one(name, data, owners.get(name), top, taken, found, book) if data is not None else None
        applied = "current"
        if compiled is None and name in book.in_force:
            kept = book.in_force[name]
            compiled = _compile_one(name, kept.data, owners.get(name), top, taken, Findings(), book)
            applied, data = "last good", kept.data
        if compiled is None:
            owned = owners.get(name)
            scopes: list[tuple[tuple[str, ...], str, bool]] = (
                [((p.text,), "/", False) for p in owned] if owned else _declared(name, data or b"")
            )
            refusals += _refusing(name, top, scopes)
            reports.append(SourceReport(name, False, "refused", tuple(found), ""))
            continue
        assert data is not None
        routes += compiled
        held = _InForce(data)
        for route in compiled:
            held.names[route.name] = name
            for host in route.hosts or ("",):
                held.entries[(host, route.path_prefix, route.exact_path)] = name
        in_force[name] = held
        digest = hashlib.sha256(data).hexdigest()[:12]
        reports.append(SourceReport(name, applied == "current", applied, tuple(found), digest))
    book.in_force = in_force
    for gone in set(book.parsed) - set(names):
        del book.parsed[gone]
    return routes + refusals, reports


def _parsed(name: str, data: bytes, book: SourceBook, found: Findings) -> list[Declared] | None:
    """``parse_source``, once per content of a file: a reload parses only the files that changed."""
    known = book.parsed.get(name)
    if known is not None and known[0] == data:
        found.extend(known[2])
        return known[1]
    parsed_found = Findings()
    parsed = parse_source(name, data, parsed_found)
    book.parsed[name] = (data, parsed, tuple(parsed_found))
    found.extend(parsed_found)
    return parsed


def _compile_one(
    name: str,
    data: bytes,
    owned: tuple[HostPattern, ...] | None,
    top: TopLevel,
    taken: Taken,
    found: Findings,
    book: SourceBook,
) -> list[RoutePolicy] | None:
    """One source's routes, or None when it has an error (nothing of it is then taken).

    An HTTPRoute rule that our stricter checks refuse (an origin syntax, ``*`` with
    credentials, ...) takes its hosts and path and refuses every origin there; its
    findings stay errors of the file, which is applied otherwise. A claim the file
    may not make (a host it does not own, a conflict) fails the file, as in our format.
    """
    declared = _parsed(name, data, book, found)
    if declared is None:
        return None
    if owned is None and top.environment == PRODUCTION:
        found.warn(name, "route_source_unowned", f"{name} is not in route_sources: it may serve any host",
                   f"name it in the main policy: route_sources: {{{name}: {{hosts: [...]}}}}")  # fmt: skip
    ours = [d for d in declared if not d.gateway]
    compiled = compile_routes([d.settings for d in ours], _scope(name, ours, owned), taken, top, found)
    for rule in (d for d in declared if d.gateway):
        compiled += _compile_rule(name, rule, owned, top, taken, found)
    return None if any(f.is_error and not _refuses_one_rule(name, f) for f in found) else compiled


def _scope(name: str, declared: list[Declared], owned: tuple[HostPattern, ...] | None) -> RouteScope:
    return RouteScope(lambda i: declared[i].setting, name, owned)


def _compile_rule(
    name: str, rule: Declared, owned: tuple[HostPattern, ...] | None, top: TopLevel, taken: Taken, found: Findings
) -> list[RoutePolicy]:
    """One HTTPRoute rule's route; refused (every origin) when the translation or our checks refuse it."""
    scope = _scope(name, [rule], owned)
    checked = Findings()
    routes = compile_routes([rule.settings], scope, taken, top, checked)
    refused = rule.refused
    if checked.has_errors and not any(f.code in _CLAIMS for f in checked if f.is_error):
        marked = rule.settings.model_copy(update={"allow_origins": [_REFUSED_MARK], "allow_origin_regex": []})
        routes = compile_routes([marked], scope, taken, top, Findings())
        refused = True
    for finding in checked:
        setting = finding.setting
        for key, api_field in FIELD_NAMES.items():
            setting = setting.replace(f".{key}", f".{api_field}")
        found.add(replace(finding, setting=setting))
    return [replace(r, origins=_NO_ORIGIN) for r in routes] if refused else routes
