"""``cors-handler middleware``: the Traefik Middleware of a route source, for its team to ship beside its file.

The service answers preflights; the *actual* responses get their CORS headers from
Traefik's headers middleware. The chart renders those middlewares for the main
policy's routes (``templates/middlewares.yaml``, the origin translation in
``_helpers.tpl``). A team's routes live in its own file of the routes directory,
deployed by the team: this command prints, for each route of that file that is in
force, the same ``Middleware`` the chart would render for it as a main-policy route.

Why a second implementation of the chart's translation: the chart is Go templates,
the team's pipeline has the policy and this command, not the chart. The two must
agree on every spec byte (``tests/deploy/test_middleware_command.py`` renders the
chart and compares), so this module follows the template step by step and works on
the *written* values, as the template does (the compiled policy keeps neither the
written order nor the written case). It never prints a middleware for a version the
service does not serve: the policy is loaded exactly like ``check`` (``build`` with
the routes directory), the source must be in force, and the routes translated are
parsed from the very bytes in force.

What Traefik's middleware cannot express, the chart refuses, and so does this command:
``allow_origin_regex`` (Traefik matches regexes against the Origin as sent, the service
against the normalized origin), IPv6 origins, and development networks that are not a
whole number of octets (the chart's values schema takes /8, /16, /24 and /32 only).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from ..config.compile import build
from ..config.errors import ConfigError, Finding, Findings
from ..config.httproute import FIELD_NAMES
from ..config.policyfile import PolicyFileError, policy_file_path, read_policy_file
from ..config.routes import SOURCE_SUFFIXES
from ..config.settings import Settings, load
from ..config.sources import Declared, SourceBook, parse_source
from ..cors.model import PRODUCTION, RoutePolicy

API_VERSION, KIND = "traefik.io/v1alpha1", "Middleware"
DEFAULT_NAME_PREFIX = "cors-"
MAX_NAME = 63  # an RFC 1123 label: what a Middleware's name is referenced by (namespace-name@kubernetescrd)
MAX_NAME_PREFIX = 40  # leaves room for a readable part of the route name and the hash
HASH_CHARS = 8
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9][-a-z0-9]*")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

# ---------------------------------------------------------------- the chart's origin translation (_helpers.tpl)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_GRAMMAR = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(\*\.)?([A-Za-z0-9_.-]+)(:([0-9]{1,5}))?")
_LABEL_RE = "[a-z0-9_][a-z0-9_-]*"
_HOST = re.compile(rf"{_LABEL_RE}(\.{_LABEL_RE})*")
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_ANY_PORT = ":(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_H16 = "(?:0|[1-9a-f][0-9a-f]{0,3})"
_GO_META = frozenset("\\.+*?()|[]{}^$")
_DEVELOPMENT = ("staging", "uat", "development", "dev")


class Untranslatable(ValueError):
    """An origin setting Traefik's headers middleware cannot express: which (key, list index) and why."""

    def __init__(self, message: str, key: str = "allow_origins", index: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.index = index


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta (sprig's regexQuoteMeta): fewer escapes than Python's re.escape, e.g. none for '-'."""
    return "".join("\\" + c if c in _GO_META else c for c in text)


def _port_regex(port: int) -> str:
    """':port' as the service parses it: 1-5 digits, leading zeros allowed ("cors-handler.portRegex")."""
    digits = str(port)
    zeros = 5 - len(digits)
    return f":0{{0,{zeros}}}{digits}" if zeros > 0 else f":{digits}"


def _ipv6(zero: str, last: str, tail: bool) -> str:
    """Fetch's serialized IPv6 address ("cors-handler.ipv6")."""
    alts = [f"(?:{zero}:){{7}}{last}", f"::(?:{zero}:){{5}}{last}"]
    for left in range(1, 6):
        alts.append(f"(?:(?:{zero}:){{0,{left - 1}}}{zero})?::(?:{zero}:){{{5 - left}}}{last}")
    if tail:
        alts.append(f"(?:(?:{zero}:){{0,5}}{zero})?::")
    return f"(?:{'|'.join(alts)})"


def origin_regex(origin: str) -> str:
    """One exact or wildcard allow_origins entry as an anchored RE2 ("cors-handler.originRegex")."""
    text = origin.strip()
    m = _GRAMMAR.fullmatch(text)
    if m is None:
        if "[" in text:
            raise Untranslatable(f"{text!r} is an IPv6 origin: Traefik's headers middleware is not given IPv6 origins")
        raise Untranslatable(f"{text!r} is not an origin the middleware translates (scheme://host[:port])")
    scheme, wildcard, host, port = m.group(1).lower(), m.group(2) is not None, m.group(3).lower(), m.group(5)
    if _HOST.fullmatch(host) is None:
        raise Untranslatable(f"{text!r} is not a valid origin (scheme://host[:port])")
    default = _DEFAULT_PORTS.get(scheme)
    port_regex = ""
    if port:
        number = int(port)
        if number > 65535:
            raise Untranslatable(f"{text!r}: the port is above 65535")
        port_regex = _port_regex(number)
        if number == default:
            port_regex = f"(?:{port_regex})?"
    elif default is not None:
        port_regex = f"(?:{_port_regex(default)})?"
    labels = f"(?:{_LABEL_RE}\\.)+" if wildcard else ""
    return f"^{quote_meta(scheme)}://{labels}{quote_meta(host)}{port_regex}$"


def _development_regex(cidrs: Sequence[str]) -> str:
    """Loopback and the development networks, http or https, any port (the end of "cors-handler.originMatch")."""
    hosts = ["localhost", f"127(?:\\.{_OCTET}){{3}}", f"\\[{_ipv6('0', '1', False)}\\]"]
    for cidr in cidrs:
        address, _, length = cidr.partition("/")
        kept = int(length) // 8
        host = "\\.".join(address.split(".")[:kept])
        for _ in range(4 - kept):
            host = f"{host}{'' if host == '' else chr(92) + '.'}{_OCTET}"
        hosts.append(host)
    return f"^https?://(?:{'|'.join(hosts)})(?:{_ANY_PORT})?$"


def origin_match(
    origins: Sequence[str], regexes: Sequence[str], environment: str, cidrs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(accessControlAllowOriginList, accessControlAllowOriginListRegex) for one route ("cors-handler.originMatch").

    Raises Untranslatable for regexes, and (from ``origin_regex``) for what else cannot be expressed.
    """
    if regexes:
        raise Untranslatable(
            "Traefik's headers middleware matches its regexes against the Origin header as sent, cors-handler "
            "against the normalized origin (scheme and host lower-cased, default port dropped), so actual "
            "responses cannot get the same answer as preflights",
            "allow_origin_regex",
        )
    listed: list[str] = []
    out: list[str] = []
    for i, origin in enumerate(origins):
        text = origin.strip()
        if text == "null":
            listed.append("null")
        elif text == "*":
            listed.append("null")  # a "*" policy covers null too
            v6 = _ipv6(_H16, _H16, True)
            out.append(f"^[a-z][a-z0-9+.-]*://(?:{_LABEL_RE}(?:\\.{_LABEL_RE})*|\\[{v6}\\])(?:{_ANY_PORT})?$")
        else:
            try:
                out.append(origin_regex(text))
            except Untranslatable as exc:
                raise Untranslatable(str(exc), "allow_origins", i) from None
    if environment.strip().lower() in _DEVELOPMENT:
        out.append(_development_regex(cidrs))
    return list(dict.fromkeys(listed)), out


def headers_spec(values: Mapping[str, Any], environment: str, cidrs: Sequence[str]) -> dict[str, Any]:
    """A route's ``spec.headers``, field by field in the template's order, from its effective written values."""
    listed, regexes = origin_match(values["allow_origins"], values["allow_origin_regex"], environment, cidrs)
    spec: dict[str, Any] = {}
    if listed:
        spec["accessControlAllowOriginList"] = listed
    if regexes:
        spec["accessControlAllowOriginListRegex"] = regexes
    spec["accessControlAllowCredentials"] = bool(values["allow_credentials"])
    if values["expose_headers"]:
        spec["accessControlExposeHeaders"] = list(values["expose_headers"])
    # the chart's traefik.preflightFailover (on by default): answered only when no cors-handler endpoint is left
    spec["accessControlAllowMethods"] = list(values["allow_methods"])
    spec["accessControlAllowHeaders"] = list(values["allow_headers"])
    spec["accessControlMaxAge"] = values["max_age"]
    spec["addVaryHeader"] = True
    return spec


# ---------------------------------------------------------------- names


def middleware_name(route_name: str, prefix: str) -> str:
    """The Middleware's name: ``prefix`` + the route's name, made an RFC 1123 label of at most 63 characters.

    A route name that is a label already and fits is kept as it is (as the chart names its
    middlewares ``<release>-cors-<route>``). Any other is lower-cased, each run of other
    characters than a-z and 0-9 made one '-', cut to fit, and followed by '-' and the
    first 8 hex digits of the SHA-256 of the route's name as written: the same name gives
    the same Middleware on every run, and two names that read alike after the cut still
    differ (``check_unique`` refuses the rare collision rather than print it).
    """
    whole = prefix + route_name
    if len(whole) <= MAX_NAME and _LABEL.fullmatch(whole) is not None:
        return whole
    digest = hashlib.sha256(route_name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    room = MAX_NAME - len(prefix) - 1 - HASH_CHARS
    readable = _NOT_NAME.sub("-", route_name.lower()).strip("-")[:room].rstrip("-")
    return f"{prefix}{readable}-{digest}" if readable else f"{prefix}{digest}"


# ---------------------------------------------------------------- the command


class Printed(NamedTuple):
    """What the command prints: the YAML documents (stdout), the source's warnings and notes (stderr)."""

    text: str
    warnings: tuple[Finding, ...]
    notes: tuple[str, ...]


def argument_findings(source: str, namespace: str | None, prefix: str) -> list[Finding]:
    """The arguments validated like settings: in the one error model, reported with the configuration's findings."""
    out = Findings()
    if not source.endswith(SOURCE_SUFFIXES) or _SOURCE_NAME.fullmatch(source) is None:
        base = source.rstrip("/").rsplit("/", 1)[-1]
        out.error("--source", "source_invalid",
                  f"{source!r} is not the name of a route source (a visible *.yaml, *.yml or *.json file)",
                  f"give the file's name in the routes directory: --source {base}" if "/" in source and base
                  else "e.g. --source team-a.yaml")  # fmt: skip
    if namespace is not None and (len(namespace) > MAX_NAME or _LABEL.fullmatch(namespace) is None):
        out.error("--namespace", "namespace_invalid",
                  f"{namespace!r} is not a Kubernetes namespace name (RFC 1123 label: a-z, 0-9, '-', at most 63)",
                  "e.g. --namespace team-a")  # fmt: skip
    if prefix and (len(prefix) > MAX_NAME_PREFIX or _PREFIX.fullmatch(prefix) is None):
        out.error("--name-prefix", "name_prefix_invalid",
                  f"{prefix!r} must start with a-z or 0-9 and hold only a-z, 0-9 and '-', at most {MAX_NAME_PREFIX}",
                  f"e.g. --name-prefix {DEFAULT_NAME_PREFIX}")  # fmt: skip
    return list(out)


def _error(setting: str, code: str, message: str, fix: str | None = None) -> ConfigError:
    found = Findings()
    found.error(setting, code, message, fix)
    return ConfigError(found)


def source_middlewares(
    overrides: Mapping[str, Any], source: str, namespace: str | None = None, prefix: str = DEFAULT_NAME_PREFIX
) -> Printed:
    """The Middlewares of ``source``'s routes in force, as YAML; raises ConfigError with every reason there are none.

    ``overrides`` are the flags that are settings, as ``check`` passes them to ``build``.
    """
    arguments = argument_findings(source, namespace, prefix)
    path = policy_file_path({k: v for k, v in overrides.items() if v is not None})
    try:
        data = read_policy_file(path) if path else None  # read once: the policy and its written values agree
        book = SourceBook()
        compiled = build(overrides, data, book)
    except PolicyFileError as exc:
        raise ConfigError([*arguments, *exc.as_config_error().findings]) from None
    except ConfigError as exc:
        raise ConfigError([*arguments, *exc.findings]) from None
    if arguments:
        raise ConfigError(arguments)
    if compiled.routes_dir is None:
        raise _error("--routes-dir", "routes_dir_missing", "no routes directory: a route source is one of its files",
                     "give --routes-dir DIR (or set CORS_ROUTES_DIR)")  # fmt: skip
    report = next((r for r in compiled.sources if r.name == source), None)
    if report is None:
        known = ", ".join(r.name for r in compiled.sources) or "none"
        raise _error("--source", "route_source_unknown",
                     f"{source} is not a route source of {compiled.routes_dir} (its route sources: {known})",
                     "give the name of one of its files")  # fmt: skip
    if not report.valid or any(f.is_error for f in report.findings):
        # an error in a file in force is an HTTPRoute rule refused (it answers no origin): not what the team meant
        state = _error(source, "route_source_not_in_force", f"{source} is not in force as written, so no "
                       "Middleware is printed: the service would not serve this version", "fix its errors and "
                       "run again")  # fmt: skip
        raise ConfigError([*report.findings, *state.findings])
    settings = load(overrides, Findings(), data).settings
    written = parse_source(source, book.in_force[source].data, Findings()) or []  # the very bytes in force
    routes = [r for r in compiled.policy.routes if r.source == source]
    if len(routes) != len(written):  # parse_source's routes are what compile_routes compiled, one for one
        raise _error(source, "route_source_unpaired", f"{source}: {len(written)} routes written, {len(routes)} "
                     "compiled: cannot tell which Middleware is whose", "report this as a bug")  # fmt: skip
    pairs = list(zip(written, routes, strict=True))
    policy = compiled.policy
    cidrs = [str(n) for n in policy.dev_cidrs] if policy.environment != PRODUCTION else []  # canonical: 10.0.0.1/32
    documents = _documents(settings, source, report.digest, pairs, (policy.environment, cidrs), namespace, prefix)
    notes = [f"{route.name}: disabled (404 on preflights), no Middleware" for route in routes if not route.enabled]
    if not documents:
        notes.append(f"{source} has no enabled route: no Middleware to print")
    text = "".join(
        "---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 16) for doc in documents
    )
    return Printed(text, report.findings, tuple(notes))


def _documents(
    settings: Settings,
    source: str,
    digest: str,
    routes: list[tuple[Declared, RoutePolicy]],
    mode: tuple[str, list[str]],
    namespace: str | None,
    prefix: str,
) -> list[dict[str, Any]]:
    """One Middleware per enabled route; raises ConfigError naming every route and setting that cannot be translated."""
    found = Findings()
    environment, cidrs = mode  # the environment, and its development networks as the service compiled them
    for j, cidr in enumerate(cidrs):
        if cidr.partition("/")[2] not in ("8", "16", "24", "32"):
            found.error(f"dev_private_cidrs[{j}]", "middleware_untranslatable",
                        f"{cidr!r} is not a /8, /16, /24 or /32 network: the middleware's regex is written a whole "
                        "octet at a time (the chart's values schema takes these only)",
                        "list the network as /24 networks, or let the backend add the CORS headers")  # fmt: skip
    documents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for declared, route in routes:
        if not route.enabled:
            continue
        written = declared.settings
        if declared.refused:  # the service refuses every origin there (its findings stopped us already, as a rule)
            found.error(f"{declared.setting}allowOrigins", "middleware_untranslatable",
                        f"route {route.name!r} is refused by the service", "fix its findings, run again")  # fmt: skip
            continue
        values = {key: getattr(written, key) for key in _KEYS if getattr(written, key) is not None}
        inherited = frozenset(_KEYS) - set(values)
        values |= {key: getattr(settings, key) for key in inherited}
        try:
            spec = headers_spec(values, environment, cidrs)
        except Untranslatable as exc:
            index = "" if exc.index is None else f"[{exc.index}]"
            key = FIELD_NAMES[exc.key] if declared.gateway else exc.key  # an HTTPRoute's findings name its fields
            where = f"{exc.key}{index}" if exc.key in inherited else f"{declared.setting}{key}{index}"
            also = f" (route {route.name!r} inherits it)" if exc.key in inherited else f" (route {route.name!r})"
            found.error(where, "middleware_untranslatable", f"{exc}{also}",
                        "list the origins or wildcards instead, or let the backend add the CORS headers to "
                        "its actual responses")  # fmt: skip
            continue
        name = middleware_name(route.name, prefix)
        if name in names:
            found.error(f"{declared.setting}name", "middleware_name_collision",
                        f"routes {names[name]!r} and {route.name!r} both give the Middleware name {name!r}",
                        "rename one of the routes")  # fmt: skip
        names[name] = route.name
        metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace is not None else {})}
        metadata["labels"] = {"app.kubernetes.io/part-of": "cors-handler"}
        metadata["annotations"] = {"cors-handler/route": route.name, "cors-handler/route-source": source,
                                   "cors-handler/route-source-digest": digest}  # fmt: skip
        documents.append({"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"headers": spec}})
    found.raise_if_errors()
    return documents


# The keys of a route the headers middleware is built from (allow_private_network has no Traefik field).
_KEYS = ("allow_origins", "allow_origin_regex", "allow_methods", "allow_headers", "expose_headers",
         "allow_credentials", "max_age")  # fmt: skip
