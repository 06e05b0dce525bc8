"""Cold lookups after priming, paired against Unbound (issue #20): the time to resolve and
validate (RFC 4035 §5) a name whose zones no resolver has seen yet, once each resolver knows the
root. Three cases over the signed test tree (tests/testtree):

* ``a``: ``www.rsasha256.example.`` after ``. NS``: two new signed zones below the root (the
  TLD ``example.`` and its child): two DS RRsets, two DNSKEY sets and the answer to validate;
* ``b``: ``www.ecdsap256.example.`` after ``www.rsasha256.example.``: a sibling, one new signed
  zone under a TLD already known and validated;
* ``c``: ``www.insecure.rsasha256.example.`` after ``. NS``: a fourth-level name, three new
  zones (``example.``, ``rsasha256.example.`` and the unsigned ``insecure.rsasha256.example.``,
  proven insecure by the NSEC of its parent: RFC 4035 §5.2), answered without AD.

Every round restarts every resolver (new process, new directory, empty cache), primes each with
the case's one untimed query, lets them settle, then times the case's name on each in turn, the
order of both starts and timed queries changed from round to round (ours, Unbound; Unbound,
ours; ...: :func:`one_round`), so that no resolver always goes first or always follows another.
Priming is outside every timed query alike: dnssec-sidecar primes the root at start (RFC 8109)
and the others on the first query. Reported per case: each side's median, the ratio of the
medians, and ``paired``, the median of the per-round ratios to Unbound: on a busy machine the
two sides of one round share its load, so that is the figure to quote. ``CPU`` is the
resolver's CPU time for the timed query (all its threads, schedstat, until 50 ms after the
answer: our log record included), which a busy machine disturbs far less than wall time;
``CPU paired`` its per-round ratio.

    sudo unshare -n sh -c 'ip link set lo up && python3 bench/cold.py'   # --rounds 15 --case a

``--rtt MS``: every server of the tree answers MS milliseconds after a query arrives (an asyncio
timer in the tree's process; authority.start_tree's ``delay_ms``), for every resolver alike: a
network round trip per upstream query, where loopback has none (without it every cold figure is
CPU only), so that what overlaps round trips (queries sent together, the next hop pipelined)
shows. The default, 0, is the figures above.

``--pin``: every resolver on CPU 0, the tree and this client on the last CPU. Unpinned, on
loopback, the tree's process and the client also run on the resolver's CPU part of the time:
a resolver with work left when it sends (the next query of a pipeline, the validation of the
hop above) then waits for its CPU, runnable, while the tree answers (schedstat: 0.43-0.48 ms
a case-a lookup; its five ``send`` calls took 1.1 ms of wall time in the server, 0.09 ms
in-process), and the two run in turn. A remote upstream never takes the resolver's CPU, and
a resolver that does nothing while it waits does not pay for it. Pinned, the upstream runs
beside the resolver as a remote one would; the default, unpinned, is the figure of issue
#20's table.

``--upstream nsd``: the tree's zones served by NSD (Debian ``nsd``, a C authoritative server;
``tests.testtree.nsd``), one instance per server address of the tree, instead of the tree's Python
servers. A cold lookup is a resolver and its upstream taking turns (``perf sched timehist``:
neither side runs while the other works on its part), and the Python tree spends about a
millisecond of CPU on every answer, most of each figure over it; NSD answers in tens of
microseconds, and the figure becomes the resolvers' own. Not with ``--rtt``.

``--baseline DIR`` times a second dnssec-sidecar too, the code checked out in DIR (its compiled
modules built there: ``python setup.py build_ext --inplace``), on its own address in the same
rounds: before and after a change, each paired with Unbound and with the other.

Needs root (port 53 of 127.0.0.x), in a network namespace of its own, and the Debian packages of
the peers (unbound; knot-resolver and pdns-recursor are timed too when installed); a peer that
is missing or does not start is left out, saying why.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers  # noqa: E402
from tests.testtree.nsd import NsdTree  # noqa: E402

SETTLE_S = 0.3  # after the priming query, before the timed one: background fetches end
OURS = "dnssec-sidecar, log on"
BASELINE_ADDRESS = "127.0.0.76"  # the --baseline checkout's dnssec-sidecar


@dataclass(frozen=True)
class Case:
    """One cold figure: ``prime`` asked untimed first, then ``name`` A with DO timed."""

    about: str
    prime: str
    name: str
    secure: bool  # the answer has AD (else: NOERROR, proven insecure)


CASES = {
    "a": Case("two new signed zones below the root", ".", "www.rsasha256.example.", True),
    "b": Case("a sibling zone (one new zone under a known TLD)", "www.rsasha256.example.",
              "www.ecdsap256.example.", True),
    "c": Case("a fourth-level name (three new zones, the last unsigned)", ".",
              "www.insecure.rsasha256.example.", False),
}


def ask(peer: peers.Peer, name: str, secure: bool | None) -> float:
    """One query with DO (``name`` A, or ``. NS`` for the root): seconds to the answer, which
    must be NOERROR with AD when ``secure``, without when False (None: either)."""
    query = dns.message.make_query(name, "NS" if name == "." else "A", want_dnssec=True)
    start = time.perf_counter()
    answer = dns.query.udp(query, peer.address, port=peers.PORT, timeout=10)
    elapsed = time.perf_counter() - start
    ad = bool(answer.flags & dns.flags.AD)
    if answer.rcode() != dns.rcode.NOERROR or (secure is not None and ad != secure):
        raise SystemExit(f"{peer.name}: {name}: {dns.rcode.to_text(answer.rcode())}, "
                         f"AD {ad}, expected AD {secure}")
    return elapsed


@dataclass
class Series:
    """One peer's figures over the rounds of one case."""

    times: list[float]
    cpu: list[float]  # the resolver's CPU time for the timed query (all threads)
    upstream: list[int]  # queries the tree received for the timed query


def one_round(case: Case, candidates: list[peers.Peer], order: int,
              tree: peers.Running | NsdTree, tree_info: peers.Tree, tmp: Path,
              cpus: set[int] | None) -> dict[str, tuple[float, float, int]]:
    """Start every peer afresh (on ``cpus`` if given), prime each, then time the case's name
    on each, both in the order that round ``order`` gives: ``candidates`` reversed every other
    round, then rotated, so that every peer takes every place in turn, and every two peers
    follow each other both ways. A Python resolver timed right after another runs on the code
    (the interpreter, libraries) the first has just brought into the shared caches: two
    copies of one checkout differed by 6-16% in CPU while one always went first.
    {peer name: (seconds, CPU seconds, upstream queries)}."""
    running: dict[str, peers.Running] = {}
    sequence = candidates[::-1] if order % 2 else candidates
    turn = (order // 2) % len(sequence) if sequence else 0
    rotated = sequence[turn:] + sequence[:turn]
    try:
        for peer in rotated:
            process, why = peers.start(peer, tree_info, tmp / peer.address, cpus)
            if process is None:
                print(f"# {peer.name} left out: {why}", flush=True)
                continue
            running[peer.name] = process
            ask(peer, case.prime, None)
        time.sleep(SETTLE_S)
        up = [p for p in rotated if p.name in running]
        result = {}
        for peer in up:
            pid = running[peer.name].process.pid
            before, cpu = _upstream(tree), peers.cpu_seconds(pid)
            elapsed = ask(peer, case.name, case.secure)
            time.sleep(0.05)  # lets the tree print the last queries it received
            result[peer.name] = (elapsed, peers.cpu_seconds(pid) - cpu,
                                 _upstream(tree) - before)
        return result
    finally:
        for process in running.values():
            process.stop()


def _upstream(tree: peers.Running | NsdTree) -> int:
    """Queries the upstream has received so far: the Python tree prints a line for each."""
    return tree.queries() if isinstance(tree, NsdTree) else tree.lines()


def measure(case: Case, candidates: list[peers.Peer], rounds: int,
            tree: peers.Running | NsdTree, tree_info: peers.Tree, tmp: Path,
            cpus: set[int] | None) -> dict[str, Series]:
    """``rounds`` paired rounds (one more before them warms the page cache, not counted);
    a peer missing from any round is dropped, so every series stays paired."""
    series: dict[str, Series] = {p.name: Series([], [], []) for p in candidates}
    for round_ in range(rounds + 1):
        result = one_round(case, [p for p in candidates if p.name in series], round_, tree,
                           tree_info, tmp, cpus)
        for name in list(series):
            if name not in result:
                del series[name]
            elif round_:
                series[name].times.append(result[name][0])
                series[name].cpu.append(result[name][1])
                series[name].upstream.append(result[name][2])
    return series


def baseline_peer(directory: Path) -> peers.Peer:
    """dnssec-sidecar as checked out in ``directory``, configured and started as ours (log on,
    on disk; ``python -m resolver.cli``), from that directory, so that its package is found
    first; named after its commit."""
    ours = next(p for p in peers.PEERS if p.name == OURS)
    label = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True).stdout.strip() or "baseline"
    directory = directory.resolve()

    def configure(peer: peers.Peer, tree: peers.Tree, run: Path) -> list[str]:
        return ["env", f"--chdir={directory}", *ours.configure(peer, tree, run)]
    return peers.Peer(f"dnssec-sidecar at {label}", BASELINE_ADDRESS, sys.executable, configure)


def report(key: str, case: Case, series: dict[str, Series]) -> None:
    print(f"\n# case {key}: {case.name} A with DO after {case.prime} "
          f"{'NS' if case.prime == '.' else 'A'}: {case.about}")
    print(f"{'server':24s} {'median':>9s} {'min':>9s} {'max':>9s} {'upstream':>8s}"
          f" {'vs unbound':>10s} {'paired':>7s} {'CPU':>9s} {'CPU paired':>10s}")
    base = series.get(peers.BASELINE)
    for name, s in series.items():
        median = statistics.median(s.times)
        ratio = paired = cpu_paired = "-"
        if base:
            ratio = f"{median / statistics.median(base.times):.2f}x"
            paired = f"{peers.median_ratio(s.times, base.times):.2f}x"
            if min(base.cpu) > 0:
                cpu_paired = f"{peers.median_ratio(s.cpu, base.cpu):.2f}x"
        print(f"{name:24s} {median * 1e3:6.2f} ms {min(s.times) * 1e3:6.2f} ms"
              f" {max(s.times) * 1e3:6.2f} ms {statistics.median(s.upstream):8.0f}"
              f" {ratio:>10s} {paired:>7s} {statistics.median(s.cpu) * 1e3:6.2f} ms"
              f" {cpu_paired:>10s}", flush=True)
    before = next((s for name, s in series.items() if name.startswith("dnssec-sidecar at ")),
                  None)
    if before is not None and OURS in series:
        now = series[OURS]
        print(f"# {OURS} / {next(n for n in series if n.startswith('dnssec-sidecar at '))}: "
              f"paired {peers.median_ratio(now.times, before.times):.2f}x wall, "
              f"{peers.median_ratio(now.cpu, before.cpu):.2f}x CPU", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--name", help="time this name instead of the cases (after . NS; "
                        "the answer must have AD)")
    parser.add_argument("--rtt", type=float, default=0, metavar="MS",
                        help="every upstream answer MS ms after its query (a round trip)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time the dnssec-sidecar checked out (and built) in DIR")
    parser.add_argument("--pin", action="store_true",
                        help="resolvers on CPU 0, the tree and this client on the last CPU")
    parser.add_argument("--upstream", choices=("tree", "nsd"), default="tree",
                        help="the tree's zones served by its Python servers or by NSD")
    args = parser.parse_args()
    peers.require_root()
    if args.upstream == "nsd" and args.rtt:
        raise SystemExit("--rtt delays the Python tree's answers: not with --upstream nsd")
    resolver_cpus = tree_cpus = None
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("--pin needs two CPUs")
        resolver_cpus, tree_cpus = {0}, {os.cpu_count() - 1}
        os.sched_setaffinity(0, tree_cpus)
    cases = {key: CASES[key] for key in args.case}
    if args.name:
        cases = {"name": Case("given on the command line", ".", args.name, True)}
    tree_info = peers.Tree.load()
    candidates = []
    for peer in peers.PEERS:
        if peer.name in (OURS, peers.BASELINE, "knot-resolver", "pdns-recursor"):
            if shutil.which(peer.program) is None:
                print(f"# {peer.name} left out: {peer.program} not installed")
            else:
                candidates.append(peer)
    if args.baseline is not None:
        candidates.insert(1, baseline_peer(args.baseline))
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          + ", ".join(sorted(peers.version(p) for p in candidates)))
    print(f"# every round: each resolver restarted and primed with one untimed query, settled "
          f"{SETTLE_S:g} s, then the name timed on each, both in an order that changes; "
          f"{args.rounds} rounds (+1 warm-up); medians; paired = median of per-round ratios to "
          "unbound")
    if args.pin:
        print(f"# pinned: every resolver on CPU 0, the tree and this client on CPU "
              f"{os.cpu_count() - 1}")
    if args.upstream == "nsd":
        print("# upstream: the tree's zones served by NSD, one instance per server address")
    if args.rtt:
        print(f"# round trip: every upstream answer {args.rtt:g} ms after its query (the tree's "
              "servers, for every resolver)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.upstream == "nsd":
            names = [name for case in cases.values() for name in (case.prime, case.name)]
            tree = peers.start_nsd_tree(tmp, names, tree_cpus)
        else:
            tree = peers.start_tree(tmp, args.rtt, tree_cpus)
        try:
            for key, case in cases.items():
                report(key, case, measure(case, candidates, args.rounds, tree, tree_info, tmp,
                                          resolver_cpus))
        finally:
            tree.stop()


if __name__ == "__main__":
    main()
