"""Command line: ``serve``, ``check`` and ``explain``.

Exit codes: 0 success (``explain``: the preflight is allowed), 1 ``explain``
of a preflight that is rejected or invalid, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from http import HTTPStatus

from .policy import Policy, PolicyError, RoutePolicy, compile_policy
from .settings import ConfigError, SettingsError, load_settings

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_CONFIG = 0, 1, 2


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="FILE", help="YAML policy file (default: $CORS_POLICY_FILE)")
    parser.add_argument("--environment", help="production, staging or development (overrides the file and env)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cors-handler", description="CORS preflight service")
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

    check = commands.add_parser("check", help="validate the configuration and print the compiled policy")
    _add_policy_flags(check)

    explain = commands.add_parser("explain", help="show the decision and exact response for one preflight")
    _add_policy_flags(explain)
    explain.add_argument("--origin", required=True)
    explain.add_argument("--method", required=True)
    explain.add_argument("--headers", default="", help="Access-Control-Request-Headers value")
    explain.add_argument("--path", default="/")
    explain.add_argument("--private-network", action="store_true", help="send Access-Control-Request-Private-Network")
    return parser


def load_policy(args: argparse.Namespace) -> Policy:
    """Settings from every source (flags first), compiled; raises SettingsError or PolicyError."""
    return compile_policy(load_settings(policy_file=args.policy, environment=args.environment))


def _report(errors: list[ConfigError]) -> int:
    print(f"invalid configuration ({len(errors)} error{'s' if len(errors) != 1 else ''}):", file=sys.stderr)
    for error in errors:
        print(f"  error: {error}", file=sys.stderr)
    return EXIT_CONFIG


def _describe_route(route: RoutePolicy) -> list[str]:
    methods = "*" if route.any_method else ", ".join(route.methods)
    headers = ", ".join((["*"] if route.any_header else []) + list(route.headers)) or "(none)"
    lines = [
        f"route {route.name} (path prefix {route.path_prefix}){'' if route.enabled else ': DISABLED (404)'}",
        f"  origins: {', '.join(route.origins.describe()) or '(none)'}",
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


def describe_policy(policy: Policy) -> str:
    rl = policy.rate_limit
    lines = [
        policy.mode_line(),
        f"environment: {policy.environment}",
        f"version: {policy.version}",
        *(line for route in policy.all_routes() for line in _describe_route(route)),
        f"rate_limit: {'on' if rl.enabled else 'off'} ({rl.average} per {rl.period:g}s, burst {rl.burst}, "
        f"depth {rl.depth}, max_clients {rl.max_clients})",
        f"cache_size: {policy.cache_size}",
    ]
    lines += [f"warning: {w}" for w in policy.warnings]
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args)
    except (SettingsError, PolicyError) as exc:
        return _report(exc.errors)
    print("configuration OK")
    print(describe_policy(policy))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from .pipeline import preview
    from .preflight import Allowed, Invalid, check_sizes, decide

    try:
        policy = load_policy(args)
    except (SettingsError, PolicyError) as exc:
        return _report(exc.errors)
    headers = [(b"origin", args.origin.encode()), (b"access-control-request-method", args.method.encode())]
    if args.headers:
        headers.append((b"access-control-request-headers", args.headers.encode()))
    if args.private_network:
        headers.append((b"access-control-request-private-network", b"true"))
    route, response = preview(policy, args.path, headers)

    print(f"route: {route.name} (path prefix {route.path_prefix})")
    too_large = check_sizes(args.origin.encode(), args.method.encode(), args.headers.encode())
    decision = too_large or decide(route, args.origin, args.method, args.headers, args.private_network)
    if not route.enabled:
        print("decision: disabled (route_disabled): preflights on this route are refused")
    elif isinstance(decision, Allowed):
        print(f"decision: allowed\nrule: {decision.rule}")
    elif isinstance(decision, Invalid):
        print(f"decision: invalid (invalid_preflight): {decision.message}")
    else:
        print(f"decision: rejected ({decision.error_type}): {decision.message}")
        if decision.rule:
            print(f"origin rule: {decision.rule}")
    print("response:")
    print(f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}")
    for name, value in response.headers:
        print(f"{name.decode()}: {value.decode('latin-1')}")
    if response.body:
        print()
        print(response.body.decode())
    return EXIT_OK if response.status == 204 else EXIT_NOT_ALLOWED


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    overrides = {"policy_file": args.policy, "environment": args.environment,
                 "log_level": args.log_level, "log_format": args.log_format}  # fmt: skip
    try:
        policy = compile_policy(load_settings(**overrides))
    except (SettingsError, PolicyError) as exc:
        return _report(exc.errors)
    return serve(
        policy,
        host=args.host,
        port=args.port,
        overrides=overrides,
        metrics_enabled=not args.no_metrics,
        fast_path=not args.no_fast_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        from .logs import configure_logging

        configure_logging("warning")
    handlers = {"serve": cmd_serve, "check": cmd_check, "explain": cmd_explain}
    return handlers[args.command](args)


def entry_point() -> None:
    sys.exit(main())
