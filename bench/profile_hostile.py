"""Where one hostile query's CPU goes on our side (issue #20: profile before changing
anything): an attack of bench/hostile.py against dnssec-sidecar alone, sampled with py-spy
(``pip install py-spy``), the way bench/profile_cold.py samples a cold lookup.

Every round starts a fresh resolver (forensic log on, as in hostile.py), primes it with
hostile.py's healthy query, attaches ``py-spy record --native``, asks the attack once (over TCP
when the UDP answer is truncated), and stops. The samples of the rounds together (threads
blocked in a wait left out) are printed by profile_cold's categories, then the functions with
the most samples, on their own and with what they call.

    python3 bench/profile_hostile.py [--attack near-64k-tcp ...] [--rounds 10]

Needs root and py-spy; runs itself in a new network namespace (the tree binds 127.0.0.x:53).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers  # noqa: E402
from bench.hostile import HEALTHY, OURS, SETTLE_S, ask, hostile_scenarios  # noqa: E402
from bench.profile_cold import ATTACH_S, print_samples, stacks  # noqa: E402


def one_round(scenario: dict, peer: peers.Peer, tree_info: peers.Tree, tmp: Path, rate: int,
              out: Path) -> list[tuple[list[str], int]]:
    running, why = peers.start(peer, tree_info, tmp / peer.address)
    if running is None:
        raise SystemExit(f"{peer.name} did not start: {why}")
    try:
        ask(peer.address, HEALTHY, "A")
        time.sleep(SETTLE_S)
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(running.process.pid),
                                "--rate", str(rate), "--native", "--format", "raw",
                                "--output", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        time.sleep(ATTACH_S)
        ask(peer.address, scenario["qname"], scenario["qtype"])
        time.sleep(SETTLE_S)
        spy.send_signal(signal.SIGINT)
        try:
            spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.communicate()
        return stacks(out) if out.exists() else []
    finally:
        running.stop()


def main() -> None:
    scenarios = {s["name"]: s for s in hostile_scenarios()}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", nargs="+", choices=sorted(scenarios),
                        default=["near-64k-tcp", "deep-delegation"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="a directory for each round's stacks")
    args = parser.parse_args()
    peers.in_own_namespace("PROFILE_HOSTILE_NETNS")
    version = subprocess.run(["py-spy", "--version"], capture_output=True, text=True).stdout
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {version.strip()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} fresh resolvers "
          f"per attack, {args.rate} samples/s (--native)")
    peer, tree_info = next(p for p in peers.PEERS if p.name == OURS), peers.Tree.load()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keep = args.keep or tmp
        keep.mkdir(parents=True, exist_ok=True)
        tree = peers.start_tree(tmp)
        try:
            for name in args.attack:
                samples = []
                for round_ in range(args.rounds):
                    samples += one_round(scenarios[name], peer, tree_info, tmp, args.rate,
                                         keep / f"{name}-{round_:03d}.txt")
                print(f"\n## {name}")
                print_samples(samples, f"{args.rounds} cold queries", args.top)
        finally:
            tree.stop()


if __name__ == "__main__":
    main()
