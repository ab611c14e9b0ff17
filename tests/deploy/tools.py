"""Locate the external checkers the deployment tests run (installed by scripts/test.sh)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD_VALIDATOR = Path(__file__).resolve().parent / "crd_validator"


def tool(name: str) -> str:
    """A command from this venv, PATH, or the separate tools venvs (checkov's and nca's own pinned deps)."""
    venvs = (Path(sys.executable).parent, ROOT / ".venv-tools" / "bin", ROOT / ".venv-nca" / "bin")
    for candidate in (venv / name for venv in venvs):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; scripts/test.sh installs it")
    return found


def node_validator() -> list[str]:
    if shutil.which("node") is None or not (CRD_VALIDATOR / "node_modules").is_dir():
        pytest.skip("node and tests/deploy/crd_validator/node_modules are needed; scripts/test.sh runs npm ci")
    return ["node", str(CRD_VALIDATOR / "validate.mjs")]
