"""`cors-handler check` and `explain`, run as real commands."""

from pathlib import Path

from .conftest import run_cli


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_check_default_config_ok_and_warns_about_example_origin() -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stderr
    assert "CORS mode: production (strict origins only)" in result.stdout
    assert "https://app.example.com" in result.stdout
    assert "warning: allow_origins: the built-in example origin" in result.stdout


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


def test_check_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    policy = write(tmp_path, "allow_origins: ['*', 'https://a.com/']\nallow_credentials: true\nmax_age: -1\n"
                   "allow_methods: ['GET', 'BAD METHOD']\nbogus_key: 1\n")  # fmt: skip
    result = run_cli("check", "--policy", policy)
    assert result.returncode == 2
    assert "bogus_key: unknown setting" in result.stderr
    # type/unknown-key errors come first; fix them and the semantic ones are all listed
    policy = write(tmp_path, "allow_origins: ['*', 'https://a.com/']\nallow_credentials: true\nmax_age: -1\n"
                   "allow_methods: ['GET', 'BAD METHOD']\nallow_origin_regex: ['(x']\n")  # fmt: skip
    result = run_cli("check", "--policy", policy)
    assert result.returncode == 2
    err = result.stderr
    assert "invalid configuration (6 errors)" in err
    for setting in ("allow_origins[0]", "allow_origins[1]", "max_age", "allow_methods[1]", "allow_origin_regex[0]"):
        assert f"error: {setting}:" in err, setting
    assert result.stdout == ""


def test_check_env_overrides_file(tmp_path: Path) -> None:
    policy = write(tmp_path, "allow_origins: [https://file.example.com]\n")
    result = run_cli("check", env={"CORS_POLICY_FILE": policy, "CORS_ALLOW_ORIGINS": "https://env.example.com"})
    assert result.returncode == 0
    assert "https://env.example.com" in result.stdout
    assert "https://file.example.com" not in result.stdout


def test_explain_allowed() -> None:
    result = run_cli("explain", "--origin", "https://app.example.com", "--method", "PUT", "--headers", "content-type")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision: allowed" in out
    assert "rule: exact https://app.example.com" in out
    assert "HTTP/1.1 204 No Content" in out
    assert "access-control-allow-origin: https://app.example.com" in out
    assert "x-cors-preflight: enhanced-handler" in out


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


def test_explain_bad_config_exits_2(tmp_path: Path) -> None:
    result = run_cli("explain", "--policy", write(tmp_path, "max_age: -3\n"), "--origin", "https://a.com",
                     "--method", "GET")  # fmt: skip
    assert result.returncode == 2
    assert "error: max_age: must be >= 0 seconds" in result.stderr


def test_serve_bad_config_is_a_startup_error_naming_the_setting(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "0", env={"CORS_ALLOW_ORIGINS": "https://ok.com,not-an-origin"})
    assert result.returncode == 2
    assert "error: allow_origins[1]:" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_dash_m_and_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "check", "explain"):
        assert command in result.stdout
