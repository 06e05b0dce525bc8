"""Where a cold lookup's time goes on our side (issue #20: profile before changing anything):
bench/cold.py's case (default ``a``: two new signed zones below the root) against
dnssec-sidecar alone, sampled with py-spy (``pip install py-spy``; a sampling profiler that
attaches to the running server, so the server runs unchanged).

Every round makes two cold lookups, each by a fresh resolver (forensic log on, as in cold.py)
primed with the case's untimed query: one plain, one with ``py-spy record --native`` attached
(py-spy stops the process for each sample when it reads native frames, which would count as
time off CPU, hence the plain one). Two views of the rounds together:

* the plain lookups' wall time split by the process's schedstat (all threads): on a CPU,
  runnable but waiting for a CPU (the machine's load), and the rest, off CPU: waiting on the
  network, which here is the test tree's authoritative servers answering;
* the CPU samples (threads blocked in a wait left out) by what the innermost recognised frame of
  each stack does: parse (dnspython's from_wire), render (to_wire), signature crypto (the
  compiled verifier, cryptography, hashlib), classify (which sections of a reply answer, refer
  or deny: ``Validator.classify`` and its helpers, ``Iterator._delegation``), validate (the rest
  of resolver/dnssec: chains, DS matches, denial proofs), cache, iterate
  (resolver/resolve/iterator.py), transport (send, receive, match), log record
  (resolver/forensic), frontend (the client's query and answer) and event loop; then the
  functions with the most samples, on their own and with what they call.

    sudo unshare -n sh -c 'ip link set lo up && python3 bench/profile_cold.py'
    # [--case a] [--rounds 30] [--rate 2000] [--keep DIR: the stacks, for flamegraph.pl]

Needs root (port 53 of 127.0.0.x), in a network namespace of its own, and py-spy.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers  # noqa: E402
from bench.cold import CASES, OURS, SETTLE_S, ask  # noqa: E402

ATTACH_S = 0.7  # py-spy reads the process's memory maps and symbols before it samples

# (category, pattern on "function (file:line)"), tried on each frame from the innermost out;
# the first frame that matches one names the sample's category.
CATEGORIES = [
    ("parse", re.compile(r"(from_wire|_WireReader|_get_question|_get_section|"
                         r"dns/wire\.py)")),
    ("render", re.compile(r"(to_wire|dns/renderer\.py)")),
    ("signature crypto", re.compile(r"(resolver/dnssec/(crypto|verify)\.pyx|6dnssec_6crypto_|6dnssec_6verify_|"
                                    r"cryptography/|hashlib|"
                                    r"libcrypto|_openssl|_rust)")),
    ("classify", re.compile(r"^(Validator\.classify|rrsets_of|sigs_of|signers|find|"
                            r"Iterator\._delegation|chain_end) \(resolver/")),
    ("validate", re.compile(r"(resolver/dnssec/|to_digestable)")),
    ("cache", re.compile(r"(resolver/resolve/cache\.py|_fastcache)")),
    ("transport", re.compile(r"resolver/resolve/(transport\.py|_udp)|7resolve_4_udp_|"
                             r"resolver/outgoing\.py")),
    ("iterate", re.compile(r"resolver/resolve/iterator\.py")),
    ("log record", re.compile(r"(resolver/forensic/|_fastlog)")),
    ("frontend", re.compile(r"(resolver/frontend/|_fastpath|admission)")),
    ("event loop", re.compile(r"(asyncio/|uvloop|selectors\.py|socket\.py)")),
]
# A thread blocked in one of these is waiting, not working: py-spy's idle test does not see
# every wait once it reads native frames (the log writer's condition variable, the executor's
# queue, the event loop's epoll).
WAITING = re.compile(r"^(pthread_cond_|PyThread_acquire_lock|epoll_p?wait|clock_nanosleep|"
                     r"sem_(timed)?wait|__futex|futex|poll \(|select \()")
FRAME = re.compile(r"^(?P<function>[^ ]+) \((?P<file>[^:]*)(?::\d+)?\)$")


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def short(frame: str) -> str:
    """``function (file)`` without the line and with the path from the package on."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for anchor in ("/site-packages/", "/resolver/", "/lib/python3"):
        if anchor in path:
            path = path[path.index(anchor) + 1:]
            break
    return f"{match['function']} ({path})"


def waiting(frames: list[str]) -> bool:
    """A stack blocked in a wait: one of its three innermost frames is a wait (below it,
    py-spy may show only libc addresses it could not name)."""
    return any(WAITING.match(frame) for frame in frames[-3:])


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: one ``frame;frame;...;leaf count`` line per stack;
    the process and thread frames it puts first are left out."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = [f for f in body.split(";") if not f.startswith(("process ", "thread "))]
        out.append((frames, int(count)))
    return out


def one_round(case, peer: peers.Peer, tree_info: peers.Tree, tmp: Path, rate: int,
              out: Path | None) -> tuple[float, float, float]:
    """One cold lookup, profiled into ``out`` unless None: (wall, on-CPU, runnable-waiting)
    seconds."""
    running, why = peers.start(peer, tree_info, tmp / peer.address)
    if running is None:
        raise SystemExit(f"{peer.name} did not start: {why}")
    try:
        ask(peer, case.prime, None)
        time.sleep(SETTLE_S)
        if out is None:
            cpu, waiting = peers.schedstat(running.process.pid)
            wall = ask(peer, case.name, case.secure)
            cpu_after, waiting_after = peers.schedstat(running.process.pid)
            return wall, cpu_after - cpu, waiting_after - waiting
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(running.process.pid),
                                "--rate", str(rate), "--native", "--format", "raw",
                                "--output", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        time.sleep(ATTACH_S)
        wall = ask(peer, case.name, case.secure)
        time.sleep(0.05)
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not out.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        return wall, math.nan, math.nan
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="a")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=2000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="a directory for each round's stacks")
    args = parser.parse_args()
    peers.require_root()
    if shutil.which("py-spy") is None:
        raise SystemExit("needs py-spy: pip install py-spy")
    case, peer = CASES[args.case], next(p for p in peers.PEERS if p.name == OURS)
    tree_info = peers.Tree.load()
    walls, cpus, waits = [], [], []
    samples: list[tuple[list[str], int]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keep = args.keep or tmp
        keep.mkdir(parents=True, exist_ok=True)
        tree = peers.start_tree(tmp)
        try:
            for round_ in range(args.rounds):
                wall, cpu, waiting = one_round(case, peer, tree_info, tmp, args.rate, None)
                walls.append(wall)
                cpus.append(cpu)
                waits.append(waiting)
                out = keep / f"round-{round_:03d}.txt"
                one_round(case, peer, tree_info, tmp, args.rate, out)
                samples += stacks(out)
        finally:
            tree.stop()
    report(args, case, walls, cpus, waits, samples)


def report(args, case, walls, cpus, waits, samples) -> None:
    version = subprocess.run(["py-spy", "--version"], capture_output=True, text=True).stdout
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {version.strip()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"# case {args.case}: {case.name} A after {case.prime}, {args.rounds} fresh "
          f"resolvers plain and {args.rounds} profiled, {args.rate} samples/s (--native)")
    off = [w - c - q for w, c, q in zip(walls, cpus, waits)]
    print(f"{'per lookup (median)':28s} {'ms':>8s} {'share':>6s}")
    total = statistics.median(walls)
    for name, values in (("wall", walls), ("on a CPU (all threads)", cpus),
                         ("runnable, waiting for a CPU", waits),
                         ("off CPU (network, upstream)", off)):
        print(f"{name:28s} {statistics.median(values) * 1e3:8.2f} "
              f"{statistics.median(values) / total:6.0%}")
    print_samples(samples, f"{args.rounds} lookups", args.top)


def print_samples(samples: list[tuple[list[str], int]], over: str, top: int) -> None:
    """The CPU samples (threads blocked in a wait left out) by category, then the functions
    with the most samples, on their own and (ours) with what they call."""
    idle = sum(n for frames, n in samples if waiting(frames))
    samples = [(frames, n) for frames, n in samples if not waiting(frames)]
    count = sum(n for _, n in samples) or 1
    by_category: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for frames, n in samples:
        by_category[category(frames)] += n
        if frames:
            self_time[short(frames[-1])] += n
        for frame in {short(f) for f in frames}:
            inclusive[frame] += n
    print(f"\n# CPU samples: {count} over {over} ({idle} more of threads "
          "blocked in a wait left out), by what the innermost recognised frame does")
    for name, n in by_category.most_common():
        print(f"{name:20s} {n:6d} {n / count:6.1%}")
    print(f"\n# top {top} functions, own samples")
    for frame, n in self_time.most_common(top):
        print(f"{n / count:6.1%}  {frame}")
    print(f"\n# top {top} functions of ours (resolver/), with what they call")
    ours = [(f, n) for f, n in inclusive.most_common() if "resolver/" in f]
    for frame, n in ours[:top]:
        print(f"{n / count:6.1%}  {frame}")

if __name__ == "__main__":
    main()
