"""The fast path relies on uvicorn internals: pin the version and check the hooks it uses are still there."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import uvicorn
from packaging.specifiers import SpecifierSet
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cors_handler.fastpath import FastPathProtocol
from cors_handler.protocol import BoundedHttpToolsProtocol

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_installed_uvicorn_is_inside_the_pinned_minor_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [spec] = [d for d in dependencies if re.match(r"uvicorn\b", d)]
    specifier = SpecifierSet(spec.removeprefix("uvicorn"))
    assert uvicorn.__version__ in specifier
    assert any(s.operator == "<" for s in specifier), "the fast path needs an upper bound on uvicorn"


def test_the_uvicorn_hooks_the_fast_path_overrides_behave_as_assumed() -> None:
    for hook in ("on_message_begin", "on_header", "on_headers_complete", "on_message_complete",
                 "on_response_complete", "shutdown"):  # fmt: skip
        assert hook in vars(HttpToolsProtocol), hook
        assert hook in vars(FastPathProtocol) or hook in ("on_response_complete", "shutdown")
    begin = inspect.getsource(HttpToolsProtocol.on_message_begin)
    assert 'self.url = b""' in begin and "self.headers = []" in begin
    header = inspect.getsource(HttpToolsProtocol.on_header)
    assert "name.lower()" in header and "self.headers.append((name, value))" in header
    complete = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "RequestResponseCycle(" in complete and "self.pipeline.appendleft" in complete
    response_complete = inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert "total_requests += 1" in response_complete and "timeout_keep_alive" in response_complete
    assert STATUS_LINE[204] == b"HTTP/1.1 204 No Content\r\n" and STATUS_LINE[429].startswith(b"HTTP/1.1 429 ")


def test_the_uvicorn_methods_the_bounded_protocol_replaces_do_what_its_copies_assume() -> None:
    """protocol.py re-implements data_received and on_response_complete (without the per-request keep-alive
    timer, with the last-request rule and the pending error): a new uvicorn must not have moved work into them."""
    received = inspect.getsource(HttpToolsProtocol.data_received)
    assert "self._unset_keepalive_if_required()" in received and "self.parser.feed_data(data)" in received
    assert "HttpParserUpgrade" in received and "self.send_400_response(msg)" in received
    assert received.count("self.") == 7, received  # nothing else happens there
    completed = inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert "self.pipeline.pop()" in completed and "self.flow.resume_reading()" in completed
    assert "self._start_asgi_task(cycle, app)" in completed and completed.count("self.") == 11, completed
    for name in ("data_received", "on_response_complete", "send_400_response", "on_headers_complete"):
        assert name in vars(BoundedHttpToolsProtocol), name
