"""The CPU of a cold lookup's resolve and dnssec layers alone (resolver/resolve, resolver/dnssec;
issue #20): no frontend, no forensic record, no server process around them, paired against a
``--baseline`` checkout.

Each side is a worker process of its own checkout (its compiled modules built there) against the
test tree's servers (a process of their own), with the server's ``outgoing.do_not_query`` for
the tree. Each round, a worker builds a fresh Iterator and
empties the process's key and verified-signature caches, resolves bench/cold.py's priming query,
then the case's name, and reports that lookup's process CPU time (``time.process_time``: the
worker does nothing else). The two workers take turns, first one, then the other; printed: the
medians and the median of the per-round ratios. ``--fresh`` starts a new worker process for every
lookup instead (nothing warmed by earlier rounds, as in a server started for one lookup).
``--settle S``: the worker's loop idles S seconds between the priming query and the timed
lookup, as bench/cold.py's server does (0.3 s there). Back to back (the default), the lookup
runs on caches the priming query has just warmed; after a pause it runs the way a server meets
a new name, and on a shared machine that costs about twice the CPU (session 31:
bench/RESULTS.md). ``--upstream nsd``: the tree's zones served by NSD (``tests.testtree.nsd``), as
in bench/cold.py, instead of the tree's Python servers; not with ``--attack``.
``--attack`` times a hostile query of bench/hostile.py instead of a case (after the priming query
of case a), whatever its outcome: most end in SERVFAIL.

    sudo unshare -n sh -c 'ip link set lo up && python3 bench/iterate.py --baseline DIR'
    # [--case a | --attack cname-chain-across-zones] [--rounds 150] [--fresh] [--settle 0.3]
    # [--upstream nsd]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def worker(case_key: str, attack: str | None, settle: float) -> None:
    """One cold lookup per line read on stdin, its CPU seconds printed (run in a checkout)."""
    sys.path.insert(0, ".")
    import dns.name
    import dns.rdatatype
    import uvloop
    import yaml

    from bench.cold import CASES
    from resolver.dnssec import crypto, sigcrypt
    from resolver.dnssec.anchors import RootHint, parse_trust_anchors
    from resolver.errors import ResolverError
    from resolver.resolve.cache import Cache
    from resolver.resolve.iterator import Iterator, Settings
    from tests.testtree import NOW, authority, zonedata

    case = CASES[case_key]
    (hint_name, hint_address), = zonedata.manifest()["root_hints"].items()
    settings = Settings(root_hints=(RootHint(dns.name.from_text(hint_name), (hint_address,)),),
                        trust_anchors=parse_trust_anchors(authority.trust_anchor_lines()),
                        validation_time=NOW,
                        # The server's filter for the tree (its config's outgoing key): every
                        # glue address of a referral is checked against it.
                        outgoing_do_not_query=tuple(map(ipaddress.ip_network, yaml.safe_load(
                            authority.outgoing_line())["outgoing"]["do_not_query"])))

    def question(text: str) -> tuple[dns.name.Name, int]:
        return dns.name.from_text(text), dns.rdatatype.NS if text == "." else dns.rdatatype.A

    scenario = next((s for s in zonedata.manifest()["scenarios"] if s["name"] == attack), None)

    async def run() -> None:
        for _ in sys.stdin:
            sigcrypt.KEY_CACHE = crypto.KeyCache(10000)
            sigcrypt.VERIFIED = crypto.VerifiedSignatures(20000)
            iterator = Iterator(settings, Cache())
            await iterator.chase(*question(case.prime), iterator.new_context())
            if settle:
                await asyncio.sleep(settle)
            start = time.process_time()
            if scenario is not None:
                try:
                    await iterator.chase(dns.name.from_text(scenario["qname"]),
                                         dns.rdatatype.from_text(scenario["qtype"]),
                                         iterator.new_context())
                except ResolverError:
                    pass
                print(time.process_time() - start, flush=True)
                continue
            answer = await iterator.chase(*question(case.name), iterator.new_context())
            spent = time.process_time() - start
            if answer.verdict.value != ("secure" if case.secure else "insecure"):
                raise SystemExit(f"{case.name}: {answer.verdict.value}")
            print(spent, flush=True)

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare (required)")
    parser.add_argument("--case", default="a")
    parser.add_argument("--attack", help="a hostile query of bench/hostile.py instead of a case")
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--fresh", action="store_true", help="a new process for every lookup")
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="idle between the priming query and the timed lookup")
    parser.add_argument("--upstream", choices=("tree", "nsd"), default="tree")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.attack, args.settle)
    if args.baseline is None:
        parser.error("--baseline DIR is required")
    sys.path.insert(0, str(HERE))
    from bench import peers
    from bench.cold import CASES
    peers.require_root()
    if args.case not in CASES:
        parser.error(f"--case: one of {', '.join(sorted(CASES))}")
    case = CASES[args.case]
    if args.attack and args.upstream == "nsd":
        parser.error("--attack needs the tree's hostile servers: not with --upstream nsd")
    if args.attack:
        from bench.hostile import hostile_scenarios
        if args.attack not in {s["name"] for s in hostile_scenarios()}:
            parser.error(f"--attack: one of {', '.join(s['name'] for s in hostile_scenarios())}")
    sides = [("baseline", args.baseline.resolve()), ("this checkout", HERE)]
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", args.case,
            *(["--attack", args.attack] if args.attack else []), "--settle", str(args.settle)]
    times: list[list[float]] = [[], []]
    with tempfile.TemporaryDirectory() as tmp:
        tree = (peers.start_nsd_tree(Path(tmp), [case.prime, case.name]) if args.upstream == "nsd"
                else peers.start_tree(Path(tmp)))
        workers = [] if args.fresh else [
            subprocess.Popen(argv, cwd=where, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True) for _, where in sides]
        try:
            for round_ in range(args.rounds + 1):  # the first round warms up, untimed
                for index in (0, 1) if round_ % 2 else (1, 0):
                    if args.fresh:
                        spent = float(subprocess.run(argv, cwd=sides[index][1], input="go\n",
                                                     capture_output=True, text=True,
                                                     check=True).stdout)
                    else:
                        workers[index].stdin.write("go\n")
                        workers[index].stdin.flush()
                        spent = float(workers[index].stdout.readline())
                    if round_:
                        times[index].append(spent)
        finally:
            for running in workers:
                running.stdin.close()
                running.wait()
            tree.stop()
    asked = f"attack {args.attack}" if args.attack else f"case {args.case}: {case.name} A"
    print(f"# {asked} after {case.prime}, {args.settle:g} s idle between them, "
          f"upstream {args.upstream}, {args.rounds} rounds, "
          f"{'a fresh process per lookup' if args.fresh else 'one process per side'}")
    for (label, where), spent in zip(sides, times):
        print(f"{label:14s} {statistics.median(spent) * 1e3:7.3f} ms CPU  ({where})")
    ratio = statistics.median(b / a for a, b in zip(*times))
    print(f"# this checkout / baseline: paired {ratio:.2f}x CPU")


if __name__ == "__main__":
    main()
