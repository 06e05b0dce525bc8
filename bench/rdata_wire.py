"""The CPU of ``resolver.dnssec.canonical.rdata_wire`` per RR type (issue #20: the canonical RDATA
every signature check, DS match and key tag builds), paired against a ``--baseline`` checkout.

The records are those of the test tree's zone files (every zone, tests/testtree), plus a few
written here for the types the tree lacks (PTR, SRV, SPF, CDS). Each side is a worker process of
its own checkout (its compiled modules built there); the two take turns, round after round, each
timing ``rdata_wire`` over all the records of one type for ``--seconds``. Printed per type: the
records, the median ns per record on each side and the median of the per-round ratios.

    python3 bench/rdata_wire.py --baseline DIR [--rounds 7] [--seconds 0.1]

No network, no root.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
TYPES = ["A", "NS", "CNAME", "DNAME", "PTR", "MX", "SRV", "SOA", "TXT", "SPF", "DS", "CDS",
         "DNSKEY", "NSEC", "NSEC3", "NSEC3PARAM", "RRSIG"]
EXTRA = [("PTR", "Host.Example."), ("SRV", "0 5 443 Svc.Example."),
         ("SPF", '"v=spf1 -all"'), ("CDS", "12345 13 2 " + "ab" * 32)]


def records() -> dict[str, list]:
    """The test tree's records and EXTRA, by type name."""
    import dns.rdata
    import dns.rdatatype

    from tests.testtree import zonedata
    found: dict[str, list] = {name: [] for name in TYPES}
    manifest = zonedata.manifest()
    for zone in [*manifest["zones"], *manifest.get("scenario_zones", {})]:
        for node in zonedata.load(zone).zone.nodes.values():
            for rdataset in node.rdatasets:
                found.setdefault(dns.rdatatype.to_text(rdataset.rdtype), []).extend(rdataset)
    for rdtype, text in EXTRA:
        found[rdtype].append(dns.rdata.from_text("IN", rdtype, text))
    return found


def worker(seconds: float) -> None:
    """For each type name read on stdin, ns per rdata_wire call over its records (in a checkout)."""
    sys.path.insert(0, ".")
    from resolver.dnssec.canonical import rdata_wire
    found = records()
    for line in sys.stdin:
        rdatas = found[line.strip()]
        rdatas = rdatas * (1 + 256 // len(rdatas))  # the clock read once per 256 calls or more
        calls, start = 0, time.process_time()
        while (spent := time.process_time() - start) < seconds:
            for rdata in rdatas:
                rdata_wire(rdata)
            calls += len(rdatas)
        print(spent / calls * 1e9, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare (required)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.1, help="per type, side and round")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.seconds)
    if args.baseline is None:
        parser.error("--baseline DIR is required")
    sys.path.insert(0, str(HERE))
    counts = {name: len(rdatas) for name, rdatas in records().items()}
    sides = [("baseline", args.baseline.resolve()), ("this checkout", HERE)]
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker",
            "--seconds", str(args.seconds)]
    workers = [subprocess.Popen(argv, cwd=where, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _, where in sides]
    times = {name: ([], []) for name in TYPES}
    try:
        for round_ in range(args.rounds):
            for name in TYPES:
                for index in (0, 1) if round_ % 2 else (1, 0):
                    workers[index].stdin.write(name + "\n")
                    workers[index].stdin.flush()
                    times[name][index].append(float(workers[index].stdout.readline()))
    finally:
        for running in workers:
            running.stdin.close()
            running.wait()
    print(f"# rdata_wire, ns per record (process CPU), median of {args.rounds} rounds; "
          f"baseline {sides[0][1]}")
    print(f"{'type':11s} {'records':>7s} {'baseline':>9s} {'this':>9s} {'paired':>7s}")
    for name in TYPES:
        before, after = times[name]
        ratio = statistics.median(b / a for a, b in zip(before, after))
        print(f"{name:11s} {counts[name]:7d} {statistics.median(before):9.0f} "
              f"{statistics.median(after):9.0f} {ratio:6.2f}x")


if __name__ == "__main__":
    main()
