"""How long the test tree (tests/testtree/authority.py) takes to start and to stop: the figures
that tests/test_authority.py used to assert (start under 0.8 s, stop under 0.2 s) and that a
loaded machine broke. start_tree() returns once every server is bound and the tree can answer;
stop() returns once the sockets are closed and the thread joined. The first start of a process
also reads the zone files; the later ones reuse them.

    unshare -n sh -c 'ip link set lo up && python bench/testtree.py [--rounds 10]'

Needs root (port 53 of 127.0.0.x); run it in a network namespace of its own.
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
import dns.query
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.testtree.authority import start_tree  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    starts, firsts, stops = [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        tree = start_tree(forwarder=True)
        t1 = time.perf_counter()
        reply = dns.query.udp(dns.message.make_query(".", "SOA"), "127.0.0.10", timeout=5)
        t2 = time.perf_counter()
        tree.stop()
        t3 = time.perf_counter()
        if reply.rcode() != dns.rcode.NOERROR:
            raise SystemExit(f"the root answered {dns.rcode.to_text(reply.rcode())}")
        starts.append(t1 - t0)
        firsts.append(t2 - t1)
        stops.append(t3 - t2)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.rounds} rounds of start_tree(forwarder=True), one query, stop()")
    print(f"{'step':<16}{'median':>10}{'min':>10}{'max':>10}")
    print(f"{'first start':<16}{starts[0] * 1000:>8.1f}ms   (loads and parses the zone files)")
    for step, values in (("start", starts[1:] or starts), ("first answer", firsts),
                         ("stop", stops)):
        print(f"{step:<16}" + "".join(f"{v * 1000:>8.1f}ms" for v in
                                      (statistics.median(values), min(values), max(values))))


if __name__ == "__main__":
    main()
