"""The load generators' reports are parsed into the figures the benchmarks print."""

from __future__ import annotations

import pytest

from bench.tools import parse_hey, parse_wrk

WRK = """Running 1s test @ http://127.0.0.1:18080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.59ms  837.21us  10.10ms   79.27%
    Req/Sec     1.50k   136.60     1.71k    72.73%
  Latency Distribution
     50%    2.46ms
     75%    2.92ms
     90%    3.53ms
     99%    5.57ms
  1644 requests in 1.10s, 0.87MB read
  Non-2xx or 3xx responses: 1644
Requests/sec:   1494.75
Transfer/sec:    810.14KB
"""

HEY = """
Summary:
  Total:	1.0154 secs
  Slowest:	0.0049 secs
  Fastest:	0.0012 secs
  Average:	0.0027 secs
  Requests/sec:	78.7836

  Total data:	28560 bytes
  Size/request:	357 bytes

Response time histogram:
  0.001 [1]	|■■■
  0.002 [6]	|■■■■■■■■■■■■■■■■
  0.002 [8]	|■■■■■■■■■■■■■■■■■■■■■
  0.002 [10]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.003 [10]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.003 [13]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.003 [15]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.004 [11]	|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.004 [0]	|
  0.004 [4]	|■■■■■■■■■■■
  0.005 [2]	|■■■■■


Latency distribution:
  10% in 0.0016 secs
  25% in 0.0022 secs
  50% in 0.0028 secs
  75% in 0.0033 secs
  90% in 0.0037 secs
  95% in 0.0044 secs
  99% in 0.0049 secs

Details (average, fastest, slowest):
  DNS+dialup:	0.0003 secs, 0.0012 secs, 0.0049 secs
  DNS-lookup:	0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:	0.0001 secs, 0.0000 secs, 0.0005 secs
  resp wait:	0.0020 secs, 0.0004 secs, 0.0042 secs
  resp read:	0.0003 secs, 0.0000 secs, 0.0020 secs

Status code distribution:
  [501]	80 responses



"""


def test_wrk_report_gives_rate_percentiles_in_ms_and_failures() -> None:
    assert parse_wrk(WRK) == {
        "rps": 1494.75,
        "requests": 1644.0,
        "p50_ms": 2.46,
        "p99_ms": 5.57,
        "non_2xx": 1644.0,
        "socket_errors": 0.0,
    }


def test_hey_report_gives_rate_percentiles_in_ms_and_failures() -> None:
    figures = parse_hey(HEY)
    assert figures["rps"] == 78.7836
    assert figures["p50_ms"] == pytest.approx(2.8)
    assert figures["p99_ms"] == pytest.approx(4.9)
    assert figures["non_2xx"] == 80.0
    assert figures["requests"] == 80.0


def test_wrk_socket_errors_are_summed() -> None:
    report = WRK.replace(
        "Requests/sec", "  Socket errors: connect 2, read 3, write 0, timeout 5\nRequests/sec"
    )
    assert parse_wrk(report)["socket_errors"] == 10.0


def test_a_report_without_figures_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")
    with pytest.raises(ValueError, match="latency"):
        parse_hey("Requests/sec: 1.0")
