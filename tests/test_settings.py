from pathlib import Path

import pytest

from cors_handler.settings import DEFAULT_ORIGINS, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CORS_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    s = load_settings()
    assert s.environment == "production"
    assert s.allow_origins == DEFAULT_ORIGINS
    assert s.allow_methods == ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    assert s.allow_headers == ["content-type", "authorization"]
    assert s.max_age == 86400
    assert s.rate_limit.average == 1200 and s.rate_limit.period == 60 and s.rate_limit.burst == 300
    assert s.rate_limit.max_clients == 100_000 and s.rate_limit.depth == 0
    assert s.cache_size == 10_000
    assert s.dev_private_cidrs == ["172.16.21.0/24", "172.16.19.0/24", "192.168.1.0/24"]
    assert s.uses_builtin_origins()


def test_env_lists_comma_separated_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.com, https://b.com")
    monkeypatch.setenv("CORS_ALLOW_METHODS", '["GET", "PUT"]')
    monkeypatch.setenv("CORS_RATE_LIMIT__EXCLUDED_IPS", "10.0.0.0/8,127.0.0.1/32")
    s = load_settings()
    assert s.allow_origins == ["https://a.com", "https://b.com"]
    assert s.allow_methods == ["GET", "PUT"]
    assert s.rate_limit.excluded_ips == ["10.0.0.0/8", "127.0.0.1/32"]


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path, "environment: staging\nmax_age: 600\ncache_size: 7\nrate_limit:\n  burst: 10\n  average: 60\n"
    )
    monkeypatch.setenv("CORS_POLICY_FILE", path)
    monkeypatch.setenv("CORS_MAX_AGE", "1200")
    monkeypatch.setenv("CORS_ENVIRONMENT", "development")
    monkeypatch.setenv("CORS_RATE_LIMIT__BURST", "300")
    s = load_settings(environment="production")
    assert s.environment == "production"  # flag beats env and file
    assert s.max_age == 1200  # env beats file
    assert s.cache_size == 7  # file beats default
    assert s.rate_limit.burst == 300  # nested env key beats the file ...
    assert s.rate_limit.average == 60  # ... and the file's sibling key survives


def test_policy_flag_beats_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write(tmp_path, "max_age: 1\n")
    flag_file = tmp_path / "other.yaml"
    flag_file.write_text("max_age: 2\n")
    monkeypatch.setenv("CORS_POLICY_FILE", env_file)
    assert load_settings(policy_file=str(flag_file)).max_age == 2


def test_unknown_keys_in_file_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "allow_origin: [https://a.com]\nroutes:\n  - name: x\n    path_prefix: /x\n    maxage: 1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(policy_file=path)
    names = {e.setting for e in info.value.errors}
    assert names == {"allow_origin", "routes[0].maxage"}
    assert all(e.message == "unknown setting" for e in info.value.errors)


def test_type_errors_are_all_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_MAX_AGE", "a day")
    monkeypatch.setenv("CORS_RATE_LIMIT__BURST", "lots")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert {e.setting for e in info.value.errors} == {"max_age", "rate_limit.burst"}


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must hold a YAML mapping"), ("a: [", "not valid YAML"), ("policy_file: x\n", "cannot be set")],
)
def test_bad_policy_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(policy_file=write(tmp_path, text))
    assert info.value.errors[0].setting == "policy_file"
    assert message in info.value.errors[0].message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(policy_file=str(tmp_path / "nope.yaml"))
    assert info.value.errors[0].setting == "policy_file"
    assert "cannot read" in info.value.errors[0].message


def test_empty_policy_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(policy_file=write(tmp_path, "")).allow_origins == DEFAULT_ORIGINS


def test_route_settings_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes:\n  - name: v2\n    path_prefix: /api/v2\n    allow_origins: [https://b.com]\n    enabled: true\n",
    )
    route = load_settings(policy_file=path).routes[0]
    assert route.name == "v2" and route.allow_origins == ["https://b.com"] and route.max_age is None
