"""Hostile zones of the test tree (issues #7 and #20): the CPU one hostile query costs, and what a
healthy client gets while hostile queries run, dnssec-sidecar (forensic log on disk) paired with
Unbound (bench/peers: one thread, default limits) in the same rounds.

For each attack of tree.json "scenarios" in a hostile zone (KeyTrap-style same-tag keys and
signature floods, NSEC3 salts, iterations and floods, a near-64 KiB answer, long CNAME chains,
referrals back up, deep delegations, NXNS), each round restarts both resolvers (empty caches),
primes each with one healthy query, then, in an order rotated from round to round:

* cold: the attack query once on each: the resolver's CPU time for it (every thread's time on a
  CPU from /proc/<pid>/task/*/schedstat, in ns, read before the query and SETTLE_S after the
  answer, so that work the query left running is counted too) and the upstream queries the
  tree received;
* burst: ``--burst`` more attack queries, 4 in flight, while a second client asks the cached
  healthy name ``--healthy`` times, one at a time: CPU time per client query over the burst,
  upstream queries per attack query, and the healthy client's latency (p50/p99) and answers.

Printed per attack and resolver: the medians over the rounds and ``paired``, the median of the
per-round ratios of our cold CPU to Unbound's; then the worst attack of each side.

    python bench/hostile.py [--rounds 3] [--burst 200] [--healthy 200] [--attack nxns ...]
    # [--baseline DIR: also the dnssec-sidecar checked out and built in DIR, paired with ours]

Needs root and unbound (Debian); runs itself in a new network namespace (the tree binds
127.0.0.x:53).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import peers  # noqa: E402
from bench.cold import baseline_peer  # noqa: E402
from tests.testtree import zonedata  # noqa: E402

HEALTHY = "www.rsasha256.example."
OURS = "dnssec-sidecar, log on"
SETTLE_S = 0.2  # after an answer: work the query started elsewhere (logging, lookups) ends


def ask(address: str, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    response = dns.query.udp(query, address, port=peers.PORT, timeout=10)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, address, port=peers.PORT, timeout=10)
    return response


def hostile_scenarios() -> list[dict]:
    zones = [dns.name.from_text(z) for z, e in zonedata.manifest()["scenario_zones"].items()
             if e["kind"] == "hostile"]
    return [s for s in zonedata.manifest()["scenarios"]
            if any(dns.name.from_text(s["qname"]).is_subdomain(z) for z in zones)]


def outcome(response: dns.message.Message) -> str:
    ede = [str(int(o.code)) for o in response.options if o.otype == dns.edns.EDE]
    ad = " AD" if response.flags & dns.flags.AD else ""
    return f"{dns.rcode.to_text(response.rcode())}{ad}" + (f" EDE {','.join(ede)}" if ede else "")


@dataclass
class Figures:
    """One resolver's figures for one attack, a value per round."""

    outcome: str = ""
    cold_cpu_ms: list[float] = field(default_factory=list)
    upstream: list[int] = field(default_factory=list)
    burst_cpu_ms: list[float] = field(default_factory=list)  # per client query of the burst
    burst_upstream: list[float] = field(default_factory=list)  # per attack query
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)


def cold(peer: peers.Peer, pid: int, tree: peers.Running, scenario: dict,
         figures: Figures) -> None:
    before_upstream = tree.lines()
    before = peers.cpu_seconds(pid)
    answer = ask(peer.address, scenario["qname"], scenario["qtype"])
    time.sleep(SETTLE_S)
    figures.cold_cpu_ms.append((peers.cpu_seconds(pid) - before) * 1000)
    figures.upstream.append(tree.lines() - before_upstream)
    figures.outcome = outcome(answer)


def burst(peer: peers.Peer, pid: int, tree: peers.Running, scenario: dict, attacks: int,
          healthy: int, figures: Figures) -> None:
    latencies, answered = [], 0
    before_upstream = tree.lines()
    before = peers.cpu_seconds(pid)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        attack = [pool.submit(ask, peer.address, scenario["qname"], scenario["qtype"])
                  for _ in range(attacks)]
        for _ in range(healthy):
            start = time.perf_counter()
            response = ask(peer.address, HEALTHY, "A")
            latencies.append(time.perf_counter() - start)
            answered += response.rcode() == dns.rcode.NOERROR
        for future in attack:
            future.result()
    time.sleep(SETTLE_S)
    figures.burst_cpu_ms.append((peers.cpu_seconds(pid) - before) * 1000 / (attacks + healthy))
    figures.burst_upstream.append((tree.lines() - before_upstream) / max(1, attacks))
    latencies.sort()
    figures.p50.append(statistics.median(latencies) * 1000)
    figures.p99.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000)
    figures.answered.append(answered)


def measure(candidates: list[peers.Peer], tree: peers.Running, scenario: dict,
            args: argparse.Namespace, tmp: Path) -> dict[str, Figures]:
    figures = {p.name: Figures() for p in candidates}
    tree_info = peers.Tree.load()
    for round_ in range(args.rounds):
        running: dict[str, peers.Running] = {}
        try:
            for peer in candidates:
                process, why = peers.start(peer, tree_info, tmp / peer.address)
                if process is None:
                    raise SystemExit(f"{peer.name} did not start: {why}")
                running[peer.name] = process
                ask(peer.address, HEALTHY, "A")  # priming, root keys, the healthy name cached
            time.sleep(SETTLE_S)
            turn = round_ % len(candidates)
            order = candidates[turn:] + candidates[:turn]
            for peer in order:
                cold(peer, running[peer.name].process.pid, tree, scenario, figures[peer.name])
            if args.burst:
                for peer in order:
                    burst(peer, running[peer.name].process.pid, tree, scenario, args.burst,
                          args.healthy, figures[peer.name])
        finally:
            for process in running.values():
                process.stop()
    return figures


def med(values: list[float], spec: str) -> str:
    return format(statistics.median(values), spec) if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh resolver pairs per attack")
    parser.add_argument("--burst", type=int, default=200, help="attack queries per round "
                        "(0: no burst)")
    parser.add_argument("--healthy", type=int, default=200, help="healthy queries meanwhile")
    parser.add_argument("--attack", action="append", metavar="NAME", help="only this attack "
                        "(repeatable; the names of the first column)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the dnssec-sidecar checked out (and built) in DIR")
    args = parser.parse_args()
    scenarios = [s for s in hostile_scenarios() if not args.attack or s["name"] in args.attack]
    if not scenarios:
        parser.error(f"no attack named {', '.join(args.attack)}")
    peers.in_own_namespace("HOSTILE_BENCH_NETNS")
    candidates = [p for p in peers.PEERS if p.name in (OURS, peers.BASELINE)]
    if args.baseline is not None:
        candidates.insert(1, baseline_peer(args.baseline))
    print(f"# {platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          + ", ".join(peers.version(p) for p in candidates))
    print(f"# per attack, {args.rounds} rounds of: both resolvers restarted and primed; the attack"
          f" once (cold CPU: all threads, schedstat, {SETTLE_S:g} s after the answer included);"
          f" then {args.burst} attack queries (4 in flight) while a second client asks {HEALTHY}"
          f" A {args.healthy} times; medians over the rounds; paired = median of per-round"
          " ratios of cold CPU to unbound's")
    print(f"{'attack':25} {'resolver':25} {'answer':18} {'cold CPU ms':>11} {'paired':>7} "
          f"{'upstream':>8} {'burst CPU ms/q':>14} {'upstream/q':>10} {'healthy p50':>11} "
          f"{'p99 ms':>7} {'answered':>9}")
    worst: dict[str, tuple[float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tree = peers.start_tree(tmp)
        try:
            for scenario in scenarios:
                figures = measure(candidates, tree, scenario, args, tmp)
                base = figures[peers.BASELINE].cold_cpu_ms
                for name, f in figures.items():
                    cpu = statistics.median(f.cold_cpu_ms)
                    if cpu > worst.get(name, (-1.0, ""))[0]:
                        worst[name] = (cpu, scenario["name"])
                    paired = f"{peers.median_ratio(f.cold_cpu_ms, base):.2f}x" if min(base) > 0 \
                        else "-"
                    print(f"{scenario['name']:25} {name:25} {f.outcome:18} {cpu:11.2f} "
                          f"{paired:>7} {med(f.upstream, '8.0f'):>8} "
                          f"{med(f.burst_cpu_ms, '14.2f'):>14} "
                          f"{med(f.burst_upstream, '10.2f'):>10} {med(f.p50, '11.2f'):>11} "
                          f"{med(f.p99, '7.2f'):>7} "
                          f"{med(f.answered, '.0f'):>5}/{args.healthy}", flush=True)
                if args.baseline is not None:
                    ratio = peers.median_ratio(figures[OURS].cold_cpu_ms,
                                               figures[candidates[1].name].cold_cpu_ms)
                    print(f"# {OURS} / {candidates[1].name}: paired {ratio:.2f}x cold CPU")
        finally:
            tree.stop()
    for name, (cpu, attack) in worst.items():
        print(f"# worst cold CPU, {name}: {cpu:.2f} ms ({attack})")


if __name__ == "__main__":
    main()
