import pytest

from cors_handler.config.compile import compile_settings, normalize_environment
from cors_handler.config.errors import ConfigError
from cors_handler.config.settings import Settings, load_settings
from cors_handler.cors.origins import parse_origin

from ..conftest import make_compiled, make_policy


def errors_of(**overrides: object) -> dict[str, str]:
    """{setting: code} of every error."""
    with pytest.raises(ConfigError) as info:
        make_policy(**overrides)
    return {e.setting: e.code for e in info.value.errors}


def warnings_of(**overrides: object) -> dict[str, str]:
    return {w.setting: w.code for w in make_compiled(**overrides).warnings}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("production", "production"), ("prod", "production"), ("PROD", "production"), ("staging", "staging"),
     ("uat", "staging"), ("development", "development"), ("dev", "development"), ("", "production"),
     (" Dev ", "development")],
    ids=[
        "production", "prod-alias", "alias-in-any-case", "staging", "uat-alias", "development", "dev-alias",
        "empty-is-production", "padded-mixed-case-alias",
    ],
)  # fmt: skip
def test_environment_aliases(value: str, expected: str) -> None:
    assert normalize_environment(value) == (expected, None)


def test_unknown_environment_is_production_with_warning() -> None:
    policy = make_policy(environment="qa-7", allow_origins=["https://a.com"])
    assert policy.environment == "production"
    assert warnings_of(environment="qa-7", allow_origins=["https://a.com"]) == {"environment": "environment_unknown"}
    # and production rules apply: no localhost
    assert policy.default.origins.development is None


def test_every_error_is_listed_with_its_setting() -> None:
    errors = errors_of(
        allow_origins=["https://ok.com", "https://bad.com/", "*"],
        allow_origin_regex=["(unclosed"],
        allow_methods=["GET", "BAD METHOD"],
        allow_headers=["x-ok", "bad header"],
        max_age=-1,
        allow_credentials=True,
        dev_private_cidrs=["not-a-cidr"],
        rate_limit={"average": 0, "excluded_ips": ["10.0.0.0/33"]},
        cache_size=0,
        log_format="xml",
    )
    assert errors == {
        "allow_origins[1]": "origin_invalid",
        "allow_origins[2]": "any_origin_in_production",  # and any_origin_with_credentials, same setting
        "allow_origin_regex[0]": "regex_invalid",
        "allow_methods[1]": "token_invalid",
        "allow_headers[1]": "token_invalid",
        "max_age": "max_age_negative",
        "dev_private_cidrs[0]": "cidr_invalid",
        "rate_limit.average": "out_of_range",
        "rate_limit.excluded_ips[0]": "cidr_invalid",
        "cache_size": "out_of_range",
        "log_format": "invalid_choice",
    }


def test_empty_origins_is_an_error() -> None:
    assert errors_of(allow_origins=[], allow_origin_regex=[]) == {"allow_origins": "no_origin"}


def test_regex_alone_is_enough() -> None:
    policy = make_policy(allow_origins=[], allow_origin_regex=[r"https://[a-z]+\.example\.com"])
    assert policy.default.origins.regexes


def test_star_origin_and_exposed_headers_with_credentials_are_errors() -> None:
    """Issue 28: '*' methods and headers are allowed with credentials (echoed); '*' origins and exposed headers not."""
    errors = errors_of(
        environment="development", allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
        expose_headers=["x-id", "*"], allow_credentials=True,
    )  # fmt: skip
    assert errors == {
        "allow_origins[0]": "any_origin_with_credentials",
        "expose_headers[1]": "wildcard_with_credentials",
    }


@pytest.mark.parametrize(
    "environment", ["production", "staging", "development"], ids=["production", "staging", "development"]
)
def test_star_methods_and_headers_with_credentials_are_allowed(environment: str) -> None:
    """Issue 28: allowed with credentials, as in Fetch, jub0bs/cors and the Gateway API; '*' methods stay alone."""
    values = {"environment": environment, "allow_origins": ["https://a.com"], "allow_credentials": True}
    policy = make_policy(**values, allow_methods=["*"], allow_headers=["*", "X-Id"], expose_headers=["x-id"])
    assert (policy.default.any_method, policy.default.any_header, policy.default.headers) == (True, True, ("x-id",))
    assert [f.code for f in make_compiled(**values, allow_methods=["*"], allow_headers=["*"]).warnings] == (
        ["credentials_in_development"] if environment == "development" else []
    )
    assert errors_of(**values, allow_methods=["*", "PUT"]) == {"allow_methods": "method_wildcard_not_alone"}


def test_exposed_headers_are_compiled_as_written() -> None:
    """They are sent as written on allowed preflights: '*' where it stands, duplicates once, names' case kept."""
    policy = make_policy(allow_origins=["https://a.com"], expose_headers=["X-Id", "*", "etag", "X-Id"])
    assert policy.default.expose_headers == ("X-Id", "*", "etag")


def test_any_origin_refused_in_production_allowed_in_development() -> None:
    assert errors_of(allow_origins=["*"]) == {"allow_origins[0]": "any_origin_in_production"}
    assert make_policy(environment="development", allow_origins=["*"]).default.origins.allow_any


def test_method_wildcard_must_be_alone() -> None:
    assert errors_of(allow_methods=["*", "GET"]) == {"allow_methods": "method_wildcard_not_alone"}


def test_max_age_above_browser_caps_warns() -> None:
    assert warnings_of(allow_origins=["https://a.com"], max_age=172800) == {"max_age": "max_age_above_browser_cap"}


def test_debug_in_production_warns() -> None:
    assert warnings_of(allow_origins=["https://a.com"], debug=True) == {"debug": "debug_in_production"}


def test_builtin_example_origin_warns() -> None:
    assert warnings_of() == {"allow_origins": "builtin_origin"}
    assert warnings_of(allow_origins=["https://a.com"]) == {}


def test_routes_inherit_and_override() -> None:
    policy = make_policy(
        allow_origins=["https://a.com"],
        max_age=600,
        routes=[
            {"name": "v2", "path_prefix": "/api/v2/", "allow_origins": ["https://b.com"], "allow_credentials": True}
        ],
    )
    v2 = policy.route_for("/api/v2/items")
    assert v2.name == "v2" and v2.path_prefix == "/api/v2"
    assert v2.max_age == 600  # inherited
    assert v2.allow_credentials and not policy.default.allow_credentials
    assert v2.origins.exact == frozenset({"https://b.com"})
    assert v2.methods == policy.default.methods


def test_longest_prefix_on_segment_boundary() -> None:
    policy = make_policy(
        allow_origins=["https://a.com"],
        routes=[
            {"name": "api", "path_prefix": "/api"},
            {"name": "v2", "path_prefix": "/api/v2"},
            {"name": "off", "path_prefix": "/internal", "enabled": False},
        ],
    )
    assert policy.route_for("/api/v2").name == "v2"
    assert policy.route_for("/api/v2/x/y").name == "v2"
    assert policy.route_for("/api/v20").name == "api"
    assert policy.route_for("/api").name == "api"
    assert policy.route_for("/apix").name == "default"
    assert policy.route_for("/").name == "default"
    assert not policy.route_for("/internal/x").enabled


def test_route_errors_are_named() -> None:
    errors = errors_of(
        allow_origins=["https://a.com"],
        routes=[
            {"name": "default", "path_prefix": "/a"},
            {"name": "x", "path_prefix": "api"},
            {"name": "y", "path_prefix": "/b", "allow_origins": ["nope"], "max_age": -5},
            {"name": "z", "path_prefix": "/b/"},
        ],
    )
    assert errors == {
        "routes[0].name": "route_name_duplicate",
        "routes[1].path_prefix": "path_prefix_invalid",
        "routes[2].allow_origins[0]": "origin_invalid",
        "routes[2].max_age": "max_age_negative",
        "routes[3].path_prefix": "path_prefix_duplicate",
    }


def test_route_name_defaults_to_the_path_prefix() -> None:
    """Issue 17 item 5: a route with only a path_prefix was refused (routes[0].name: Field required)."""
    policy = make_policy(
        allow_origins=["https://a.com"],
        routes=[{"path_prefix": "/api/v2/"}, {"name": "legacy", "path_prefix": "/legacy"}, {"path_prefix": "/x"}],
    )
    assert {r.name for r in policy.routes} == {"/api/v2", "legacy", "/x"}
    assert policy.route_for("/api/v2/items").name == "/api/v2"
    # an unnamed route's prefix counts as its name: it must not clash with a named one
    assert errors_of(allow_origins=["https://a.com"], routes=[{"name": "/a", "path_prefix": "/b"},
                                                                {"path_prefix": "/a"}]) == {
        "routes[1].name": "route_name_duplicate"
    }  # fmt: skip


def test_development_policy_matches_localhost_production_does_not() -> None:
    dev = make_policy(environment="dev", allow_origins=["https://a.com"])
    prod = make_policy(environment="prod", allow_origins=["https://a.com"])
    assert dev.default.origins.development is not None
    assert prod.default.origins.development is None
    assert "strict origins only" in prod.mode_line()
    assert "localhost" in dev.mode_line() and "172.16.21.0/24" in dev.mode_line()


def test_version_is_a_content_hash() -> None:
    a = make_policy(allow_origins=["https://a.com"])
    b = make_policy(allow_origins=["https://a.com"])
    c = make_policy(allow_origins=["https://c.com"])
    assert a.version == b.version != c.version
    assert len(a.version) == 12


def test_policy_is_immutable() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    with pytest.raises(AttributeError):
        policy.environment = "development"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.default.max_age = 1  # type: ignore[misc]


def test_compile_accepts_settings_object() -> None:
    settings = Settings(allow_origins=["https://a.com"])
    assert compile_settings(settings).policy.default.origins.exact == frozenset({"https://a.com"})
    assert load_settings(allow_origins=["https://a.com"]) == settings


def findings_of(**overrides: object) -> list[tuple[str, str]]:
    """(setting, code) of every finding, errors and warnings, in order."""
    try:
        return [(f.setting, f.code) for f in make_compiled(**overrides).warnings]
    except ConfigError as exc:
        return [(f.setting, f.code) for f in exc.findings]


PATH_ONLY_ROUTES = [{"path_prefix": "/a"}, {"path_prefix": "/b"}, {"name": "c", "path_prefix": "/c"}]


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        pytest.param({"allow_origins": ["https://app.acme.io/"]}, [("allow_origins[0]", "origin_invalid")],
                     id="bad-origin"),
        pytest.param({"allow_origins": ["https://a.com", "https://b.com/", "c.com", "https://*x.com"]},
                     [("allow_origins[1]", "origin_invalid"), ("allow_origins[2]", "origin_invalid"),
                      ("allow_origins[3]", "origin_invalid")], id="three-bad-origins"),
        pytest.param({"allow_origins": [], "allow_origin_regex": ["(unclosed"]},
                     [("allow_origin_regex[0]", "regex_invalid")], id="bad-regex"),
        pytest.param({"allow_origins": ["https://a.com"], "allow_methods": ["GET", "BAD METHOD"],
                      "allow_headers": ["x ok"], "max_age": -1},
                     [("allow_methods[1]", "token_invalid"), ("allow_headers[0]", "token_invalid"),
                      ("max_age", "max_age_negative")], id="tokens-and-max-age"),
        pytest.param({"allow_origins": [], "allow_origin_regex": []}, [("allow_origins", "no_origin")],
                     id="no-origin"),
        pytest.param({"allow_origins": ["https://a.com", "null", "http://b.com"], "max_age": 90000},
                     [("allow_origins[1]", "null_origin"), ("allow_origins[2]", "http_origin_in_production"),
                      ("max_age", "max_age_above_browser_cap")], id="warnings"),
        pytest.param({"allow_origins": ["https://*.co.uk"]}, [("allow_origins[0]", "wildcard_public_suffix")],
                     id="public-suffix"),
        pytest.param({"environment": "development", "allow_origins": ["*"], "allow_credentials": True},
                     [("allow_origins[0]", "any_origin_with_credentials"),
                      ("allow_credentials", "credentials_in_development")], id="star-with-credentials"),
    ],
)  # fmt: skip
def test_a_top_level_mistake_is_one_finding_at_its_own_setting(top: dict[str, object], expected: list) -> None:
    """Issue 29 item 3: a bad top-level origin was also reported at routes[i].allow_origins[0] for every route."""
    assert findings_of(**top, routes=PATH_ONLY_ROUTES) == expected


def test_a_routes_own_mistake_is_reported_at_the_route() -> None:
    assert findings_of(
        allow_origins=["https://a.com"],
        routes=[{"path_prefix": "/a", "allow_origins": ["https://b.com/"]}, {"path_prefix": "/b", "max_age": -1}],
    ) == [("routes[0].allow_origins[0]", "origin_invalid"), ("routes[1].max_age", "max_age_negative")]


def test_an_inherited_star_meets_a_routes_credentials_at_its_allow_credentials() -> None:
    findings = findings_of(
        environment="staging", allow_origins=["*"], allow_headers=["*"], expose_headers=["*"],
        routes=[{"path_prefix": "/a", "allow_credentials": True}, {"path_prefix": "/b"}],
    )  # fmt: skip
    assert findings == [  # '*' headers are allowed with credentials (issue 28); '*' origins and exposed headers not
        ("routes[0].allow_credentials", "any_origin_with_credentials"),
        ("routes[0].allow_credentials", "wildcard_with_credentials"),
    ]
    with pytest.raises(ConfigError) as info:
        make_policy(
            environment="staging", allow_origins=["*"], routes=[{"path_prefix": "/a", "allow_credentials": True}]
        )
    assert "inherited from allow_origins[0]" in info.value.errors[0].message


def test_star_on_a_route_in_production_is_a_public_route() -> None:
    """Issue 29 item 4: the contract allows '*' on an explicit route in production without credentials."""
    public = {"allow_origins": ["https://a.com"], "routes": [{"path_prefix": "/pub", "allow_origins": ["*"]}]}
    assert findings_of(**public) == [("routes[0].allow_origins[0]", "public_route")]
    assert make_policy(**public).route_for("/pub/x").origins.allow_any
    # still errors: '*' at the top level in production, and '*' with credentials anywhere
    assert errors_of(allow_origins=["*"], routes=[{"path_prefix": "/pub", "allow_origins": ["*"]}]) == {
        "allow_origins[0]": "any_origin_in_production"
    }
    assert errors_of(
        allow_origins=["https://a.com"],
        routes=[{"path_prefix": "/pub", "allow_origins": ["*"], "allow_credentials": True}],
    ) == {"routes[0].allow_origins[0]": "any_origin_with_credentials"}
    # outside production '*' is no finding at all
    assert findings_of(**public, environment="staging") == []


def test_a_foreign_regex_on_a_route_in_production_is_a_public_route() -> None:
    """Issue 28: '*' in disguise on an explicit route is judged like '*' there: a public endpoint, a warning."""
    regex = {"allow_origins": [], "allow_origin_regex": [r"^https://[^/]+$"]}
    public = {"allow_origins": ["https://a.com"], "routes": [{"path_prefix": "/pub", **regex}]}
    warnings = make_compiled(**public).warnings  # accepted: a warning, no error
    assert [(f.setting, f.code) for f in warnings] == [("routes[0].allow_origin_regex[0]", "public_route")]
    assert "public endpoint" in warnings[0].message
    assert (
        make_policy(**public)
        .route_for("/pub")
        .origins.match("https://anyone.invalid", parse_origin("https://anyone.invalid"))
    )
    # at the top level in production, and with credentials anywhere, it stays an error
    assert errors_of(**regex) == {"allow_origin_regex[0]": "regex_any_host_in_production"}
    assert errors_of(allow_origins=["https://a.com"],
                     routes=[{"path_prefix": "/pub", **regex, "allow_credentials": True}]) == {
        "routes[0].allow_origin_regex[0]": "regex_any_host_with_credentials"}  # fmt: skip
    # outside production it is the regex warning, as before
    assert findings_of(**public, environment="staging") == [("routes[0].allow_origin_regex[0]", "regex_any_host")]


def test_inherited_values_are_compiled_once_and_shared() -> None:
    """Issue 26 item 9: each route compiled its own copy of the inherited regexes (1,000 x 100: 9 s, 593 MB)."""
    regexes = [rf"^https://[a-z]+\.t{i}\.example\.com$" for i in range(50)]
    policy = make_policy(
        allow_origins=["https://app.example.com"], allow_origin_regex=regexes,
        routes=[*({"path_prefix": f"/s{i}"} for i in range(20)),
                {"path_prefix": "/own", "allow_origins": ["https://b.example.com"]}],
    )  # fmt: skip
    default = policy.default
    path_only = [r for r in policy.routes if r.name != "/own"]
    assert all(r.origins is default.origins for r in path_only)
    own = policy.route_for("/own")
    assert own.origins is not default.origins and own.origins.regexes is default.origins.regexes
    assert own.origins._regex_set is default.origins._regex_set is not None  # one RE2 set for the regexes
    for route in (default, own):
        assert route.origins.match("https://x.t3.example.com", parse_origin("https://x.t3.example.com")) == (
            r"regex ^https://[a-z]+\.t3\.example\.com$"
        )


def test_each_route_matches_its_own_origins_however_many_routes() -> None:
    """Routes' matchers are cached by the ids of their written lists; a freed list's id reused by the next route's
    must not hand that route another route's origins (found with 40 routes: 35 matched another route's origin)."""
    routes = [{"name": f"r{i}", "path_prefix": f"/r{i}", "allow_origins": [f"https://o{i}.example.com"]}
              for i in range(40)]  # fmt: skip
    policy = make_policy(allow_origins=["https://app.example.com"], routes=routes)
    by_name = {route.name: route for route in policy.table.all_routes()}
    assert [i for i in range(40) if by_name[f"r{i}"].origins.exact != {f"https://o{i}.example.com"}] == []
