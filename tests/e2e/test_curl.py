"""The README's curl examples, run with the real curl binary."""

import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")]

POLICY = {"allow_origins": ["https://app.example.com"], "max_age": 3600}


def curl(port: int, *headers: str) -> str:
    args = ["curl", "-s", "-i", "-X", "OPTIONS", f"http://127.0.0.1:{port}/api/orders"]
    for header in headers:
        args += ["-H", header]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


def test_curl_allowed_rejected_malformed(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(POLICY)
    allowed = curl(server.port, "Origin: https://app.example.com", "Access-Control-Request-Method: PUT",
                   "Access-Control-Request-Headers: content-type")  # fmt: skip
    assert allowed.startswith("HTTP/1.1 204")
    assert "access-control-allow-origin: https://app.example.com\n" in allowed
    assert "access-control-max-age: 3600\n" in allowed

    rejected = curl(server.port, "Origin: https://evil.example", "Access-Control-Request-Method: PUT")
    assert rejected.startswith("HTTP/1.1 403")
    assert '"error_type":"origin_not_allowed"' in rejected
    assert "access-control-allow-origin" not in rejected

    malformed = curl(server.port, "Origin: https://app.example.com/path", "Access-Control-Request-Method: PUT")
    assert malformed.startswith("HTTP/1.1 400")
    assert '"error_type":"invalid_preflight"' in malformed
