"""Hostile zones of the test tree (issue #7) against the real `dnssec-sidecar serve` process.

For each attack of tree.json "scenarios" in a hostile zone, a fresh resolver (empty cache,
primed with one healthy query) gets:

* cold: the attack query once: the resolver's CPU time (utime + stime of the process from
  /proc/<pid>/stat) and the upstream queries it sent (the test tree records every query);
* burst: ATTACK_QUERIES more attack queries, 4 in flight, while a second client asks a healthy,
  cached name HEALTHY_QUERIES times: CPU time per attack query and the healthy client's
  latency (p50/p99) and answers.

    python bench/hostile.py [--burst 200] [--healthy 200]

Needs root; runs itself in a new network namespace (the tree binds 127.0.0.x:53).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import resolve  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

ADDRESS, PORT = "127.0.0.122", 53
HEALTHY = "www.rsasha256.example."
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def ask(name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    response = dns.query.udp(query, ADDRESS, port=PORT, timeout=10)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, ADDRESS, port=PORT, timeout=10)
    return response


def in_own_namespace(marker: str) -> None:
    """Run this script again as root in a new network namespace (the tree binds
    127.0.0.x:53; never outside our own namespace), ``marker`` the environment variable that
    says it is there."""
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree listens on port 53")
    if os.environ.get(marker) != "1":
        os.environ[marker] = "1"
        os.execvp("unshare", ["unshare", "-n", "sh", "-c",
                              'ip link set lo up && exec "$0" "$@"', sys.executable,
                              *sys.argv])


def start_resolver(directory: str) -> subprocess.Popen:
    config = Path(directory, "config.yaml")
    config.write_text(resolve.config_text(ADDRESS) + f"log: {{path: {directory}/log.jsonl}}\n")
    return resolve.start_resolver(config, ADDRESS)


def hostile_scenarios() -> list[dict]:
    zones = [dns.name.from_text(z) for z, e in zonedata.manifest()["scenario_zones"].items()
             if e["kind"] == "hostile"]
    return [s for s in zonedata.manifest()["scenarios"]
            if any(dns.name.from_text(s["qname"]).is_subdomain(z) for z in zones)]


def outcome(response: dns.message.Message) -> str:
    ede = [str(int(o.code)) for o in response.options if o.otype == dns.edns.EDE]
    ad = " AD" if response.flags & dns.flags.AD else ""
    return f"{dns.rcode.to_text(response.rcode())}{ad}" + (f" EDE {','.join(ede)}" if ede else "")


def measure(tree, scenario: dict, burst: int, healthy: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        process = start_resolver(tmp)
        try:
            ask(HEALTHY, "A")  # priming, root keys, the healthy name cached
            tree.clear()
            before = cpu_seconds(process.pid)
            answer = ask(scenario["qname"], scenario["qtype"])
            cold_cpu = cpu_seconds(process.pid) - before
            upstream = len(tree.queries)
            latencies, answered = [], 0
            before = cpu_seconds(process.pid)
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                attack = [pool.submit(ask, scenario["qname"], scenario["qtype"])
                          for _ in range(burst)]
                for _ in range(healthy):
                    start = time.perf_counter()
                    response = ask(HEALTHY, "A")
                    latencies.append(time.perf_counter() - start)
                    answered += response.rcode() == dns.rcode.NOERROR
                for future in attack:
                    future.result()
            burst_cpu = cpu_seconds(process.pid) - before
            burst_upstream = len(tree.queries) - upstream
        finally:
            process.terminate()
            process.wait(timeout=10)
    latencies.sort()
    return {"name": scenario["name"], "outcome": outcome(answer), "cold_cpu_ms": cold_cpu * 1000,
            "upstream": upstream, "burst_cpu_ms": burst_cpu * 1000 / (burst + healthy),
            "burst_upstream": burst_upstream / burst,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "answered": f"{answered}/{healthy}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=200, help="attack queries per scenario")
    parser.add_argument("--healthy", type=int, default=200, help="healthy queries meanwhile")
    args = parser.parse_args()
    in_own_namespace("HOSTILE_BENCH_NETNS")
    print(f"# {platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"per attack: fresh resolver, 1 cold query, then {args.burst} attack queries "
          f"(4 in flight) while a second client asks {HEALTHY} A {args.healthy} times")
    print(f"{'attack':26} {'answer':18} {'cold CPU ms':>11} {'upstream':>8} "
          f"{'burst CPU ms/q':>14} {'upstream/q':>10} {'healthy p50':>11} {'p99 ms':>7} "
          f"{'answered':>9}")
    with authority.start_tree() as tree:
        for scenario in hostile_scenarios():
            r = measure(tree, scenario, args.burst, args.healthy)
            print(f"{r['name']:26} {r['outcome']:18} {r['cold_cpu_ms']:11.1f} {r['upstream']:8d} "
                  f"{r['burst_cpu_ms']:14.2f} {r['burst_upstream']:10.2f} {r['p50']:11.2f} "
                  f"{r['p99']:7.2f} {r['answered']:>9}", flush=True)
        if tree.errors:
            print("tree errors:", *tree.errors, sep="\n")


if __name__ == "__main__":
    main()
