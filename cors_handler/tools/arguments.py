"""The command line's arguments: every subcommand's flags, and their validation in the one error model.

Arguments are validated like settings (``--port`` outside 1-65535 is a finding,
exit 2, reported together with the configuration's own findings).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import urllib.parse

from .. import __version__
from ..config.errors import Finding, Findings

PORT_RANGE = (1, 65535)
# What --host may be: an IPv4 or IPv6 literal, or a DNS name of letters, digits and hyphens (RFC 1123 labels).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="FILE", help="YAML policy file (default: $CORS_POLICY_FILE)")
    parser.add_argument("--environment", help="production, staging or development (overrides the file and env)")
    _add_routes_dir_flag(parser)


def _add_routes_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routes-dir", metavar="DIR",
                        help="directory of route sources, one file per team (default: $CORS_ROUTES_DIR)")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cors-handler", description="CORS preflight service")
    parser.add_argument("--version", action="version", version=f"cors-handler {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    _add_policy_flags(serve)
    serve.add_argument("--log-level", help="debug, info, warning, error")
    serve.add_argument("--log-format", help="json or console")
    serve.add_argument("--no-metrics", action="store_true", help="skip request counters and timing (benchmarks only)")
    serve.add_argument("--no-fast-path", action="store_true",
                       help="answer every request through the ASGI app (no protocol-level fast path)")  # fmt: skip
    serve.add_argument("--candidate", metavar="FILE",
                       help="a candidate policy decided beside the live one and never enforced "
                            "(default: $CORS_CANDIDATE_POLICY_FILE)")  # fmt: skip

    check = commands.add_parser("check", help="validate the configuration and print the compiled policy")
    _add_policy_flags(check)
    check.add_argument("--format", choices=("text", "json"), default="text",
                       help="json: print the findings as [{setting, code, severity, message, fix}]")  # fmt: skip
    check.add_argument("--strict", action="store_true", help="warnings fail too (exit 2), for CI")

    explain = commands.add_parser("explain", help="show the decision and exact response for one preflight")
    _add_policy_flags(explain)
    explain.add_argument("--origin", required=True)
    explain.add_argument("--method", required=True)
    explain.add_argument("--headers", default="", help="Access-Control-Request-Headers value")
    explain.add_argument("--path", default="/")
    explain.add_argument("--authority", metavar="HOST", help="the request's Host (selects routes scoped by hosts)")
    explain.add_argument("--private-network", action="store_true", help="send Access-Control-Request-Private-Network")
    explain.add_argument("--candidate", metavar="FILE",
                         help="also show what this candidate policy would decide and answer, side by side")  # fmt: skip

    verify = commands.add_parser("verify", help="send the policy's preflights to a deployment and compare the answers")
    verify.add_argument("--url", required=True, help="http[s]://host[:port]: the only place contacted")
    verify.add_argument("--policy", metavar="FILE", help="YAML policy file (default: $CORS_POLICY_FILE)")
    _add_routes_dir_flag(verify)
    verify.add_argument("--path", nargs="+", default=[], metavar="P",
                        help="ask on these paths (default: each route's path prefix)")  # fmt: skip
    verify.add_argument("--format", choices=("text", "json"), default="text",
                        help="json: {summary, cases: [...]} with every case")  # fmt: skip
    verify.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds per request (default 5)")
    verify.add_argument("--rate", type=float, default=20.0, metavar="N",
                        help="at most N requests per second (default 20)")  # fmt: skip
    verify.add_argument("--actual", action="store_true",
                        help="also a GET per origin: the edge's CORS headers must follow the preflight")  # fmt: skip

    middleware = commands.add_parser("middleware", help="print the Traefik Middlewares of a route source's routes")
    _add_policy_flags(middleware)
    middleware.add_argument("--source", required=True, metavar="FILE", help="the route source's file name in DIR")
    middleware.add_argument("--namespace", metavar="NS", help="metadata.namespace of each Middleware")
    middleware.add_argument("--name-prefix", metavar="P", default="cors-", help="prepended to names (default cors-)")
    _add_gateway_routes(commands)
    return parser


def _add_gateway_routes(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``gateway-routes``: flags named after the chart's ``gatewayAPI`` values (tools.gateway)."""
    from .gateway import DEFAULT_METHODS, HEADER_MATCHES

    routes = commands.add_parser("gateway-routes", help="print the Gateway API preflight HTTPRoutes of route sources")
    _add_policy_flags(routes)
    routes.add_argument("--source", metavar="FILE", help="only this file of the routes directory (default: every one)")
    routes.add_argument("--parent-ref", action="append", required=True, metavar="NAME[/NAMESPACE[/SECTION]]",
                        help="a Gateway (or a listener) the HTTPRoutes attach to; repeat for more")  # fmt: skip
    routes.add_argument("--service", required=True, help="cors-handler's Service: the backendRef")
    routes.add_argument("--port", type=int, required=True, help="the Service's port")
    routes.add_argument("--namespace", metavar="NS", help="metadata.namespace (default: none, the one applied in)")
    routes.add_argument("--header-match", choices=HEADER_MATCHES, default="Exact",
                        help="Exact (Core; a match per method) or RegularExpression (not Core)")  # fmt: skip
    routes.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="M",
                        help="requested methods routed besides the routes' own (default: %(default)s)")  # fmt: skip
    routes.add_argument("--hostnames", action=argparse.BooleanOptionalAction, default=True,
                        help="name the routes' hosts in spec.hostnames (off: API routes name none)")  # fmt: skip


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOST_NAME.fullmatch(host) is not None
    return True


def validate_arguments(args: argparse.Namespace) -> list[Finding]:
    """Arguments are validated like settings: reported with them, in the same model."""
    out = Findings()
    port = getattr(args, "port", None)
    low, high = PORT_RANGE
    if port is not None and not low <= port <= high:
        out.error("--port", "out_of_range", f"{port} is not a TCP port", f"use a port between {low} and {high}")
    host = getattr(args, "host", None)
    if host is not None and not _valid_host(host):
        out.error("--host", "host_invalid", f"{host!r} is not an IP address or a host name",
                  "use 0.0.0.0 (every IPv4 address), :: (every address) or 127.0.0.1")  # fmt: skip
    command = getattr(args, "command", None)
    if command == "verify":
        from .verify import parse_url

        try:
            parse_url(args.url)
        except ValueError as exc:
            out.error("--url", "url_invalid", str(exc), "give http://host:port or https://host")
        for flag, value in (("--rate", args.rate), ("--timeout", args.timeout)):
            if not value > 0:
                out.error(flag, "out_of_range", f"{value:g} is not a positive number")
    if command in ("verify", "explain"):
        for path in args.path if command == "verify" else [args.path]:
            problem = target_problem(path)
            if problem:
                out.error("--path", "path_invalid", problem, "give a path as a browser sends it: /api/x?y=1, %-encoded")
    return list(out)


def target_problem(target: str) -> str | None:
    """Why ``target`` cannot be a request's path as a browser sends it (``serve.pipeline.route_path``), or None."""
    from ..serve.pipeline import route_path

    if not target.startswith("/"):
        return f"{target!r} must start with '/'"
    if not target.isascii() or not target.isprintable() or " " in target:
        encoded = urllib.parse.quote(target, safe="/?#%=&;:@!$'()*+,~")
        return f"{target!r} is not a request target: spaces, controls and other characters are %-encoded ({encoded})"
    try:
        route_path(target.encode("ascii"))
    except ValueError as exc:
        return str(exc)
    return None
