"""Lost queries and the slowest answer through a restart, dnssec-sidecar against Unbound restarted
the same way (issue #19, "lost queries through a restart").

A paced client (tests/paced.py: queries matched by socket, ID and question, asked once more after
1 s as a stub does, lost when neither try is answered) sends ``--rate`` queries a second for
``--seconds`` at cached names of the signed test tree. One second in, a second process of the
same resolver starts on the same address (SO_REUSEPORT: dnssec-sidecar always, Unbound with
``so-reuseport: yes``, its default); once it is serving (ours: its start lines; Unbound: its
socket bound beside the first one's), the first one gets SIGTERM. Rounds alternate the two
resolvers; each line is one round (lost: no answer to either try; answered only on the
repeat: the first try got none), then the medians.

Run as root (port 53); it runs itself in a network namespace of its own with only loopback:

    python -m bench.restart [--rate 5000] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.query
import uvloop

from bench import peers
from bench.flood import udp_receive_drops
from resolver.frontend import handover
from tests import paced
from tests.test_restarts import ADDRESS, QUESTIONS, Process, config_text

def answers(seconds: float) -> bool:
    """Whether a resolver on ADDRESS answers the first question within ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            dns.query.udp(dns.message.make_query(*QUESTIONS[0]), ADDRESS, timeout=0.5)
            return True
        except (OSError, dns.exception.Timeout):
            continue
    return False


class Unbound:
    def __init__(self, directory: Path, tree: peers.Tree) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # so-reuseport: a successor binds beside the running one, as ours does
        config = peers.unbound_config(tree, directory, ADDRESS, "  so-reuseport: yes\n",
                                      "  control-enable: no\n")
        self.popen = subprocess.Popen(["unbound", "-d", "-c", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(30)


def ours(directory: Path, version: int) -> Process:
    config = directory / f"v{version}.yaml"
    config.write_text(config_text(directory, version))
    process = Process(config)
    process.wait_for("services:")
    return process


def round_(kind: str, directory: Path, tree: peers.Tree, rate: int, seconds: float,
           ) -> tuple[paced.Stats, int]:
    """One restart of ``kind`` ("ours" or "unbound") under the paced client; and the datagrams
    the kernel dropped meanwhile for a full receive queue (the resolvers' or the client's)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    start = (lambda n: ours(directory, n)) if kind == "ours" else (
        lambda n: Unbound(directory / f"u{n}", tree))
    first = start(1)
    assert answers(30), f"{kind} does not answer"
    for name, rdtype in QUESTIONS:  # warm: the restart is of a resolver in use
        dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), ADDRESS, timeout=5)
    started = threading.Event()
    result: dict = {}

    def client() -> None:
        async def go() -> None:
            running = asyncio.Event()
            watcher = asyncio.ensure_future(running.wait())
            watcher.add_done_callback(lambda _: started.set())
            result["stats"] = await paced.run((ADDRESS, 53), QUESTIONS, rate, seconds,
                                              running=running)
        uvloop.run(go())

    drops = udp_receive_drops()
    thread = threading.Thread(target=client)
    thread.start()
    started.wait(60)
    second = start(2)
    if kind == "unbound":
        # Unbound says nothing when it is ready: wait until its socket is bound beside the
        # first one's (what our old process waits for too), then a tenth of a second more.
        key = handover.key((ADDRESS, 53), socket.AF_INET)
        until = time.monotonic() + 30
        while len(handover.bound("udp", handover.UNCONNECTED).get(key, ())) < 2:
            assert time.monotonic() < until, "the second Unbound did not bind"
            time.sleep(0.01)
        time.sleep(0.1)
    first.popen.send_signal(signal.SIGTERM)
    first.popen.wait(60)
    thread.join(seconds + 60)
    second.stop()
    return result["stats"], udp_receive_drops() - drops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peers.in_own_namespace("DNSSEC_SIDECAR_BENCH_RESTART")
    kinds = ["ours"] + (["unbound"] if shutil.which("unbound") else [])
    figures: dict[str, list[paced.Stats]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        tree_process = peers.start_tree(Path(tmp))
        tree = peers.Tree.load()
        try:
            for number in range(args.rounds):
                for kind in kinds if number % 2 == 0 else kinds[::-1]:
                    stats, drops = round_(kind, Path(tmp) / kind, tree, args.rate,
                                          args.seconds)
                    figures[kind].append(stats)
                    print(f"round {number + 1} {kind:8s}: sent {stats.sent} at "
                          f"{stats.rate:.0f}/s, lost {stats.lost}, answered only on the "
                          f"repeat {stats.retried}, slowest {stats.max_latency * 1000:.0f} ms, "
                          f"{dict(stats.rcodes)}; kernel receive-queue drops {drops}",
                          flush=True)
        finally:
            tree_process.stop()
    for kind, runs in figures.items():
        print(f"{kind:8s} median of {len(runs)}: lost "
              f"{statistics.median(s.lost for s in runs):g}, answered only on the repeat "
              f"{statistics.median(s.retried for s in runs):g}, slowest "
              f"{statistics.median(s.max_latency for s in runs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
