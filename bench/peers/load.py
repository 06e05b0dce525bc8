"""dnsperf (Debian ``dnsperf`` 2.10) runs against one server: as fast as a window of queries in
flight allows, or at a fixed offered rate (``-Q``) with every query's latency (``-v`` prints one
``> RCODE name type seconds`` line per answer; this dnsperf has no latency histogram).

A fixed-rate run's latencies leave out its first second: dnsperf starts by sending faster than
the rate asked (it catches up with its schedule while its threads start), and that burst
overflows the server's socket buffer and queues behind it every server alike (Unbound at a
tenth of its maximum: p99 0.8-1.1 ms in the first half second, about 0.1 ms after it). Lost
queries are counted over the whole run.

``DiskWriter`` is a control for the latency runs: a side thread writing to the disk what the
forensic log would, so that a server which writes nothing itself can be measured beside it."""

from __future__ import annotations

import ctypes
import math
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WINDOW = 64  # queries in flight for the maximum-rate runs
RATE_WINDOW = 1000  # for the fixed-rate runs: large enough never to hold back the offered rate
TIMEOUT_S = 2  # an answer later than this counts as lost
WARMUP_S = 1  # the start of a fixed-rate run left out of its latencies (above)
BUFFER_KB = 2048  # dnsperf's socket buffers: answers must not be dropped at the client's end
_LIBC = ctypes.CDLL(None, use_errno=True)  # sync_file_range(2), which the os module lacks
_SYNC_FILE_RANGE_WRITE = 2


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


class DiskWriter:
    """A side thread that keeps the disk as busy as a forensic log does: ``rate`` octets per
    second appended to ``path`` in 256 KiB writes, writeback started each MiB and an fsync each
    second (the log's defaults), the file rewound at 256 MiB. A control for latency runs: what
    the same write stream costs a server that writes nothing itself."""

    CHUNK = 256 * 1024
    WRAP = 256 * 1024 * 1024

    def __init__(self, path: Path, rate: float) -> None:
        self.path, self.rate = path, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-writer", daemon=True)

    def __enter__(self) -> "DiskWriter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        chunk = b"x" * self.CHUNK
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            start = last_sync = time.monotonic()
            written = in_file = 0
            while not self._stop.is_set():
                now = time.monotonic()
                if written >= (now - start) * self.rate:
                    self._stop.wait(0.002)
                    continue
                os.write(fd, chunk)
                written += self.CHUNK
                in_file += self.CHUNK
                if in_file % (1 << 20) == 0:
                    _LIBC.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0),
                                          _SYNC_FILE_RANGE_WRITE)
                if now - last_sync >= 1.0 or in_file >= self.WRAP:
                    os.fsync(fd)
                    last_sync = now
                if in_file >= self.WRAP:
                    os.lseek(fd, 0, os.SEEK_SET)
                    in_file = 0
        finally:
            os.close(fd)
