import json

import pytest

from cors_handler.serve.events import EventLog, Throttle, configure_logging

from ..conftest import FakeClock


def test_throttle_admits_limit_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock(0.0)
    throttle = Throttle(limit=3, interval=1.0, clock=clock)
    results = [throttle.admit() for _ in range(10)]
    assert results == [0, 0, 0, None, None, None, None, None, None, None]
    clock.now += 1.0
    assert throttle.admit() == 7  # the first line of the next window reports what was dropped
    assert throttle.admit() == 0


def test_event_log_flood_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    clock = FakeClock(0.0)
    events = EventLog(production=True, throttle=Throttle(limit=5, interval=1.0, clock=clock))
    for i in range(10_000):
        events.rejected("default", "origin_not_allowed", b"https://evil%d.com" % i, b"GET")
    clock.now += 1
    events.rejected("default", "origin_not_allowed", b"https://last.com", b"GET")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 6
    assert lines[0]["event"] == "preflight rejected" and lines[0]["level"] == "info"
    assert lines[-1]["suppressed"] == 9995


def test_rejections_are_debug_outside_production(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    EventLog(production=False).rejected("default", "origin_not_allowed", b"https://x.com", b"GET")
    assert capsys.readouterr().err == ""
    configure_logging("debug", "json")
    EventLog(production=False).rejected("default", "origin_not_allowed", b"https://x.com", b"GET")
    assert json.loads(capsys.readouterr().err)["level"] == "debug"


def test_rejection_line_names_the_refused_headers(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 10: the rejection log line lacked the refused header(s); from the pipeline, hit or miss."""
    from cors_handler.serve.pipeline import Runtime

    from ..conftest import make_policy

    configure_logging("info", "json")
    runtime = Runtime(make_policy(allow_origins=["https://a.example"], rate_limit={"enabled": False}))
    request = [(b"origin", b"https://a.example"), (b"access-control-request-method", b"GET"),
               (b"access-control-request-headers", b"X-Foo, Content-Type, x-bar")]  # fmt: skip
    for _ in range(2):  # the miss decides, the hit answers from the cache: both lines name the headers
        runtime.answer("/api", request, "127.0.0.1")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["reason"], line["headers"]) for line in lines] == [("header_not_allowed", "x-bar, x-foo")] * 2
    runtime.answer("/api", [(b"origin", b"https://b.example"), (b"access-control-request-method", b"GET")], None)
    [origin_line] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert origin_line["reason"] == "origin_not_allowed" and "headers" not in origin_line
