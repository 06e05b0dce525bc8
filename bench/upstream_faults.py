"""What upstream faults and forged replies cost a client, through the real `dnssec-sidecar serve`
with its default timeouts (`timeouts` in resolver/config.py) against the test tree:

* for each fault of the only server of insecure.example. (tests/testtree/authority.py knobs):
  the time until the client has its SERVFAIL (EDE 22);
* cold lookups of names in insecure.example. while a forger sends N datagrams with the right
  ID and a wrong question before each real reply (the resolver must read and drop each one):
  the median time per lookup, the forged packets the resolver counted as ignored, and how many
  lookups still got the real answer (a flood can overflow the socket's receive buffer, and
  then the real reply is lost with the forgeries).

    unshare -n sh -c 'ip link set lo up && python bench/upstream_faults.py [--names 30]'

Needs root (port 53 of 127.0.0.x); run it in a network namespace of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import resolve  # noqa: E402
from tests import processes  # noqa: E402
from tests.testtree import authority  # noqa: E402

resolve.ADDRESS = "127.0.0.142"
METRICS = "127.0.0.142:9154"
ZONE = "insecure.example."
FAULTS = {"timeout (drop)": {"drop": True}, "SERVFAIL": {"servfail": True},
          "REFUSED": {"refuse": True}, "FORMERR to EDNS": {"formerr": True},
          "TC + TCP reset": {"truncate_udp": True, "tcp_reset": True},
          "TC + TCP hang": {"truncate_udp": True, "tcp_hang": True},
          "TC + TCP wrong question": {"truncate_udp": True, "tcp_wrong_question": True}}


def ask(name: str) -> tuple[dns.message.Message, float]:
    start = time.monotonic()
    response = dns.query.udp(dns.message.make_query(name, "A", want_dnssec=True),
                             resolve.ADDRESS, timeout=20)
    return response, time.monotonic() - start


def ignored() -> int:
    with urllib.request.urlopen(f"http://{METRICS}/metrics", timeout=5) as page:
        text = page.read().decode()
    return sum(int(float(v)) for v in re.findall(
        r"^dnssec_sidecar_upstream_ignored_total\{[^}]*\} (\S+)$", text, re.M))


def flood(count: int):
    """A forge hook: ``count`` replies with the right ID and another question name."""
    def forge(transport, query_wire: bytes, reply_wire: bytes | None, addr) -> None:
        if reply_wire is None:
            return
        query = dns.message.from_wire(query_wire)
        forged = dns.message.make_response(query)
        forged.question[0].name = dns.name.from_text("forged", query.question[0].name)
        wire = forged.to_wire()
        for _ in range(count):
            transport.sendto(wire, addr)
    return forge


@contextlib.contextmanager
def fresh_resolver(config: Path):
    """A resolver of its own for one row: a failure is held (RFC 9520 §3.2, resolver/resolve/
    failures.py), and a resolver that had met the previous row's fault would answer the next
    from its hold, without asking the server at all."""
    process = resolve.start_resolver(config)
    try:
        ask(f"www.{ZONE}")  # learn the delegation
        yield
    finally:
        processes.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=30, help="cold lookups per flood size")
    args = parser.parse_args()
    with authority.start_tree() as tree, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(resolve.config_text().replace("metrics: {enabled: false}",
                                                        f'metrics: {{listen: "{METRICS}"}}')
                          + f'log: {{path: "{tmp}/lookups.log"}}\n')
        print(f"{'fault of the only server':<28} {'rcode':>8} {'EDE':>4} {'seconds':>8}")
        for i, (label, knobs) in enumerate(FAULTS.items()):
            with fresh_resolver(config):
                tree.set_faults(ZONE, **knobs)
                response, seconds = ask(f"fault{i}.{ZONE}")
                tree.set_faults(ZONE, **{k: False for k in knobs})
            ede = [o.code for o in response.options if o.otype == 15]
            print(f"{label:<28} {dns.rcode.to_text(response.rcode()):>8} "
                  f"{int(ede[0]) if ede else '-':>4} {seconds:8.3f}")
        print(f"\n{'forged per query':>16} {'median ms':>10} {'p90 ms':>8} {'ignored':>8} "
              f"{'real answer':>11}")
        for count in (0, 10, 100, 300, 1000):
            with fresh_resolver(config):
                tree.set_faults(ZONE, forge=flood(count))
                before, times, answered = ignored(), [], 0
                for i in range(args.names):
                    response, seconds = ask(f"c{count}-{i}.{ZONE}")
                    answered += response.rcode() == 3  # else SERVFAIL: the reply was lost
                    times.append(seconds * 1000)
                forged = ignored() - before
                tree.set_faults(ZONE, forge=None)
            times.sort()
            print(f"{count:>16} {statistics.median(times):10.2f} "
                  f"{times[int(len(times) * 0.9)]:8.2f} {forged:>8} {answered:>5}/{args.names}")


if __name__ == "__main__":
    main()
