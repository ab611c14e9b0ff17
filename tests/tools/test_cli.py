"""`cors-handler check` and `explain`, run as real commands."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cors_handler import __version__

from ..conftest import run_cli
from ..conftest import write_policy as write


def findings(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
    """(setting, code, severity) of every finding ``check --format json`` printed."""
    return [(f["setting"], f["code"], f["severity"]) for f in json.loads(result.stdout)]


@pytest.mark.e2e
def test_check_default_config_ok_and_warns_about_example_origin() -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stderr
    assert "CORS mode: production (strict origins only)" in result.stdout
    assert "https://app.example.com" in result.stdout
    assert "warning: allow_origins: the built-in example origin https://app.example.com is in use [builtin_origin]" in (
        result.stdout
    )


@pytest.mark.e2e
def test_check_prints_compiled_policy(tmp_path: Path) -> None:
    policy = write(tmp_path, "environment: uat\nallow_origins: [https://uat.example.com]\nroutes:\n"
                   "  - {name: v2, path_prefix: /api/v2, allow_origins: ['https://*.example.net']}\n")  # fmt: skip
    result = run_cli("check", "--policy", policy)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "environment: staging" in out
    assert "route default (path prefix /)" in out
    assert "route v2 (path prefix /api/v2)" in out
    assert "https://*.example.net" in out
    assert "development: 172.16.21.0/24" in out


@pytest.mark.e2e
def test_check_lists_every_error_of_every_stage_at_once(tmp_path: Path) -> None:
    """Issue 17 item 3: the typo'd key hid the regex error (and the env's bad JSON hid everything)."""
    policy = write(tmp_path, "allow_origins: ['*', 'https://a.com/']\nallow_credentials: true\nmax_age: -1\n"
                   "allow_methods: ['GET', 'BAD METHOD']\nalow_origins: [https://b.com]\n"
                   "allow_origin_regex: ['(x']\n")  # fmt: skip
    env = {"CORS_ROUTES": '[{"name": "x",', "CORS_MAX_AGEE": "5"}
    result = run_cli("check", "--policy", policy, "--format", "json", env=env)
    assert result.returncode == 2, result.stderr
    assert sorted(findings(result)) == sorted([
        ("alow_origins", "unknown_setting", "error"),
        ("routes", "env_invalid_json", "error"),
        ("CORS_MAX_AGEE", "env_unknown", "warning"),
        ("allow_origins[0]", "any_origin_with_credentials", "error"),
        ("allow_origins[0]", "any_origin_in_production", "error"),
        ("allow_origins[1]", "origin_invalid", "error"),
        ("allow_origin_regex[0]", "regex_invalid", "error"),
        ("allow_methods[1]", "token_invalid", "error"),
        ("max_age", "max_age_negative", "error"),
    ])  # fmt: skip
    text = run_cli("check", "--policy", policy, env=env)
    assert text.returncode == 2
    assert text.stderr.startswith("invalid configuration (8 errors):\n")
    assert "Traceback" not in text.stderr and text.stdout == ""


@pytest.mark.e2e
def test_check_json_shape(tmp_path: Path) -> None:
    result = run_cli("check", "--policy", write(tmp_path, "max_age: 100000\nallow_origins: [https://a.com]\n"),
                     "--format", "json")  # fmt: skip
    assert result.returncode == 0
    [finding] = json.loads(result.stdout)
    assert set(finding) == {"setting", "code", "severity", "message", "fix"}
    assert (finding["setting"], finding["code"], finding["severity"]) == ("max_age", "max_age_above_browser_cap",
                                                                          "warning")  # fmt: skip


@pytest.mark.e2e
def test_check_strict_fails_on_warnings(tmp_path: Path) -> None:
    warned = write(tmp_path, "max_age: 100000\nallow_origins: [https://a.com]\n")
    assert run_cli("check", "--policy", warned).returncode == 0
    strict = run_cli("check", "--policy", warned, "--strict")
    assert strict.returncode == 2
    assert "max_age_above_browser_cap" in strict.stderr
    assert run_cli("check", "--policy", warned, "--strict", "--format", "json").returncode == 2
    clean = tmp_path / "clean.yaml"
    clean.write_text("allow_origins: [https://a.com]\n")
    assert run_cli("check", "--policy", str(clean), "--strict").returncode == 0


@pytest.mark.e2e
def test_check_malformed_json_env_is_a_finding_not_a_traceback() -> None:
    """Issue 17 item 2."""
    result = run_cli("check", env={"CORS_ROUTES": '[{"name": "x",'})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: routes: CORS_ROUTES is not valid JSON" in result.stderr
    assert "[env_invalid_json]" in result.stderr


@pytest.mark.e2e
def test_check_warns_about_unknown_environment_variable() -> None:
    """Issue 17 item 6."""
    result = run_cli("check", "--format", "json", env={"CORS_MAX_AGEE": "5"})
    assert result.returncode == 0
    unknown = [f for f in json.loads(result.stdout) if f["code"] == "env_unknown"]
    fix = "rename it to CORS_MAX_AGE (setting max_age)"
    assert [(f["setting"], f["fix"]) for f in unknown] == [("CORS_MAX_AGEE", fix)]


@pytest.mark.e2e
def test_check_route_without_name() -> None:
    """Issue 17 item 5."""
    result = run_cli("check", env={"CORS_ROUTES": '[{"path_prefix": "/api/v2", "max_age": 60}]'})
    assert result.returncode == 0, result.stderr
    assert "route /api/v2 (path prefix /api/v2)" in result.stdout


@pytest.mark.e2e
def test_check_env_overrides_file(tmp_path: Path) -> None:
    policy = write(tmp_path, "allow_origins: [https://file.example.com]\n")
    result = run_cli("check", env={"CORS_POLICY_FILE": policy, "CORS_ALLOW_ORIGINS": "https://env.example.com"})
    assert result.returncode == 0
    assert "https://env.example.com" in result.stdout
    assert "https://file.example.com" not in result.stdout


@pytest.mark.e2e
def test_explain_allowed() -> None:
    result = run_cli("explain", "--origin", "https://app.example.com", "--method", "PUT", "--headers", "content-type")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision: allowed" in out
    assert "rule: exact https://app.example.com" in out
    assert "HTTP/1.1 204 No Content" in out
    assert "access-control-allow-origin: https://app.example.com" in out
    assert "x-cors-preflight: enhanced-handler" in out


@pytest.mark.e2e
def test_explain_rejected_and_invalid(tmp_path: Path) -> None:
    policy = write(
        tmp_path, "allow_origins: [https://a.com]\nroutes:\n  - {name: legacy, path_prefix: /off, enabled: false}\n"
    )
    rejected = run_cli("explain", "--policy", policy, "--origin", "https://a.com", "--method", "PROPFIND")
    assert rejected.returncode == 1
    assert "decision: rejected (method_not_allowed)" in rejected.stdout
    assert "origin rule: exact https://a.com" in rejected.stdout
    assert "HTTP/1.1 403 Forbidden" in rejected.stdout
    assert '"error_type":"method_not_allowed"' in rejected.stdout

    invalid = run_cli("explain", "--policy", policy, "--origin", "a.com", "--method", "GET")
    assert invalid.returncode == 1
    assert "decision: invalid (invalid_preflight)" in invalid.stdout
    assert "HTTP/1.1 400 Bad Request" in invalid.stdout

    disabled = run_cli(
        "explain", "--policy", policy, "--origin", "https://a.com", "--method", "GET", "--path", "/off/x"
    )
    assert disabled.returncode == 1
    assert "route: legacy" in disabled.stdout
    assert "HTTP/1.1 404 Not Found" in disabled.stdout


@pytest.mark.e2e
def test_explain_names_every_refused_header() -> None:
    """Issue 17 item 10: `--headers 'X-Foo, Content-Type, x-bar'` named only x-bar."""
    result = run_cli("explain", "--origin", "https://app.example.com", "--method", "GET",
                     "--headers", "X-Foo, Content-Type, x-bar")  # fmt: skip
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "decision: rejected (header_not_allowed): Request headers x-bar, x-foo are not allowed" in lines
    assert "refused headers: x-bar, x-foo" in lines
    assert "allowed headers: content-type, authorization" in lines
    assert '{"error_type":"header_not_allowed","message":"Request headers x-bar, x-foo are not allowed"}' in lines


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("credentials", "answer"),
    [
        pytest.param("false", None, id="without-credentials-refused-with-the-reason"),
        pytest.param("true", "access-control-allow-headers: authorization, x-a", id="with-credentials-echoed"),
    ],
)
def test_explain_says_why_star_leaves_out_authorization(tmp_path: Path, credentials: str, answer: str | None) -> None:
    """Issue 28: '*' headers cover authorization only with credentials; explain says so where it refuses it."""
    policy = write(
        tmp_path, f"allow_origins: [https://a.com]\nallow_headers: ['*']\nallow_credentials: {credentials}\n"
    )
    result = run_cli("explain", "--policy", policy, "--origin", "https://a.com", "--method", "PUT",
                     "--headers", "Authorization, X-A")  # fmt: skip
    lines = result.stdout.splitlines()
    note = "note: without credentials '*' covers every header but authorization (Fetch); list authorization beside '*'"
    if answer is None:
        assert result.returncode == 1 and "refused headers: authorization" in lines and note in lines
    else:
        assert result.returncode == 0 and answer in lines and note not in lines


@pytest.mark.parametrize(
    ("origin", "miss"),
    [
        pytest.param("http://app.example.com", "http:// given, https:// allowed (https://app.example.com)",
                     id="scheme"),
        pytest.param("https://app.example.com:8443", "port 8443 given, https://app.example.com allows the default port",
                     id="port"),
        pytest.param("https://example.net", "https://*.example.net covers subdomains of example.net, never "
                     "example.net itself: list https://example.net", id="apex"),
        pytest.param("http://api.example.net", "http:// given, https:// allowed (https://*.example.net)",
                     id="wildcard-scheme"),
        pytest.param("https://app.exemple.com", "closest allowed origin: https://app.example.com", id="typo"),
        pytest.param("https://unrelated.org", None, id="no-miss"),
    ],
)  # fmt: skip
@pytest.mark.e2e
def test_explain_refused_origin_gets_the_allowed_set_and_the_nearest_miss(origin: str, miss: str | None) -> None:
    """Issue 17 item 10: a refused origin got no hint."""
    env = {"CORS_ALLOW_ORIGINS": "https://app.example.com,https://*.example.net"}
    result = run_cli("explain", "--origin", origin, "--method", "GET", env=env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "decision: rejected (origin_not_allowed): Origin is not allowed" in lines
    assert "allowed origins: https://app.example.com, https://*.example.net" in lines
    assert [line for line in lines if line.startswith("nearest miss: ")] == ([f"nearest miss: {miss}"] if miss else [])


@pytest.mark.e2e
def test_explain_null_with_star_and_safelisted_method() -> None:
    """Issue 17 item 9, as serve answers it: `*` covers null (answered `*`); POST passes without being listed."""
    env = {"CORS_ENVIRONMENT": "development", "CORS_ALLOW_ORIGINS": "*", "CORS_ALLOW_METHODS": "PUT"}
    result = run_cli("explain", "--origin", "null", "--method", "POST", "--headers", "content-type", env=env)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "rule: any origin (*)" in lines
    assert "access-control-allow-origin: *" in lines
    assert "access-control-allow-methods: PUT" in lines  # Fetch: POST needs no listing
    refused = run_cli("explain", "--origin", "null", "--method", "DELETE", env=env)
    assert "allowed methods: GET, HEAD, POST (always), PUT" in refused.stdout.splitlines()


@pytest.mark.e2e
def test_star_with_credentials_in_disguise_is_refused_by_check_and_explain(tmp_path: Path) -> None:
    """Issue 17 item 8: `https://[^/]+` with credentials passed check; explain echoed https://evil.example."""
    policy = write(tmp_path, "allow_origins: []\nallow_origin_regex: ['https://[^/]+']\nallow_credentials: true\n")
    check = run_cli("check", "--policy", policy, "--format", "json")
    assert check.returncode == 2
    assert findings(check) == [("allow_origin_regex[0]", "regex_any_host_with_credentials", "error")]
    explain = run_cli("explain", "--policy", policy, "--origin", "https://evil.example", "--method", "GET")
    assert explain.returncode == 2 and explain.stdout == ""
    assert "[regex_any_host_with_credentials]" in explain.stderr
    # judged like '*' (design.md): without credentials an error at the top level in production, a warning elsewhere
    top = write(tmp_path, "allow_origins: []\nallow_origin_regex: ['https://[^/]+']\n")
    refused = run_cli("check", "--policy", top, "--format", "json")
    assert refused.returncode == 2
    assert findings(refused) == [("allow_origin_regex[0]", "regex_any_host_in_production", "error")]
    staging = write(tmp_path, "environment: staging\nallow_origins: []\nallow_origin_regex: ['https://[^/]+']\n")
    warned = run_cli("check", "--policy", staging, "--format", "json")
    assert warned.returncode == 0
    assert findings(warned) == [("allow_origin_regex[0]", "regex_any_host", "warning")]


@pytest.mark.e2e
def test_explain_bad_config_exits_2(tmp_path: Path) -> None:
    result = run_cli("explain", "--policy", write(tmp_path, "max_age: -3\n"), "--origin", "https://a.com",
                     "--method", "GET")  # fmt: skip
    assert result.returncode == 2
    assert "error: max_age: must be >= 0 seconds [max_age_negative]" in result.stderr


@pytest.mark.e2e
def test_serve_bad_config_is_a_startup_error_naming_the_setting(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "8080", env={"CORS_ALLOW_ORIGINS": "https://ok.com,not-an-origin"})
    assert result.returncode == 2
    assert "error: allow_origins[1]:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_serve_refuses_an_empty_policy_file(tmp_path: Path) -> None:
    """Issue 17 item 1 (startup): an empty file used to start the service on the built-in example origin."""
    result = run_cli("serve", "--port", "8080", "--policy", write(tmp_path, "\n  \n"))
    assert result.returncode == 2
    assert "error: policy_file: policy file is empty [policy_file_empty]" in result.stderr


@pytest.mark.parametrize("port", ["99999", "0", "65536", "-1"])
@pytest.mark.e2e
def test_serve_port_outside_range_is_an_error(port: str) -> None:
    """Issue 17 item 4: --port 99999 was silently wrapped (the socket listened on 34463)."""
    result = run_cli("serve", "--host", "127.0.0.1", "--port", port, env={"CORS_MAX_AGE": "-1"})
    assert result.returncode == 2
    assert f"error: --port: {port} is not a TCP port [out_of_range]" in result.stderr
    assert "[max_age_negative]" in result.stderr  # reported together with the settings
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "host",
    ["no such host!", "-bad.example", "a..b", "http://0.0.0.0", "[::1]", "x" * 64],
    ids=["spaces", "leading-hyphen", "empty-label", "url", "bracketed", "label-too-long"],
)
@pytest.mark.e2e
def test_serve_host_that_cannot_be_bound_is_an_error(host: str) -> None:
    """Before, a bad --host got as far as the bind: an error line naming no setting, then exit 3."""
    result = run_cli("serve", f"--host={host}", "--port", "8080")
    assert result.returncode == 2
    assert f"error: --host: {host!r} is not an IP address or a host name [host_invalid]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "127.0.0.1", "::1", "localhost", "cors-handler.default.svc"])
def test_serve_hosts_that_name_an_address_pass_the_check(host: str) -> None:
    from cors_handler.tools.arguments import parser as _parser
    from cors_handler.tools.arguments import validate_arguments

    assert validate_arguments(_parser().parse_args(["serve", "--host", host])) == []


@pytest.mark.e2e
def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cors-handler {__version__}"
    # check names the policy's version (a hash) so that nobody takes it for the program's
    lines = run_cli("check").stdout.splitlines()
    assert not any(line.startswith("version:") for line in lines)
    policy_line = next(line for line in lines if line.startswith("policy version: "))
    assert re.fullmatch(r"policy version: [0-9a-f]{12} \(cors_policy_info\{version\}; .*\)", policy_line), policy_line


@pytest.mark.e2e
def test_explain_into_a_closed_pipe_is_quiet() -> None:
    """`explain ... | head -1` ended in a BrokenPipeError traceback."""
    command = [sys.executable, "-m", "cors_handler", "explain", "--origin", "https://app.example.com",
               "--method", "PUT"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before anything was written
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    # a rejected preflight keeps its exit code, 1, when its output goes nowhere
    rejected = subprocess.Popen([*command[:-4], "--origin", "https://evil.example", "--method", "PUT"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert rejected.stdout is not None and rejected.stderr is not None
    rejected.stdout.close()
    assert "Traceback" not in rejected.stderr.read().decode()
    assert rejected.wait(timeout=30) == 1


@pytest.mark.e2e
def test_python_dash_m_and_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "check", "explain"):
        assert command in result.stdout


ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_POLICIES = [
    pytest.param(doc, n, block, id=f"{doc}#{n}")
    for doc in ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
    for n, block in enumerate(re.findall(r"```yaml\n(.*?)```", (ROOT / doc).read_text(), re.S))
    if isinstance(yaml.safe_load(block), dict) and "allow_origins" in yaml.safe_load(block)
]


@pytest.mark.parametrize(("doc", "n", "block"), DOCUMENTED_POLICIES)
@pytest.mark.e2e
def test_every_documented_policy_passes_check(tmp_path: Path, doc: str, n: int, block: str) -> None:
    result = run_cli("check", "--policy", write(tmp_path, block))
    assert result.returncode == 0, result.stderr


ADMIN = "allow_origins: [https://app.example.com]\nroutes:\n  - {name: admin, path_prefix: /admin, enabled: false}\n"


@pytest.mark.parametrize("target", ["/admin?x=1", "/%61dmin/x", "/admin#x", "/admin%2Fx"])
def test_explain_routes_a_path_as_serve_does(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    """serve decodes the path and drops query and fragment: route admin (disabled: 404), as explain now says."""
    from cors_handler.tools.cli import main

    args = ["--policy", write(tmp_path, ADMIN), "--origin", "https://app.example.com", "--method", "GET"]
    code = main(["explain", *args, "--path", target])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("route: admin (path prefix /admin)\n") and "HTTP/1.1 404" in out, out


@pytest.mark.parametrize("target", ["/a b", "/caf\u00e9", "admin", "/a\r\nx: y"])
def test_explain_and_verify_refuse_a_path_that_is_no_request_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    from cors_handler.tools.cli import main

    policy = write(tmp_path, ADMIN)
    explain = main(["explain", "--policy", policy, "--origin", "https://a.test", "--method", "GET", "--path", target])
    verify = main(["verify", "--url", "http://127.0.0.1:1", "--policy", policy, "--path", target])
    err = capsys.readouterr().err
    assert (explain, verify) == (2, 2)
    assert err.count("--path: ") == 2 and "[path_invalid]" in err and "Traceback" not in err, err
