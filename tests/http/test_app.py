"""The ASGI callable in-process: paths the real server cannot be made to take (a forced 500)."""

import asyncio
import json
from typing import Any

import pytest

from cors_handler.http.app import CorsHandlerApp

from ..conftest import make_policy


def call(
    app: CorsHandlerApp, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or [], "client": ("127.0.0.1", 1)}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_unexpected_error_is_500_with_error_id_logged_and_no_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cors_handler.serve.events import configure_logging

    configure_logging("info", "json")
    app = CorsHandlerApp(make_policy(allow_origins=["https://a.com"]))

    def boom(path: str) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.runtime.routes.__class__, "route_for", lambda self, path, host=None: boom(path))
    status, headers, body = call(app, "OPTIONS", "/x", [(b"origin", b"https://a.com")])
    payload = json.loads(body)
    assert status == 500
    assert payload["error_type"] == "internal_error" and len(payload["error_id"]) == 32
    assert b"secret" not in body and b"Traceback" not in body
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    errors = [entry for entry in logged if entry.get("error_id") == payload["error_id"]]
    assert len(errors) == 1 and "secret internal detail" in errors[0]["error"]
    # the service is still healthy
    monkeypatch.undo()
    assert call(app, "GET", "/health")[0] == 200


def test_lifespan_sets_ready() -> None:
    app = CorsHandlerApp(make_policy(allow_origins=["https://a.com"]))
    assert call(app, "GET", "/ready")[0] == 503
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    async def startup_only() -> None:
        await app({"type": "lifespan"}, receive, send)

    asyncio.run(startup_only())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.draining


def test_head_has_no_body() -> None:
    app = CorsHandlerApp(make_policy(allow_origins=["https://a.com"]))
    status, headers, body = call(app, "HEAD", "/health")
    assert status == 200 and body == b"" and headers[b"content-length"] == b"15"


def test_swap_replaces_policy_and_cache_atomically() -> None:
    app = CorsHandlerApp(make_policy(allow_origins=["https://a.com"]))
    pre = [(b"origin", b"https://b.com"), (b"access-control-request-method", b"GET")]
    assert call(app, "OPTIONS", "/x", pre)[0] == 403
    old_cache = app.runtime.cache
    app.swap(make_policy(allow_origins=["https://b.com"]))
    assert app.runtime.cache is not old_cache
    assert call(app, "OPTIONS", "/x", pre)[0] == 204
    assert app.metrics.retired_misses == 1
