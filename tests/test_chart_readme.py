"""scripts/chart_readme.py: the chart README's values table is generated from values.yaml and kept fresh."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "chart_readme.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chart_readme = load_script()

VALUES = """\
# A header comment, not a description.

# -- Replicas.
replicaCount: 3
image:
  # -- Repository.
  repository: cors-handler
  # -- Tag; empty means
  # the appVersion.
  tag: ""
# -- The policy (written verbatim).
policy:
  # -- Origins | patterns.
  allow_origins: [https://*.example.com]
  rate_limit:
    # -- Bucket size.
    burst: 300
# -- Probes, each as a Kubernetes probe.
probes:
  liveness:
    periodSeconds: 10
"""


@pytest.mark.e2e
def test_committed_readme_is_what_the_script_generates() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + "\nrun: python scripts/chart_readme.py"


def test_one_row_per_documented_key_with_its_default() -> None:
    assert chart_readme.table(VALUES).splitlines() == [
        "| key | default | description |",
        "|---|---|---|",
        "| `replicaCount` | `3` | Replicas. |",
        '| `image.repository` | `"cors-handler"` | Repository. |',
        '| `image.tag` | `""` | Tag; empty means the appVersion. |',
        "| `policy` |  | The policy (written verbatim). |",
        '| `policy.allow_origins` | `["https://*.example.com"]` | Origins \\| patterns. |',
        "| `policy.rate_limit.burst` | `300` | Bucket size. |",
        '| `probes` | `{"liveness": {"periodSeconds": 10}}` | Probes, each as a Kubernetes probe. |',
    ]


def test_markup_in_descriptions_is_escaped_outside_code_spans() -> None:
    assert (
        chart_readme.cell("<release>-x, https://*.a.com, `a*b <c>`") == "&lt;release>-x, https://\\*.a.com, `a*b <c>`"
    )


@pytest.mark.parametrize(
    ("values", "undocumented"),
    [
        pytest.param("# -- Documented.\na: 1\nb: 2\n", "b", id="top-level"),
        pytest.param("m:\n  # -- Documented.\n  a: 1\n  b: {}\n", "m.b", id="nested-empty-map"),
        pytest.param("# -- Stops at a blank line.\n\na: 1\n", "a", id="blank-line-ends-a-description"),
    ],
)
def test_an_undocumented_value_is_an_error(values: str, undocumented: str) -> None:
    with pytest.raises(chart_readme.UndocumentedValueError, match=undocumented):
        chart_readme.table(values)


def test_a_stale_table_is_reported_and_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values, readme = tmp_path / "values.yaml", tmp_path / "README.md"
    values.write_text(VALUES)
    readme.write_text(f"# Chart\n\n{chart_readme.START}\nold table\n{chart_readme.END}\n\nHand-written tail.\n")
    monkeypatch.setattr(chart_readme, "VALUES", values)
    monkeypatch.setattr(chart_readme, "README", readme)
    assert chart_readme.main(["--check"]) == 1
    assert chart_readme.main([]) == 0
    assert chart_readme.main(["--check"]) == 0
    text = readme.read_text()
    assert "| `policy.rate_limit.burst` | `300` | Bucket size. |" in text
    assert text.startswith("# Chart\n\n") and text.endswith("\n\nHand-written tail.\n")
