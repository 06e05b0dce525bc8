"""Forensic log throughput (issue #4): records per second the writer sustains, with plain SHA-256
and with HMAC-SHA-256 chaining, for a full-detail record of a Secure answer (~1.3 KB).

- ``seal``: encoding and hashing alone (what the writer thread does per record);
- ``end-to-end``: the event loop appends (waiting when the queue is full) while the writer thread
  seals, writes one batch per ``os.write`` to a file in a temporary directory and fsyncs every
  second; timed until ``flush()`` returns. Best of the rounds is reported.

    python bench/forensic.py [--records 200000] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import sys
import tempfile
import random
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resolver.config import LogConfig  # noqa: E402
from resolver.forensic._fastlog import GENESIS, Chain  # noqa: E402
from resolver.forensic.log import ForensicLog  # noqa: E402
from resolver.forensic.seal import hasher, hit_template, seal  # noqa: E402

RECORD = {
    "time": "2026-06-01T00:00:00.123456Z",
    "client": {"address": "10.244.1.17", "port": 53211},
    "transport": "udp", "listener": "127.0.0.1:53", "service": "payments",
    "id": 48213, "qname": "api.payments.example.", "qtype": "A",
    "flags": {"rd": True, "do": True, "cd": False, "ad": False},
    "policy": {"decision": "allow", "rule": "example.", "reason": None},
    "cache_hit": False, "upstream": ["198.41.0.4", "192.5.6.30", "203.0.113.53"],
    "rcode": "NOERROR", "ede": None,
    "answer": [{"name": "api.payments.example.", "type": "A", "ttl": 300,
                "rdata": ["203.0.113.10", "203.0.113.11"]},
               {"name": "api.payments.example.", "type": "RRSIG", "ttl": 300,
                "rdata": ["A 13 3 300 20260701000000 20260501000000 31589 example. "
                          "o0Ef3jYg1Sx7mVvRlq2m3cWJQ2pVY0yM5eP0n1YbYkq8u2Ehl4kXHq3Xo0yF1B5QW1mF"
                          "bY0t0bHc3W9nX6Z8Xw=="]}],
    "verdict": "secure",
    "proof": {"zones": [".", "example.", "payments.example."],
              "keys": [". DS 20326/8", "example. DS 31589/13", "payments.example. DS 1123/13"],
              "signatures": [
                  {"owner": "api.payments.example.", "type": "A", "signer": "payments.example.",
                   "key_tag": 1123, "algorithm": 13, "inception": 1777593600,
                   "expiration": 1782864000},
                  {"owner": "payments.example.", "type": "DNSKEY", "signer": "payments.example.",
                   "key_tag": 1123, "algorithm": 13, "inception": 1777593600,
                   "expiration": 1782864000},
                  {"owner": "example.", "type": "DNSKEY", "signer": "example.",
                   "key_tag": 31589, "algorithm": 13, "inception": 1777593600,
                   "expiration": 1782864000}],
              "denial": None},
    "duration_ms": 41.207,
}
KEY = b"k" * 32


def bench_seal(n: int, key: bytes | None) -> tuple[float, int]:
    prev = GENESIS
    size = 0
    digest_of = hasher(key)
    start = time.perf_counter()
    for seq in range(n):
        line, prev = seal(RECORD, seq, prev, key, digest_of)
        size += len(line)
    return n / (time.perf_counter() - start), size // n


async def bench_log(n: int, key_file: str | None, directory: str) -> float:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        log = ForensicLog(LogConfig(path=os.path.join(tmp, "log"), hmac_key_file=key_file,
                                    max_bytes=0, max_age_s=0))
        await log.start()
        start = time.perf_counter()
        for _ in range(n):
            record = dict(RECORD)
            if not log.append_nowait(record):
                await log.append(record)
        await log.flush()
        rate = n / (time.perf_counter() - start)
        await log.close()
        return rate


def bench_hits(n: int, key: bytes | None) -> float:
    template = hit_template(dict(RECORD, worker=None, stale=False))
    query = b"\x12\x34\x01\x00" + bytes(8)
    elapsed = 0.0
    for _ in range(max(1, n // 10_000)):
        chain = Chain(collections.deque(), 10_001, key)
        chain.open = True
        start = time.perf_counter()
        for _ in range(10_000):
            chain.append_hit(template, ("10.244.1.17", 53211), query, b'"127.0.0.1:53"',
                             1780272000.0, False)
        elapsed += time.perf_counter() - start
    return max(1, n // 10_000) * 10_000 / elapsed


def bench_levels(n: int, rounds: int) -> None:
    rnd = random.Random(1)
    lines, prev = [], GENESIS
    for i in range(n):
        record = dict(RECORD, id=rnd.randrange(65536), duration_ms=round(rnd.random() * 5, 3),
                      client={"address": f"10.244.1.{rnd.randrange(256)}",
                              "port": rnd.randrange(1024, 65536)},
                      qname=f"n{rnd.randrange(1000)}.payments.example.",
                      time=f"2026-06-01T00:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}."
                           f"{rnd.randrange(10 ** 6):06d}Z")
        line, prev = seal(record, i, prev, None)
        lines.append(line)
    raw = sum(map(len, lines)) / n
    print(f"{n} distinct records, {raw:.0f} octets each uncompressed; best of {rounds}")
    for batch in (4, 256):
        for level in (1, 3, 6):
            best, out = math.inf, 0
            for _ in range(rounds):
                packer, out = zlib.compressobj(level, zlib.DEFLATED, 31), 0
                start = time.perf_counter()
                for at in range(0, n, batch):
                    out += len(packer.compress(b"".join(lines[at:at + batch])))
                    out += len(packer.flush(zlib.Z_SYNC_FLUSH))
                best = min(best, time.perf_counter() - start)
            print(f"batches of {batch:3d}, level {level}: {out / n:6.1f} octets/record, "
                  f"{best / n * 1e6:6.2f} us/record ({raw * n / best / 1e6:.0f} MB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the log files go (default: TMPDIR)")
    parser.add_argument("--compress", action="store_true", help="gzip levels instead")
    args = parser.parse_args()
    if args.compress:
        bench_levels(min(args.records, 50_000), args.rounds)
        return
    with tempfile.NamedTemporaryFile("wb", delete=False) as f:
        f.write(KEY)
    try:
        print(f"python {sys.version.split()[0]}, {args.records} records per round, "
              f"best of {args.rounds}")
        for name, key, key_file in (("sha256", None, None), ("hmac-sha256", KEY, f.name)):
            seal_rate, size = max(bench_seal(args.records, key) for _ in range(args.rounds))
            e2e = max(asyncio.run(bench_log(args.records, key_file, args.dir))
                      for _ in range(args.rounds))
            hits = max(bench_hits(args.records, key) for _ in range(args.rounds))
            print(f"{name:12} seal {seal_rate:10,.0f} records/s   end-to-end {e2e:10,.0f} "
                  f"records/s   hit {hits:10,.0f} records/s   {size} bytes/record")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
