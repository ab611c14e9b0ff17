"""The chart's candidatePolicy: a second ConfigMap key and the --candidate flag, only when set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import run_cli
from .chart import RELEASE, environment_values, helm, load_chart, objects, one

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

CANDIDATE = {
    "environment": "production",
    "allow_origins": ["https://app.example.com"],
    "allow_headers": ["content-type"],
    "routes": [{"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET"]}],
}
MOUNTED = "/etc/cors-handler/candidate.yaml"


def rendered(*overrides: dict[str, Any]) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """(ConfigMap data, container args, pod annotations) for the production values plus ``overrides``."""
    docs = objects(environment_values("production", *overrides))
    pod = one(docs, "Deployment")["spec"]["template"]
    args: list[str] = pod["spec"]["containers"][0]["args"]
    return one(docs, "ConfigMap", RELEASE)["data"], args, pod["metadata"].get("annotations") or {}


def test_no_candidate_by_default() -> None:
    data, args, _ = rendered()
    assert set(data) == {"policy.yaml"}
    assert "--candidate" not in args


def test_candidate_policy_renders_a_second_key_and_the_flag(tmp_path: Path) -> None:
    data, args, annotations = rendered({"candidatePolicy": CANDIDATE})
    assert args[-2:] == ["--candidate", MOUNTED]
    assert args[args.index("--policy") + 1] == "/etc/cors-handler/policy.yaml"
    policy_file = tmp_path / "candidate.yaml"
    policy_file.write_text(data["candidate.yaml"])
    done = run_cli("check", "--policy", str(policy_file))  # the candidate is validated like any policy
    assert done.returncode == 0, done.stdout + done.stderr
    assert "route admin (path prefix /admin)" in done.stdout
    # a candidate change rolls the pods like a policy change (the default policyReload: restart)
    assert annotations["checksum/policy"] != rendered()[2]["checksum/policy"]


def test_the_values_files_accept_a_candidate() -> None:
    load_chart().validate_schema(environment_values("production", {"candidatePolicy": CANDIDATE}))


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ({**CANDIDATE, "max_agee": 10}, "max_agee"),
        ({"allow_origins": ["https://app.example.com"]}, "environment"),  # a complete policy, not a diff
        ({**CANDIDATE, "allow_origins": []}, "allow_origins"),
    ],
    ids=["unknown-key", "incomplete", "no-origin"],
)
def test_schema_rejects_a_bad_candidate(candidate: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        load_chart().validate_schema(environment_values("production", {"candidatePolicy": candidate}))
