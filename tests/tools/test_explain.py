"""`cors-handler explain --candidate FILE`: both decisions and both responses, side by side."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ..conftest import run_cli

LIVE = {"allow_origins": ["https://app.example.com", "https://old.example.com"],
        "routes": [{"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET", "DELETE"]}]}  # fmt: skip
CANDIDATE = {"allow_origins": ["https://app.example.com"],
             "routes": [{"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET"]},
                        {"name": "reports", "path_prefix": "/admin/reports", "enabled": False}]}  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    live, candidate = tmp_path / "live.yaml", tmp_path / "candidate.yaml"
    live.write_text(yaml.safe_dump(LIVE))
    candidate.write_text(yaml.safe_dump(CANDIDATE))
    return str(live), str(candidate)


def columns(stdout: str) -> list[tuple[str, str, str]]:
    """(left, mark, right) per row after the two title rows."""
    rows = []
    for line in stdout.splitlines()[2:]:
        for mark in ("  =  ", "  |  ", "  =", "  |"):
            left, found, right = line.partition(mark)
            if found:
                rows.append((left.rstrip(), mark.strip(), right))
                break
    return rows


@pytest.mark.parametrize(
    ("origin", "method", "path", "live", "candidate", "verdict", "code"),
    [
        ("https://old.example.com", "GET", "/api", "decision: allowed",
         "decision: rejected (origin_not_allowed): Origin is not allowed", "would refuse", 0),
        ("https://app.example.com", "DELETE", "/admin/x", "decision: allowed",
         "decision: rejected (method_not_allowed): Method DELETE is not allowed", "would refuse", 0),
        ("https://app.example.com", "GET", "/admin/reports/1", "decision: allowed",
         "decision: disabled (route_disabled): preflights on this route are refused", "would refuse", 0),
        ("https://evil.example.net", "GET", "/api", "decision: rejected (origin_not_allowed): Origin is not allowed",
         "decision: rejected (origin_not_allowed): Origin is not allowed", None, 1),
    ],
    ids=["origin", "method", "route", "both-refuse"],
)  # fmt: skip
@pytest.mark.e2e
def test_both_decisions_and_responses_side_by_side(
    files: tuple[str, str], origin: str, method: str, path: str, live: str, candidate: str, verdict: str | None,
    code: int,
) -> None:  # fmt: skip
    done = run_cli("explain", "--policy", files[0], "--candidate", files[1], "--origin", origin, "--method", method,
                   "--path", path)  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr  # the live policy's answer is the one served
    title = done.stdout.splitlines()[0]
    assert title.startswith("live policy ") and "candidate policy " in title
    rows = columns(done.stdout)
    assert (live, "=" if live == candidate else "|", candidate) in rows
    statuses = [row for row in rows if row[0].startswith("HTTP/1.1 ")]
    assert len(statuses) == 1  # the two responses start on the same row
    live_status = "HTTP/1.1 204 No Content" if code == 0 else "HTTP/1.1 403 Forbidden"
    assert statuses[0][0] == live_status
    # the live column is exactly what `explain` without --candidate prints
    alone = run_cli("explain", "--policy", files[0], "--origin", origin, "--method", method, "--path", path)
    assert [left for left, _, _ in rows if left] == [line for line in alone.stdout.splitlines() if line]
    if verdict:
        assert f"the candidate {verdict} this preflight" in done.stdout
    else:
        assert "the candidate would" not in done.stdout


@pytest.mark.e2e
def test_an_invalid_candidate_is_a_configuration_error(files: tuple[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("allow_origins: ['ftp//x']\nmax_age: -1\n")
    done = run_cli("explain", "--policy", files[0], "--candidate", str(bad), "--origin", "https://a.example",
                   "--method", "GET")  # fmt: skip
    assert done.returncode == 2
    assert f"candidate policy {bad}" in done.stderr and "allow_origins[0]" in done.stderr and "max_age" in done.stderr
    assert "Traceback" not in done.stderr
