"""Issue 29 item 8: an Origin outside Fetch's grammar (upper case, percent-encoding, IPv6 spellings no
browser writes) is a malformed preflight on both server paths, answered with the same bytes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import fast_and_asgi, read_responses, without_date
from .test_fastpath import ask, preflight

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

ALLOWED = ["https://app.example.com", "http://[2001:db8::1]:8080", "https://a.b.example.org:8443"]
POLICY: dict[str, Any] = {
    "allow_origins": [*ALLOWED[:2], "https://*.example.org:8443"],
    "rate_limit": {"enabled": False},
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("grammar")), POLICY) as pair:
        yield pair


def respelled(origin: str, data: st.DataObject) -> str:
    """The origin spelled as no browser sends it: a letter upper-cased, a character percent-encoded,
    or (for the IPv6 one) a leading zero, upper-case hex or a dotted-quad tail."""
    kind = data.draw(st.sampled_from(["upper", "percent", "ipv6"] if "[" in origin else ["upper", "percent"]))
    if kind == "upper":
        i = data.draw(st.sampled_from([i for i, c in enumerate(origin) if c.isalpha() and c.islower()]))
        return origin[:i] + origin[i].upper() + origin[i + 1 :]
    if kind == "percent":
        i = data.draw(st.integers(origin.index("://") + 3, len(origin) - 1))
        return f"{origin[:i]}%{ord(origin[i]):02X}{origin[i + 1 :]}"
    ipv6 = ["[2001:0db8::1]", "[2001:DB8::1]", "[2001:db8::0.0.0.1]", "[2001:db8:0:0:0:0::1]"]
    return origin.replace("[2001:db8::1]", data.draw(st.sampled_from(ipv6)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(origin=st.sampled_from(ALLOWED), data=st.data())
def test_an_origin_no_browser_sends_is_malformed_on_both_paths(servers: Any, origin: str, data: st.DataObject) -> None:
    spelled = respelled(origin, data)
    answers = []
    for server in servers:
        first, second = (without_date(ask(server.port, preflight(spelled, "GET"))) for _ in range(2))
        assert first == second  # the cached answer is the computed one
        answers.append(first)
    assert answers[0] == answers[1], spelled  # fast path and --no-fast-path, byte for byte
    assert answers[0].startswith(b"HTTP/1.1 400 "), (spelled, answers[0][:200])
    assert b'"error_type":"invalid_preflight"' in answers[0] and b"access-control-allow" not in answers[0].lower()
    # the origin as a browser sends it is still allowed, on the same connection pattern
    assert ask(servers[0].port, preflight(origin, "GET")).startswith(b"HTTP/1.1 204 ")


def test_pipelined_respellings_are_answered_in_order_alike(servers: Any) -> None:
    raw = b"".join(preflight(o, "GET") for o in ["https://APP.example.com", ALLOWED[0], "https://app%2eexample.com"])
    answers = []
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(raw)
            answers.append([without_date(r) for r in read_responses(sock, 3)])
    assert answers[0] == answers[1]
    assert [a.split(b" ", 2)[1] for a in answers[0]] == [b"400", b"204", b"400"]
