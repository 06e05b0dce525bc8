"""Client-side faults, end to end through the real `dnssec-sidecar serve` (issue #7, Faults):
slow TCP clients holding connections. Connections are bounded (``limits.tcp_clients``: a new
one closes the connection idle longest, or is closed itself when all are busy), queries in
progress per connection are bounded (``limits.tcp_pipeline``), half-sent messages and
clients that never read their replies are closed after ``timeouts.tcp_idle_ms`` (RFC 7766
§6.2.3), and UDP is answered all along.

The helpers here (``sidecar_config``, ``Sidecar``, ``scrape``) also serve test_log_full.py and
test_cache_flood.py. Open sockets are counted from the server's side: /proc/<pid>/fd joined
with /proc/net/tcp of the test's network namespace."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.test_operations import value, wait_for
from tests.test_resolver import _config_text
from tests.testtree import authority

ROOT_DIR = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.150"
IDLE_MS = 2500
LIMIT = 8
PIPELINE = 4


def sidecar_config(address: str, log_path: Path, **sections) -> dict:
    """test_resolver's configuration for the tree (hints, anchors, validation time,
    forwarder, metrics on ``address``:9153) with the log in ``log_path`` and ``sections``."""
    config = yaml.safe_load(_config_text(address))
    config["log"] = {"path": str(log_path), "fsync_interval_ms": 0}
    config.update(sections)
    return config


class Sidecar:
    """`dnssec-sidecar serve` in a process (``wrap``: a command it runs under, e.g. unshare),
    its stderr in ``directory``/stderr.txt."""

    def __init__(self, directory: Path, config: dict, wrap: tuple[str, ...] = ()) -> None:
        self.address = config["listen"][0].rsplit(":", 1)[0]
        self.metrics = f"http://{self.address}:9153/metrics"
        path = directory / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        self.stderr_path = directory / "stderr.txt"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [*wrap, sys.executable, "-m", "resolver.cli", "serve", "--config", str(path),
                 "-v"], cwd=ROOT_DIR, stderr=stderr, text=True)
        if not wait_for(self._listening, 60):  # bounded: a loaded machine starts slowly
            self.stop()
            pytest.fail(f"the resolver did not start: {self.stderr()}")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            return True
        try:
            socket.create_connection((self.address, 53), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=20)

    def scrape(self) -> dict[tuple, float]:
        text = urllib.request.urlopen(self.metrics, timeout=5).read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}

    def metric(self, name: str, **labels) -> float:
        return value(self.scrape(), name, **labels)

    def rss_mib(self) -> float:
        """Resident memory of the process (/proc/<pid>/statm counts pages)."""
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def tcp_sockets(self) -> int:
        """Client connections the process holds open on port 53 (not its listeners)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.process.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.process.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        local = socket.inet_aton(self.address)[::-1].hex().upper() + ":0035"
        count = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] != "0A" and fields[9] in inodes:  # 0A: LISTEN
                count += 1
        return count


def udp(name: str, address: str = ADDRESS, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), address,
                         timeout=5)


def framed(name: str, rdtype: str = "A", qid: int = 0) -> bytes:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.id = qid
    wire = query.to_wire()
    return struct.pack("!H", len(wire)) + wire


def half_message() -> socket.socket:
    """A slow client: it announces a 40-byte message and sends 3 bytes of it."""
    sock = socket.create_connection((ADDRESS, 53), timeout=5)
    sock.sendall(struct.pack("!H", 40) + b"\x12\x34\x01")
    return sock


def still_open(sock: socket.socket) -> bool:
    """True while the server has not closed the connection (nothing to read, no EOF)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # a look, not a wait
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(timeout)


def closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """True when the server closed the connection (EOF or reset) within ``seconds``; replies
    that arrive first are read and ignored."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


@pytest.fixture
def sidecar(tree, tmp_path):
    running = Sidecar(tmp_path, sidecar_config(
        ADDRESS, tmp_path / "log.jsonl",
        limits={"tcp_clients": LIMIT, "tcp_pipeline": PIPELINE},
        timeouts={"upstream_ms": 1000, "query_ms": 1000, "tcp_idle_ms": IDLE_MS}))
    udp("www.rsasha256.example.")  # trust primed: the tests time only what they exercise
    wait_for(lambda: running.tcp_sockets() == 0, 3)  # the start-up probe's connection is gone
    yield running
    tree.set_faults("ed448.test.", drop=False)
    assert running.stop() == 0
    assert "Traceback" not in running.stderr()


def test_slow_clients_cannot_hold_the_connections(sidecar):
    slow = [half_message() for _ in range(LIMIT)]
    assert wait_for(lambda: sidecar.tcp_sockets() == LIMIT, 5)
    for k in range(12):  # more slow clients: each closes the one idle longest
        slow.append(half_message())
        assert closed_by_server(slow[k], 5)  # the oldest went first ...
        assert still_open(slow[k + 1])       # ... and only it: the new one is held instead
        assert wait_for(lambda: sidecar.tcp_sockets() == LIMIT, 5)
    assert sidecar.metric("dnssec_sidecar_tcp_closed_total", reason="limit") == 12
    assert udp("www.ed448.test.").flags & dns.flags.AD  # UDP is not affected
    fresh = dns.query.tcp(dns.message.make_query("www.rsasha256.example.", "A",
                                                 want_dnssec=True), ADDRESS, timeout=5)
    assert fresh.rcode() == dns.rcode.NOERROR and fresh.flags & dns.flags.AD
    assert sidecar.tcp_sockets() <= LIMIT
    # The rest are closed once idle for tcp_idle_ms, having sent only half a message.
    assert wait_for(lambda: sidecar.tcp_sockets() == 0, IDLE_MS / 1000 + 3)
    assert all(closed_by_server(sock, 1) for sock in slow[12:])
    assert sidecar.metric("dnssec_sidecar_tcp_closed_total", reason="idle") >= LIMIT - 1
    assert sidecar.metric("dnssec_sidecar_tcp_connections") == 0
    for sock in slow:
        sock.close()


def test_busy_connections_keep_their_slots(sidecar, tree):
    tree.set_faults("ed448.test.", drop=True)  # queries there stay in progress ~query_ms
    busy = [socket.create_connection((ADDRESS, 53), timeout=5) for _ in range(LIMIT)]
    for i, sock in enumerate(busy):
        sock.sendall(framed(f"b{i}.ed448.test."))
    assert wait_for(lambda: sidecar.tcp_sockets() == LIMIT, 3)
    late = socket.create_connection((ADDRESS, 53), timeout=5)
    late.sendall(framed("www.rsasha256.example."))
    assert closed_by_server(late, 1)  # every slot has a query in progress: the new one goes
    assert sidecar.metric("dnssec_sidecar_tcp_closed_total", reason="limit") == 1
    assert udp("www.rsasha256.example.").rcode() == dns.rcode.NOERROR
    for sock in busy:  # each gets its answer: SERVFAIL once its resolution times out
        reply = dns.query.receive_tcp(sock, time.time() + 5)[0]
        assert reply.rcode() == dns.rcode.SERVFAIL
    fresh = dns.query.tcp(dns.message.make_query("www.rsasha256.example.", "A"), ADDRESS,
                          timeout=5)  # a slot frees as soon as a connection is idle
    assert fresh.rcode() == dns.rcode.NOERROR
    for sock in busy:
        sock.close()
    late.close()


def test_pipelined_queries_are_bounded_per_connection(sidecar, tree):
    udp("www.ed448.test.")  # the zone's keys cached: what follows asks for the names alone
    tree.set_faults("ed448.test.", drop=True)
    tree.clear()
    sock = socket.create_connection((ADDRESS, 53), timeout=5)
    sock.sendall(b"".join(framed(f"p{i}.ed448.test.", qid=i) for i in range(12)))

    def started() -> set[str]:
        return {q.qname for q in tree.queried(server="ed448.test.") if q.qname[0] == "p"}

    # The server writes a reply before its slot frees, so while k replies have reached this
    # socket at most PIPELINE + k queries can have started. Checked on events, not on a
    # clock: a count of started queries taken before the socket is seen holding no unread
    # reply is bounded by the replies read so far.
    assert wait_for(lambda: len(started()) >= PIPELINE, 5), sorted(started())
    ids, checks = set(), 0
    while len(ids) < 12:  # all answered in turn, PIPELINE at a time
        now = started()
        if not select.select([sock], [], [], 0)[0]:
            assert len(now) <= PIPELINE + len(ids), (sorted(now), len(ids))
            checks += 1
        reply = dns.query.receive_tcp(sock, time.time() + 5)[0]
        assert reply.rcode() == dns.rcode.SERVFAIL
        ids.add(reply.id)
    assert checks and len(started()) == 12
    sock.close()


def test_a_client_that_never_reads_is_closed(sidecar):
    udp("rsasha256.example.", rdtype="DNSKEY")  # cached: answers come from the hit path
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((ADDRESS, 53))
    chunk = framed("rsasha256.example.", "DNSKEY") * 100

    def flood() -> None:  # 500 000 queries: their replies are far more than any buffers take
        try:
            for _ in range(5000):
                sock.sendall(chunk)  # blocks once the server stops reading
        except OSError:
            pass  # the server closed the connection

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        assert wait_for(lambda: sidecar.tcp_sockets() == 1, 10)
        assert udp("www.ed448.test.").flags & dns.flags.AD  # UDP is served meanwhile
        assert wait_for(lambda: sidecar.tcp_sockets() == 0, IDLE_MS / 1000 + 30)
        sender.join(30)
        assert not sender.is_alive()  # it was blocked, and the close ended it
        assert sidecar.metric("dnssec_sidecar_tcp_closed_total", reason="write_timeout") == 1
    finally:
        sock.close()
