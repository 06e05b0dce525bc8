"""What pinning (issue #17, `services[].pin`) costs: the added latency per answer (p50, p99) and
answers per second, against the same server without `pin`, and the nftables set updates per
second the Pinner commits.

Three `dnssec-sidecar serve` processes run side by side on the signed test tree, the same
configuration but for the service: `hit` (no pin: a cached answer takes the compiled hit
path), `full` (no pin, but budgets, which send every query down the Python path as `pin`
does) and `pin` (its answers committed to `inet sandbox allowed4/allowed6` before the reply
leaves). Each round asks each server in turn (the order rotated) the same cached name, one
query at a time for latency, then a window of queries in flight for answers per second;
figures are medians of per-round ratios and differences (the machine is shared). Every
answer of `pin` is a set update (add, delete, add: one transaction per batch).

Then the Pinner alone, in process: distinct addresses pinned with 1, 16 and 64 answers in
flight, elements committed per second and transactions per second.

    python bench/pinning.py [--rounds 9] [--queries 400] [--seconds 2]

Needs root, libnftables (Debian libnftables1) and nft; runs in a network namespace of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.name

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import peers, resolve  # noqa: E402
from resolver.config import Pin, open_default_service  # noqa: E402
from resolver.frontend.pinning import Element, Pinner  # noqa: E402
from tests.pinning_netns import readme_ruleset  # noqa: E402
from tests.testtree import authority  # noqa: E402

NAME = "www.rsasha256.example."
SERVERS = {"hit": "127.0.0.124", "full": "127.0.0.125", "pin": "127.0.0.126"}
SERVICE = {
    "hit": "",
    "full": "    budgets: {query_rate: 1000000}\n",
    "pin": '    pin: {nft: {table: "inet sandbox", set4: allowed4, set6: allowed6}, '
           "grace: 300}\n",
}
WINDOW = 16


def config(kind: str, directory: Path) -> Path:
    address = SERVERS[kind]
    path = directory / f"{kind}.yaml"
    path.write_text(resolve.config_text(address) + "log: {path: \"" + str(directory / kind)
                    + '.jsonl"}\n'
                    "services:\n"
                    f'  - name: {kind}\n    listeners: ["{address}:53"]\n'
                    "    allow: [{zone: example.}]\n" + SERVICE[kind])
    return path


def latencies(address: str, count: int) -> list[float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((address, 53))
    sock.settimeout(2.0)
    wire = bytearray(dns.message.make_query(NAME, "A", want_dnssec=True).to_wire())
    out = []
    for i in range(count):
        wire[0:2] = (i & 0xFFFF).to_bytes(2, "big")
        started = time.perf_counter()
        sock.send(wire)
        try:
            sock.recv(4096)
        except socket.timeout:
            continue  # lost: not a latency, and the run stays bounded
        out.append(time.perf_counter() - started)
    sock.close()
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rate(address: str, seconds: float) -> float:
    resolve.ADDRESS = address  # cached_qps asks resolve.ADDRESS
    return resolve.cached_qps(NAME, seconds, WINDOW)


async def pinner_rate(in_flight: int, total: int) -> tuple[float, float]:
    service = dataclasses.replace(open_default_service(), name="bench",
                                  pin=Pin("inet", "sandbox", "allowed4", "allowed6", 300))
    pinner = Pinner([service])
    name = dns.name.from_text(NAME)
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(total)]
    queue = iter(addresses)

    async def worker() -> None:
        for address in queue:
            await pinner.pin("bench", name, [Element(address, 4, NAME, 60)])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    transactions = pinner.stats["transactions"]
    await pinner.forget("bench")
    pinner.close()
    return total / elapsed, transactions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=400, help="sequential queries a round")
    parser.add_argument("--seconds", type=float, default=2.0, help="of qps a round and server")
    parser.add_argument("--updates", type=int, default=20000, help="pins per Pinner run")
    args = parser.parse_args()
    peers.in_own_namespace("PINNING_BENCH_NETNS")
    subprocess.run(["nft", "-f", "-"], input=readme_ruleset(), text=True, check=True)
    print(f"# {platform.machine()} Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"{args.rounds} rounds; latency: {args.queries} sequential UDP queries of a cached "
          f"name; qps: {WINDOW} in flight for {args.seconds} s")
    with authority.start_tree(), tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        processes = {k: resolve.start_resolver(config(k, directory), SERVERS[k])
                     for k in SERVERS}
        try:
            for address in SERVERS.values():
                latencies(address, 3)  # resolved and cached
            p50 = {k: [] for k in SERVERS}
            p99 = {k: [] for k in SERVERS}
            qps = {k: [] for k in SERVERS}
            kinds = list(SERVERS)
            for round_ in range(args.rounds):
                order = kinds[round_ % 3:] + kinds[:round_ % 3]
                for kind in order:
                    seen = latencies(SERVERS[kind], args.queries)
                    p50[kind].append(pct(seen, 0.50))
                    p99[kind].append(pct(seen, 0.99))
                for kind in order:
                    qps[kind].append(rate(SERVERS[kind], args.seconds))
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(timeout=10)

    def diff(a: list[float], b: list[float]) -> float:
        return statistics.median(x - y for x, y in zip(a, b)) * 1e6

    print(f"{'server':6} {'p50 us':>8} {'p99 us':>8} {'q/s':>8}")
    for kind in SERVERS:
        print(f"{kind:6} {statistics.median(p50[kind]) * 1e6:8.0f} "
              f"{statistics.median(p99[kind]) * 1e6:8.0f} {statistics.median(qps[kind]):8.0f}")
    for base in ("hit", "full"):
        print(f"pin vs {base}: p50 +{diff(p50['pin'], p50[base]):.0f} us "
              f"(x{peers.median_ratio(p50['pin'], p50[base]):.2f}), "
              f"p99 +{diff(p99['pin'], p99[base]):.0f} us "
              f"(x{peers.median_ratio(p99['pin'], p99[base]):.2f}), "
              f"q/s x{peers.median_ratio(qps['pin'], qps[base]):.2f}")
    print(f"Pinner alone, {args.updates} distinct addresses:")
    for in_flight in (1, 16, 64):
        elements, transactions = asyncio.run(pinner_rate(in_flight, args.updates))
        print(f"  {in_flight:3d} in flight: {elements:8.0f} set updates/s in "
              f"{transactions:7.0f} transactions/s")


if __name__ == "__main__":
    main()
