"""The benchmark harnesses run (tiny sizes; numbers are printed by the harness, never asserted here)."""

from loadtests.microbench import measure


def test_microbench_runs_every_variant() -> None:
    rates = measure(requests=5000, rounds=1)
    assert set(rates) == {"metrics on, limiter on", "metrics off, limiter on", "metrics on, limiter off",
                          "metrics off, limiter off"}  # fmt: skip
    assert all(rate > 0 for rate in rates.values())


def test_adversarial_harness_sees_every_expected_status() -> None:
    from loadtests.adversarial import BASELINE, CASES, measure, report

    results = measure(requests=20)
    assert [r.case for r in results] == CASES
    for result in results:
        assert result.statuses == {result.case.expected_status}, result
    text = report(results)
    assert BASELINE in text and "expected" not in text


def test_miss_microbench_covers_both_policy_sizes() -> None:
    from loadtests.microbench import measure_misses

    costs = measure_misses(decisions=200, rounds=1)
    assert {name for name, _ in costs} == {"1 entry", "21,000 entries"}
    assert all(cost > 0 for cost in costs.values())


def test_protocol_bench_answers_on_the_fast_path() -> None:
    from loadtests.protobench import measure as measure_protocols

    costs = measure_protocols(requests=200, rounds=1)
    assert set(costs) == {"cors-handler fast path", "constant-bytes Protocol"}
    assert all(cost > 0 for cost in costs.values())
