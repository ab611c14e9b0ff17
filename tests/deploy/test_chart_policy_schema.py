"""The chart refuses, when Helm validates its values, every policy mistake JSON Schema can express.

`helm install`/`upgrade`/`template` validate the values against values.schema.json before
rendering; a policy the service would refuse at startup must fail there, naming the setting
(the pods would otherwise crash-loop, or a hot reload keep the old policy). Each case below
is refused by the schema AND by the real `cors-handler check`, at the same setting; the
cases the contract allows are accepted by both. What JSON Schema cannot express (duplicate
route names or prefixes, a regex that admits foreign hosts, warnings) is left to
`cors-handler check` (docs/deployment.md: what catches what).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import run_cli
from .chart import environment_values, helm, load_chart, render

pytestmark = pytest.mark.e2e  # runs cors-handler check

NO_EDGE_HEADERS = {"traefik": {"actualResponseHeaders": False}}  # what the Traefik middleware cannot express


def schema_errors(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, message) for each leaf error Helm reports; [] when the values are valid.

    Helm prints ``- at '/policy/routes/0/allow_origins/1': <message>``; the path becomes the
    service's setting name (``routes[0].allow_origins[1]``), ``policy`` dropped.
    """
    try:
        load_chart().validate_schema(values)
    except helm.HelmValuesError as exc:
        text = str(exc)
    else:
        return []
    found = []
    for path, message in re.findall(r"- at '([^']*)': (.*)", text):
        if message.startswith(("'allOf' failed", "'anyOf' failed", "validation failed")):
            continue  # the wrappers: their causes follow, one per line
        parts = path.strip("/").split("/")
        assert parts[0] == "policy", path
        setting = ""
        for part in parts[1:]:
            setting += f"[{part}]" if part.isdigit() else f".{part}" if setting else part
        found.append((setting, message))
    assert found, text
    return found


def check_errors(policy: dict[str, Any], tmp_path: Path) -> list[tuple[str, str]]:
    """(setting, code) of each error the real `cors-handler check` reports for ``policy``."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    done = run_cli("check", "--policy", str(path), "--format", "json")
    findings = json.loads(done.stdout) if done.stdout.strip() else []
    errors = [(f["setting"], f["code"]) for f in findings if f["severity"] == "error"]
    assert (done.returncode == 2) == bool(errors), done.stdout + done.stderr
    return errors


def same_setting(a: str, b: str) -> bool:
    """The same setting, one of them possibly naming an item of it (``allow_methods`` ~ ``allow_methods[1]``;
    ``allow_origin`` stands for both allow_origins and allow_origin_regex: one of them must allow something)."""
    return a.startswith(b) or b.startswith(a)


def route(**keys: Any) -> dict[str, Any]:
    return {"name": "team", "path_prefix": "/team", **keys}


def policy(**keys: Any) -> dict[str, Any]:
    return {"policy": keys}


def case(id: str, environment: str, override: dict[str, Any], setting: str = "", **marks: Any) -> Any:
    return pytest.param(environment, override, setting, id=id, **marks)


REFUSED = [  # the environment, the values, the setting both must name (the mistake's)
    case("origin-trailing-slash", "production", policy(allow_origins=["https://app.acme.io/"]), "allow_origins[0]"),
    case("origin-with-path", "production", policy(allow_origins=["https://app.acme.io/app"]), "allow_origins[0]"),
    case("origin-without-scheme", "production", policy(allow_origins=["app.acme.io"]), "allow_origins[0]"),
    case("two-origins-in-one-item", "production", policy(allow_origins=["https://a.acme.io, https://b.acme.io"]),
         "allow_origins[0]"),
    case("origin-port-above-65535", "production", policy(allow_origins=["https://app.acme.io:65536"]),
         "allow_origins[0]"),
    case("origin-empty-label", "production", policy(allow_origins=["https://app..acme.io"]), "allow_origins[0]"),
    case("wildcard-inside-a-label", "production", policy(allow_origins=["https://api-*.acme.io"]), "allow_origins[0]"),
    case("wildcard-over-an-ipv4-address", "production", policy(allow_origins=["https://*.10.0.0.1"]),
         "allow_origins[0]"),
    case("ipv6-origin-malformed", "production", {**policy(allow_origins=["http://[::1::2]"]), **NO_EDGE_HEADERS},
         "allow_origins[0]"),
    case("route-origin-trailing-slash", "production", policy(routes=[route(allow_origins=["https://t.acme.io/"])]),
         "routes[0].allow_origins[0]"),
    case("any-origin-at-the-top-in-production", "production", policy(allow_origins=["*"]), "allow_origins[0]"),
    case("any-origin-with-credentials", "staging", policy(allow_origins=["*"], allow_credentials=True),
         "allow_origins[0]"),
    case("route-any-origin-with-its-credentials", "production",
         policy(routes=[route(allow_origins=["*"], allow_credentials=True)]), "routes[0].allow_origins[0]"),
    case("route-any-origin-under-top-credentials", "production",
         policy(allow_credentials=True, routes=[route(allow_origins=["*"])]), "routes[0].allow_origins[0]"),
    case("route-credentials-under-inherited-any-origin", "staging",
         policy(allow_origins=["*"], routes=[route(allow_credentials=True)]), "routes[0]"),
    # issue 28: '*' methods and headers are allowed with credentials; '*' exposed is not (read as a name)
    case("any-exposed-header-with-credentials", "production",
         policy(allow_credentials=True, expose_headers=["x-id", "*"]), "expose_headers[1]"),
    case("route-any-exposed-header-with-its-credentials", "production",
         policy(routes=[route(allow_credentials=True, expose_headers=["*"])]), "routes[0].expose_headers[0]"),
    case("route-any-exposed-header-under-top-credentials", "production",
         policy(allow_credentials=True, routes=[route(expose_headers=["*"])]), "routes[0].expose_headers[0]"),
    case("route-credentials-under-inherited-any-exposed-header", "production",
         policy(expose_headers=["*"], routes=[route(allow_credentials=True)]), "routes[0]"),
    case("method-not-a-token", "production", policy(allow_methods=["GE T"]), "allow_methods[0]"),
    case("method-any-not-alone", "production", policy(allow_methods=["*", "GET"]), "allow_methods"),
    case("header-not-a-token", "production", policy(allow_headers=["x-a x-b"]), "allow_headers[0]"),
    case("exposed-header-not-a-token", "production", policy(expose_headers=["x-id;"]), "expose_headers[0]"),
    case("route-header-not-a-token", "production", policy(routes=[route(allow_headers=["content type"])]),
         "routes[0].allow_headers[0]"),
    case("max-age-negative", "production", policy(max_age=-1), "max_age"),
    case("max-age-as-a-duration", "production", policy(max_age="2h"), "max_age"),
    case("route-max-age-negative", "production", policy(routes=[route(max_age=-5)]), "routes[0].max_age"),
    case("no-origin-at-all", "production", policy(allow_origins=[]), "allow_origin"),
    case("route-with-no-origin", "production", policy(routes=[route(allow_origins=[])]), "routes[0].allow_origin"),
    case("regex-that-does-not-compile", "production",
         {**policy(allow_origin_regex=["^https://(a|b\\.acme\\.io$"]), **NO_EDGE_HEADERS}, "allow_origin_regex[0]"),
    case("route-named-default", "production", policy(routes=[route(name="default")]), "routes[0].name"),
    case("path-prefix-with-a-query", "production", policy(routes=[route(path_prefix="/team?x=1")]),
         "routes[0].path_prefix"),
]  # fmt: skip


ACCEPTED = [  # the environment, the values (no setting: nothing to refuse)
    case("public-route-in-production", "production", policy(routes=[route(allow_origins=["*"])])),
    case("any-method-with-credentials", "production", policy(allow_credentials=True, allow_methods=["*"])),
    case("any-header-with-credentials", "production", policy(allow_credentials=True, allow_headers=["*"])),
    case("route-any-method-and-header-with-its-credentials", "production",
         policy(routes=[route(allow_credentials=True, allow_methods=["*"], allow_headers=["*", "authorization"])])),
    case("any-exposed-header-without-credentials", "production", policy(expose_headers=["x-id", "*"])),
    case("credentials-route-names-its-origins-under-any", "staging",
         policy(allow_origins=["*"], routes=[route(allow_credentials=True, allow_origins=["https://t.acme.io"])])),
    case("regex-only-policy", "production",
         {**policy(allow_origins=[], allow_origin_regex=["^https://[a-z]+\\.acme\\.io$"]), **NO_EDGE_HEADERS}),
    case("route-with-regex-only", "production",
         {**policy(routes=[route(allow_origins=[], allow_origin_regex=["^https://t\\.acme\\.io$"])]),
          **NO_EDGE_HEADERS}),
    case("origin-spellings-the-service-reads", "production",
         {**policy(allow_origins=["https://APP.acme.io:0443", "http://[::ffff:10.0.0.1]:8080", "https://*.acme.io:8443",
                                  "null"]), **NO_EDGE_HEADERS}),
    case("any-method-alone", "production", policy(allow_methods=["*"])),
    case("any-origin-outside-production", "development", policy(allow_origins=["*"])),
]  # fmt: skip


@pytest.mark.parametrize(("environment", "override", "setting"), REFUSED + ACCEPTED)
def test_the_schema_and_the_service_agree_refusing_at_the_same_setting(
    environment: str, override: dict[str, Any], setting: str, tmp_path: Path
) -> None:
    """REFUSED: refused by both, each finding at ``setting``, the schema never blaming Traefik; ACCEPTED: by neither."""
    values = environment_values(environment, override)
    from_schema = schema_errors(values)
    from_check = check_errors(values["policy"], tmp_path)
    if not setting:
        assert (from_schema, from_check) == ([], [])
        return
    assert from_check and all(same_setting(s, setting) for s, _ in from_check), from_check
    assert from_schema and all(same_setting(s, setting) for s, _ in from_schema), from_schema
    assert not any("traefik" in message.lower() for _, message in from_schema)


SEEDS = ["https://app.acme.io", "http://localhost:8080", "https://*.acme.io:8443", "http://10.1.2.3",
         "http://[2001:db8::1]:8443", "http://[::ffff:192.168.1.20]", "ws://a-b_c.d", "null", "*"]  # fmt: skip
ALPHABET = ":/[]*.-_%@?# aZ09fF:"


def mutations(count: int) -> list[str]:
    """Seed origins with one to three characters inserted, replaced or deleted (deterministic)."""
    rng = random.Random(29)
    out: list[str] = []
    while len(out) < count:
        text = rng.choice(SEEDS)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            op = rng.randrange(3)
            if op == 0:
                text = text[:i] + rng.choice(ALPHABET) + text[i:]
            elif op == 1 and i < len(text):
                text = text[:i] + rng.choice(ALPHABET) + text[i + 1 :]
            elif i < len(text):
                text = text[:i] + text[i + 1 :]
        if text and text == text.strip():  # the schema also refuses surrounding spaces, which the service strips
            out.append(text)
    return out


def test_the_origin_grammar_agrees_with_the_service_on_generated_origins(tmp_path: Path) -> None:
    origins = SEEDS + mutations(600)
    policy = {"environment": "staging", "allow_origins": origins}
    values = environment_values("staging", {"policy": policy}, NO_EDGE_HEADERS)
    refused_by_schema = {
        int(m[1]) for s, _ in schema_errors(values) if (m := re.fullmatch(r"allow_origins\[(\d+)\]", s))
    }
    refused_by_check = {
        int(m[1]) for s, code in check_errors(policy, tmp_path) if code == "origin_invalid"
        if (m := re.fullmatch(r"allow_origins\[(\d+)\]", s))
    }  # fmt: skip
    assert 50 < len(refused_by_check) < len(origins) - 50  # both kinds are well represented
    disagree = sorted(refused_by_schema ^ refused_by_check)
    assert disagree == [], [(origins[i], "schema" if i in refused_by_schema else "check") for i in disagree]


@pytest.mark.parametrize("edge_headers", [True, False], ids=["with-traefik-headers", "without-traefik-headers"])
def test_a_malformed_origin_fails_the_render_naming_the_setting_never_blaming_traefik(edge_headers: bool) -> None:
    values = environment_values(
        "production",
        {"policy": {"allow_origins": ["https://app.acme.io/"]}, "traefik": {"actualResponseHeaders": edge_headers}},
    )
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert "/policy/allow_origins/0" in str(caught.value)
    assert "traefik" not in str(caught.value).lower()
