"""The benchmark harnesses run (tiny sizes; numbers are printed by the harness, never asserted here).

What is asserted is that each measures what it says: every request it drove was answered, with the
answer its scenario expects, by the variant or policy its name describes.
"""

import math
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loadtests.microbench import measure, variants

from .conftest import free_port, stop_process


def test_microbench_runs_every_variant() -> None:
    apps, answered = variants(), dict[str, Counter[int]]()
    rates = measure(requests=5000, rounds=2, apps=apps, answered=answered)
    assert set(rates) == {"metrics on, limiter on", "metrics off, limiter on", "metrics on, limiter off",
                          "metrics off, limiter off"}  # fmt: skip
    assert all(rate > 0 for rate in rates.values())
    assert all(math.isfinite(rate) for rate in rates.values()), rates
    # every request asked for (5,000 per round) was answered, each an allowed preflight: none limited, none refused
    assert answered == {name: Counter({204: 2 * 5000}) for name in rates}
    for name, app in apps.items():
        metrics_on, limiter_on = name.startswith("metrics on"), name.endswith("limiter on")
        # what the name says: metrics counted every answer (or nothing); the limiter tracked the 250 forwarded clients
        assert sum(app.metrics.requests.values()) == (2 * 5000 if metrics_on else 0), name
        snapshot = app.runtime.snapshot()
        assert snapshot.limiter_clients == (250 if limiter_on else 0), name
        # 1,000 distinct origins: a miss each in the first round, hits after, so every variant measures the hit path
        assert (snapshot.cache_misses, snapshot.cache_hits) == (1000, 2 * 5000 - 1000), name


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
    from loadtests.microbench import measure_misses, miss_policies

    answered: dict[tuple[str, str], Counter[int]] = {}
    costs = measure_misses(decisions=200, rounds=2, answered=answered)
    assert {name for name, _ in costs} == {"1 entry", "21,000 entries"}
    assert all(cost > 0 for cost in costs.values())
    assert all(math.isfinite(cost) for cost in costs.values()), costs
    # each decision measured got the answer its kind names: random origins refused, wildcard and regex ones allowed
    expected = {"refused random origin": 403, "allowed by a wildcard": 204, "allowed by a regex": 204}
    assert set(costs) == {("1 entry", "refused random origin"), *(("21,000 entries", kind) for kind in expected)}
    assert answered == {(name, kind): Counter({expected[kind]: 2 * 200}) for name, kind in costs}
    # the sizes the names claim: the bench's allowed origin alone; 10,000 exact, 10,000 wildcard and 1,000 regex
    # entries next to the bench's own two (its allowed origin and https://*.tenants.example.com)
    sizes = {name: (len(o.exact), len(o.wildcards), len(o.regexes))
             for name, policy in miss_policies().items() for o in [policy.default.origins]}  # fmt: skip
    assert sizes == {"1 entry": (1, 0, 0), "21,000 entries": (10_001, 10_001, 1_000)}


def test_protocol_bench_answers_on_the_fast_path() -> None:
    from loadtests.baselines import allowed_answer
    from loadtests.protobench import measure as measure_protocols

    answers: dict[str, list[bytes]] = {}
    costs = measure_protocols(requests=200, rounds=1, answers=answers)
    assert set(costs) == {"cors-handler fast path", "constant-bytes Protocol", "fast path, 1000 rotating origins",
                          "fast path, new refused origins (misses)"}  # fmt: skip
    assert all(cost > 0 for cost in costs.values())
    assert all(math.isfinite(cost) for cost in costs.values()), costs
    # one answer per request, warm-up (200 here) included, and each the one its scenario expects
    assert {name: len(writes) for name, writes in answers.items()} == dict.fromkeys(costs, 2 * 200)
    allowed = allowed_answer()
    assert set(answers["constant-bytes Protocol"]) == {allowed}
    # the service's own answer: the baseline's bytes but the server and date lines uvicorn adds on a socket
    assert set(answers["cors-handler fast path"]) == {re.sub(rb"(?m)^(server|date): [^\r]*\r\n", b"", allowed)}
    rotating = [re.search(rb"(?m)^access-control-allow-origin: ([^\r]*)\r$", answer)
                for answer in answers["fast path, 1000 rotating origins"]]  # fmt: skip
    assert all(answer.startswith(b"HTTP/1.1 204 ") for answer in answers["fast path, 1000 rotating origins"])
    assert [m and m.group(1) for m in rotating] == [b"https://t%d.tenants.example.com" % (n % 200) for n in range(400)]
    [refusal] = set(answers["fast path, new refused origins (misses)"])  # one shared answer for every new origin
    assert refusal.startswith(b"HTTP/1.1 403 ") and b'"error_type":"origin_not_allowed"' in refusal, refusal


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
