"""Resident memory with 100k cached names (issue #5 target: <= 250 MB; issue #20: <= 150 MiB),
dnssec-sidecar (forensic log on) and then Unbound (bench/peers: one thread, 64 MiB message and
128 MiB RRset caches) filled with the same names.

Fills the cache of each real server with distinct validated names over the test tree (wildcard
expansions: each one a signed answer with its RRSIG and NSEC/NSEC3 proof, the heaviest common
entry) using dnsperf, then reads VmRSS from /proc, and each one's count of cached entries (ours:
the ``dnssec_sidecar_cache_entries`` metric; Unbound: ``msg.cache.count`` and
``rrset.cache.count`` of ``unbound-control stats``) so that a cache that evicted is seen.

    sudo unshare -n sh -c 'ip link set lo up && python3 bench/memory.py'   # [--names 100000]
    # --trace FILE [--lines]: our objects by type (and by source line), bench/memtrace.py
    # needs: apt-get install dnsperf unbound (Unbound is left out, saying so, when missing)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import peers  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

ADDRESS = "127.0.0.73"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric(name: str) -> float:
    text = urllib.request.urlopen(f"http://{ADDRESS}:9153/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


ASKS = 1  # times each name is asked (--asks)


def fill(address: str, queries: Path) -> float:
    """Each name of ``queries`` asked ASKS times over, 64 in flight: the seconds the first
    pass took."""
    took = 0.0
    for run in range(ASKS):
        start = time.monotonic()
        subprocess.run(["dnsperf", "-s", address, "-d", str(queries), "-n", "1", "-q", "64",
                        "-t", "10"], check=True, stdout=subprocess.DEVNULL)
        took = took or time.monotonic() - start
    return took


def unbound(tmp: Path, queries: Path) -> str:
    """Unbound filled with the same names: its summary line, or why it was left out."""
    base = next(p for p in peers.PEERS if p.name == peers.BASELINE)

    def configure(peer: peers.Peer, tree: peers.Tree, directory: Path) -> list[str]:
        argv = base.configure(peer, tree, directory)
        with (directory / "unbound.conf").open("a") as conf:  # a second server: clause
            conf.write("server:\n  extended-statistics: yes\n")  # cache counts and memory
        return argv
    peer = dataclasses.replace(base, configure=configure)
    running, why = peers.start(peer, peers.Tree.load(), tmp / "unbound")
    if running is None:
        return f"unbound left out: {why}"
    try:
        idle = rss_mib(running.process.pid)
        filled = fill(peer.address, queries)
        full = rss_mib(running.process.pid)
        stats = peers.unbound_stats(tmp / "unbound")
    finally:
        running.stop()
    cache_memory = stats.get("mem.cache.message", 0) + stats.get("mem.cache.rrset", 0)
    return (f"{peers.version(peer)}: RSS idle {idle:.1f} MiB, with the names {full:.1f} MiB "
            f"(message cache {stats.get('msg.cache.count', float('nan')):,.0f} entries, "
            f"RRset cache {stats.get('rrset.cache.count', float('nan')):,.0f}; "
            f"cache memory {cache_memory / 2**20:.1f} MiB); "
            f"filled in {filled:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--trace", metavar="FILE", help="write our objects alive by type "
                        "to FILE once filled (bench/memtrace.py)")
    parser.add_argument("--lines", action="store_true", help="with --trace: under "
                        "tracemalloc, by source line too (several times slower)")
    parser.add_argument("--no-unbound", action="store_true", help="ours alone")
    parser.add_argument("--asks", type=int, default=1, help="times each name is asked (2: "
                        "ours keeps each answer for the compiled hit path as well)")
    args = parser.parse_args()
    global ASKS
    ASKS = max(1, args.asks)
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree listens on port 53")
    manifest = zonedata.manifest()
    children = [z for z, e in manifest["zones"].items() if e["kind"] == "child"]
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    with tempfile.TemporaryDirectory() as tmp, authority.start_tree():
        queries = Path(tmp) / "queries.txt"
        queries.write_text("".join(f"m{i}.wild.{children[i % len(children)]} A\n"
                                   for i in range(args.names)))
        config = Path(tmp) / "config.yaml"
        config.write_text(f'listen: ["{ADDRESS}:53"]\n'
                          f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
                          f"trust_anchors: [{anchors}]\n"
                          f'validation: {{time: "{authority.validation_time()}"}}\n'
                          f"{authority.outgoing_line()}\n"
                          f'metrics: {{listen: "{ADDRESS}:9153"}}\n'
                          f"log: {{path: {tmp}/log.jsonl}}\n"
                          f"cache: {{max_entries: {args.names * 2}}}\n"
                          # one client (dnsperf) asks every name: no per-client miss rate
                          "limits: {max_misses_per_client_per_second: 0}\n")
        command = ["-m", "resolver.cli"]
        if args.trace:
            command = ["-m", "bench.memtrace", args.trace] + (["--lines"] if args.lines else [])
        server = subprocess.Popen([sys.executable, *command, "serve", "--config",
                                   str(config)], cwd=ROOT_DIR,
                                  stderr=subprocess.DEVNULL)  # its start-up lines, not figures
        try:
            for _ in range(200):
                try:
                    socket.create_connection((ADDRESS, 53), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            idle = rss_mib(server.pid)
            filled = fill(ADDRESS, queries)
            entries = metric("dnssec_sidecar_cache_entries")
            full = rss_mib(server.pid)
            if args.trace:
                Path(args.trace + ".go").touch()
                while Path(args.trace + ".go").exists():
                    time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=30)
        theirs = "unbound left out: --no-unbound" if args.no_unbound else \
            unbound(Path(tmp), queries)
    print(f"# {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"RSS idle (trust primed lazily):     {idle:8.1f} MiB")
    print(f"RSS with {entries:,.0f} cache entries: {full:8.1f} MiB "
          f"({(full - idle) * 1024 / max(entries, 1):.2f} KiB per entry)")
    print(f"filled in {filled:.1f} s ({args.names / filled:,.0f} uncached validated queries/s)"
          f"; each name asked {ASKS} time(s)")
    print(theirs)


if __name__ == "__main__":
    main()
