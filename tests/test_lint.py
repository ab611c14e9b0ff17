import pytest

from cors_handler.lint import check_regex
from cors_handler.origins import compile_regex
from cors_handler.policy import PolicyError

from .conftest import make_policy, run_cli


def errors_of(**overrides: object) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        make_policy(**overrides)
    return {e.setting: e.message for e in info.value.errors}


@pytest.mark.parametrize(
    "pattern", ["https://*.com", "https://*.co.uk", "https://*.github.io", "http://*.herokuapp.com"]
)
def test_wildcard_over_public_suffix_is_an_error(pattern: str) -> None:
    message = errors_of(allow_origins=[pattern])["allow_origins[0]"]
    assert "public suffix" in message
    assert "fix:" in message


@pytest.mark.parametrize("pattern", ["https://*.example.com", "https://*.example.co.uk", "https://*.me.github.io"])
def test_wildcard_under_a_registrable_domain_is_fine(pattern: str) -> None:
    make_policy(allow_origins=[pattern])


@pytest.mark.parametrize(
    ("pattern", "problem", "fixed", "bypass"),
    [
        ("^https://app.example.com$", "unescaped '.'", r"^https://app\.example\.com$", "https://appxexample.com"),
        (r"https://.*example\.com", "no dot boundary", r"https://([a-z0-9-]+\.)*example\.com",
         "https://evilexample.com"),
        (r"https://app\.example\.com.*", "trailing", r"https://app\.example\.com(:[0-9]+)?",
         "https://app.example.com.evil.net"),
    ],
)  # fmt: skip
def test_dangerous_regexes_are_errors_with_a_corrected_pattern(pattern: str, problem: str, fixed: str,
                                                               bypass: str) -> None:  # fmt: skip
    # the bypass really works with the pattern as written ...
    assert compile_regex(pattern).fullmatch(bypass) is not None
    message = errors_of(allow_origins=[], allow_origin_regex=[pattern])["allow_origin_regex[0]"]
    assert problem in message
    assert f"fix: '{fixed}'" in message
    # ... and not with the suggested fix, which still accepts the intended origin
    assert compile_regex(fixed).fullmatch(bypass) is None
    assert compile_regex(fixed).fullmatch("https://app.example.com") is not None


@pytest.mark.parametrize(
    "pattern",
    [r"^https?://localhost(:[0-9]+)?$", r"^https?://127\.0\.0\.1(:[0-9]+)?$", r"^https?://.*\.dev\.pvpipe\.local$",
     r"https://[a-z.]+\.example\.com", r"https://(app|api)\.example\.com", r"https://pr-[0-9]{1,5}\.example\.com"],
)  # fmt: skip
def test_safe_regexes_pass(pattern: str) -> None:
    assert check_regex("allow_origin_regex[0]", pattern) is None


def warnings_of(**overrides: object) -> list[str]:
    return list(make_policy(**overrides).warnings)


def test_warnings_with_setting_and_fix() -> None:
    warnings = warnings_of(
        allow_origins=["https://app.example.com", "null", "http://app.example.com", "http://localhost:3000",
                       "https://10.1.2.3", "http://[::1]:8080"],
        debug=True,
    )  # fmt: skip
    by_setting = {w.split(":", 1)[0]: w for w in warnings}
    assert "'null' is sent by sandboxed iframes" in by_setting["allow_origins[1]"]
    assert "plain http in production" in by_setting["allow_origins[2]"]
    assert "fix: use 'https://app.example.com'" in by_setting["allow_origins[2]"]
    for i in (3, 4, 5):
        assert "private-network origin in production" in by_setting[f"allow_origins[{i}]"]
    assert "fix: set debug: false" in by_setting["debug"]
    assert all("fix:" in w for w in warnings if not w.startswith("allow_origins: the built-in"))


def test_environment_specific_warnings() -> None:
    # outside production, http and localhost origins are normal
    assert warnings_of(environment="development", allow_origins=["http://localhost:3000"]) == []
    dev_credentials = warnings_of(environment="development", allow_origins=["https://a.com"], allow_credentials=True)
    assert any(w.startswith("allow_credentials:") and "fix:" in w for w in dev_credentials)
    assert warnings_of(environment="production", allow_origins=["https://a.com"], allow_credentials=True) == []


def test_check_refuses_and_prints_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text("allow_origins: ['https://*.co.uk']\nallow_origin_regex: ['^https://app.example.com$']\n")
    result = run_cli("check", "--policy", str(path))
    assert result.returncode == 2
    assert "error: allow_origins[0]:" in result.stderr
    assert "error: allow_origin_regex[0]:" in result.stderr
    assert r"fix: '^https://app\.example\.com$'" in result.stderr
