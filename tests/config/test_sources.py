"""The routes directory: each source validated, applied and kept on its own; what fails never widens an answer.

The answers are read from the compiled policy with ``decide`` (as serve decides);
reloads are builds with the same ``SourceBook``, as the running service's reloader does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cors_handler.config.compile import Compiled, build
from cors_handler.config.sources import SourceBook, source_files
from cors_handler.cors.decide import Allowed, decide

MAIN: dict[str, Any] = {
    "allow_origins": ["https://app.acme.io"],
    "route_sources": {
        "team-a.yaml": {"hosts": ["a.acme.io"]},
        "team-b.yaml": {"hosts": ["*.b.acme.io"]},
        "team-c.yaml": {"hosts": ["c.acme.io"]},
    },
}
A = {"routes": [{"name": "a-api", "path_prefix": "/api", "allow_origins": ["https://shop.acme.io"]}]}
B = {"routes": [{"path_prefix": "/", "allow_origins": ["https://b.acme.io"]}]}
C = {"routes": [{"path_prefix": "/", "allow_origins": ["https://c.acme.io"], "allow_methods": ["PATCH"]}]}


class Platform:
    """A main policy and a routes directory, built as serve builds them (one book across reloads)."""

    def __init__(self, tmp_path: Path, main: dict[str, Any] = MAIN) -> None:
        self.dir = tmp_path / "routes"
        self.dir.mkdir()
        self.main = tmp_path / "main.yaml"
        self.main.write_text(yaml.safe_dump(main))
        self.book = SourceBook()

    def write(self, name: str, content: dict[str, Any] | str) -> None:
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path = self.dir / name
        path.write_text(text)
        stamp = path.stat().st_mtime_ns + 1_000_000_000  # a new identity even within one mtime tick
        os.utime(path, ns=(stamp, stamp))

    def build(self) -> Compiled:
        return build({"policy_file": str(self.main), "routes_dir": str(self.dir)}, book=self.book)


def allows(compiled: Compiled, host: str, path: str, origin: str, method: str = "GET") -> bool:
    route = compiled.policy.route_for(path, host)
    return isinstance(decide(route, origin, method, "", False), Allowed)


def valid(compiled: Compiled) -> dict[str, bool]:
    return dict(compiled.policy.source_valid)


def test_three_teams_answer_on_their_own_hosts(tmp_path: Path) -> None:
    p = Platform(tmp_path)
    for name, content in (("team-a.yaml", A), ("team-b.yaml", B), ("team-c.yaml", C)):
        p.write(name, content)
    built = p.build()
    assert valid(built) == {"team-a.yaml": True, "team-b.yaml": True, "team-c.yaml": True}
    assert allows(built, "a.acme.io", "/api/x", "https://shop.acme.io")
    assert not allows(built, "a.acme.io", "/api/x", "https://b.acme.io")
    assert allows(built, "a.acme.io", "/other", "https://app.acme.io")  # not covered by team a: the top level
    assert allows(built, "x.b.acme.io", "/any", "https://b.acme.io")
    assert allows(built, "y.x.b.acme.io", "/any", "https://b.acme.io")
    assert not allows(built, "b.acme.io", "/any", "https://b.acme.io")  # the apex is not under *.b.acme.io
    assert allows(built, "c.acme.io", "/", "https://c.acme.io", "PATCH")
    assert not allows(built, "c.acme.io", "/", "https://shop.acme.io")  # each source its own matcher


BROKEN = {
    "bad-origin": {"routes": [{"path_prefix": "/", "allow_origins": ["https://b.acme.io/path"]}]},
    "bad-yaml": "routes: [\n",
    "empty": "",
    "unknown-key": {"routes": [{"path_prefix": "/", "allow_orgins": ["https://b.acme.io"]}]},
    "foreign-host": {"routes": [{"path_prefix": "/", "hosts": ["a.acme.io"]}]},
    "not-routes": {"allow_origins": ["*"]},
}


@pytest.mark.parametrize("broken", list(BROKEN), ids=list(BROKEN))
def test_a_broken_file_at_startup_fails_closed_on_its_hosts_and_changes_no_one_else(
    tmp_path: Path, broken: str
) -> None:
    p = Platform(tmp_path)
    p.write("team-a.yaml", A)
    p.write("team-b.yaml", BROKEN[broken])
    p.write("team-c.yaml", C)
    built = p.build()
    assert valid(built) == {"team-a.yaml": True, "team-b.yaml": False, "team-c.yaml": True}
    [report] = [r for r in built.sources if r.name == "team-b.yaml"]
    assert report.applied == "refused" and any(f.is_error for f in report.findings)
    # team b's hosts are refused, never answered by the top level (which allows app.acme.io)
    for origin in ("https://app.acme.io", "https://b.acme.io"):
        assert not allows(built, "x.b.acme.io", "/anything", origin)
    assert allows(built, "a.acme.io", "/api", "https://shop.acme.io")
    assert allows(built, "c.acme.io", "/", "https://c.acme.io", "PATCH")
    assert allows(built, "elsewhere.io", "/", "https://app.acme.io")


@pytest.mark.parametrize("broken", list(BROKEN), ids=list(BROKEN))
def test_a_broken_file_on_reload_keeps_its_last_good_version_while_others_reload(tmp_path: Path, broken: str) -> None:
    p = Platform(tmp_path)
    p.write("team-a.yaml", A)
    p.write("team-b.yaml", B)
    p.build()
    p.write("team-b.yaml", BROKEN[broken])
    p.write("team-a.yaml", {"routes": [{"name": "a-api", "path_prefix": "/api",
                                        "allow_origins": ["https://shop2.acme.io"]}]})  # fmt: skip
    built = p.build()
    # team c is named in route_sources but has no file: missing, failing like any other
    assert valid(built) == {"team-a.yaml": True, "team-b.yaml": False, "team-c.yaml": False}
    assert allows(built, "x.b.acme.io", "/", "https://b.acme.io")  # the last good version
    assert allows(built, "a.acme.io", "/api", "https://shop2.acme.io")  # the other team's change is live
    assert not allows(built, "a.acme.io", "/api", "https://shop.acme.io")
    p.write("team-b.yaml", B)
    assert valid(p.build())["team-b.yaml"]  # fixed: applied again


def test_a_file_that_sorts_first_cannot_take_another_teams_host_and_path(tmp_path: Path) -> None:
    main = {"allow_origins": ["https://app.acme.io"]}  # no route_sources: any file may name any host
    p = Platform(tmp_path, main)
    p.write("orders.yaml", {"routes": [{"name": "orders", "hosts": ["orders.acme.io"], "path_prefix": "/",
                                        "allow_origins": ["https://shop.acme.io"]}]})  # fmt: skip
    p.build()
    p.write("0-takeover.yaml", {"routes": [{"name": "evil", "hosts": ["orders.acme.io"], "path_prefix": "/",
                                            "allow_origins": ["https://evil.io"]}]})  # fmt: skip
    built = p.build()
    assert valid(built) == {"0-takeover.yaml": False, "orders.yaml": True}
    assert allows(built, "orders.acme.io", "/x", "https://shop.acme.io")
    assert not allows(built, "orders.acme.io", "/x", "https://evil.io")
    [report] = [r for r in built.sources if r.name == "0-takeover.yaml"]
    assert any("orders.yaml" in f.message and f.code == "path_prefix_duplicate" for f in report.findings)


def test_with_ownership_a_foreign_host_is_refused_in_its_own_file(tmp_path: Path) -> None:
    p = Platform(tmp_path)
    p.write("team-a.yaml", A)
    p.write("team-c.yaml", {"routes": [{"hosts": ["a.acme.io"], "path_prefix": "/api",
                                        "allow_origins": ["https://evil.io"]}]})  # fmt: skip
    built = p.build()
    assert valid(built) == {"team-a.yaml": True, "team-b.yaml": False, "team-c.yaml": False}
    assert not allows(built, "x.b.acme.io", "/", "https://app.acme.io")  # team b's missing file: its hosts refused
    assert allows(built, "a.acme.io", "/api", "https://shop.acme.io")
    assert not allows(built, "a.acme.io", "/api", "https://evil.io")
    [report] = [r for r in built.sources if r.name == "team-c.yaml"]
    assert [f.code for f in report.findings] == ["host_not_owned"]
    assert report.findings[0].setting == "team-c.yaml:routes[0].hosts[0]" and report.findings[0].fix


def test_at_startup_the_file_that_sorts_first_holds_a_conflict(tmp_path: Path) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"]})
    p.write("a.yaml", {"routes": [{"name": "x", "path_prefix": "/x", "allow_origins": ["https://a.io"]}]})
    p.write("b.yaml", {"routes": [{"name": "y", "path_prefix": "/x", "allow_origins": ["https://b.io"]}]})
    built = p.build()
    assert valid(built) == {"a.yaml": True, "b.yaml": False}
    assert allows(built, "h.io", "/x", "https://a.io") and not allows(built, "h.io", "/x", "https://b.io")


def test_derived_names_that_collide_get_their_sources_name(tmp_path: Path) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"]})
    p.write("a.yaml", {"routes": [{"hosts": ["a.io"], "path_prefix": "/x"}]})
    p.write("b.yaml", {"routes": [{"hosts": ["b.io"], "path_prefix": "/x"}, {"name": "a.io/x", "path_prefix": "/y"}]})
    built = p.build()
    names = {r.name for r in built.policy.routes}
    assert valid(built) == {"a.yaml": True, "b.yaml": False}  # an explicit name that is taken is an error
    p.write("b.yaml", {"routes": [{"hosts": ["b.io"], "path_prefix": "/x"}]})
    names = {r.name for r in p.build().policy.routes}
    assert {"a.io/x", "b.io/x"} <= names


def test_hidden_files_subdirectories_and_other_suffixes_are_not_sources(tmp_path: Path) -> None:
    for name in ("..data", ".hidden.yaml", "notes.txt", "team.yaml", "team.json", "team.yml", "sub.yaml"):
        (tmp_path / name).mkdir() if name in ("..data", "sub.yaml") else (tmp_path / name).write_text("x")
    os.symlink(tmp_path / "team.yaml", tmp_path / "link.yaml")
    assert source_files(str(tmp_path)) == ["link.yaml", "team.json", "team.yaml", "team.yml"]


def test_many_sources_each_answer_their_own_origins(tmp_path: Path) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"]})
    for i in range(60):
        p.write(f"t{i:03}.yaml", {"routes": [{"hosts": [f"h{i}.acme.io"], "path_prefix": "/",
                                              "allow_origins": [f"https://o{i}.acme.io"]}]})  # fmt: skip
    built = p.build()
    assert all(valid(built).values())
    for i in range(60):
        assert allows(built, f"h{i}.acme.io", "/", f"https://o{i}.acme.io")
        assert not allows(built, f"h{i}.acme.io", "/", f"https://o{(i + 1) % 60}.acme.io")


GATEWAY_DOC = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "orders", "namespace": "team"},
    "spec": {
        "hostnames": ["orders.acme.io"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                   "filters": [{"type": "CORS", "cors": {"allowOrigins": ["https://shop.acme.io"]}}]}],
    },
}  # fmt: skip


def test_a_failed_file_that_names_no_owner_refuses_the_routes_it_declares_where_they_can_be_read(
    tmp_path: Path,
) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"]})
    broken_gateway = yaml.safe_dump(GATEWAY_DOC) + "---\njust a string\n"  # a document that is not Kubernetes YAML
    p.write("gateway.yaml", broken_gateway)
    p.write("ours.yaml", {"routes": [{"hosts": ["a.acme.io"], "path_prefix": "/x", "allow_origins": ["bad"]},
                                     {"hosts": ["not a host"], "path_prefix": "/"}]})  # fmt: skip
    built = p.build()
    assert valid(built) == {"gateway.yaml": False, "ours.yaml": False}
    assert not allows(built, "orders.acme.io", "/api/v1", "https://app.acme.io")  # declared: refused
    assert allows(built, "orders.acme.io", "/other", "https://app.acme.io")  # not declared: the top level
    assert not allows(built, "a.acme.io", "/x", "https://app.acme.io")
    assert allows(built, "b.acme.io", "/", "https://app.acme.io")  # unreadable hosts refuse nothing anywhere


def test_an_httproute_file_is_a_source_and_a_refused_rule_refuses_only_its_own_paths(tmp_path: Path) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"], "route_sources": {
        "orders.yaml": {"hosts": ["orders.acme.io"]}}})  # fmt: skip
    credentialed_any = {"allowOrigins": ["*"], "allowCredentials": True}
    doc = yaml.safe_load(yaml.safe_dump(GATEWAY_DOC))
    doc["spec"]["rules"].append({"matches": [{"path": {"type": "Exact", "value": "/open"}}],
                                 "filters": [{"type": "CORS", "cors": credentialed_any}]})  # fmt: skip
    p.write("orders.yaml", yaml.safe_dump(doc))
    built = p.build()
    assert valid(built) == {"orders.yaml": True}
    assert allows(built, "orders.acme.io", "/api/v1", "https://shop.acme.io")
    assert not allows(built, "orders.acme.io", "/open", "https://app.acme.io")  # refused, not the top level's
    assert allows(built, "orders.acme.io", "/open/x", "https://app.acme.io")  # Exact: only that path
    [report] = built.sources
    [error] = [f for f in report.findings if f.is_error]
    assert error.setting.startswith("orders.yaml:HTTPRoute team/orders rules[1]") and "allowOrigins" in error.setting


def test_a_route_named_off_gets_the_yaml_explanation_in_its_own_file(tmp_path: Path) -> None:
    p = Platform(tmp_path, {"allow_origins": ["https://app.acme.io"]})
    p.write("team.yaml", "routes:\n  - name: off\n    path_prefix: /off\n")
    [report] = p.build().sources
    [finding] = [f for f in report.findings if f.is_error]
    assert finding.setting == "team.yaml:routes[0].name" and "boolean false" in finding.message
    assert finding.fix == 'quote the word you wrote, e.g. name: "off"'
