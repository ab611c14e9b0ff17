"""The one request pipeline: its steps run in one order for every entry point, and it never raises."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cors_handler.serve.pipeline import Pipeline, Runtime, preview, route_path
from cors_handler.serve.responses import encode

from ..conftest import make_policy

APP = b"https://app.example.com"


def request(origin: bytes | None = APP, method: bytes | None = b"PUT", client: bytes = b"198.51.100.1",
            **extra: bytes) -> list[tuple[bytes, bytes]]:  # fmt: skip
    headers = [(b"x-forwarded-for", client)]
    if origin is not None:
        headers.append((b"origin", origin))
    if method is not None:
        headers.append((b"access-control-request-method", method))
    headers += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    return headers


def policy(**overrides: Any) -> Any:
    limits = {"average": 60, "period": 60, "burst": 2, "depth": 1}
    return make_policy(allow_origins=["https://app.example.com"], rate_limit=limits, **overrides)


def test_the_token_is_taken_before_the_cache_is_consulted_and_a_429_leaves_the_cache_alone() -> None:
    runtime = Runtime(policy())
    other = request(b"https://app.example.com", b"GET", client=b"198.51.100.2")
    runtime.answer("/api", request(), None)  # miss: decided and stored
    runtime.answer("/api", other, None)  # another key, now the most recent
    assert runtime.answer("/api", request(), None)[1].status == 204  # hit: the first key is the most recent again
    before = runtime.cache.stats()
    route, response = runtime.answer("/api", request(), None)  # third request of that client: over its burst
    assert response.status == 429 and route.name == "default"
    assert runtime.cache.stats() == before  # neither a hit nor a miss
    assert list(runtime.cache._entries)[-1][1] == APP  # and the LRU order is untouched


@pytest.mark.parametrize(
    ("headers", "path", "status", "error_type"),
    [
        (request(method=None), "/api", 204, None),
        (request(method=None), "/health", 204, None),
        ([*request(), (b"origin", b"https://other.example.com")], "/api", 400, "invalid_preflight"),
        (request(origin=b"https://" + b"a" * 600), "/api", 400, "invalid_preflight"),
        (request(), "/off/x", 404, "route_disabled"),
        (request(b"https://evil.example.net"), "/api", 403, "origin_not_allowed"),
    ],
    ids=["not a preflight", "internal path", "duplicate origin", "origin too long", "disabled route", "refused"],
)
def test_every_kind_of_options_request_is_rate_limited_first(
    headers: list[tuple[bytes, bytes]], path: str, status: int, error_type: str | None
) -> None:
    runtime = Runtime(policy(routes=[{"name": "off", "path_prefix": "/off", "enabled": False}]))
    answers = [runtime.answer(path, headers, None)[1] for _ in range(3)]
    assert [a.status for a in answers] == [status, status, 429]
    if error_type:
        assert json.loads(answers[0].body)["error_type"] == error_type
    if status == 204 and error_type is None:
        allow = dict(answers[0].headers)[b"allow"]
        assert allow == (b"GET, HEAD, OPTIONS" if path == "/health" else b"OPTIONS")


def test_pipeline_counts_every_answer_and_turns_an_error_into_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline(policy())
    assert pipeline.answer("/api", request(), "127.0.0.1").status == 204
    assert pipeline.metrics.requests["default", "allowed"] == 1

    def boom(path: str) -> None:
        raise RuntimeError("secret")

    monkeypatch.setattr(type(pipeline.runtime.routes), "route_for", lambda self, path, host=None: boom(path))
    response = pipeline.answer("/api", request(), "127.0.0.1")
    assert response.status == 500 and b"secret" not in response.body
    assert len(json.loads(response.body)["error_id"]) == 32


def test_preview_is_what_serve_answers_byte_for_byte() -> None:
    """explain's entry: the same Response the pipeline gives a fresh client, never rate limited."""
    compiled = policy(allow_headers=["content-type"])
    headers = request(access_control_request_headers=b"content-type")
    served = Pipeline(compiled).answer("/api/x", headers, None)
    for _ in range(5):  # a preview is never rate limited
        route, previewed, decision = preview(compiled, "/api/x", headers)
        assert encode(previewed) == encode(served) and route.name == "default" and decision is not None
    assert encode(served).startswith(b"HTTP/1.1 204 No Content\r\naccess-control-allow-origin: https://app.example")


@pytest.mark.parametrize(
    ("target", "path"),
    [
        pytest.param(b"/api/items", "/api/items", id="plain"),
        pytest.param(b"/admin?x=1", "/admin", id="query-dropped"),
        pytest.param(b"/admin#x", "/admin", id="fragment-dropped"),
        pytest.param(b"/a#b?c", "/a", id="fragment-before-a-question-mark"),
        pytest.param(b"/a?b#c", "/a", id="query-then-fragment"),
        pytest.param(b"/%61dmin/x", "/admin/x", id="percent-decoded"),
        pytest.param(b"/admin%2Fx", "/admin/x", id="encoded-slash-decoded-as-uvicorn-does"),
        pytest.param(b"/caf%C3%A9", "/caf\u00e9", id="utf-8"),
        pytest.param(b"/%ff", "/\ufffd", id="invalid-utf-8-replaced"),
        pytest.param(b"/%zz", "/%zz", id="not-an-escape-kept"),
        pytest.param(b"/a%3Fb", "/a?b", id="encoded-question-mark"),
        pytest.param(b"http://h.example/admin?x", "/admin", id="absolute-form"),
        pytest.param(b"*", "*", id="asterisk-form"),
    ],
)
def test_route_path_is_the_path_uvicorn_puts_in_the_scope(target: bytes, path: str) -> None:
    assert route_path(target) == path


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"/a b", id="space"),
        pytest.param(b"/caf\xc3\xa9", id="not-ascii"),
        pytest.param(b"admin", id="relative"),
        pytest.param(b"http://h.example", id="absolute-form-without-a-path"),
    ],
)
def test_route_path_refuses_what_is_not_a_request_target(target: bytes) -> None:
    with pytest.raises(ValueError, match="request target"):
        route_path(target)


ADMIN = make_policy(allow_origins=["https://app.example.com"], routes=[{"name": "admin", "path_prefix": "/admin"}])


@pytest.mark.parametrize("target", ["/admin?x=1", "/%61dmin/x", "/admin#x", "/admin%2F", "http://h/admin"])
def test_preview_routes_a_target_as_serve_does(target: str) -> None:
    route, _, _ = preview(ADMIN, target, request())
    assert route.name == "admin"


def test_the_host_header_memo_is_bounded_and_agrees_with_request_host() -> None:
    from cors_handler.cors.hosts import request_host
    from cors_handler.cors.limits import HOST_MEMO_SIZE

    runtime = Runtime(make_policy(routes=[{"name": "w", "hosts": ["*.acme.io"], "path_prefix": "/"}]))
    for i in range(2 * HOST_MEMO_SIZE + 5):
        raw = f"R{i}.Acme.io:{i}".encode() if i % 3 else f"bad host {i}".encode()
        assert runtime._host(raw) == request_host(raw)
        assert len(runtime._hosts) <= HOST_MEMO_SIZE
