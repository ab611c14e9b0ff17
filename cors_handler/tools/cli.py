"""Command line: ``serve``, ``check``, ``explain``, ``verify``, ``middleware`` and ``gateway-routes``.

Exit codes: 0 success (``explain``: the preflight is allowed; ``verify``: every
case agrees), 1 ``explain`` of a preflight that is rejected or invalid, or a
``verify`` case that disagrees or got no answer, 2 invalid configuration or usage
(``check --strict``: warnings too; ``middleware``, ``gateway-routes``: a source
is not in force or cannot be translated). Configuration problems of every stage —
arguments, file, environment, policy, lint — are reported together, in the
one error model of ``errors``; never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

import orjson

from ..config.compile import Compiled, build
from ..config.errors import ConfigError, Finding
from ..config.policyfile import CANDIDATE_POLICY_FILE_ENV
from ..config.sources import SourceBook
from ..cors.model import Policy
from .arguments import parser as _parser
from .arguments import validate_arguments
from .describe import describe_policy, format_finding, route_scope, source_state

EXIT_OK, EXIT_NOT_ALLOWED, EXIT_CONFIG = 0, 1, 2


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


def _report(findings: Iterable[Finding], refused_by: str = "") -> int:
    """Print every finding on stderr, errors first; the configuration is refused (exit 2)."""
    ordered = sorted(findings, key=lambda f: not f.is_error)
    errors = sum(f.is_error for f in ordered)
    counts = _plural(errors, "error") if errors else _plural(len(ordered), "warning")
    print(f"invalid configuration ({counts}){refused_by}:", file=sys.stderr)
    for finding in ordered:
        print("  " + format_finding(finding).replace("\n", "\n  "), file=sys.stderr)
    return EXIT_CONFIG


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
            print(f"route source {report.name}: {source_state(report)}")
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
        print(f"route source {report.name}: {source_state(report)}")
    return EXIT_OK


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


def cmd_middleware(args: argparse.Namespace) -> int:
    """The Middlewares of a route source's routes in force on stdout (exit 0), or every reason not (exit 2)."""
    from .middleware import source_middlewares

    try:
        printed = source_middlewares(_overrides(args), args.source, args.namespace, args.name_prefix)
    except ConfigError as exc:
        return _report(exc.findings, f" (no Middleware printed for {args.source})")
    for line in [*map(format_finding, printed.warnings), *printed.notes]:
        print(line, file=sys.stderr)
    return _write(printed.text, EXIT_OK)


def cmd_gateway_routes(args: argparse.Namespace) -> int:
    """The preflight HTTPRoutes of the route sources in force on stdout (exit 0), or every reason not (exit 2)."""
    from .gateway import Options, source_routes

    options = Options(tuple(args.parent_ref), args.service, args.port, args.namespace, args.header_match,
                      tuple(args.methods), args.hostnames)  # fmt: skip
    try:
        printed = source_routes(_overrides(args), args.source, options, validate_arguments(args))
    except ConfigError as exc:
        return _report(exc.findings, " (no HTTPRoute printed)")
    for line in map(format_finding, printed.warnings):
        print(line, file=sys.stderr)
    return _write(printed.text, EXIT_OK)


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
    handlers = {"serve": cmd_serve, "check": cmd_check, "explain": cmd_explain, "verify": cmd_verify,
                "middleware": cmd_middleware, "gateway-routes": cmd_gateway_routes}  # fmt: skip
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
