"""Run CORScanner's probe classes against a running cors-handler, as preflights.

CORScanner (PyPI ``corscanner``) probes a site with GET requests carrying
hostile Origin values and reports every response whose
Access-Control-Allow-Origin echoes the probe. cors-handler answers only
preflights, so this adapter turns each of the scanner's GETs into the
preflight a browser would send first (OPTIONS + Access-Control-Request-Method:
GET, same Origin, same path) against the service on 127.0.0.1, and hands the
scanner the real response. The scanner's probes and its judgment run
unchanged. It runs in its own process because CORScanner monkey-patches the
standard library with gevent at import.

    python -m tests.scanner.corscanner_preflight PORT https://app.example.com/api/items

Prints one JSON object: {"findings": [...], "probes": [...]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit

import tldextract

# The Public Suffix List snapshot bundled with tldextract: no download on a closed network.
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())

import requests  # noqa: E402
from CORScanner.common.corscheck import CORSCheck  # noqa: E402  (patches sockets with gevent)
from CORScanner.common.logger import Log  # noqa: E402

PROBE_CLASSES = [
    "test_reflect_origin",
    "test_prefix_match",
    "test_suffix_match",
    "test_trust_null",
    "test_include_match",
    "test_not_escape_dot",
    "test_custom_third_parties",
    "test_special_characters_bypass",
    "test_trust_any_subdomain",
    "test_https_trust_http",
]


def scan(port: int, url: str) -> dict[str, Any]:
    probes: list[dict[str, Any]] = []

    def as_preflight(target: str, headers: dict[str, str], **_: Any) -> requests.Response:
        parts = urlsplit(target)
        preflight = {**headers, "Host": parts.netloc, "Access-Control-Request-Method": "GET"}
        response = requests.request(
            "OPTIONS", f"http://127.0.0.1:{port}{parts.path or '/'}", headers=preflight, timeout=5
        )
        probes.append(
            {
                "origin": headers["Origin"],
                "status": response.status_code,
                "x-cors-preflight": response.headers.get("x-cors-preflight"),
                "access-control-allow-origin": response.headers.get("access-control-allow-origin"),
            }
        )
        response.url = target  # the scanner drops responses that redirected to another site
        return response

    requests.get = as_preflight  # CORScanner calls requests.get(...) for every probe
    check = CORSCheck(url, {"logger": Log(None, print_level=4), "headers": None})
    for probe_class in PROBE_CLASSES:  # every class, not stopping at the first finding
        getattr(check, probe_class)()
    return {"findings": check.all_results, "probes": probes}


if __name__ == "__main__":
    print(json.dumps(scan(int(sys.argv[1]), sys.argv[2])))
