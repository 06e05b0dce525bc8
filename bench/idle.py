"""What an idle resolver costs: CPU a second while no query arrives, for a sidecar that sits in
every pod, most of the time with nothing to do (issue #20: a 100m CPU limit). dnssec-sidecar
(log on) and Unbound side by side on the test tree, each started, primed with one query
(``. NS``), then left alone; their CPU (all threads, ``schedstat``) over ``--seconds``, in
``--rounds`` rounds, each resolver restarted every round. ``--baseline DIR`` adds the
dnssec-sidecar checked out in DIR (bench/cold.py's ``--baseline``).

    sudo python3 bench/idle.py [--seconds 20] [--rounds 3] [--baseline DIR]

Runs itself in a network namespace of its own (the servers bind 127.0.0.x:53).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers  # noqa: E402
from bench.cold import OURS, ask, baseline_peer  # noqa: E402

QUIET_S = 3.0  # after the priming query: start-up work (trust check, first fsync) is over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idle time measured")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, metavar="DIR")
    args = parser.parse_args()
    peers.in_own_namespace("IDLE_BENCH_NETNS")
    candidates = [p for p in peers.PEERS if p.name in (OURS, "unbound")]
    if args.baseline is not None:
        candidates.insert(1, baseline_peer(args.baseline))
    spent: dict[str, list[float]] = {p.name: [] for p in candidates}
    with tempfile.TemporaryDirectory() as tmp:
        tree = peers.start_tree(Path(tmp))
        tree_info = peers.Tree.load()
        try:
            for round_ in range(args.rounds):
                running = {}
                try:
                    for peer in candidates:
                        process, why = peers.start(peer, tree_info,
                                                   Path(tmp) / f"{peer.address}-{round_}")
                        if process is None:
                            raise SystemExit(f"{peer.name} did not start: {why}")
                        running[peer.name] = process
                        ask(peer, ".", None)
                    time.sleep(QUIET_S)
                    before = {n: peers.cpu_seconds(r.process.pid) for n, r in running.items()}
                    time.sleep(args.seconds)
                    for name, process in running.items():
                        used = peers.cpu_seconds(process.process.pid) - before[name]
                        spent[name].append(used / args.seconds)
                finally:
                    for process in running.values():
                        process.stop()
        finally:
            tree.stop()
    print(f"# {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} "
          f"rounds of {args.seconds:g} s idle after one query; CPU of all threads, medians")
    for name, values in spent.items():
        print(f"{name:28s} {statistics.median(values) * 1e3:7.3f} ms CPU a second "
              f"({statistics.median(values) * 100:.3f}% of a CPU; min {min(values) * 1e3:.3f}, "
              f"max {max(values) * 1e3:.3f})")


if __name__ == "__main__":
    main()
