"""The CPU of one upstream exchange (issue #20): ``transport.make_query`` and
``transport.exchange`` over UDP (a fresh socket, the query sent, the reply matched and parsed:
RFC 5452 §9), for the five questions of bench/cold.py's case (a) after priming, answered by a
responder process with the replies the test tree's servers give. Our process's CPU time per
exchange, this checkout against the one in ``--baseline DIR`` (its compiled modules built in
place) in alternating rounds, each in a fresh process; the median of the per-round figures and
of their ratios (``paired``).

    python3 bench/exchange.py [--baseline DIR] [--rounds 9] [--exchanges 2000] [--cold]

``--cold``: the processor's caches are emptied before each exchange (64 MiB written over,
outside the timed span), and each exchange is timed on its own. Back to back, an exchange runs
on code and data the previous one has just touched; a server that meets a new name after a
pause runs it the way ``--cold`` does, which on a shared machine costs several times as much
(session 31: bench/RESULTS.md).

Loopback only (127.0.0.1, an ephemeral port); no root needed. On loopback the ``send`` system
call includes the kernel's delivery to the responder, for us as for any resolver.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import dns.name
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wireparse import servers  # noqa: E402
from resolver.resolve import transport  # noqa: E402

# (zone asked, question): case (a) after priming, as bench/cold.py's tree sees it.
QUESTIONS = [("example.", "example.", "DNSKEY"), (".", "example.", "A"),
             ("example.", "rsasha256.example.", "A"),
             ("rsasha256.example.", "rsasha256.example.", "DNSKEY"),
             ("rsasha256.example.", "www.rsasha256.example.", "A")]

# Answers each query with the reply stored for its question (the query's ID put in).
RESPONDER = """
import socket, sys
replies = {bytes.fromhex(q): bytes.fromhex(r) for q, r in
           (line.split() for line in open(sys.argv[1]))}
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    data, addr = sock.recvfrom(4096)
    reply = replies[data[12:-11].lower()]
    sock.sendto(data[:2] + reply[2:], addr)
"""

EVICT_BYTES = 64 << 20  # more than a server processor's last-level cache

# One round in a fresh process: the checkout in argv[1], argv[2] exchanges, "cold" or "warm" in
# argv[3]; prints µs each.
WORKER = f"EVICT_BYTES = {EVICT_BYTES}\n" + """
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
import dns.name, uvloop
from resolver.resolve import transport
port, count, cold = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "cold"
questions = [(dns.name.from_text(q.split()[0]), int(q.split()[1])) for q in sys.argv[5:]]
evict = bytearray(EVICT_BYTES if cold else 0)
marks = bytes(len(evict[::64]))  # one octet written in every 64-octet cache line

async def run():
    for name, rdtype in questions * 20:  # warm-up: imports, first calls
        await transport.exchange(transport.make_query(name, rdtype), "127.0.0.1", port)
    spent = 0.0
    start = time.process_time()
    for i in range(count):
        name, rdtype = questions[i % len(questions)]
        if cold:
            evict[::64] = marks
            start = time.process_time()
        reply = await transport.exchange(transport.make_query(name, rdtype), "127.0.0.1", port)
        if cold:
            spent += time.process_time() - start
        assert reply.message.question[0].name == name
    return (spent if cold else time.process_time() - start) / count

print(uvloop.run(run()) * 1e6)
"""


def replies() -> list[tuple[bytes, bytes, str]]:
    """(question wire in lower case, reply, "name type") for each of :data:`QUESTIONS`."""
    by_zone, found = servers(), []
    for zone, name, rdtype in QUESTIONS:
        query = transport.make_query(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        wire = query.to_wire()
        found.append((wire[12:-11].lower(), by_zone[zone].handle(wire, "udp"),
                      f"{name} {dns.rdatatype.from_text(rdtype):d}"))
    return found


def one_round(checkout: Path, port: int, count: int, cold: bool, questions: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", WORKER, str(checkout), str(port), str(count),
                          "cold" if cold else "warm", *questions],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, metavar="DIR")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--exchanges", type=int, help="a round's (2000; 200 with --cold)")
    parser.add_argument("--cold", action="store_true", help="caches emptied before each")
    args = parser.parse_args()
    if args.exchanges is None:
        args.exchanges = 200 if args.cold else 2000
    found = replies()
    checkouts = {"this checkout": ROOT}
    if args.baseline is not None:
        label = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip() or "baseline"
        checkouts[f"at {label}"] = args.baseline.resolve()
    print(f"# {platform.node()} {platform.machine()}, Python {platform.python_version()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.rounds} "
          f"alternating rounds x {args.exchanges} exchanges over {len(found)} questions of "
          f"cold.py's case a{', caches emptied before each' if args.cold else ''}; CPU per "
          "exchange, medians")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as table:
        table.write("".join(f"{q.hex()} {r.hex()}\n" for q, r, _ in found))
        table.flush()
        responder = subprocess.Popen([sys.executable, "-c", RESPONDER, table.name],
                                     stdout=subprocess.PIPE, text=True)
        try:
            port = int(responder.stdout.readline())
            times: dict[str, list[float]] = {name: [] for name in checkouts}
            for round_ in range(args.rounds):
                order = list(checkouts.items())
                for name, checkout in order[round_ % 2:] + order[:round_ % 2]:
                    times[name].append(one_round(checkout, port, args.exchanges, args.cold,
                                                 [label for _, _, label in found]))
        finally:
            responder.kill()
            responder.wait()
    for name, values in times.items():
        print(f"{name:24s} {statistics.median(values):7.1f} us  (min {min(values):.1f}, "
              f"max {max(values):.1f})")
    if len(times) == 2:
        ours, before = times.values()
        paired = statistics.median(a / b for a, b in zip(ours, before))
        print(f"# this checkout / {list(times)[1]}: paired {paired:.2f}x CPU per exchange")


if __name__ == "__main__":
    main()
