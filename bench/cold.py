"""Cold resolution: time to resolve and validate a name three levels under the test root
(default ``www.rsasha256.example.``: root, TLD and child DNSKEYs, two DS RRsets and the answer,
RFC 4035 §5) from an empty cache, dnssec-sidecar against Unbound, Knot Resolver and PowerDNS
Recursor (bench/peers). Every round starts each resolver afresh (new process, new cache
directory), lets it settle, and times one query with DO; the resolvers are alternated within
each round, and the medians are compared with Unbound's; ``paired`` is the median of the
per-round ratios, which holds better on a busy machine (a round's resolvers share its load).

    sudo unshare -n sh -c 'ip link set lo up && python3 bench/cold.py'   # --rounds 15

Needs root (port 53 of 127.0.0.x) and the Debian packages of the peers (unbound, knot-resolver,
pdns-recursor); a peer that is missing or does not start is left out, saying why.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers  # noqa: E402

SETTLE_S = 0.3  # after a resolver accepts connections, before the timed query


def timed(peer: peers.Peer, name: str, tree: peers.Running) -> tuple[float, int]:
    """One query for ``name`` A with DO: (seconds to a validated answer, upstream queries)."""
    query = dns.message.make_query(name, "A", want_dnssec=True)
    before = tree.lines()
    start = time.perf_counter()
    answer = dns.query.udp(query, peer.address, port=peers.PORT, timeout=10)
    elapsed = time.perf_counter() - start
    if answer.rcode() != dns.rcode.NOERROR or not answer.flags & dns.flags.AD:
        raise SystemExit(f"{peer.name}: {name} did not validate: "
                         f"{dns.rcode.to_text(answer.rcode())}, flags {answer.flags!r}")
    time.sleep(0.05)  # lets the tree print the last queries it received
    return elapsed, tree.lines() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--name", default="www.rsasha256.example.")
    args = parser.parse_args()
    peers.require_root()
    tree_info = peers.Tree.load()
    candidates = [p for p in peers.PEERS if p.name in ("dnssec-sidecar, log on", "unbound",
                                                       "knot-resolver", "pdns-recursor")]
    times: dict[str, list[float]] = {}
    upstream: dict[str, list[int]] = {}
    at_start: dict[str, list[int]] = {}  # upstream queries before the timed one (priming)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tree = peers.start_tree(tmp)
        try:
            for round_ in range(args.rounds + 1):  # round 0 warms the page cache, not counted
                for peer in candidates:
                    if round_ and peer.name not in times:
                        continue
                    before = tree.lines()
                    running, why = peers.start(peer, tree_info, tmp / peer.address)
                    if running is None:
                        print(f"# {peer.name} left out: {why}")
                        continue
                    try:
                        time.sleep(SETTLE_S)
                        primed = tree.lines() - before
                        elapsed, sent = timed(peer, args.name, tree)
                    finally:
                        running.stop()
                    if round_:
                        times[peer.name].append(elapsed)
                        upstream[peer.name].append(sent)
                        at_start[peer.name].append(primed)
                    else:
                        times[peer.name], upstream[peer.name], at_start[peer.name] = [], [], []
        finally:
            tree.stop()

    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; "
          + ", ".join(sorted({peers.version(p) for p in candidates if p.name in times})))
    print(f"# cold {args.name} A with DO, empty cache, fresh process each time, {args.rounds} "
          "alternating rounds; medians")
    base = statistics.median(times[peers.BASELINE]) if peers.BASELINE in times else None
    print(f"{'server':24s} {'median':>9s} {'min':>9s} {'max':>9s} {'upstream':>8s}"
          f" {'at start':>8s} {'vs unbound':>10s} {'paired':>7s}")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"{median / base:9.2f}x" if base else f"{'-':>10s}"
        paired = f"{'-':>7s}"
        if base and len(values) == len(times[peers.BASELINE]):
            per_round = [v / b for v, b in zip(values, times[peers.BASELINE])]
            paired = f"{statistics.median(per_round):6.2f}x"
        print(f"{name:24s} {median * 1e3:6.2f} ms {min(values) * 1e3:6.2f} ms"
              f" {max(values) * 1e3:6.2f} ms {statistics.median(upstream[name]):8.0f}"
              f" {statistics.median(at_start[name]):8.0f} {ratio} {paired}")


if __name__ == "__main__":
    main()
