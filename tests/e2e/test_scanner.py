"""A CORS misconfiguration scanner (CORScanner) against the running service: zero findings.

The scanner's probe classes: reflected origin, prefix / suffix / substring
tricks, an unescaped dot, ``null``, third-party hosting sites, special
characters after the host, any subdomain, and http downgrade. A control run
against a deliberately permissive staging policy shows the scanner, through
the same adapter, does find what it should.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

pytest.importorskip("CORScanner", reason="corscanner is a test dependency: pip install -e '.[test]'")

PRODUCTION = {
    "environment": "production",
    "allow_origins": ["https://app.example.com", "https://admin.example.com"],
    "allow_origin_regex": [r"^https://[a-z0-9-]+\.tenants\.example\.com$"],
    "allow_credentials": True,
}


def scan(port: int, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.scanner.corscanner_preflight", str(port), url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "url", ["https://app.example.com/api/items", "https://admin.example.com/", "https://acme.tenants.example.com/api"]
)
def test_production_policy_has_no_findings(start_server, url: str) -> None:  # type: ignore[no-untyped-def]
    server = start_server(PRODUCTION)
    result = scan(server.port, url)
    assert result["findings"] == []
    probes = result["probes"]
    assert len(probes) >= 30  # every probe class ran
    assert {p["origin"] for p in probes} >= {"https://evil.com", "null", "http://" + url.split("/")[2]}
    for probe in probes:  # each probe was answered by cors-handler, and refused
        assert probe["x-cors-preflight"] == "enhanced-handler", probe
        assert probe["status"] in (400, 403), probe
        assert probe["access-control-allow-origin"] is None, probe


def test_scanner_finds_a_permissive_policy(start_server) -> None:  # type: ignore[no-untyped-def]
    permissive = {
        "environment": "staging",
        "allow_origins": ["https://app.example.com", "http://app.example.com", "https://*.app.example.com", "null"],
        "allow_credentials": True,
    }
    result = scan(start_server(permissive).port, "https://app.example.com/api")
    found = {finding["type"] for finding in result["findings"]}
    assert found == {"trust_null", "trust_any_subdomain", "https_trust_http"}
    assert all(finding["credentials"] == "true" for finding in result["findings"])
