"""The benchmark harnesses run (tiny sizes; numbers are printed by the harness, never asserted here)."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.microbench import measure

from .conftest import free_port, stop_process


def test_microbench_runs_every_variant() -> None:
    rates = measure(requests=5000, rounds=1)
    assert set(rates) == {"metrics on, limiter on", "metrics off, limiter on", "metrics on, limiter off",
                          "metrics off, limiter off"}  # fmt: skip
    assert all(rate > 0 for rate in rates.values())


@pytest.mark.e2e
def test_adversarial_harness_sees_every_expected_status() -> None:
    from loadtests.adversarial import BASELINE, CASES, measure, report

    results = measure(requests=20)
    assert [r.case for r in results] == CASES
    for result in results:
        assert result.statuses == {result.case.expected_status}, result
    text = report(results)
    assert BASELINE in text and "expected" not in text


@pytest.mark.e2e
def test_held_pipelines_cost_a_bounded_amount_per_connection() -> None:
    from loadtests.adversarial import measure_held, report_held

    rows = measure_held((4, 16))
    assert [count for count, _, _ in rows] == [4, 16]
    for count, before, peak in rows:
        # one read (256 KiB) and a bounded queue per connection; unbounded it was about 12 MiB each
        assert peak - before < count * 1024, (count, before, peak)
    assert "KiB per connection" in report_held(rows)


def test_miss_microbench_covers_both_policy_sizes() -> None:
    from loadtests.microbench import measure_misses

    costs = measure_misses(decisions=200, rounds=1)
    assert {name for name, _ in costs} == {"1 entry", "21,000 entries"}
    assert all(cost > 0 for cost in costs.values())


def test_protocol_bench_answers_on_the_fast_path() -> None:
    from loadtests.protobench import measure as measure_protocols

    costs = measure_protocols(requests=200, rounds=1)
    assert set(costs) == {"cors-handler fast path", "constant-bytes Protocol", "fast path, 1000 rotating origins",
                          "fast path, new refused origins (misses)"}  # fmt: skip
    assert all(cost > 0 for cost in costs.values())


@pytest.mark.parametrize("kind", ["constant", "floor"])
@pytest.mark.e2e
def test_python_baselines_answer_a_preflight_with_the_services_bytes(kind: str) -> None:
    """Both Python baselines of loadtests/bench.py, started as the bench starts them, answer with the same
    bytes as cors-handler's answer to the bench's allowed preflight (only the Date line may differ)."""
    from loadtests.baselines import allowed_answer
    from loadtests.bench import wait_listening
    from loadtests.scenarios import ALLOWED_ORIGIN, PATH

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "loadtests.baselines", kind, "--port", str(port)],
                            cwd=Path(__file__).parent.parent)  # fmt: skip
    try:
        wait_listening(port, proc)
        head = (f"OPTIONS {PATH} HTTP/1.1\r\nHost: x\r\nOrigin: {ALLOWED_ORIGIN}\r\n"
                "Access-Control-Request-Method: PUT\r\n\r\n").encode()  # fmt: skip
        expected = re.sub(rb"date: [^\r]*", b"date: -", allowed_answer())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for _ in range(3):  # keep-alive: every request on the connection gets the answer
                sock.sendall(head)
                answer = b""
                while len(answer) < len(expected) - 10:
                    answer += sock.recv(65536)
                assert re.sub(rb"date: [^\r]*", b"date: -", answer) == expected
    finally:
        stop_process(proc, timeout=5)
