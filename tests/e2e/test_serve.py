"""`cors-handler serve` end to end: startup log, modes, credentials, env configuration, logging."""

import json

import pytest

from ..conftest import Server

pytestmark = pytest.mark.e2e


def log_lines(server: Server) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def test_default_config_starts_in_production_and_says_so(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server()
    lines = log_lines(server)
    startup = next(line for line in lines if line.get("phase") == "startup")
    assert startup["event"] == "CORS mode: production (strict origins only)"
    assert startup["origins"] == {"default": ["https://app.example.com"]}
    warnings = [(line["setting"], line["code"]) for line in lines if line["level"] == "warning" and "code" in line]
    assert warnings == [("allow_origins", "builtin_origin")]
    assert all(isinstance(line["event"], str) for line in lines)
    assert server.preflight("https://app.example.com", "GET").status == 204
    assert server.preflight("http://localhost:3000", "GET").status == 403


def test_credentials_mode(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server({"allow_origins": ["https://app.example.com"], "allow_credentials": True})
    r = server.preflight("https://app.example.com", "POST", "content-type")
    assert r.status == 204
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    rejected = server.preflight("https://evil.example.com", "POST")
    assert "access-control-allow-credentials" not in rejected.headers


def test_development_mode_allows_localhost_and_private_cidrs(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(env={"CORS_ENVIRONMENT": "dev", "CORS_ALLOW_ORIGINS": "https://dev.example.com"})
    for origin in ("http://localhost:5173", "http://127.0.0.1:8000", "http://[::1]:3000", "http://172.16.21.255",
                   "https://192.168.1.20:8443", "https://dev.example.com"):  # fmt: skip
        r = server.preflight(origin, "GET")
        assert r.status == 204, origin
        assert r.headers["access-control-allow-origin"] == origin
    for origin in ("http://172.16.22.1", "http://10.1.2.3", "http://localhost.evil.com"):
        assert server.preflight(origin, "GET").status == 403, origin
    startup = next(line for line in log_lines(server) if line.get("phase") == "startup")
    assert str(startup["event"]).startswith("CORS mode: development")


def test_unknown_environment_runs_as_production(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(env={"CORS_ENVIRONMENT": "qa", "CORS_ALLOW_ORIGINS": "https://a.example.com"})
    assert server.preflight("http://localhost:3000", "GET").status == 403
    assert any("unrecognised value 'qa'" in str(line["event"]) for line in log_lines(server))


def test_flag_beats_env(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(
        env={"CORS_ENVIRONMENT": "development", "CORS_ALLOW_ORIGINS": "https://a.example.com"},
        args=["--environment", "production"],
    )
    assert server.preflight("http://localhost:3000", "GET").status == 403


def test_rejections_logged_throttled_allowed_not_logged(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server({"allow_origins": ["https://a.example.com"], "rate_limit": {"enabled": False}})
    for i in range(300):
        server.preflight(f"https://evil{i}.example.com", "GET")
    for _ in range(50):
        server.preflight("https://a.example.com", "GET")
    lines = log_lines(server)
    rejected = [line for line in lines if line["event"] == "preflight rejected"]
    assert 1 <= len(rejected) <= 40
    assert rejected[0]["reason"] == "origin_not_allowed"
    assert rejected[0]["level"] == "info"
    assert not any(line.get("result") == "allowed" for line in lines)
    assert len(lines) < 60
