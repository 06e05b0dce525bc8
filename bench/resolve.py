"""Resolution benchmark against the signed test tree (tests/testtree), through the real
`dnssec-sidecar serve` process:

* cold: a fresh resolver per round resolves and validates a name three levels under the root
  (www.<zone>.example.: root, TLD and child keys, DS records and the answer);
* warm: the same query answered from the cache;
* cached queries per second from one client process (a window of queries in flight over UDP).

    python bench/resolve.py [--rounds 15] [--seconds 5] [--name www.rsasha256.example.]

Needs root (the tree and the resolver listen on port 53 of 127.0.0.x addresses).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from tests.testtree import authority, zonedata  # noqa: E402

ADDRESS, PORT = "127.0.0.5", 53


def config_text(address: str | None = None) -> str:
    """A config for the test tree, listening on ``address`` (default ADDRESS), port 53."""
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    return (f'listen: ["{address or ADDRESS}:{PORT}"]\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            "metrics: {enabled: false}\n")


def start_resolver(config: Path, address: str | None = None) -> subprocess.Popen:
    """``dnssec-sidecar serve`` with ``config``, once it accepts TCP on ``address`` (bounded)."""
    process = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                str(config)], cwd=ROOT_DIR, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # its start-up lines, not figures
    for _ in range(200):
        try:
            with socket.create_connection((address or ADDRESS, PORT), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("the resolver did not start")


def query_once(name: str) -> float:
    query = dns.message.make_query(name, "A", want_dnssec=True)
    start = time.perf_counter()
    response = dns.query.udp(query, ADDRESS, port=PORT, timeout=5)
    elapsed = time.perf_counter() - start
    if not response.flags & dns.flags.AD:
        raise SystemExit(f"{name} did not validate: {response}")
    return elapsed


def cached_qps(name: str, seconds: float, window: int = 64) -> float:
    """Queries per second with ``window`` queries in flight, for ``seconds`` (bounded)."""
    wire = bytearray(dns.message.make_query(name, "A", want_dnssec=True).to_wire())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((ADDRESS, PORT))
    sock.settimeout(1.0)
    sent = received = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while sent < window:
        wire[0:2] = (sent & 0xFFFF).to_bytes(2, "big")
        sock.send(wire)
        sent += 1
    while time.perf_counter() < deadline:
        try:
            sock.recv(4096)
        except socket.timeout:
            break  # a lost reply: the window shrinks by one, the run stays bounded
        received += 1
        wire[0:2] = (sent & 0xFFFF).to_bytes(2, "big")
        sock.send(wire)
        sent += 1
    elapsed = time.perf_counter() - start
    sock.close()
    return received / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--name", default="www.rsasha256.example.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree listens on port 53")
    print(f"# {platform.node()} {platform.machine()} Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs; name {args.name}, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp, authority.start_tree():
        config = Path(tmp) / "config.yaml"
        config.write_text(config_text())
        cold = []
        for _ in range(args.rounds):
            process = start_resolver(config)
            try:
                cold.append(query_once(args.name))
            finally:
                process.terminate()
                process.wait()
        process = start_resolver(config)
        try:
            query_once(args.name)
            warm = [query_once(args.name) for _ in range(args.rounds * 20)]
            qps = cached_qps(args.name, args.seconds)
        finally:
            process.terminate()
            process.wait()
    print(f"cold  (empty cache, 3 levels validated): median {statistics.median(cold) * 1e3:7.2f} ms"
          f"  min {min(cold) * 1e3:7.2f} ms")
    print(f"warm  (cached answer):                   median {statistics.median(warm) * 1e3:7.3f} ms"
          f"  p99 {sorted(warm)[int(len(warm) * 0.99) - 1] * 1e3:7.3f} ms")
    print(f"cached queries per second, one client, 64 in flight: {qps:9.0f}")


if __name__ == "__main__":
    main()
