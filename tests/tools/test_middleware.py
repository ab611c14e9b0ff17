"""`cors-handler middleware`: names, refusals and exit codes, in process (the chart comparison is in tests/deploy)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cors_handler.tools.middleware import MAX_NAME, middleware_name, origin_regex, quote_meta

from ..conftest import run_in_process

LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAIN = "environment: production\nallow_origins: [https://app.example.com]\nexpose_headers: [X-Request-Id]\n"


def run(*argv: str) -> tuple[int, str, str]:
    return run_in_process("middleware", *argv)


def setup(tmp_path: Path, routes: list[dict[str, Any]] | str, main_policy: str = MAIN) -> list[str]:
    """A main policy and a routes directory holding team.yaml; the arguments that name them."""
    (tmp_path / "policy.yaml").write_text(main_policy)
    (tmp_path / "routes").mkdir()
    text = routes if isinstance(routes, str) else yaml.safe_dump({"routes": routes})
    (tmp_path / "routes" / "team.yaml").write_text(text)
    return ["--policy", str(tmp_path / "policy.yaml"), "--routes-dir", str(tmp_path / "routes")]


def documents(out: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(out) if d]


# ---------------------------------------------------------------- names


@given(name=st.text(min_size=1, max_size=120), prefix=st.sampled_from(["", "cors-", "team-a-", "x" * 40]))
def test_every_route_name_gives_a_kubernetes_name(name: str, prefix: str) -> None:
    derived = middleware_name(name, prefix)
    assert len(derived) <= MAX_NAME and LABEL.fullmatch(derived), derived
    assert derived.startswith(prefix)
    assert middleware_name(name, prefix) == derived  # stable: the same route, the same Middleware


@given(names=st.lists(st.text(min_size=1, max_size=80), min_size=2, max_size=20, unique=True))
def test_distinct_route_names_give_distinct_names(names: list[str]) -> None:
    assert len({middleware_name(n, "cors-") for n in names}) == len(names)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        pytest.param("orders", "cors-orders", id="a-label-is-kept"),
        pytest.param("api.acme.io/v1", "cors-api-acme-io-v1-", id="dots-and-slashes"),
        pytest.param("api-acme-io-v1", "cors-api-acme-io-v1", id="its-lookalike-kept-as-is"),
        pytest.param("Orders", "cors-orders-", id="upper-case"),
        pytest.param("/", "cors-", id="nothing-readable"),
        pytest.param("team.yaml:api.acme.io/v1", "cors-team-yaml-api-acme-io-v1-", id="source-prefixed"),
        pytest.param("ß-straße", "cors-stra-e-", id="not-ascii"),
    ],
)  # fmt: skip
def test_names_read_like_the_route(route: str, expected: str) -> None:
    derived = middleware_name(route, "cors-")
    if expected.endswith("-"):  # changed: the hash of the name as written tells it apart
        assert derived == expected + hashlib.sha256(route.encode()).hexdigest()[:8]
    else:
        assert derived == expected


def test_a_long_name_is_cut_and_keeps_its_hash() -> None:
    route = "api.a-very-long-team-name.example.com/and/a/long/path/under/it"
    derived = middleware_name(route, "cors-")
    assert MAX_NAME - 1 <= len(derived) <= MAX_NAME  # cut to fit (a "-" left at the cut is dropped)
    assert derived.startswith("cors-api-a-very-long-team-name-example-com-and-a-long-")
    assert derived.endswith(hashlib.sha256(route.encode()).hexdigest()[:8])
    assert middleware_name(route + "2", "cors-") != derived


# ---------------------------------------------------------------- the translation's details


def test_go_quote_meta_not_python_escape() -> None:
    """The chart's regexQuoteMeta leaves '-' alone, where re.escape would write '\\-': the spec bytes would differ."""
    assert quote_meta("chrome-extension") == "chrome-extension"
    assert quote_meta("a+b.c") == r"a\+b\.c"
    assert origin_regex("chrome-extension://abc") == "^chrome-extension://abc$"
    assert origin_regex("HTTPS://App.Example.com:0443") == r"^https://app\.example\.com(?::0{0,2}443)?$"
    assert origin_regex("http://*.dev.example.org:8080") == (
        r"^http://(?:[a-z0-9_][a-z0-9_-]*\.)+dev\.example\.org:0{0,1}8080$"
    )


# ---------------------------------------------------------------- the command


def test_each_enabled_route_gets_a_middleware_with_inherited_and_written_values(tmp_path: Path) -> None:
    args = setup(tmp_path, [
        {"name": "orders", "path_prefix": "/orders", "allow_origins": ["https://shop.example.com", "null"],
         "allow_credentials": True, "allow_headers": ["Content-Type", "X-Request-Id"]},
        {"path_prefix": "/public", "allow_origins": ["*"], "allow_methods": ["GET"], "max_age": 0},
        {"name": "internal", "path_prefix": "/internal", "enabled": False},
    ])  # fmt: skip
    code, out, err = run(*args, "--source", "team.yaml", "--namespace", "team-a")
    assert code == 0, err
    orders, public = documents(out)
    assert orders["metadata"]["name"] == "cors-orders" and orders["metadata"]["namespace"] == "team-a"
    assert orders["metadata"]["annotations"]["cors-handler/route-source"] == "team.yaml"
    assert orders["spec"]["headers"] == {
        "accessControlAllowOriginList": ["null"],
        "accessControlAllowOriginListRegex": [r"^https://shop\.example\.com(?::0{0,2}443)?$"],
        "accessControlAllowCredentials": True,
        "accessControlExposeHeaders": ["X-Request-Id"],  # inherited from the main policy
        "accessControlAllowMethods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        "accessControlAllowHeaders": ["Content-Type", "X-Request-Id"],  # as written, not lower-cased
        "accessControlMaxAge": 86400,
        "addVaryHeader": True,
    }
    assert public["metadata"]["annotations"]["cors-handler/route"] == "/public"
    assert public["spec"]["headers"]["accessControlAllowOriginList"] == ["null"]
    assert public["spec"]["headers"]["accessControlMaxAge"] == 0
    assert "internal: disabled" in err
    assert "public_route" in err  # the source's warnings are shown, on stderr


def test_hostile_route_names_stay_inside_their_annotation(tmp_path: Path) -> None:
    name = "x\n---\nkind: Secret # 'quoted' \"double\" \u212a"
    args = setup(tmp_path, [{"name": name, "path_prefix": "/x", "allow_origins": ["https://a.example.com"]}])
    code, out, err = run(*args, "--source", "team.yaml")
    assert code == 0, err
    (doc,) = documents(out)
    assert doc["kind"] == "Middleware" and doc["metadata"]["annotations"]["cors-handler/route"] == name
    assert LABEL.fullmatch(doc["metadata"]["name"])


def test_a_source_with_no_enabled_route_prints_nothing(tmp_path: Path) -> None:
    args = setup(tmp_path, [{"name": "a", "path_prefix": "/a", "enabled": False}])
    assert run(*args, "--source", "team.yaml")[:2] == (0, "")


def error_settings(err: str) -> list[tuple[str, str]]:
    """(setting, code) of every error the command reported."""
    return re.findall(r"^\s+error: (\S+): .* \[([a-z_]+)\]$", err, flags=re.M)


@pytest.mark.parametrize(
    ("routes", "main_policy", "expected"),
    [
        pytest.param([{"name": "a", "path_prefix": "/a", "allow_origins": ["https://a.example.com/"]}], MAIN,
                     [("team.yaml:routes[0].allow_origins[0]", "origin_invalid"),
                      ("team.yaml", "route_source_not_in_force")], id="source-not-in-force"),
        pytest.param("routes: [", MAIN,
                     [("team.yaml", "route_source_yaml"), ("team.yaml", "route_source_not_in_force")],
                     id="source-not-yaml"),
        pytest.param([{"name": "a", "path_prefix": "/a", "allow_origin_regex": [r"^https://a\.example\.com$"]}], MAIN,
                     [("team.yaml:routes[0].allow_origin_regex", "middleware_untranslatable")], id="own-regex"),
        pytest.param([{"name": "a", "path_prefix": "/a"}], MAIN + "allow_origin_regex: ['^https://b\\.example\\.com$']\n",
                     [("allow_origin_regex", "middleware_untranslatable")], id="inherited-regex"),
        pytest.param([{"name": "a", "path_prefix": "/a", "allow_origins": ["https://ok.example.com", "https://[::1]"]},
                      {"name": "b", "path_prefix": "/b", "allow_origins": ["http://[2001:db8::1]:8080"]}], MAIN,
                     [("team.yaml:routes[0].allow_origins[1]", "middleware_untranslatable"),
                      ("team.yaml:routes[1].allow_origins[0]", "middleware_untranslatable")], id="ipv6-every-route"),
        pytest.param([{"name": "a", "path_prefix": "/a"}],
                     MAIN.replace("production", "staging") + "dev_private_cidrs: [10.0.0.1, 172.16.16.0/20]\n",
                     [("dev_private_cidrs[1]", "middleware_untranslatable")], id="cidr-not-whole-octets"),
        pytest.param([{"name": "x.", "path_prefix": "/a"},
                      {"name": "x-" + hashlib.sha256(b"x.").hexdigest()[:8], "path_prefix": "/b"}], MAIN,
                     [("team.yaml:routes[1].name", "middleware_name_collision")], id="name-collision"),
    ],
)  # fmt: skip
def test_refusals_name_every_setting_and_exit_2(
    routes: list[dict[str, Any]] | str, main_policy: str, expected: list[tuple[str, str]], tmp_path: Path
) -> None:
    code, out, err = run(*setup(tmp_path, routes, main_policy), "--source", "team.yaml")
    assert (code, out) == (2, "")
    assert error_settings(err) == expected
    assert "no Middleware printed for team.yaml" in err


def test_production_ignores_the_development_networks(tmp_path: Path) -> None:
    args = setup(tmp_path, [{"name": "a", "path_prefix": "/a"}], MAIN + "dev_private_cidrs: [172.16.16.0/20]\n")
    code, out, _ = run(*args, "--source", "team.yaml")
    assert code == 0 and len(documents(out)[0]["spec"]["headers"]["accessControlAllowOriginListRegex"]) == 1


def test_another_team_s_broken_file_does_not_matter(tmp_path: Path) -> None:
    args = setup(tmp_path, [{"name": "a", "path_prefix": "/a"}])
    (tmp_path / "routes" / "other.yaml").write_text("routes: [{path_prefix: /a}]\nextra: 1\n")
    code, out, err = run(*args, "--source", "team.yaml")
    assert code == 0, err
    assert [d["metadata"]["name"] for d in documents(out)] == ["cors-a"]
    assert run(*args, "--source", "other.yaml")[0] == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(["--source", "routes/team.yaml"], [("--source", "source_invalid")], id="source-path"),
        pytest.param(["--source", "team.txt"], [("--source", "source_invalid")], id="source-suffix"),
        pytest.param(["--source", "missing.yaml"], [("--source", "route_source_unknown")], id="source-unknown"),
        pytest.param(["--source", "team.yaml", "--namespace", "Team_A"], [("--namespace", "namespace_invalid")],
                     id="namespace"),
        pytest.param(["--source", "team.yaml", "--name-prefix=-x"], [("--name-prefix", "name_prefix_invalid")],
                     id="prefix"),
        pytest.param(["--source", "team.yaml", "--name-prefix", "x" * 41], [("--name-prefix", "name_prefix_invalid")],
                     id="prefix-too-long"),
    ],
)  # fmt: skip
def test_arguments_are_validated_like_settings(
    extra: list[str], expected: list[tuple[str, str]], tmp_path: Path
) -> None:
    code, out, err = run(*setup(tmp_path, [{"name": "a", "path_prefix": "/a"}]), *extra)
    assert (code, out) == (2, "")
    assert error_settings(err) == expected


def test_arguments_and_the_policy_are_reported_together(tmp_path: Path) -> None:
    args = setup(tmp_path, [{"name": "a", "path_prefix": "/a"}], MAIN + "max_age: -1\n")
    code, _, err = run(*args, "--source", "team.yaml", "--namespace", "NS")
    assert code == 2
    assert error_settings(err) == [("--namespace", "namespace_invalid"), ("max_age", "max_age_negative")]


def test_without_a_routes_directory(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(MAIN)
    code, _, err = run("--policy", str(tmp_path / "policy.yaml"), "--source", "team.yaml")
    assert code == 2 and error_settings(err) == [("--routes-dir", "routes_dir_missing")]


def httproute(cors: dict[str, Any], path: str = "/orders") -> dict[str, Any]:
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": path}}], "filters": [{"type": "CORS", "cors": cors}]}
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "orders", "namespace": "team-a"},
            "spec": {"hostnames": ["orders.example.com"], "rules": [rule]}}  # fmt: skip


def test_an_httproute_source_gets_its_own_values_and_inherits_nothing(tmp_path: Path) -> None:
    cors = {"allowOrigins": ["https://shop.example.com"], "allowMethods": ["GET", "PUT"], "allowCredentials": True}
    args = setup(tmp_path, yaml.safe_dump(httproute(cors)))
    code, out, err = run(*args, "--source", "team.yaml")
    assert code == 0, err
    (doc,) = documents(out)
    route = doc["metadata"]["annotations"]["cors-handler/route"]
    assert doc["metadata"]["name"] == middleware_name(route, "cors-") and LABEL.fullmatch(doc["metadata"]["name"])
    headers = doc["spec"]["headers"]
    assert headers["accessControlAllowOriginListRegex"] == [r"^https://shop\.example\.com(?::0{0,2}443)?$"]
    assert (headers["accessControlAllowMethods"], headers["accessControlAllowCredentials"]) == (["GET", "PUT"], True)
    # the Gateway API's defaults, not the main policy's expose_headers and max_age
    assert "accessControlExposeHeaders" not in headers and headers["accessControlMaxAge"] == 5


def test_an_httproute_rule_the_service_refuses_gives_no_middleware(tmp_path: Path) -> None:
    good = httproute({"allowOrigins": ["https://shop.example.com"]})
    refused = httproute({"allowOrigins": ["https://shop.example.com/"]}, "/refused")
    refused["metadata"]["name"] = "refused"
    args = setup(tmp_path, yaml.safe_dump_all([good, refused]))
    code, out, err = run(*args, "--source", "team.yaml")
    assert (code, out) == (2, "")
    assert ("team.yaml", "route_source_not_in_force") in error_settings(err)
    assert "HTTPRoute team-a/refused rules[0]" in err
