"""Headless Chromium's flags and a page server for the browser suite (the stack lives in tests/deploy/stack.py).

Origins: Chromium maps ``*.pvpipe.test`` to 127.0.0.1 (``--host-resolver-rules``), so one
page server on one port serves several origins (``http://app.pvpipe.test:P``,
``http://evil.pvpipe.test:P``, ``http://localhost:P`` ...) and the API lives at
``http://api.pvpipe.test:T`` (Traefik's port): every fetch is cross-origin, and the
pvpipe.test origins are same-site with the API, so a credentialed fetch carries the
API's cookie as it would on a real pvpipe deployment. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP *.pvpipe.test 127.0.0.1",
]  # fmt: skip

# The page's only code: one fetch, reported as data the test can assert on.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cors-handler browser test</title></head>
<body><script>
window.callApi = async (url, init) => {
  try {
    const response = await fetch(url, init);
    return {status: response.status, requestId: response.headers.get("x-request-id"),
            body: await response.json()};
  } catch (error) {
    return {error: String(error)};
  }
};
</script></body></html>
"""


class PageServer:
    """Serves the test page at every path, for every Host (each host name is an origin)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def origin(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
