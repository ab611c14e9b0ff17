"""The benchmark harness reads wrk's report correctly (wrk itself runs in loadtests/bench.py, not here)."""

from loadtests.bench import SERVERS, Result, parse_wrk, report
from loadtests.scenarios import SCENARIOS

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:41234/api/items
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   654.19us  106.78us   3.11ms   97.31%
    Req/Sec    76.69k     1.16k   77.92k    80.00%
  Latency Distribution
     50%  639.00us
     75%  653.00us
     90%  669.00us
     99%    1.26ms
  381515 requests in 5.00s, 29.47MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 15
Requests/sec:  76207.51
Transfer/sec:      5.89MB
"""


def test_parse_wrk_reads_rate_latency_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT, expects_2xx=True)
    assert result == Result(76207.51, 0.639, 1.26, 3 + 15)
    refused = parse_wrk(WRK_OUTPUT, expects_2xx=False)  # a 403 scenario: the 2xx answers are the wrong ones
    assert refused.errors == 3 + (381515 - 15)


def test_report_prints_every_row_and_the_ratios() -> None:
    results = {(name, scenario): Result(1000.0 * (i + 1), 1.0, 2.0, 0)
               for i, name in enumerate(SERVERS) for scenario in SCENARIOS}  # fmt: skip
    text = report(results, {"cors-handler": 0.2})
    assert text.count("\n") >= len(SERVERS) * len(SCENARIOS)
    assert "cors-handler / nginx: allowed origin: 0.20x" in text
    assert "cors-handler --no-fast-path / bare ASGI: allowed origin: 0.67x" in text
