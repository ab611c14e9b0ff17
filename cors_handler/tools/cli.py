"""Command line: ``serve``, ``check``, ``explain``, ``verify`` and ``gateway-routes`` (``tools.gateway``).

Exit codes: 0 success (``explain``: the preflight is allowed; ``verify``: every
case agrees), 1 ``explain`` of a preflight that is rejected or invalid, or a
``verify`` case that disagrees or got no answer, 2 invalid configuration or usage
(``check --strict``: warnings too). Configuration problems of every stage —
arguments, file, environment, policy, lint — are reported together, in the
one error model of ``errors``; never as a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

import orjson

from .. import __version__
from ..config.compile import Compiled, build
from ..config.errors import ConfigError, Finding, Findings
from ..config.policyfile import CANDIDATE_POLICY_FILE_ENV
from ..config.sources import SourceBook, SourceReport
from ..cors.model import Policy, RoutePolicy

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_CONFIG = 0, 1, 2
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


def _parser() -> argparse.ArgumentParser:
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

    from .gateway import add_command

    add_command(commands, _add_policy_flags)

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
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that are settings (None = not given; the environment and the file decide)."""
    names = ("policy", "environment", "log_level", "log_format", "routes_dir")
    values = {name: getattr(args, name, None) for name in names}
    values["policy_file"] = values.pop("policy")
    return values


def load_policy(args: argparse.Namespace, book: SourceBook | None = None) -> Compiled:
    """Settings from every source (flags first), compiled; raises ConfigError with every finding."""
    return build(_overrides(args), book=book)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_finding(finding: Finding) -> str:
    line = f"{finding.severity.value}: {finding.setting}: {finding.message} [{finding.code}]"
    return f"{line}\n    fix: {finding.fix}" if finding.fix else line


def _report(findings: Iterable[Finding], refused_by: str = "") -> int:
    """Print every finding on stderr, errors first; the configuration is refused (exit 2)."""
    ordered = sorted(findings, key=lambda f: not f.is_error)
    errors = sum(f.is_error for f in ordered)
    counts = _plural(errors, "error") if errors else _plural(len(ordered), "warning")
    print(f"invalid configuration ({counts}){refused_by}:", file=sys.stderr)
    for finding in ordered:
        print("  " + format_finding(finding).replace("\n", "\n  "), file=sys.stderr)
    return EXIT_CONFIG


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


def _load_or_report(args: argparse.Namespace, book: SourceBook | None = None) -> Compiled | int:
    """The policy, or the exit code after reporting every finding of the arguments and every stage."""
    arguments = validate_arguments(args)
    try:
        compiled = load_policy(args, book)
    except ConfigError as exc:
        return _report([*arguments, *exc.findings])
    if arguments:
        return _report([*arguments, *compiled.warnings])
    return compiled


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


def cmd_check(args: argparse.Namespace) -> int:
    try:
        policy, warnings, reports, _ = load_policy(args)
    except ConfigError as exc:
        if args.format == "json":
            _print_json(exc.findings)
            return EXIT_CONFIG
        return _report(exc.findings)
    # A route source's findings are its own (it is applied or not on its own), but check judges them all.
    warnings = (*warnings, *(f for r in reports for f in r.findings))
    if any(f.is_error for f in warnings):
        if args.format == "json":
            _print_json(warnings)
            return EXIT_CONFIG
        # What is in force, then why not everything is: a team moving its HTTPRoutes here reads both.
        print(describe_policy(policy))
        for report in reports:
            print(f"route source {report.name}: {_source_state(report)}")
        return _report(warnings)
    failed = args.strict and bool(warnings)
    if args.format == "json":
        _print_json(warnings)
        return EXIT_CONFIG if failed else EXIT_OK
    if failed:
        return _report(warnings, " under --strict")
    print("configuration OK")
    print(describe_policy(policy, warnings))
    for report in reports:
        print(f"route source {report.name}: {_source_state(report)}")
    return EXIT_OK


def _source_state(report: SourceReport) -> str:
    if report.valid:
        refused = sum(f.is_error for f in report.findings)  # HTTPRoute rules refused, the rest applied
        return f"applied (digest {report.digest})" + (f", {refused} rule(s) refused: see the errors" if refused else "")
    return "NOT applied: " + ("its last good version answers" if report.applied == "last good" else
                              "its hosts and routes are refused (403)")  # fmt: skip


def _print_json(findings: Iterable[Finding]) -> None:
    print(orjson.dumps([f.as_dict() for f in findings], option=orjson.OPT_INDENT_2).decode())


def explain_lines(policy: Policy, args: argparse.Namespace) -> tuple[list[str], int]:
    """What ``explain`` prints for this preflight under ``policy``, and its exit code."""
    from ..serve.pipeline import preview
    from .explain import explanation

    headers = [(b"origin", args.origin.encode()), (b"access-control-request-method", args.method.encode())]
    if args.headers:
        headers.append((b"access-control-request-headers", args.headers.encode()))
    if args.private_network:
        headers.append((b"access-control-request-private-network", b"true"))
    if args.authority:
        headers.append((b"host", args.authority.encode("latin-1")))
    route, response, decision = preview(policy, args.path, headers)
    lines = [
        f"route: {route.name} ({route_scope(route)})",
        *explanation(route, args.origin, response, decision),
        "response:",
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        *(f"{name.decode()}: {value.decode('latin-1')}" for name, value in response.headers),
    ]
    if response.body:
        lines += ["", response.body.decode()]
    return lines, EXIT_OK if response.status == 204 else EXIT_NOT_ALLOWED


def cmd_explain(args: argparse.Namespace) -> int:
    compiled = _load_or_report(args)
    if isinstance(compiled, int):
        return compiled
    loaded = compiled.policy
    lines, code = explain_lines(loaded, args)
    if args.candidate is None:
        return _write("\n".join(lines) + "\n", code)
    candidate = _load_candidate_or_report(args.candidate, args)
    if isinstance(candidate, int):
        return candidate
    candidate_lines, candidate_code = explain_lines(candidate, args)
    # the decisions side by side, then the responses side by side, each block starting on the same row
    decisions, responses = lines.index("response:"), candidate_lines.index("response:")
    pad = max(decisions, responses)
    left = lines[:decisions] + [""] * (pad - decisions) + lines[decisions:]
    right = candidate_lines[:responses] + [""] * (pad - responses) + candidate_lines[responses:]
    rows = side_by_side(left, right, (f"live policy {loaded.version}", f"candidate policy {candidate.version}"))
    if (code, candidate_code) == (EXIT_OK, EXIT_NOT_ALLOWED):
        rows += ["", "the candidate would refuse this preflight, which the live policy allows"]
    elif (code, candidate_code) == (EXIT_NOT_ALLOWED, EXIT_OK):
        rows += ["", "the candidate would allow this preflight, which the live policy refuses"]
    return _write("\n".join(rows) + "\n", code)  # the live policy's answer is the one served


def side_by_side(left: list[str], right: list[str], titles: tuple[str, str], gap: int = 3) -> list[str]:
    """Two columns; a row whose two sides differ is marked ``|`` between them, else ``=``."""
    width = max(len(line) for line in [titles[0], *left])
    rows = [f"{titles[0]:<{width}}{' ' * gap}  {titles[1]}", f"{'-' * width}{' ' * gap}  {'-' * len(titles[1])}"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        rows.append(f"{a:<{width}}{' ' * (gap - 1)}{'=' if a == b else '|'}  {b}".rstrip())
    return rows


def _load_candidate_or_report(path: str, args: argparse.Namespace) -> Policy | int:
    """The candidate policy (same flags and environment, its own file), or the exit code after reporting it."""
    from ..serve.shadow import load_candidate

    try:
        return load_candidate(path, _overrides(args))
    except ConfigError as exc:
        return _report(exc.findings, f" in the candidate policy {path}")


def _write(text: str, code: int) -> int:
    """Print ``text``; a reader that went away (``| head``) does not change the exit code."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every case agrees, 1 when one disagrees or got no answer, 2 on a bad configuration."""
    from .cases import generate
    from .verify import Sender, json_document, parse_url, run, summary, text_lines

    compiled = _load_or_report(args)
    if isinstance(compiled, int):
        return compiled
    cases = generate(compiled.policy, args.path, actual=args.actual)
    results = run(compiled.policy, cases, Sender(parse_url(args.url), args.timeout, args.rate))
    counts = summary(results)
    code = EXIT_OK if counts["disagree"] == counts["unreachable"] == 0 else EXIT_NOT_ALLOWED
    if args.format == "json":
        return _write(orjson.dumps(json_document(results), option=orjson.OPT_INDENT_2).decode() + "\n", code)
    return _write("\n".join(text_lines(results)) + "\n", code)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..http.server import serve
    from ..serve.shadow import CandidateSlot

    book = SourceBook()  # the route sources' last good versions: startup's, then each reload's
    compiled = _load_or_report(args, book)
    if isinstance(compiled, int):
        return compiled
    candidate = None
    candidate_file = args.candidate or os.environ.get(CANDIDATE_POLICY_FILE_ENV) or None
    if candidate_file:
        found = _load_candidate_or_report(candidate_file, args)
        if isinstance(found, int):
            return found
        candidate = CandidateSlot(candidate_file, found)
    return serve(
        compiled,
        host=args.host,
        port=args.port,
        overrides=_overrides(args),
        metrics_enabled=not args.no_metrics,
        book=book,
        fast_path=not args.no_fast_path,
        candidate=candidate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        from ..serve.events import configure_logging

        configure_logging("warning")
    from .gateway import cmd_gateway_routes

    handlers = {"serve": cmd_serve, "check": cmd_check, "explain": cmd_explain, "verify": cmd_verify,
                "gateway-routes": cmd_gateway_routes}  # fmt: skip
    return handlers[args.command](args)


def entry_point() -> None:
    """The ``cors-handler`` command. A closed stdout (``explain ... | head``) ends it quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again while flushing at exit: point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_OK
    sys.exit(code)
