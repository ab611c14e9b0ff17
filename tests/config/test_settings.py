import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cors_handler.config.compile import build
from cors_handler.config.errors import ConfigError, Findings
from cors_handler.config.policyfile import PolicyFileError, parse_policy_file, read_policy_file
from cors_handler.config.settings import DEFAULT_ORIGINS, check_environment, load_settings

from ..conftest import write_policy as write


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CORS_"):
            monkeypatch.delenv(key)


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


def codes(info: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {f.setting: f.code for f in info.value.findings}


def test_unknown_keys_in_file_are_named_with_the_closest_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "alow_origins: [https://a.com]\nroutes:\n  - name: x\n    path_prefix: /x\n    maxage: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(policy_file=path)
    assert codes(info) == {"alow_origins": "unknown_setting", "routes[0].maxage": "unknown_setting"}
    fixes = {f.setting: f.fix for f in info.value.findings}
    assert fixes == {"alow_origins": "did you mean 'allow_origins'?", "routes[0].maxage": "did you mean 'max_age'?"}


def test_type_errors_are_all_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_MAX_AGE", "a day")
    monkeypatch.setenv("CORS_RATE_LIMIT__BURST", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert codes(info) == {"max_age": "invalid_value", "rate_limit.burst": "invalid_value"}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("- a\n- b\n", "policy_file_not_mapping", id="list"),
        pytest.param("a: [", "policy_file_yaml", id="bad-yaml"),
        pytest.param("policy_file: x\n", "policy_file_nested", id="nested"),
        pytest.param("", "policy_file_empty", id="empty"),
        pytest.param(" \n\t\n  ", "policy_file_empty", id="whitespace"),
        pytest.param("# nothing yet\n", "policy_file_empty", id="comments-only"),
    ],
)
def test_bad_policy_file(tmp_path: Path, text: str, code: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(policy_file=write(tmp_path, text))
    assert codes(info) == {"policy_file": code}


def test_empty_policy_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    """Issue 17 item 1 (startup half): an empty file used to mean "all defaults"."""
    with pytest.raises(ConfigError) as info:
        load_settings(policy_file=write(tmp_path, ""))
    [finding] = info.value.errors
    assert (finding.setting, finding.code, finding.message) == ("policy_file", "policy_file_empty",
                                                                 "policy file is empty")  # fmt: skip


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(policy_file=str(tmp_path / "nope.yaml"))
    assert codes(info) == {"policy_file": "policy_file_unreadable"}


def test_explicit_empty_mapping_means_defaults(tmp_path: Path) -> None:
    assert load_settings(policy_file=write(tmp_path, "{}\n")).allow_origins == DEFAULT_ORIGINS


def test_a_file_changed_while_read_is_read_again(tmp_path: Path) -> None:
    """Issue 17 item 1 (reload half): bytes read while the file changed are never used."""
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\nallow_origins: [https://a.example]\n")
    final = "max_age: 2\nallow_origins: [https://b.example, https://c.example]\n"
    writes = iter([final[:20], final])  # the editor's two in-place writes land during the first two reads

    def write_next() -> None:
        text = next(writes, None)
        if text is not None:
            path.write_text(text)

    assert read_policy_file(str(path), after_read=write_next).decode() == final


def replace_by_rename(path: Path) -> None:
    """A ConfigMap-style swap: a new file renamed over the old one (a new inode)."""
    fresh = path.with_name("fresh")
    fresh.write_text("max_age: 3\n")
    os.replace(fresh, path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.write_text(p.read_text() + "#"), id="appended"),
        pytest.param(lambda p: p.write_text("" if p.read_text() else "max_age: 2\n"), id="truncated"),
    ],
)
def test_a_file_that_keeps_changing_is_refused(tmp_path: Path, change: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\n")
    calls = []

    def keep_changing() -> None:
        calls.append(1)
        change(path)

    with pytest.raises(PolicyFileError) as info:
        read_policy_file(str(path), after_read=keep_changing)
    assert info.value.code == "policy_file_changing"
    assert len(calls) == 3


def test_a_file_replaced_after_it_was_opened_is_a_complete_version(tmp_path: Path) -> None:
    """A rename over the file (ConfigMap swap) leaves the opened version whole: it is used, the new one reloads next."""
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\n")
    assert read_policy_file(str(path), after_read=lambda: replace_by_rename(path)) == b"max_age: 1\n"
    assert path.read_text() == "max_age: 3\n"


def test_an_unchanged_file_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\n")
    calls = []
    assert read_policy_file(str(path), after_read=lambda: calls.append(1)) == b"max_age: 1\n"
    assert calls == [1]


def test_a_reload_read_waits_until_the_file_is_quiet(tmp_path: Path) -> None:
    """Issue 26 item 6: the half of an in-place write, paused mid-file, parsed and was applied."""
    path = tmp_path / "policy.yaml"
    final = "max_age: 2\nroutes:\n- path_prefix: /admin\n  allow_origins: [https://admin.example]\n"
    half = final[: final.index("  allow_origins")]
    path.write_text(half)  # the writer pauses here (a valid file: /admin would inherit the top level)
    with path.open("r+") as handle:
        rest = threading.Timer(0.15, lambda: (handle.seek(len(half)), handle.write(final[len(half) :]), handle.flush()))
        rest.start()
        started = time.monotonic()
        data = read_policy_file(str(path), quiet=0.4)
        rest.join()
    assert data.decode() == final
    assert time.monotonic() - started >= 0.4  # quiet for 0.4 s after the last write, at 0.15 s
    assert read_policy_file(str(path)).decode() == final  # without ``quiet`` (startup, check, SIGHUP): at once


def test_a_file_that_is_never_quiet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\n")
    stop = threading.Event()

    def keep_writing() -> None:
        for i in range(1000):  # bounded; ends by `stop`
            if stop.wait(0.05):
                break
            path.write_text(f"max_age: {i}\n")

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        with pytest.raises(PolicyFileError) as info:
            read_policy_file(str(path), quiet=0.2)  # patience: QUIET_PATIENCE quiet periods, 1 s
    finally:
        stop.set()
        writer.join()
    assert info.value.code == "policy_file_changing"
    assert "it was not applied" in info.value.message


def test_an_old_file_is_quiet_at_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("max_age: 1\n")
    os.utime(path, (time.time() - 60, time.time() - 60))  # written a minute ago (a file renamed into place)
    started = time.monotonic()
    assert read_policy_file(str(path), quiet=5) == b"max_age: 1\n"
    assert time.monotonic() - started < 2


BIG = 100_000_000_000_000_000_000  # above 64 bits


@pytest.mark.parametrize(
    ("text", "setting", "code"),
    [
        pytest.param(f"max_age: {BIG}", "max_age", "out_of_range", id="max_age-above-64-bits"),
        pytest.param(f"max_age: -{BIG}", "max_age", "out_of_range", id="max_age-below-64-bits"),
        pytest.param(
            f"routes: [{{path_prefix: /a, max_age: {BIG}}}]", "routes[0].max_age", "out_of_range", id="route-max_age"
        ),
        pytest.param(f"rate_limit: {{burst: {BIG}}}", "rate_limit.burst", "out_of_range", id="burst"),
        pytest.param(f"rate_limit: {{average: {BIG}}}", "rate_limit.average", "out_of_range", id="average"),
        pytest.param(f"rate_limit: {{depth: {BIG}}}", "rate_limit.depth", "out_of_range", id="depth"),
        pytest.param("cache_size: 1000001", "cache_size", "out_of_range", id="cache_size-above-max"),
        pytest.param("cache_size: 10000000000000", "cache_size", "out_of_range", id="cache_size-huge"),
        pytest.param(
            "rate_limit: {max_clients: 1000001}", "rate_limit.max_clients", "out_of_range", id="max_clients-above-max"
        ),
        pytest.param("shutdown_delay: .inf", "shutdown_delay", "invalid_value", id="infinite-seconds"),
        pytest.param("rate_limit: {period: .nan}", "rate_limit.period", "invalid_value", id="nan-seconds"),
    ],
)
def test_sizes_the_process_cannot_take_are_refused_naming_the_setting(
    tmp_path: Path, text: str, setting: str, code: str
) -> None:
    """Issue 26 items 2 and 10: a MemoryError at the swap, or orjson's TypeError, instead of a finding."""
    with pytest.raises(ConfigError) as info:
        load_settings(policy_file=write(tmp_path, text + "\n"))
    assert [(f.setting, f.code) for f in info.value.errors] == [(setting, code)]
    assert len(str(info.value)) < 300  # the value is shown cut short, never all its digits


def test_the_largest_tables_are_accepted(tmp_path: Path) -> None:
    settings = load_settings(policy_file=write(tmp_path, "cache_size: 1000000\nrate_limit: {max_clients: 1000000}\n"))
    assert (settings.cache_size, settings.rate_limit.max_clients) == (1_000_000, 1_000_000)
    assert settings.fingerprint()  # a 64-bit value hashes


def test_parse_refuses_what_read_returned_empty() -> None:
    with pytest.raises(PolicyFileError) as info:
        parse_policy_file("p.yaml", b"   \n")
    assert info.value.code == "policy_file_empty"


def test_malformed_json_in_an_environment_variable_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 2: CORS_ROUTES='[{"name": "x",' ended in pydantic_settings' SettingsError."""
    monkeypatch.setenv("CORS_ROUTES", '[{"name": "x",')
    monkeypatch.setenv("CORS_RATE_LIMIT", "{burst: 3}")
    monkeypatch.setenv("CORS_MAX_AGE", "-")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert codes(info) == {"routes": "env_invalid_json", "rate_limit": "env_invalid_json", "max_age": "invalid_value"}
    assert "CORS_ROUTES" in next(f.message for f in info.value.findings if f.setting == "routes")


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        pytest.param("CORS_MAX_AGEE", "CORS_MAX_AGE", id="typo"),
        pytest.param("CORS_ALLOWED_ORIGINS", "CORS_ALLOW_ORIGINS", id="allowed"),
        pytest.param("cors_alow_methods", "CORS_ALLOW_METHODS", id="lower-case"),
        pytest.param("CORS_RATELIMIT__BURST", "CORS_RATE_LIMIT__BURST", id="nested"),
        pytest.param("CORS_ZZZZZZZZZ", None, id="nothing-close"),
    ],
)
def test_unknown_environment_variable_warns_naming_the_closest(variable: str, closest: str | None) -> None:
    """Issue 17 item 6: CORS_MAX_AGEE=5 was ignored without a word."""
    findings = Findings()
    check_environment({variable: "5", "CORS_MAX_AGE": "5", "CORS_RATE_LIMIT__BURST": "1", "HOME": "/"}, findings)
    [finding] = findings
    assert (finding.setting, finding.code, finding.is_error) == (variable, "env_unknown", False)
    assert (closest is None) == (finding.fix is None)
    if closest:
        assert finding.fix is not None and closest in finding.fix


@pytest.mark.parametrize(
    "variable",
    ["CORS_POLICY_FILE", "CORS_CANDIDATE_POLICY_FILE", "CORS_RATE_LIMIT__DEPTH", "CORS_HANDLER_SERVICE_HOST",
     "CORS_HANDLER_PORT_8080_TCP_ADDR", "CORS_HANDLER_PORT", "CORS_LOCUST_ORIGIN", "CORS_TEST_NO_FAST_PATH"],
)  # fmt: skip
def test_known_and_service_link_variables_are_quiet(variable: str) -> None:
    findings = Findings()
    check_environment({variable: "x"}, findings)
    assert list(findings) == []


def test_unknown_environment_variable_reaches_load_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_MAX_AGEE", "5")
    findings = Findings()
    from cors_handler.config.settings import load

    loaded = load({}, findings)
    assert loaded.settings.max_age == 86400
    assert [(f.setting, f.code) for f in findings] == [("CORS_MAX_AGEE", "env_unknown")]


def test_route_without_name(tmp_path: Path) -> None:
    """Issue 17 item 5 (settings half): routes[0].name was required."""
    route = load_settings(policy_file=write(tmp_path, "routes:\n  - path_prefix: /api/v2\n")).routes[0]
    assert route.name is None and route.path_prefix == "/api/v2"


def test_route_settings_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes:\n  - name: v2\n    path_prefix: /api/v2\n    allow_origins: [https://b.com]\n    enabled: true\n",
    )
    route = load_settings(policy_file=path).routes[0]
    assert route.name == "v2" and route.allow_origins == ["https://b.com"] and route.max_age is None


def every_finding(path: str) -> list[tuple[str, str, str, str | None]]:
    """(setting, code, message, fix) of every finding of every stage, warnings included."""
    try:
        compiled = build({"policy_file": path})
    except ConfigError as exc:
        return [(f.setting, f.code, f.message, f.fix) for f in exc.findings]
    return [(f.setting, f.code, f.message, f.fix) for f in compiled.warnings]


# Issue 29 item 3: each of these got a message that did not say what was wrong (or said it several times).
MESSAGES = [
    pytest.param("allow_origins: [https://a.com\nmax_age: 3\n",
                 [("policy_file", "policy_file_yaml", "policy.yaml, line 2, column 8: expected ',' or ']', but got "
                   "':' (while parsing a flow sequence that starts at line 1, column 16)",
                   "close the [ ... ] list opened at line 1, or write one item per line with '- '")], id="yaml-syntax"),
    pytest.param("routes:\n  - name: x\n  path_prefix: /x\n",
                 [("policy_file", "policy_file_yaml", "policy.yaml, line 3, column 3: 'path_prefix' is at the column "
                   "of the '- ' items of the list at line 2, so it belongs to no item",
                   "indent 'path_prefix' to column 5, under the first key of its item")], id="key-dedented-in-list"),
    pytest.param("allow_origins: [https://a.com]\nroutes:\n  - name: x\npath_prefix: /x\n",
                 [("routes[0].path_prefix", "missing_setting", "is required",
                   "give the route a path_prefix, e.g. '- path_prefix: /api'"),
                  ("path_prefix", "unknown_setting", "'path_prefix' is a route setting, found at the top level: it "
                   "was probably dedented out of its route", "indent 'path_prefix' under its item in routes (past "
                   "the '- ')")], id="route-key-dedented-to-the-top"),
    pytest.param("allow_origins: [https://a.com]\nroutes:\n  - name: off\n    path_prefix: /x\n",
                 [("routes[0].name", "invalid_value", "YAML read this as the boolean false (an unquoted off, no or "
                   "false); it must be text", 'quote the word you wrote, e.g. name: "off"')], id="name-off"),
    pytest.param("allow_origins: [https://a.com]\nmax_age: 2h\n",
                 [("max_age", "invalid_value", "'2h' is not a number of seconds: max_age takes a plain number of "
                   "seconds", "max_age: 7200")], id="max-age-2h"),
    pytest.param("allow_origins:\n  - https://a.com,https://b.com\n",
                 [("allow_origins[0]", "origin_invalid", "'https://a.com,https://b.com' holds 2 origins separated by "
                   "commas; each list item is one origin", "one item per origin: [https://a.com, https://b.com]")],
                 id="two-origins-in-one-item"),
    pytest.param("allow_origins: [https://app.acme.io/]\nroutes:\n  - path_prefix: /a\n  - path_prefix: /b\n",
                 [("allow_origins[0]", "origin_invalid", "'https://app.acme.io/' must be scheme://host[:port], "
                   "without path or trailing slash", "use 'https://app.acme.io'")], id="bad-origin-once-with-fix"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), MESSAGES)
def test_each_mistake_is_said_once_plainly(tmp_path: Path, text: str, expected: list[Any]) -> None:
    path = write(tmp_path, text)
    assert [(s, c, m.replace(path, "policy.yaml"), f) for s, c, m, f in every_finding(path)] == expected


@pytest.mark.parametrize("text", ["", "a: [", "allow_origins: 3\n"], ids=["empty", "broken", "bad-type"])
def test_no_example_origin_warning_when_the_example_origin_is_not_in_force(tmp_path: Path, text: str) -> None:
    """Issue 29 item 3: the built-in origin warning followed an empty, missing or broken file, which is refused."""
    findings = every_finding(write(tmp_path, text))
    assert findings and all(code != "builtin_origin" for _, code, _, _ in findings)
    assert [code for _, code, _, _ in every_finding(str(tmp_path / "missing.yaml"))] == ["policy_file_unreadable"]
    assert [code for _, code, _, _ in every_finding(write(tmp_path, "{}\n"))] == ["builtin_origin"]  # really in force
