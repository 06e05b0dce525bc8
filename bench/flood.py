"""Flood of unique names at a dead upstream (issues #14 §5 and #20): the resolver's RSS and open
descriptors while one client sends unique names under a zone whose server never answers, and
what healthy clients asking cached names get meanwhile; dnssec-sidecar, then Unbound (bench/peers:
one thread, its default limits, the same 4 MiB receive buffer) under the same flood.

    unshare -n sh -c 'ip link set lo up && python3 bench/flood.py [--rate 50000] [--seconds 60]
                      [--limits "{max_resolutions_per_client: 100}"] [--peers ours unbound]
                      [--rounds 1]'

As root (the tree and the resolver use port 53), in a network namespace of its own: it refuses
to run where any interface but ``lo`` exists. It starts the test tree (``python -m
tests.testtree``) with the server of ``--zone`` (default ``ed448.test.``, 127.0.0.25) dropping
every query, and ``dnssec-sidecar serve`` on 127.0.0.2 with the tree's config and its default
limits (or ``--limits``) and timeouts, and Unbound on 127.0.0.72. ``--rounds`` times, each
resolver in turn (the order rotated each round) is started, its cache warmed with names of
other zones, then for ``--seconds``:

- a flooder (127.0.0.200) sends ``--rate`` unique names per second (``<n>.<zone> A``, paced
  every 5 ms, not waiting for replies; it counts the replies that come);
- a healthy client (127.0.0.201) asks the warmed names one at a time, ``--healthy-rate`` a
  second, each with a 2 s timeout, and notes each answer's rcode and latency;
- the resolver's RSS (VmRSS) and open descriptors (/proc/<pid>/fd) are sampled every second.

Then the flood stops and the resolver is watched while it drains (at most 20 s), and stopped.
It prints a row per 5 s (RSS, descriptors, flood sent and answered, healthy answers and latency)
and a summary: the flood's queries the resolver dropped over a limit (ours: shed by its
listener; Unbound: its request list exceeded or jostled, ``unbound-control stats``), the
datagrams the kernel dropped, and the resolver's CPU time and time runnable but waiting for a
CPU (schedstat: on a busy machine, how much of the run it was starved); then the healthy client's
p50 and p99 of each resolver and round (a query unanswered in 2 s counts as later than any), and
the median of the per-round p99 ratios. Every loop is bounded in
count and time; nothing is asserted: these are figures.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from bench import peers  # noqa: E402
from bench.soak import rss_mib  # noqa: E402
from tests import processes  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

RESOLVER = "127.0.0.2"
FLOODER = "127.0.0.200"
HEALTHY = "127.0.0.201"
TICK = 0.005  # the flooder's pacing step, seconds
HEALTHY_TIMEOUT = 2.0
DRAIN_SECONDS = 20
SHED = 'dnssec_sidecar_queries_dropped_total{reason="over_limit"}'
ANSWERED = (0, 3)  # the rcodes the warmed names have: NOERROR, NXDOMAIN (nope.)
WARM_NAMES = ["www.rsasha256.example.", "www.ecdsap256.example.", "www.ed25519.example.",
              "www.rsasha512.test.", "www.ecdsap384.test.", "www.insecure.example.",
              "nope.rsasha256.example.", "www.fwd.example."]


def query_wire(name: str, qid: int, rdtype: int = 1) -> bytes:
    """A query with RD and EDNS (DO set), as a stub with DNSSEC on sends it (RFC 1035 §4.1)."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part)
    return (struct.pack("!6H", qid, 0x0100, 1, 0, 0, 1) + labels + b"\x00"
            + struct.pack("!HH", rdtype, 1) + b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00")


def flood(address: str, zone: str, rate: int, seconds: float, sent, answered, servfail,
          stop) -> None:
    """Send ``rate`` unique names a second for ``seconds``; count replies as they come, and
    after the last query until ``stop`` is set (at most ``DRAIN_SECONDS`` more)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((FLOODER, 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    per_tick = max(1, round(rate * TICK))
    prefix = f"{random.getrandbits(24):06x}"  # fresh names for every run (nothing cached)
    start, n = time.monotonic(), 0
    total = round(rate * seconds)

    def take(reply: bytes) -> None:
        answered.value += 1
        servfail.value += len(reply) > 3 and reply[3] & 0x0F == 2  # RCODE 2

    while n < total:
        tick_end = start + (n // per_tick + 1) * TICK
        for _ in range(min(per_tick, total - n)):
            try:
                sock.sendto(query_wire(f"f{prefix}{n:08x}.{zone}", n & 0xFFFF), (address, 53))
            except BlockingIOError:
                pass  # the socket's buffer is full: that query is lost, as on a busy host
            n += 1
        for _ in range(4 * per_tick):  # bounded drain of the replies that arrived
            try:
                take(sock.recv(4096))
            except BlockingIOError:
                break
        sent.value = n
        delay = tick_end - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - start >= seconds:
            break  # the machine cannot keep the pace: stop on time, report what was sent
    end = time.monotonic() + DRAIN_SECONDS  # late replies
    sock.settimeout(0.2)
    while time.monotonic() < end and not stop.is_set():
        try:
            take(sock.recv(4096))
        except TimeoutError:
            continue
    sock.close()


def healthy(address: str, rate: float, seconds: float, results) -> None:
    """Ask the warmed names at ``rate`` a second, each with its own ID, without waiting for
    the replies (a client's stub does not wait for another client's); put (seconds since start,
    latency or None, rcode or None) for each query on ``results``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HEALTHY, 0))
    start = time.monotonic()
    count = min(int(rate * seconds), 0x10000)  # one ID per query
    sent_at: list[float] = []
    replies: dict[int, tuple[float, int]] = {}
    end = start + seconds + HEALTHY_TIMEOUT
    while time.monotonic() < end:  # bounded by time; sends bounded by count
        if len(sent_at) < count and time.monotonic() >= start + len(sent_at) / rate:
            qid = len(sent_at)
            sent_at.append(time.monotonic())
            sock.sendto(query_wire(WARM_NAMES[qid % len(WARM_NAMES)], qid), (address, 53))
            continue
        due = start + len(sent_at) / rate if len(sent_at) < count else end
        sock.settimeout(max(0.0005, min(due, end) - time.monotonic()))
        try:
            reply = sock.recv(4096)
        except TimeoutError:
            continue
        qid = struct.unpack("!H", reply[:2])[0] if len(reply) >= 4 else count
        if qid < len(sent_at) and qid not in replies:
            replies[qid] = (time.monotonic() - sent_at[qid], reply[3] & 0x0F)
    out = []
    for qid, when in enumerate(sent_at):
        latency, rcode = replies.get(qid, (None, None))
        out.append((when - start, None if latency is None or latency > HEALTHY_TIMEOUT
                    else latency, rcode if latency is not None and latency <= HEALTHY_TIMEOUT
                    else None))
    results.put(out)
    sock.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def udp_receive_drops() -> int:
    """Datagrams this network namespace's kernel dropped because a socket's receive buffer was
    full (/proc/net/snmp, Udp RcvbufErrors): queries the resolver never read."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def fd_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


def scrape(name: str) -> float | None:
    """One metric's sum over its labels, or None when the endpoint does not answer in 2 s."""
    try:
        text = urllib.request.urlopen(f"http://{RESOLVER}:9153/metrics", timeout=2).read()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
               if line.startswith(name) and not line.startswith("#")
               and line[len(name):len(name) + 1] in ("{", " "))


def wait_answering(address: str, name: str, seconds: float) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    try:
        for _ in range(int(seconds / 0.5)):  # bounded
            try:
                sock.sendto(query_wire(name, 7), (address, 53))
                if sock.recv(4096)[:2] == b"\x00\x07":
                    return True
            except OSError:
                time.sleep(0.2)
        return False
    finally:
        sock.close()


def config_text(log_dir: str | None, limits: str | None = None) -> str:
    """The tree's config with the metrics endpoint, the forensic log in ``log_dir`` (64 MiB,
    one rotated file kept) or off (None), and ``limits`` (YAML flow mapping) if given."""
    log_line = ("log: {enabled: false}" if log_dir is None else
                f"log: {{path: {log_dir}/log.jsonl, max_bytes: 67108864, keep: 1}}")
    return (authority.resolver_config_text()
            + f'metrics: {{listen: "{RESOLVER}:9153"}}\n{log_line}\n'
            + (f"limits: {limits}\n" if limits else ""))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Subject:
    """One resolver under the flood: its address and process, and its counters of upstream
    queries and of queries it dropped over a limit (None where it has none)."""

    def __init__(self, name: str, address: str, process, counters) -> None:
        self.name, self.address, self.process, self._counters = name, address, process, counters

    @property
    def pid(self) -> int:
        return self.process.pid

    def counters(self) -> tuple[float | None, float | None]:
        return self._counters()


def start_ours(args, tmp: Path, logs: Path, round_: int) -> Subject:
    """dnssec-sidecar on RESOLVER with the tree's config, a fresh forensic log each start."""
    log_dir = None
    if args.log != "off":
        log_dir = logs / f"ours-{round_}"
        log_dir.mkdir()
    config = tmp / f"config-{round_}.yaml"
    config.write_text(config_text(None if log_dir is None else str(log_dir), args.limits))
    stderr_path = tmp / f"stderr-{round_}.txt"
    with open(stderr_path, "w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                   str(config)], cwd=ROOT_DIR, stderr=stderr)
    subject = Subject("dnssec-sidecar", RESOLVER, server, lambda: (
        scrape("dnssec_sidecar_upstream_queries_total"), scrape(SHED)))
    if not wait_answering(RESOLVER, WARM_NAMES[0], 30):
        stop(server)
        raise SystemExit("the resolver did not start: " + stderr_path.read_text()[-2000:])
    return subject


def start_unbound(tmp: Path, round_: int) -> Subject:
    """Unbound as bench/peers configures it; its request list's overflows count as shed."""
    peer = next(p for p in peers.PEERS if p.name == peers.BASELINE)
    directory = tmp / f"unbound-{round_}"
    running, why = peers.start(peer, peers.Tree.load(), directory)
    if running is None:
        raise SystemExit(f"unbound did not start: {why}")

    def counters() -> tuple[float | None, float | None]:
        stats = peers.unbound_stats(directory)
        if not stats:
            return None, None
        return None, (stats.get("total.requestlist.exceeded", 0.0)
                      + stats.get("total.requestlist.overwritten", 0.0))
    return Subject("unbound", peer.address, running.process, counters)


def stop(process) -> None:
    processes.stop(process, timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50000, help="unique names per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--zone", default="ed448.test.", help="the tree zone that goes dead")
    parser.add_argument("--healthy-rate", type=float, default=50.0)
    parser.add_argument("--log", choices=("tmpfs", "disk", "off"), default="tmpfs",
                        help="where the forensic log goes (64 MiB, one rotated file kept)")
    parser.add_argument("--limits", help="the resolver's limits, a YAML flow mapping "
                        "(default: none given, the defaults)")
    parser.add_argument("--peers", nargs="+", choices=("ours", "unbound"),
                        default=["ours", "unbound"], help="the resolvers flooded, in turn")
    parser.add_argument("--rounds", type=int, default=1, help="floods of each resolver")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree and the resolver listen on port 53")
    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        raise SystemExit("run in a network namespace of its own: unshare -n sh -c 'ip link set "
                         "lo up && python3 bench/flood.py'")
    if "unbound" in args.peers and not shutil.which("unbound"):
        raise SystemExit("needs unbound (apt-get install unbound), or --peers ours")
    zone = args.zone if args.zone.endswith(".") else args.zone + "."
    dead = zonedata.entry(zone)["server"]
    print(f"flood: {args.rate} unique names/s under {zone} (its server {dead} drops every "
          f"query) for {args.seconds:g} s; healthy client: {args.healthy_rate:g} queries/s of "
          f"{len(WARM_NAMES)} cached names; forensic log: {args.log}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    healthy_figures: dict[str, list[tuple[float, float, int, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            tempfile.TemporaryDirectory(dir="/dev/shm" if args.log == "tmpfs" else None) as logs:
        tree = subprocess.Popen([sys.executable, "-m", "tests.testtree", "--fault",
                                 f"{zone}:drop"], cwd=ROOT_DIR, stdout=subprocess.DEVNULL)
        try:
            if not wait_answering("127.0.0.10", ".", 30):
                raise SystemExit("the test tree did not start")
            for round_ in range(args.rounds):
                turn = round_ % len(args.peers)
                order = args.peers[turn:] + args.peers[:turn]
                for name in order:
                    subject = (start_ours(args, Path(tmp), Path(logs), round_) if name == "ours"
                               else start_unbound(Path(tmp), round_))
                    try:
                        for _ in range(2):  # warm: every healthy name in the cache
                            for warm in WARM_NAMES:
                                wait_answering(subject.address, warm, 5)
                        print(f"\n## {subject.name} on {subject.address}, round {round_ + 1}",
                              flush=True)
                        healthy_figures.setdefault(subject.name, []).append(
                            run(args, zone, subject))
                    finally:
                        stop(subject.process)
        finally:
            stop(tree)
    summary(healthy_figures)
    return 0


def summary(figures: dict[str, list[tuple[float, float, int, int]]]) -> None:
    """Each resolver's healthy client per round, and our p99 over Unbound's, paired by round.
    Here a query not answered within HEALTHY_TIMEOUT counts as infinitely late (the p99 of
    the answered ones alone would hide the queries that got nothing)."""
    print(f"\n# healthy client while the flood runs, per round: p50 and p99 (ms) of all asked,"
          f" a query unanswered in {HEALTHY_TIMEOUT:g} s counting as later than any; answered")
    for name, rounds in figures.items():
        print(f"{name:16s} " + "; ".join(f"p50 {late(p50)}, p99 {late(p99)}, {ok}/{asked}"
                                         for p50, p99, ok, asked in rounds))
    ours, theirs = figures.get("dnssec-sidecar"), figures.get("unbound")
    if ours and theirs and len(ours) == len(theirs):
        p99s = [r[1] for r in ours], [r[1] for r in theirs]
        if all(math.isfinite(v) and v > 0 for side in p99s for v in side):
            print(f"healthy p99, dnssec-sidecar / unbound: {peers.median_ratio(*p99s):.2f}x "
                  "(median of per-round ratios)")


def late(ms: float) -> str:
    return f"{ms:.1f}" if math.isfinite(ms) else f">{HEALTHY_TIMEOUT * 1000:.0f}"


def run(args, zone: str, subject: Subject) -> tuple[float, float, int, int]:
    """One flood of ``subject``: prints its table, returns the healthy client's (p50 ms,
    p99 ms, the unanswered counted as later than any; answered, asked)."""
    pid = subject.pid
    print(f"resolver pid {pid}: descriptor limit {fd_limit(pid)}", flush=True)
    before = (rss_mib(pid), open_fds(pid))
    sched_before = peers.schedstat(pid)
    upstream_before, shed_before = subject.counters()
    drops_before = udp_receive_drops()
    sent, answered, servfail = (multiprocessing.Value("q", 0) for _ in range(3))
    results, stop_event = multiprocessing.Queue(), multiprocessing.Event()
    flooder = multiprocessing.Process(target=flood, args=(
        subject.address, zone, args.rate, args.seconds, sent, answered, servfail, stop_event))
    prober = multiprocessing.Process(target=healthy, args=(subject.address, args.healthy_rate,
                                                           args.seconds, results))
    start = time.monotonic()
    flooder.start()
    prober.start()
    samples = []  # (t, rss, fds, flood sent, flood answered)
    flood_end = start + args.seconds
    drain_end = flood_end + DRAIN_SECONDS
    for _ in range(int(args.seconds + DRAIN_SECONDS + 10)):  # one sample a second, bounded
        time.sleep(max(0.0, start + len(samples) + 1 - time.monotonic()))
        now = time.monotonic()
        try:
            samples.append((now - start, rss_mib(pid), open_fds(pid), sent.value,
                            answered.value))
        except FileNotFoundError:
            print("the resolver exited during the flood", flush=True)
            break
        if now >= drain_end or (now >= flood_end + 3 and samples[-1][2] <= before[1]):
            break
    stop_event.set()
    probes = results.get(timeout=HEALTHY_TIMEOUT * 3 + args.seconds)
    flooder.join(timeout=30)
    prober.join(timeout=30)
    cpu = tuple(after - was for after, was in zip(peers.schedstat(pid), sched_before))
    upstream, shed = subject.counters()
    report(args, before, samples, probes, (sent.value, answered.value, servfail.value),
           None if upstream is None else upstream - (upstream_before or 0.0),
           None if shed is None else shed - (shed_before or 0.0),
           udp_receive_drops() - drops_before, cpu)
    every = [p[1] * 1000 if p[2] in ANSWERED else math.inf for p in probes]
    answered = sum(1 for p in probes if p[2] in ANSWERED)
    return percentile(every, 0.5), percentile(every, 0.99), answered, len(probes)


def report(args, before, samples, probes, flood_counts, upstream, shed, drops: int,
           cpu: tuple[float, float]) -> None:
    print()
    print("  t (s) | RSS MiB | fds   | flood sent | flood answered | healthy ok/asked | "
          "p50 ms | p99 ms")
    print(f"  {0:5.0f} | {before[0]:7.1f} | {before[1]:5d} | {'':10} | {'':14} | {'':16} |"
          f"        |")
    for row in samples[4::5] + ([samples[-1]] if len(samples) % 5 else []):
        t = row[0]
        window = [p for p in probes if t - 5 <= p[0] < t]
        ok = [p[1] * 1000 for p in window if p[2] in ANSWERED]
        print(f"  {t:5.0f} | {row[1]:7.1f} | {row[2]:5d} | {row[3]:10d} | {row[4]:14d} | "
              f"{len(ok):7d}/{len(window):<8d} | {percentile(ok, 0.5):6.1f} | "
              f"{percentile(ok, 0.99):6.1f}")
    flood_rows = [s for s in samples if s[0] <= args.seconds + 1] or samples
    ok = [p[1] * 1000 for p in probes if p[2] in ANSWERED]
    late = sum(1 for p in probes if p[1] is None)
    sent, answered, servfail = flood_counts
    print()
    print(f"RSS MiB: {before[0]:.1f} before, peak {max(s[1] for s in samples):.1f}, "
          f"{flood_rows[-1][1]:.1f} at the flood's end, {samples[-1][1]:.1f} at the last "
          f"sample ({samples[-1][0]:.0f} s)")
    print(f"open descriptors: {before[1]} before, peak {max(s[2] for s in samples)}, "
          f"{flood_rows[-1][2]} at the flood's end, {samples[-1][2]} at the last sample")
    print(f"flood: {sent} sent ({sent / args.seconds:.0f}/s), {answered} answered "
          f"({servfail} SERVFAIL); upstream queries during the run: "
          f"{'?' if upstream is None else f'{upstream:.0f}'}; dropped by the resolver over a "
          f"limit: {'?' if shed is None else f'{shed:.0f}'}; datagrams the kernel dropped "
          f"(a receive buffer full, any socket of the namespace): {drops}")
    print(f"resolver CPU: {cpu[0]:.1f} s over the {samples[-1][0]:.0f} s sampled "
          f"({100 * cpu[0] / samples[-1][0]:.0f}% of one CPU); runnable but waiting for a CPU "
          f"(the machine's other work): {cpu[1]:.1f} s")
    print(f"healthy: {len(ok)}/{len(probes)} answered (NOERROR, NXDOMAIN), {late} without an answer within "
          f"{HEALTHY_TIMEOUT:g} s; latency p50 {percentile(ok, 0.5):.1f} ms, p99 "
          f"{percentile(ok, 0.99):.1f} ms, max {max(ok, default=float('nan')):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
