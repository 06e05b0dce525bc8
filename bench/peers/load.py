"""dnsperf (Debian ``dnsperf`` 2.10) runs against one server: as fast as a window of queries in
flight allows, or at a fixed offered rate (``-Q``) with every query's latency (``-v`` prints one
``> RCODE name type seconds`` line per answer; this dnsperf has no latency histogram).

A fixed-rate run's latencies leave out its first second: dnsperf starts by sending faster than
the rate asked (it catches up with its schedule while its threads start), and that burst
overflows the server's socket buffer and queues behind it every server alike (Unbound at a
tenth of its maximum: p99 0.8-1.1 ms in the first half second, about 0.1 ms after it). Lost
queries are counted over the whole run."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WINDOW = 64  # queries in flight for the maximum-rate runs
RATE_WINDOW = 1000  # for the fixed-rate runs: large enough never to hold back the offered rate
TIMEOUT_S = 2  # an answer later than this counts as lost
WARMUP_S = 1  # the start of a fixed-rate run left out of its latencies (above)
BUFFER_KB = 2048  # dnsperf's socket buffers: answers must not be dropped at the client's end


@dataclass
class Run:
    """What one dnsperf run measured."""

    offered: float | None  # queries per second asked of dnsperf (None: as fast as it can)
    qps: float  # answers per second
    lost: int
    avg_ms: float
    latencies_ms: list[float] = field(default_factory=list)  # sorted; fixed-rate runs only
    upstream: int = 0  # queries the test tree received meanwhile (a warm cache sends none)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the answered queries' latencies, in ms (NaN if none)."""
        if not self.latencies_ms:
            return math.nan
        rank = max(1, math.ceil(p / 100 * len(self.latencies_ms)))
        return self.latencies_ms[rank - 1]


_SUMMARY = {"lost": re.compile(r"Queries lost:\s+(\d+)"),
            "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
            "avg": re.compile(r"Average Latency \(s\):\s+([\d.]+)")}
_ANSWER = re.compile(r"^> \S+ \S+ \S+ ([\d.]+)$", re.MULTILINE)


def dnsperf(address: str, queries: Path, seconds: float, rate: float | None = None) -> Run:
    """One run of ``seconds`` against ``address``:53 over the query file (looping over it);
    with ``rate``, offered at that many queries per second and per-query latencies kept."""
    argv = ["dnsperf", "-s", address, "-d", str(queries), "-l", str(seconds), "-c", "1",
            "-t", str(TIMEOUT_S), "-b", str(BUFFER_KB), "-S", "0"]
    if rate is None:
        argv += ["-q", str(WINDOW)]
    else:
        argv += ["-q", str(RATE_WINDOW), "-Q", str(max(1, round(rate))), "-v"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         timeout=seconds + TIMEOUT_S + 30).stdout
    found = {key: pattern.search(out) for key, pattern in _SUMMARY.items()}
    missing = [key for key, match in found.items() if match is None]
    if missing:
        raise RuntimeError(f"dnsperf printed no {missing} for {address}: {out[-500:]}")
    latencies = []
    if rate:  # in the order the answers came: the first second's are left out
        latencies = sorted(float(s) * 1e3 for s in _ANSWER.findall(out)[round(rate * WARMUP_S):])
    return Run(rate, float(found["qps"][1]), int(found["lost"][1]), float(found["avg"][1]) * 1e3,
               latencies)
