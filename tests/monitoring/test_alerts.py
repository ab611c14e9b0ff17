"""The chart's PrometheusRule, checked and unit-tested with promtool (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..deploy.chart import CHART, RELEASE, environment_values, merge, objects, one
from ..deploy.tools import tool

HERE = Path(__file__).resolve().parent
ALERTS = {
    "CorsHandlerHighLatency", "CorsHandlerRateLimitingHigh", "CorsHandlerDown",
    "CorsHandlerPolicyReloadFailed", "CorsHandlerRejectionRatioHigh", "CorsHandlerCandidateWouldRefuse",
    "CorsHandlerCandidateReloadFailed", "CorsHandlerPolicySkew", "CorsHandlerPolicySourceInvalid",
}  # fmt: skip


def rendered_rule_groups() -> dict[str, Any]:
    """The rule file Prometheus would load from the production PrometheusRule."""
    rule = one(objects(environment_values("production")), "PrometheusRule", RELEASE)
    return {"groups": rule["spec"]["groups"]}


def write_rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered_rule_groups(), sort_keys=False))
    return path


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_alerts_fire_after_their_for_duration_and_stay_silent_on_healthy_series(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(HERE / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    result = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yaml"],
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# (ratio in values, the percentage the summary must show): products that are inexact in binary
# floating point (0.05 * 100 = 5.000000000000001), fractions of a percent (integer `mul` showed 0)
PERCENT_CASES = [
    pytest.param(0.05, "5", id="5-percent-inexact-float"),
    pytest.param(0.07, "7", id="7-percent-inexact-float"),
    pytest.param(0.25, "25", id="25-percent"),
    pytest.param(0.005, "0.5", id="half-percent"),
    pytest.param(0.125, "12.5", id="twelve-and-a-half"),
    pytest.param(1, "100", id="integer-ratio"),
]
SUMMARY_RATIOS = {  # alert -> the prometheusRule value its summary states as a percentage
    "CorsHandlerRateLimitingHigh": "rateLimitedRatio",
    "CorsHandlerRejectionRatioHigh": "rejectedRatio",
    "CorsHandlerCandidateWouldRefuse": "candidateRefusedRatio",
}


def summaries(values: dict[str, Any]) -> dict[str, str]:
    rule = one(objects(values), "PrometheusRule", RELEASE)
    return {r["alert"]: r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.mark.parametrize(("ratio", "shown"), PERCENT_CASES)
def test_summaries_state_the_configured_ratio_as_a_percentage(ratio: float, shown: str) -> None:
    thresholds = dict.fromkeys(SUMMARY_RATIOS.values(), ratio)
    rendered = summaries(environment_values("production", {"metrics": {"prometheusRule": thresholds}}))
    for alert in SUMMARY_RATIOS:
        assert re.findall(r"(\S+)%", rendered[alert]) == [shown], rendered[alert]


def test_summaries_of_the_shipped_files_state_their_ratios() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]
    for environment in ("staging", "production"):
        values = environment_values(environment)
        thresholds, rendered = merge(defaults, values["metrics"]["prometheusRule"]), summaries(values)
        for alert, key in SUMMARY_RATIOS.items():
            [percent] = re.findall(r"(\S+)%", rendered[alert])
            assert float(percent) == pytest.approx(thresholds[key] * 100, abs=0.005), (environment, rendered[alert])
