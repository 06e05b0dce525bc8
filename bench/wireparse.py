"""Parsing the upstream replies of a cold lookup (issue #20): dnspython's ``from_wire`` against
``resolver.resolve._wireparse.from_wire`` (the same messages, compiled), on the replies the
test tree's servers give for bench/cold.py's case (a) and (c) queries, in alternating rounds on
the same bytes; the median of the per-round times and of their ratios (``paired``).

    python3 bench/wireparse.py [--rounds 9] [--seconds 0.2]

No network, no root: the replies are made in this process by the tree's responders.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.resolve import _wireparse, transport  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

# (zone asked, question): what a cold lookup of www.rsasha256.example. and of
# www.insecure.rsasha256.example. sends, and a negative answer.
QUESTIONS = [(".", ".", "DNSKEY"), (".", "example.", "A"), ("example.", "example.", "DNSKEY"),
             ("example.", "rsasha256.example.", "A"),
             ("rsasha256.example.", "rsasha256.example.", "DNSKEY"),
             ("rsasha256.example.", "www.rsasha256.example.", "A"),
             ("rsasha256.example.", "insecure.rsasha256.example.", "A"),
             ("example.", "nonexistent.example.", "A")]


def servers() -> dict[str, authority.Server]:
    """The tree's authoritative servers (not started: ``handle`` answers in this process),
    by the name of each zone they serve."""
    found = {}
    for address, spec in zonedata.manifest()["servers"].items():
        if spec["role"] == "authoritative":
            server = authority.Server(address, [zonedata.load(z) for z in spec["zones"]])
            found.update({zone: server for zone in spec["zones"]})
    return found


def replies() -> list[tuple[str, bytes]]:
    by_zone, found = servers(), []
    for zone, name, rdtype in QUESTIONS:
        query = transport.make_query(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        found.append((f"{name} {rdtype} from {zone}",
                      by_zone[zone].handle(query.to_wire(), "udp")))
    return found


def per_call(parse, wire: bytes, seconds: float) -> float:
    """Seconds per call of ``parse(wire)``, over about ``seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            parse(wire)
        calls += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2)
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"dnspython {dns.version.version}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} alternating rounds "
          f"x {args.seconds:g} s per parser and reply; medians")
    print(f"{'reply':56s} {'bytes':>5s} {'dnspython':>10s} {'compiled':>9s} {'paired':>7s}")
    total_theirs = total_ours = 0.0
    for label, wire in replies():
        assert _wireparse.parse(wire) == dns.message.from_wire(wire)  # the compiled path
        theirs, ours = [], []
        for round_ in range(args.rounds):
            pair = [(theirs, dns.message.from_wire), (ours, _wireparse.from_wire)]
            for times, parse in (pair if round_ % 2 else pair[::-1]):
                times.append(per_call(parse, wire, args.seconds))
        ratio = statistics.median(t / o for t, o in zip(theirs, ours))
        total_theirs += statistics.median(theirs)
        total_ours += statistics.median(ours)
        print(f"{label:56s} {len(wire):5d} {statistics.median(theirs) * 1e6:7.1f} us"
              f" {statistics.median(ours) * 1e6:6.1f} us {ratio:6.1f}x")
    print(f"# all {len(QUESTIONS)} replies: dnspython {total_theirs * 1e6:.0f} us, compiled "
          f"{total_ours * 1e6:.0f} us ({total_theirs / total_ours:.1f}x)")


if __name__ == "__main__":
    main()
