"""The forensic log's disk fills up, end to end (issue #7, Faults): the real `dnssec-sidecar
serve` writes its log to a 256 KiB tmpfs mounted in a mount namespace of its own (`unshare
-m`), which the test fills and then frees through /proc/<pid>/root.

While the log cannot write, the resolver stops answering and says why rather than answering
unlogged: SERVFAIL with EDE 14 naming the error, nothing resolved, a log line, the metrics,
/readyz not ready; once its bounded queue is full too, no answer at all (counted). When space
is freed the queued records are written, answers resume, and the chain verifies."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.test_client_faults import ROOT_DIR, Sidecar, sidecar_config, udp
from tests.test_operations import wait_for
from tests.test_resolver import ede_of
from tests.testtree import authority

ADDRESS = "127.0.0.151"
QUEUE = 20  # log.queue_size: records held while the disk is full


def readyz() -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{ADDRESS}:9153/readyz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full (bounded by its 256 KiB)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(1024):
            os.write(fd, b"\0" * 4096)
        pytest.fail("the tmpfs did not fill up")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def burst(count: int, seconds: float) -> list[dns.message.Message]:
    """``count`` queries sent at once from one socket; the replies that came in ``seconds``."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(dns.message.make_query(f"burst{i}.rsasha256.example.", "A",
                                               use_edns=0).to_wire(), (ADDRESS, 53))
        deadline = time.monotonic() + seconds
        sock.settimeout(0.2)
        while len(replies) < count and time.monotonic() < deadline:
            try:
                replies.append(dns.message.from_wire(sock.recv(4096)))
            except TimeoutError:
                continue
    return replies


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


def test_full_log_disk_stops_answers_then_recovers(tree, tmp_path):
    logdir = tmp_path / "logdir"
    logdir.mkdir()
    config = sidecar_config(ADDRESS, logdir / "log.jsonl",
                            timeouts={"upstream_ms": 300, "query_ms": 2000})
    config["log"]["queue_size"] = QUEUE
    sidecar = Sidecar(tmp_path, config, wrap=(
        "unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"',
        str(logdir)))
    inside = Path(f"/proc/{sidecar.process.pid}/root{logdir}")  # the tmpfs, as it sees it
    try:
        answered = 0  # every reply received has its record
        assert udp("www.rsasha256.example.", ADDRESS).flags & dns.flags.AD
        answered += 1
        assert wait_for(lambda: readyz()[0] == 200, 10)
        # the record is queued before the reply leaves, and written moments later
        assert wait_for(lambda: (inside / "log.jsonl").stat().st_size > 0, 5)
        assert not (logdir / "log.jsonl").exists()  # the log is on the namespace's tmpfs

        fill(inside / "filler")
        for _ in range(50):  # the first records may still fit in the file's last page
            reply = udp("www.rsasha256.example.", ADDRESS)
            answered += 1
            if reply.rcode() == dns.rcode.SERVFAIL:
                break
            time.sleep(0.05)
        (code, text), = ede_of(reply)
        assert code == 14 and "forensic log unavailable (ENOSPC" in text, text

        tree.clear()
        reply = udp("fresh.wild.rsasha256.example.", ADDRESS)
        answered += 1
        assert reply.rcode() == dns.rcode.SERVFAIL and ede_of(reply)[0][0] == 14
        assert not tree.queries  # nothing is resolved while the log cannot write
        status, why = readyz()  # read when asked: not ready from the first failed write on
        assert status == 503 and "forensic log unavailable (ENOSPC" in why, why
        assert sidecar.metric("dnssec_sidecar_log_healthy") == 0
        assert sidecar.metric("dnssec_sidecar_log_write_errors_total") > 0
        assert "forensic log cannot write (ENOSPC" in sidecar.stderr()

        replies = burst(3 * QUEUE, 2)  # more than the queue holds: the rest get no answer
        answered += len(replies)
        assert 0 < len(replies) < QUEUE
        assert all(r.rcode() == dns.rcode.SERVFAIL and ede_of(r)[0][0] == 14 for r in replies)
        dropped = sidecar.metric("dnssec_sidecar_queries_dropped_total",
                                 reason="log_unavailable")
        assert dropped == 3 * QUEUE - len(replies)

        os.unlink(inside / "filler")  # space again: the queued records go out, answers resume
        assert wait_for(lambda: readyz()[0] == 200, 5)
        assert sidecar.metric("dnssec_sidecar_log_healthy") == 1
        reply = udp("www.rsasha256.example.", ADDRESS)
        answered += 1
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AD
        assert "forensic log writing again" in sidecar.stderr()
        assert wait_for(
            lambda: sidecar.metric("dnssec_sidecar_log_records_total") == answered, 5)
        copy = tmp_path / "log.jsonl"
        copy.write_bytes((inside / "log.jsonl").read_bytes())
    finally:
        assert sidecar.stop() == 0
    verify = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", str(copy)],
                            capture_output=True, text=True, cwd=ROOT_DIR)
    assert verify.returncode == 0 and verify.stdout.startswith("OK"), verify.stdout
    records = [json.loads(line) for line in copy.read_text().splitlines()]
    assert len(records) == answered
    refused = [r for r in records if r["ede"] and r["ede"]["code"] == 14]
    assert len(refused) == answered - len([r for r in records if r["rcode"] == "NOERROR"])
    assert records[-1]["rcode"] == "NOERROR" and records[-1]["verdict"] == "secure"
    assert "Traceback" not in sidecar.stderr()
