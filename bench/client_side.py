"""The client's side of a cache miss, in-process (issue #20): ``Frontend.handle`` for a query
whose resolution outcome is given (fetched once from the test tree in memory, then handed back
as fetched, ``cache_hit`` False), with the forensic log on (a file): request checks, the
answer, its bytes, the record filled and sealed, the writer thread's write. What a cold lookup
costs beyond the iterator, without the iterator's noise around it.

Paired: every round runs each tree in a fresh process, in alternating order, and times the
same queries; per case, the CPU (``time.process_time``: every thread, the log writer's too) per
query, the median over rounds and the median of per-round ratios to the baseline.

    python3 bench/client_side.py [--rounds 9] [--queries 400] [--baseline DIR]

``DIR`` is a built checkout (its resolver/ and tests/testtree/ are imported in its process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# name, qname, qtype, DO, transport: the answers whose client side differs.
CASES = [
    ("secure A (case a's answer)", "www.rsasha256.example.", "A", True, "udp"),
    ("secure A, no DO", "www.rsasha256.example.", "A", False, "udp"),
    ("NXDOMAIN, NSEC proof", "nonexistent.rsasha256.example.", "A", True, "udp"),
    ("SERVFAIL, EDE 7", "www.expired.example.", "A", True, "udp"),
    ("near-64 KiB TXT, TCP", "txt.large.example.", "TXT", True, "tcp"),
    ("near-64 KiB TXT, UDP (TC)", "txt.large.example.", "TXT", True, "udp"),
]


def child(queries: int) -> None:
    """Time each case in this process (the tree is on sys.path) and print JSON."""
    import asyncio
    import time

    import dns.message
    import dns.name
    import dns.rdatatype

    from resolver.config.schema import LogConfig
    from resolver.forensic.log import ForensicLog
    from resolver.frontend.admission import Admission
    from resolver.frontend.pipeline import Frontend
    from resolver.frontend.resolution import Resolver
    from resolver.resolve.cache import Cache
    from tests.testtree import authority, memory, zonedata

    async def run() -> dict:
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            log = ForensicLog(LogConfig(path=os.path.join(tmp, "log"), fsync_interval_ms=0))
            await log.start()
            large = authority.Responder([zonedata.load("large.example.")])  # a hostile zone

            def over_tcp(query):  # rendered whole by a checkout's memory.Upstream, old or new
                response = large.respond(query)[0]
                response.request_payload = 65535
                return response

            upstream = memory.Upstream(extra={"127.0.0.95": over_tcp})
            resolver = Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                                exchange=upstream)
            frontend = Frontend(resolver, None, log)
            frontend._remember = lambda *args: None  # names asked once: nothing kept
            fetch = resolver._resolve
            for name, qname, qtype, do, transport in CASES:
                outcome = await fetch(dns.name.from_text(qname), dns.rdatatype.from_text(qtype),
                                      None)

                async def given(*args, _outcome=outcome, **kwargs):
                    return _outcome

                resolver.resolve = given
                wire = dns.message.make_query(qname, qtype, want_dnssec=do,
                                              use_edns=0).to_wire()
                max_size = None if transport == "tcp" else 1232
                listener, client = ("127.0.0.1", 53), ("127.0.0.2", 5353)
                for _ in range(20):
                    await frontend.handle(wire, transport, listener, client, max_size)
                await log.flush()
                started = time.process_time()
                for _ in range(queries):
                    await frontend.handle(wire, transport, listener, client, max_size)
                await log.flush()
                results[name] = (time.process_time() - started) / queries * 1e6
            await log.close()
        return results

    print(json.dumps(asyncio.run(run())))


def measure(tree: Path, queries: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    python = tree / ".venv/bin/python"
    out = subprocess.run([str(python if python.exists() else sys.executable), __file__,
                          "--child", "--queries", str(queries)],
                         cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--baseline", type=Path, help="a built checkout to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.getcwd())
        child(args.queries)
        return
    trees = {"ours": HERE}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    series: dict[str, list[dict]] = {label: [] for label in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for label in order:
            series[label].append(measure(trees[label], args.queries))
    print(f"# {args.rounds} rounds x {args.queries} queries a case; CPU µs per query (all "
          f"threads), medians; paired = median of per-round ratios ours / baseline; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'case':32} {'ours':>9} {'baseline':>9} {'paired':>7}")
    for name, *_ in CASES:
        ours = statistics.median(run[name] for run in series["ours"])
        line = f"{name:32} {ours:9.1f}"
        if "baseline" in series:
            base = statistics.median(run[name] for run in series["baseline"])
            ratio = statistics.median(o[name] / b[name] for o, b in
                                      zip(series["ours"], series["baseline"]))
            line += f" {base:9.1f} {ratio:6.2f}x"
        print(line)


if __name__ == "__main__":
    main()
