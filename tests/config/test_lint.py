import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cors_handler.config.errors import ConfigError, Finding
from cors_handler.config.lint import check_regex, foreign_admitted, foreign_origins, meant_origins, named_domain
from cors_handler.cors.origins import compile_regex

from ..conftest import make_compiled, make_policy, run_cli


def findings_of(**overrides: object) -> list[Finding]:
    try:
        return list(make_compiled(**overrides).warnings)
    except ConfigError as exc:
        return list(exc.findings)


def codes_of(**overrides: object) -> dict[str, str]:
    return {f.setting: f.code for f in findings_of(**overrides)}


def errors_of(**overrides: object) -> dict[str, Finding]:
    with pytest.raises(ConfigError) as info:
        make_policy(**overrides)
    return {e.setting: e for e in info.value.errors}


def suggested_pattern(finding: Finding) -> str | None:
    """The pattern a fix suggests (``use '<pattern>'``), if it suggests one."""
    match = re.fullmatch(r"use '(.*)'", finding.fix or "")
    return match.group(1) if match else None


@pytest.mark.parametrize(
    "pattern", ["https://*.com", "https://*.co.uk", "https://*.github.io", "http://*.herokuapp.com"]
)
def test_wildcard_over_public_suffix_is_an_error(pattern: str) -> None:
    finding = errors_of(allow_origins=[pattern])["allow_origins[0]"]
    assert finding.code == "wildcard_public_suffix"
    assert finding.fix


@pytest.mark.parametrize("pattern", ["https://*.example.com", "https://*.example.co.uk", "https://*.me.github.io"])
def test_wildcard_under_a_registrable_domain_is_fine(pattern: str) -> None:
    make_policy(allow_origins=[pattern])


@pytest.mark.parametrize(
    ("pattern", "code", "fixed", "bypass"),
    [
        pytest.param("^https://app.example.com$", "regex_unescaped_dot", r"^https://app\.example\.com$",
                     "https://appxexample.com", id="unescaped-dot"),
        pytest.param(r"https://.*example\.com", "regex_no_dot_boundary", r"https://([a-z0-9-]+\.)*example\.com",
                     "https://evilexample.com", id="no-dot-boundary"),
        pytest.param(r"https://app\.example\.com.*", "regex_trailing_wildcard", r"https://app\.example\.com(:[0-9]+)?",
                     "https://app.example.com.evil.net", id="trailing-wildcard"),
    ],
)  # fmt: skip
def test_dangerous_regexes_are_errors_with_a_corrected_pattern(pattern: str, code: str, fixed: str,
                                                               bypass: str) -> None:  # fmt: skip
    # the bypass really works with the pattern as written ...
    assert compile_regex(pattern).fullmatch(bypass) is not None
    finding = errors_of(allow_origins=[], allow_origin_regex=[pattern])["allow_origin_regex[0]"]
    assert finding.code == code
    assert suggested_pattern(finding) == fixed
    # ... and not with the suggested fix, which still accepts the intended origin
    assert compile_regex(fixed).fullmatch(bypass) is None
    assert compile_regex(fixed).fullmatch("https://app.example.com") is not None


# Every kind of regex the linter has something to say about, with origins its author meant and one they did not.
# For each, a fix that is a pattern must match every meant origin and not the bypass (issue 17 item 7:
# `https://.*` got `https://(:[0-9]+)?`, which matches no origin at all).
SUGGESTION_CASES = [
    pytest.param(r"https://.*", ["https://app.example.com", "https://x.org"], "https://evil.invalid", id="any-https"),
    pytest.param(r"https?://.+", ["https://app.example.com", "http://x.org"], "http://evil.invalid", id="any-http"),
    pytest.param(r"^https://.*$", ["https://a.example.com"], "https://evil.invalid", id="anchored-any"),
    pytest.param(r"https://.*\.example\.com.*", ["https://a.example.com", "https://a.b.example.com:8443"],
                 "https://a.example.com.evil.net", id="both-ends"),
    pytest.param(r"https://.*example\.com.*", ["https://example.com", "https://a.example.com"],
                 "https://evilexample.com", id="boundary-and-trailing"),
    pytest.param("https://app.example.com.*", ["https://app.example.com", "https://app.example.com:8443"],
                 "https://appxexample.com", id="dot-and-trailing"),
    pytest.param(r"https://(app|api)\.example\.com.*", ["https://app.example.com", "https://api.example.com"],
                 "https://app.example.com.evil.net", id="alternation"),
    pytest.param(r"https?://.*\.dev\.example\.com.+", ["http://a.dev.example.com:3000", "https://b.dev.example.com"],
                 "https://a.dev.example.com.evil.net", id="plus"),
    pytest.param("https://.*.example.com", ["https://a.example.com", "https://a.b.example.com"],
                 "https://aexample.com", id="unescaped-before-domain"),
    pytest.param(r"https://[^/]+", ["https://app.example.com"], "https://evil.invalid", id="any-host-class"),
    pytest.param(r"https://app\.example\.com:.*", ["https://app.example.com:8443"], "https://app.example.com:x",
                 id="port-wildcard"),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "meant", "bypass"), SUGGESTION_CASES)
def test_every_suggested_fix_matches_the_origins_meant(pattern: str, meant: list[str], bypass: str) -> None:
    for credentials in (False, True):
        for finding in findings_of(allow_origins=[], allow_origin_regex=[pattern], allow_credentials=credentials):
            fixed = suggested_pattern(finding)
            if finding.setting != "allow_origin_regex[0]" or fixed is None:
                continue
            regex = compile_regex(fixed)
            assert [m for m in meant if regex.fullmatch(m) is None] == [], fixed
            assert regex.fullmatch(bypass) is None, fixed


@given(
    scheme=st.sampled_from(["https://", "https?://", "^https://", "http://"]),
    head=st.sampled_from(["", ".*", ".+", r".*\.", r"([a-z0-9-]+\.)*", "app.", r"app\."]),
    domain=st.sampled_from(["example.com", r"example\.com", r"dev\.example\.co\.uk", "example.org"]),
    tail=st.sampled_from(["", ".*", ".+", "$", "(:[0-9]+)?", ".*$", ":.*"]),
)
def test_suggestions_for_composed_regexes(scheme: str, head: str, domain: str, tail: str) -> None:
    """Whatever the linter suggests for a composed regex matches what the regex meant under its domain."""
    pattern = scheme + head + domain + tail
    finding = check_regex("allow_origin_regex[0]", pattern)
    if finding is None or suggested_pattern(finding) is None:
        return
    fixed = compile_regex(suggested_pattern(finding) or "")
    meant = meant_origins(pattern, compile_regex(pattern))
    assert meant, pattern
    assert all(fixed.fullmatch(m) is not None for m in meant), (pattern, finding.fix)
    assert not any(fixed.fullmatch(f) is not None for f in foreign_origins(pattern)), (pattern, finding.fix)


@pytest.mark.parametrize(
    "pattern",
    [r"^https?://localhost(:[0-9]+)?$", r"^https?://127\.0\.0\.1(:[0-9]+)?$", r"^https?://.*\.dev\.pvpipe\.local$",
     r"https://[a-z.]+\.example\.com", r"https://(app|api)\.example\.com", r"https://pr-[0-9]{1,5}\.example\.com",
     r"https://app-.*\.example\.com", r"https://app-.*test\.example\.com", r"https://pr-.*\.dev\.example\.co\.uk"],
)  # fmt: skip
def test_safe_regexes_pass(pattern: str) -> None:
    assert check_regex("allow_origin_regex[0]", pattern) is None
    assert foreign_admitted(pattern, compile_regex(pattern)) is None
    assert codes_of(allow_origins=[], allow_origin_regex=[pattern], allow_credentials=True) == {}


STAR_IN_DISGUISE = [
    pytest.param(r"https://[^/]+", "https://evil.invalid", id="any-host-class"),
    pytest.param(r"https://.*", "https://evil.invalid", id="any-https"),
    pytest.param(r"https?://.+", "http://evil.invalid", id="any-http"),
    pytest.param(r"https://[a-z0-9.-]+", "https://evil.invalid", id="host-class"),
    pytest.param(r"https://[a-z]+\.[a-z]+", "https://evil.invalid", id="two-labels"),
    pytest.param(r"https://[a-z]+example\.com", "https://evilexample.com", id="letters-glued"),
    pytest.param(r"(https|http)://[^.]+\.[^.]+(:[0-9]+)?", "https://evil.invalid", id="scheme-group"),
    # issue 26 item 8: look-alike registrable domains around the literal domain, and hosts that go on
    pytest.param(r"^https://[0-9]*example\.com$", "https://1example.com", id="digits-glued"),
    pytest.param(r"^https://(\w+-)?example\.com$", "https://evil-example.com", id="hyphen-glued"),
    pytest.param(r"^http://[0-9]+example\.com:8080$", "http://1example.com:8080", id="http-with-port"),
    pytest.param(r"^https://app\.example\.com(.*)$", "https://app.example.com.evil.net", id="group-wildcard-end"),
    pytest.param(r"^https://app\.example\.com[^/]*$", "https://app.example.com.evil.net", id="class-end"),
    pytest.param(r"^https://app\.example\.com\S*$", "https://app.example.com-evil.net", id="non-space-end"),
    pytest.param(r"^https://(app\.example\.com|[0-9]*partner\.net)$", "https://1partner.net", id="second-domain"),
]


@pytest.mark.parametrize(("pattern", "bypass"), STAR_IN_DISGUISE)
def test_regex_admitting_foreign_domains_is_star_in_disguise(pattern: str, bypass: str) -> None:
    """Issue 17 item 8 (`https://[^/]+` with credentials passed check) and issue 26 item 8 (look-alikes passed).

    Judged like `*` (design.md): an error with credentials and at the top level in production, a
    warning on a route in production (`public_route`, as for `*`) and at the top level elsewhere.
    """
    assert compile_regex(pattern).fullmatch(bypass) is not None  # the bypass is real
    assert foreign_admitted(pattern, compile_regex(pattern)) is not None
    regex = {"allow_origins": [], "allow_origin_regex": [pattern]}
    assert codes_of(**regex, allow_credentials=True) == {"allow_origin_regex[0]": "regex_any_host_with_credentials"}
    assert codes_of(**regex) == {"allow_origin_regex[0]": "regex_any_host_in_production"}
    assert errors_of(**regex)["allow_origin_regex[0]"].is_error
    assert codes_of(**regex, environment="staging") == {"allow_origin_regex[0]": "regex_any_host"}
    on_route = {"allow_origins": ["https://a.example.org"], "routes": [{"path_prefix": "/p", **regex}]}
    assert codes_of(**on_route) == {"routes[0].allow_origin_regex[0]": "public_route"}  # like '*' (issue 28)
    assert not findings_of(**on_route)[0].is_error
    assert codes_of(**on_route, environment="staging") == {"routes[0].allow_origin_regex[0]": "regex_any_host"}


def test_regex_probe_uses_each_routes_credentials() -> None:
    findings = findings_of(
        allow_origins=["https://a.example.com"],
        routes=[{"name": "partner", "path_prefix": "/p", "allow_origin_regex": [r"https://[^/]+"],
                 "allow_credentials": True}],
    )  # fmt: skip
    assert [(f.setting, f.code, f.is_error) for f in findings] == [
        ("routes[0].allow_origin_regex[0]", "regex_any_host_with_credentials", True)
    ]


def test_inherited_foreign_regex_with_a_routes_credentials_is_reported_at_its_credentials() -> None:
    findings = findings_of(
        environment="staging", allow_origins=[], allow_origin_regex=[r"https://[^/]+"],
        routes=[{"path_prefix": "/p", "allow_credentials": True}, {"path_prefix": "/q"}],
    )  # fmt: skip
    assert [(f.setting, f.code) for f in findings] == [
        ("allow_origin_regex[0]", "regex_any_host"),
        ("routes[0].allow_credentials", "regex_any_host_with_credentials"),
    ]
    assert "inherited from allow_origin_regex[0]" in findings[1].message


@pytest.mark.parametrize(
    ("pattern", "bypass"),
    [
        pytest.param(r"https://.*example\.com", "https://evilexample.com", id="leading"),
        pytest.param(r"https://api-.*example\.com", "https://api-evilexample.com", id="after-a-prefix"),
        pytest.param(r"https://(www\.)?.*example\.co\.uk", "https://evilexample.co.uk", id="after-a-group"),
        pytest.param(r"https://.+example\.(com|net)", "https://evilexample.net", id="domain-cannot-be-told"),
    ],
)
def test_wildcard_running_into_the_registrable_domain_is_an_error(pattern: str, bypass: str) -> None:
    assert compile_regex(pattern).fullmatch(bypass) is not None
    finding = check_regex("allow_origin_regex[0]", pattern)
    assert finding is not None and finding.code == "regex_no_dot_boundary"
    fixed = suggested_pattern(finding)
    if fixed is not None:
        assert compile_regex(fixed).fullmatch(bypass) is None


def test_named_domain() -> None:
    assert named_domain(r"^https://app\.example\.com(:[0-9]+)?$") == "app.example.com"
    assert named_domain(r"https://.*example\.com.*") == "example.com"
    assert named_domain(r"https://.*") is None


def test_warnings_with_setting_code_and_fix() -> None:
    findings = findings_of(
        allow_origins=["https://app.example.com", "null", "http://app.example.com", "http://localhost:3000",
                       "https://10.1.2.3", "http://[::1]:8080"],
        debug=True,
    )  # fmt: skip
    assert {f.setting: f.code for f in findings} == {
        "allow_origins[1]": "null_origin",
        "allow_origins[2]": "http_origin_in_production",
        "allow_origins[3]": "private_origin_in_production",
        "allow_origins[4]": "private_origin_in_production",
        "allow_origins[5]": "private_origin_in_production",
        "debug": "debug_in_production",
    }
    assert all(not f.is_error and f.fix for f in findings)
    assert next(f.fix for f in findings if f.setting == "allow_origins[2]") == "use 'https://app.example.com'"


def test_environment_specific_warnings() -> None:
    # outside production, http and localhost origins are normal
    assert codes_of(environment="development", allow_origins=["http://localhost:3000"]) == {}
    dev = codes_of(environment="development", allow_origins=["https://a.com"], allow_credentials=True)
    assert dev == {"allow_credentials": "credentials_in_development"}
    assert codes_of(environment="production", allow_origins=["https://a.com"], allow_credentials=True) == {}


@pytest.mark.e2e
def test_check_refuses_and_prints_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text("allow_origins: ['https://*.co.uk']\nallow_origin_regex: ['^https://app.example.com$']\n")
    result = run_cli("check", "--policy", str(path), "--format", "json")
    assert result.returncode == 2
    import json

    findings = {f["setting"]: f for f in json.loads(result.stdout)}
    assert findings["allow_origins[0]"]["code"] == "wildcard_public_suffix"
    assert findings["allow_origin_regex[0]"]["code"] == "regex_unescaped_dot"
    assert findings["allow_origin_regex[0]"]["fix"] == r"use '^https://app\.example\.com$'"
