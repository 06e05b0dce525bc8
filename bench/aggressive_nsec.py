"""Aggressive use of the validated cache (RFC 8198, `cache.aggressive_nsec`) against a
random-subdomain flood, through the real `dnssec-sidecar serve` process and the signed test tree:
upstream queries per 1,000 random names under an allowed zone, NSEC and NSEC3, with the
setting off (before) and on (after), and the resolver's CPU time for them.

    python bench/aggressive_nsec.py [--names 1000] [--zones rsasha256.example. rsasha512.test.]

Needs root; runs itself in a new network namespace (the tree binds 127.0.0.x:53).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import peers, resolve  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

ADDRESS, PORT = "127.0.0.123", 53
IN_FLIGHT = 4


def ask(name: str) -> int:
    query = dns.message.make_query(name, "A", want_dnssec=True)
    return dns.query.tcp(query, ADDRESS, port=PORT, timeout=10).rcode()


def flood(tree, zone: str, names: int, aggressive: bool, seed: int) -> dict:
    rng = random.Random(seed)
    batch = [f"{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz0123456789', k=12))}.{zone}"
             for _ in range(names)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "config.yaml")
        config.write_text(resolve.config_text(ADDRESS) + f"log: {{path: {tmp}/log.jsonl}}\n"
                          f"cache: {{aggressive_nsec: {'true' if aggressive else 'false'}}}\n")
        process = resolve.start_resolver(config, ADDRESS)
        try:
            ask(f"www.{zone}")  # keys and cuts down to the zone, not counted
            tree.clear()
            cpu, started = peers.cpu_seconds(process.pid), time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
                rcodes = list(pool.map(ask, batch))
            elapsed = time.perf_counter() - started
            cpu = peers.cpu_seconds(process.pid) - cpu
            upstream = len(tree.queries)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return {"upstream": upstream, "nxdomain": rcodes.count(dns.rcode.NXDOMAIN),
            "cpu_ms": cpu * 1000 / names, "qps": names / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1000, help="random names per zone and run")
    parser.add_argument("--zones", nargs="+", default=["rsasha256.example.", "rsasha512.test."])
    args = parser.parse_args()
    peers.in_own_namespace("AGGRESSIVE_BENCH_NETNS")
    print(f"# {platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"{args.names} random names per zone ({IN_FLIGHT} in flight over TCP), a fresh "
          "resolver per run")
    print(f"{'zone':20} {'denial':7} {'aggressive':10} {'NXDOMAIN':>8} {'upstream':>8} "
          f"{'per 1,000':>9} {'CPU ms/q':>8} {'q/s':>7}")
    with authority.start_tree() as tree:
        for zone in args.zones:
            denial = zonedata.entry(zone)["denial"]
            for aggressive in (False, True):
                r = flood(tree, zone, args.names, aggressive, seed=1)
                print(f"{zone:20} {denial:7} {'on' if aggressive else 'off':10} "
                      f"{r['nxdomain']:8d} {r['upstream']:8d} "
                      f"{r['upstream'] * 1000 / args.names:9.1f} {r['cpu_ms']:8.2f} "
                      f"{r['qps']:7.0f}", flush=True)
        if tree.errors:
            print("tree errors:", *tree.errors, sep="\n")


if __name__ == "__main__":
    main()
