"""The chart's PrometheusRule, checked and unit-tested with promtool (Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..deploy.chart import RELEASE, environment_values, objects, one
from ..deploy.tools import tool

HERE = Path(__file__).resolve().parent
ALERTS = {
    "CorsHandlerHighLatency", "CorsHandlerRateLimitingHigh", "CorsHandlerDown",
    "CorsHandlerPolicyReloadFailed", "CorsHandlerRejectionRatioHigh", "CorsHandlerCandidateWouldRefuse",
}  # fmt: skip


def rendered_rule_groups() -> dict[str, Any]:
    """The rule file Prometheus would load from the production PrometheusRule."""
    rule = one(objects(environment_values("production")), "PrometheusRule", RELEASE)
    return {"groups": rule["spec"]["groups"]}


def write_rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered_rule_groups(), sort_keys=False))
    return path


def test_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    result = subprocess.run([tool("promtool"), "check", "rules", str(write_rules(tmp_path))],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    names = {rule["alert"] for group in rendered_rule_groups()["groups"] for rule in group["rules"]}
    assert names == ALERTS
    tests = yaml.safe_load((HERE / "alerts.test.yaml").read_text())["tests"]
    covered = " ".join(yaml.safe_dump(t) for t in tests)
    runbooks = (HERE.parents[1] / "docs" / "monitoring.md").read_text().split("\n## Runbooks\n", 1)[1]
    for name in names:
        assert f'alertname="{name}"' in covered or f"alertname: {name}" in covered, name
        assert f"\n### {name}\n" in runbooks, f"no runbook section for {name} in docs/monitoring.md"


def test_alerts_fire_after_their_for_duration_and_stay_silent_on_healthy_series(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(HERE / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    result = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yaml"],
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
