"""Cached queries per second, latency at half load and an offered-load sweep: dnsperf against
dnssec-sidecar (log on disk, in tmpfs, off), Unbound, Knot Resolver and PowerDNS Recursor
(bench/peers; ``--peers`` picks some), one worker/thread each, caches warm, the same 1,000 names
over the test tree, every measurement alternated across the servers (A B C A B C ...) so that
ratios hold on a noisy machine (``paired``: the median of the per-round ratios of maximum qps
to Unbound's); and a control at half load with the disk kept busy by a side thread.

Run through ``bench/qps.sh``; prints the tables of bench/RESULTS.md and writes the figures as
JSON for bench/plot.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from bench import peers
from bench.peers.load import RATE_WINDOW, WARMUP_S, WINDOW, DiskWriter, Run, dnsperf
from resolver.config.schema import ResolverLimits
from tests.testtree import zonedata

# Questions a second of the one-at-a-time pass that checks answers and fills the caches.
WARM_RATE = 0.8 * ResolverLimits().max_misses_per_client_per_second

SWEEP = (10, 25, 50, 75, 90, 100, 110, 120)  # offered load, % of each server's own maximum
LOGGED = "dnssec-sidecar, log on"  # the server whose log's write stream the control replays
CONTROLS = ("dnssec-sidecar, log tmpfs", peers.BASELINE)  # run again at half load beside it


def query_lines() -> list[str]:
    """1,000 names over the tree: wildcard expansions (secure, with their NSEC/NSEC3 proofs),
    plain secure names, names in insecure zones and proven non-existent names."""
    zones = zonedata.manifest()["zones"]
    children = [z for z, e in zones.items() if e["kind"] == "child"]
    insecure = [z for z, e in zones.items() if e["kind"] == "insecure"]
    lines = []
    for i in range(1000):
        zone, kind = children[i % len(children)], i % 10
        if kind < 5:
            lines.append(f"q{i}.wild.{zone} A")
        elif kind < 7:
            lines.append(f"www.{zone} {'A' if kind == 5 else 'AAAA'}")
        elif kind < 8:
            lines.append(f"www.{insecure[i % len(insecure)]} A")
        else:
            lines.append(f"nx{i}.{zone} A")
    return lines


def outcomes(address: str, lines: list[str]) -> list[str]:
    """Each query's rcode and AD bit (RFC 6840 §5.7: AD set in the query), one at a time and
    paced under dnssec-sidecar's default per-client miss rate (these are all misses, from one
    client: faster, the excess would be over that limit, which Unbound does not have by
    default); this also fills the server's cache."""
    seen = []
    start = time.monotonic()
    for i, line in enumerate(lines):
        time.sleep(max(0.0, start + i / WARM_RATE - time.monotonic()))
        name, rdtype = line.split()
        query = dns.message.make_query(name, rdtype, flags=dns.flags.RD | dns.flags.AD)
        try:
            answer = dns.query.udp(query, address, port=peers.PORT, timeout=5)
        except dns.exception.Timeout:
            seen.append("timeout")
            continue
        seen.append(dns.rcode.to_text(answer.rcode()) + (" ad" if answer.flags & dns.flags.AD else ""))
    return seen


def alternate(servers: list[peers.Peer], rounds: int, measure) -> dict[str, list[Run]]:
    """``rounds`` x (one ``measure(peer)`` per server, in order): the runs of each server."""
    runs: dict[str, list[Run]] = {p.name: [] for p in servers}
    for _ in range(rounds):
        for peer in servers:
            runs[peer.name].append(measure(peer))
    return runs


def header(servers: list[peers.Peer], args: argparse.Namespace) -> list[str]:
    dnsperf_version = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True).stdout
    version = next((ln.split()[1] for ln in dnsperf_version.splitlines()
                    if ln.startswith("Version")), "?")
    return [f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, dnsperf {version}",
            "# " + ", ".join(sorted({peers.version(p) for p in servers})),
            f"# 1,000 names, caches warm, dnssec-sidecar workers: {os.environ.get('WORKERS', '1')};"
            f" {args.rounds} alternating rounds x {args.seconds:g}s at the maximum"
            f" ({WINDOW} in flight) and {args.rounds} x {args.half_seconds:g}s at half of it"
            f" (dnsperf -Q, up to {RATE_WINDOW} in flight; latencies after the first"
            f" {WARMUP_S}s); medians"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("SECONDS_PER_RUN", 10)))
    parser.add_argument("--half-seconds", type=float, default=6.0)
    parser.add_argument("--sweep-seconds", type=float, default=4.0, help="0: no sweep")
    parser.add_argument("--peers", nargs="+", metavar="NAME", choices=[p.name for p in peers.PEERS],
                        default=[p.name for p in peers.PEERS],
                        help="the servers measured (default: all of bench/peers)")
    parser.add_argument("--json", type=Path, default=peers.ROOT_DIR / "bench" / "qps.json")
    args = parser.parse_args()
    peers.require_root()
    tree = peers.Tree.load()
    lines = query_lines()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        queries = tmp / "queries.txt"
        queries.write_text("\n".join(lines) + "\n")
        running, servers = [peers.start_tree(tmp)], []
        try:
            for peer in (p for p in peers.PEERS if p.name in args.peers):
                process, why = peers.start(peer, tree, tmp / peer.address)
                if process is None:
                    print(f"# {peer.name} left out: {why}")
                    continue
                running.append(process)
                servers.append(peer)
            report(servers, running[0], lines, queries, tmp, args)
        finally:
            for process in reversed(running):
                process.stop()


def counted(tree: peers.Running, address: str, queries: Path, seconds: float) -> Run:
    """A maximum-rate run, with the upstream queries the tree saw during it."""
    before = tree.lines()
    run = dnsperf(address, queries, seconds)
    return dataclasses.replace(run, upstream=tree.lines() - before)


def record_octets(directory: Path) -> float:
    """The mean size of the forensic records in ``directory``'s current log file."""
    with (directory / "log.jsonl").open("rb") as log:
        octets = lines = 0
        for line in log:
            octets, lines = octets + len(line), lines + 1
    return octets / max(1, lines)


def at_half(runs: list[Run]) -> dict[str, float]:
    """The median p50 and p99 of fixed-rate runs, and the queries they lost."""
    return {"p50_ms": statistics.median(r.percentile(50) for r in runs),
            "p99_ms": statistics.median(r.percentile(99) for r in runs),
            "lost": sum(r.lost for r in runs)}


def report(servers: list[peers.Peer], tree: peers.Running, lines: list[str], queries: Path,
           tmp: Path, args: argparse.Namespace) -> None:
    names = [p.name for p in servers]
    reference = outcomes(servers[0].address, lines)
    differ = {p.name: [(line, ours, theirs) for line, ours, theirs in
                       zip(lines, reference, outcomes(p.address, lines)) if ours != theirs]
              for p in servers[1:]}
    for peer in servers:  # warm the caches through the path dnsperf's queries take
        dnsperf(peer.address, queries, 3)
    best = alternate(servers, args.rounds, lambda p: counted(tree, p.address, queries, args.seconds))
    top = {n: statistics.median(r.qps for r in best[n]) for n in names}
    half = alternate(servers, args.rounds,
                     lambda p: dnsperf(p.address, queries, args.half_seconds, top[p.name] / 2))
    # The control: the disk kept as busy as the log on disk kept it at its half load, by a side
    # thread, while servers that do not write to it run at their half load again.
    controls = [p for p in servers if p.name in CONTROLS]
    busy: dict[str, list[Run]] = {}
    disk_rate = 0.0
    logged = next((p for p in servers if p.name == LOGGED), None)
    if logged is not None and controls:
        disk_rate = top[LOGGED] / 2 * record_octets(tmp / logged.address)
        with DiskWriter(tmp / "disk-busy.dat", disk_rate):
            busy = alternate(controls, args.rounds, lambda p: dnsperf(
                p.address, queries, args.half_seconds, top[p.name] / 2))
    sweep: dict[str, list[Run]] = {n: [] for n in names}
    for percent in SWEEP if args.sweep_seconds > 0 else ():
        step = alternate(servers, 1, lambda p: dnsperf(p.address, queries, args.sweep_seconds,
                                                        top[p.name] * percent / 100))
        for n in names:
            sweep[n] += step[n]

    base = top.get(peers.BASELINE)
    about = header(servers, args)
    print("\n".join(about))
    print(f"{'server':24s} {'qps':>8s} {'avg':>9s} {'lost':>5s} {'vs unbound':>10s} {'paired':>7s}"
          f" {'p50 @50%':>9s} {'p99 @50%':>9s} {'lost @50%':>9s} {'upstream':>8s}")
    for n in names:
        ratio = f"{top[n] / base:9.2f}x" if base else f"{'-':>10s}"
        paired = f"{'-':>7s}"
        if base:
            qps = [r.qps for r in best[n]]
            paired = f"{peers.median_ratio(qps, [r.qps for r in best[peers.BASELINE]]):6.2f}x"
        figures = at_half(half[n])
        print(f"{n:24s} {top[n]:8.0f} {statistics.median(r.avg_ms for r in best[n]):6.3f} ms"
              f" {sum(r.lost for r in best[n]):5d} {ratio} {paired}"
              f" {figures['p50_ms']:6.3f} ms {figures['p99_ms']:6.3f} ms {figures['lost']:9d}"
              f" {sum(r.upstream for r in best[n]) / sum(r.qps * args.seconds for r in best[n]):8.4f}")
    if busy:
        print(f"\n# control: at half load again while a side thread writes {disk_rate / 1e6:.1f}"
              f" MB/s to the disk ({LOGGED}'s records at its half load; fsync each second)")
        print(f"{'server':36s} {'p50 @50%':>9s} {'p99 @50%':>9s} {'lost @50%':>9s}")
        for n, runs in busy.items():
            figures = at_half(runs)
            print(f"{n + ', disk busy':36s} {figures['p50_ms']:6.3f} ms"
                  f" {figures['p99_ms']:6.3f} ms {figures['lost']:9d}")
    print(f"\n# answers (rcode, AD) differing from {names[0]}'s over the 1,000 names:")
    for n, rows in differ.items():
        sample = "; ".join(f"{line}: {ours} vs {theirs}" for line, ours, theirs in rows[:3])
        print(f"{n:24s} {len(rows):4d}{'  e.g. ' + sample if rows else ''}")
    print(f"\n# offered-load sweep: {args.sweep_seconds:g}s per step, steps alternated;"
          " offered = % of the server's own maximum above")
    print(f"{'server':24s} {'offered %':>9s} {'offered':>8s} {'achieved':>8s} {'p99':>9s}"
          f" {'lost':>6s}")
    for n in names:
        for percent, run in zip(SWEEP, sweep[n]):
            print(f"{n:24s} {percent:9d} {run.offered:8.0f} {run.qps:8.0f}"
                  f" {run.percentile(99):6.3f} ms {run.lost:6d}")
    args.json.write_text(json.dumps({
        "header": about,
        "max_qps": top,
        "half_load": {n: at_half(runs) for n, runs in half.items()},
        "disk_busy": {"octets_per_s": disk_rate,
                      "half_load": {n: at_half(runs) for n, runs in busy.items()}},
        "sweep": {n: [{"percent": pc, "offered": r.offered, "achieved": r.qps,
                       "p50_ms": r.percentile(50), "p99_ms": r.percentile(99), "lost": r.lost}
                      for pc, r in zip(SWEEP, sweep[n])] for n in names},
    }, indent=1) + "\n")
    print(f"\n# figures written to {args.json}")


if __name__ == "__main__":
    main()
