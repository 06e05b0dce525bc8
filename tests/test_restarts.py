"""Restarts and rollouts that drop nothing (README "Restarts that drop nothing"): real
processes on the signed test tree, a paced client (tests/paced.py) sending 5,000 queries a
second through

- a restart: a second process started on the same addresses (SO_REUSEPORT), which takes the
  first one's cache over its Unix socket, primes and binds; then SIGTERM to the first, which
  hands its listeners over and exits;
- a DaemonSet-style rolling update: the same, the new process with a new version of the
  configuration (another policy, another log file);
- a stop and a start: the cache written on SIGTERM and read back at start, its TTLs smaller.

Each query is asked once more after 1 s without an answer, as a stub resolver does, and is lost
only when neither try is answered; every answer must have the rcode its name gets from a
process that is not restarting. Waits are on events (process log lines, answers), not the
clock. The figures of the same runs against Unbound are in bench/restart.py."""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
import uvloop

from tests import paced
from tests.test_operations import tree_config
from tests.testtree import authority

ROOT_DIR = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.16"
RATE, SECONDS = 5000, 10
WARM = 20  # queries per question before the run: each of two workers misses 20 in a 2**-20 case
QUESTIONS = [("www.rsasha256.example.", "A"), ("nope.ed448.test.", "A"),
             ("www.insecure.example.", "A"), ("www.rsasha256.example.", "TXT"),
             ("www.ecdsap256.example.", "AAAA"), ("nope.rsasha256.example.", "MX")]


@pytest.fixture
def tree():
    with authority.start_tree() as running:
        yield running


def config_text(place: Path, log: int, extra: str = "") -> str:
    """The test tree's configuration on ADDRESS, its forensic log ``lookups.v<log>.jsonl``."""
    return (tree_config(ADDRESS) + f"log: {{path: {place / f'lookups.v{log}.jsonl'}}}\n"
            f"cache: {{persist: {place / 'cache'}}}\n" + extra)


class Process:
    """``dnssec-sidecar serve`` with its process log read line by line in a thread."""

    def __init__(self, config: Path) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config", str(config)],
            cwd=ROOT_DIR, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        """The first process log line (from here on) matching ``pattern``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line like {pattern!r} within {timeout} s: {self.seen}")
            if line is None:
                pytest.fail(f"exited ({self.popen.wait()}) before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def drops() -> str:
    """/proc/net/snmp's UDP receive-buffer errors: datagrams the kernel dropped for a full
    socket queue, the resolvers' or the client's (for a failure's message)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Udp:")]
    return rows[1][rows[0].index("RcvbufErrors")]


def expected_rcodes(times: int = WARM) -> dict[str, int]:
    """Each question's rcode from a resolver not restarting, asked ``times`` times; every
    worker's cache is warm after (each query from a fresh source port, which the kernel
    hashes to any worker)."""
    rcodes = {}
    for name, rdtype in QUESTIONS:
        for _ in range(times):
            reply = dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True),
                                  ADDRESS, timeout=5)
            assert rcodes.setdefault(name, reply.rcode()) == reply.rcode()
    assert set(rcodes.values()) <= {dns.rcode.NOERROR, dns.rcode.NXDOMAIN}
    return rcodes


def through(take_over, expected: dict[str, int]) -> paced.Stats:
    """Run the paced client, and ``take_over()`` once it has sent its first second."""
    results: dict = {}
    running = threading.Event()

    def client() -> None:
        async def go() -> None:
            started = asyncio.Event()

            async def relay() -> None:
                await started.wait()
                running.set()

            task = asyncio.ensure_future(relay())
            results["stats"] = await paced.run((ADDRESS, 53), QUESTIONS, RATE, SECONDS,
                                               expected=expected, running=started)
            task.cancel()
        try:
            uvloop.run(go())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            results["error"] = exc
            running.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert running.wait(60)
    try:
        take_over()
    finally:
        thread.join(SECONDS + 60)
    assert "error" not in results, results.get("error")
    return results["stats"]


def check(stats: paced.Stats, *processes: Process) -> None:
    figures = (f"sent {stats.sent} at {stats.rate:.0f}/s; answered {stats.answered} "
               f"({stats.retried} on the repeat); lost {stats.lost}; max latency "
               f"{stats.max_latency * 1000:.0f} ms; {dict(stats.rcodes)}")
    print(figures)
    logs = "\n".join(["", figures, f"UDP receive-queue drops in this namespace: {drops()}"]
                     + [line for p in processes for line in p.seen])
    assert stats.sent == RATE * SECONDS, logs
    assert stats.lost == 0, logs
    assert stats.answered == stats.sent, logs
    assert not stats.unexpected, logs  # no SERVFAIL (nor anything else) it would not have seen


def _restart(tmp_path: Path, new_extra: str, common: str = "", workers: int = 1) -> None:
    """The first process, then the second (with ``new_extra`` in its configuration and, as
    every successor, its own log) taking over under the paced client; ``common`` in both."""
    first_config, second_config = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first_config.write_text(config_text(tmp_path, 1, common))
    second_config.write_text(config_text(tmp_path, 2, common + new_extra))
    first = Process(first_config)
    second = None
    try:
        for _ in range(workers):
            first.wait_for("services:")
        expected = expected_rcodes()

        def take_over() -> None:
            nonlocal second
            second = Process(second_config)
            for _ in range(workers):
                second.wait_for("services:")  # each worker bound and answering
            for pattern in (r"cache: \d+ entries from the predecessor",
                            "primed beside a running predecessor"):
                assert len([line for line in second.seen if re.search(pattern, line)]) \
                    == workers, (pattern, second.seen)
            first.popen.send_signal(signal.SIGTERM)
            for _ in range(workers):
                first.wait_for("a successor answers on every listener; handing over")
            assert first.popen.wait(timeout=60) == 0

        stats = through(take_over, expected)
        check(stats, first, second)
        # The successor answers alone now, from the cache it was handed.
        assert expected_rcodes(1) == expected
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_restart_loses_no_query(tree, tmp_path):
    _restart(tmp_path, "")


def test_a_restart_of_workers_loses_no_query(tree, tmp_path):
    """``workers: 2`` on both sides: each new worker takes its own predecessor's cache over
    (``<cache.persist>.w<N>.sock``); an old worker never takes its sibling for a successor."""
    _restart(tmp_path, "", "workers: 2\n", workers=2)


def test_a_rolling_update_to_a_new_configuration_loses_no_query(tree, tmp_path):
    """The new version: a policy (an open resolver for these names still, so the answers do
    not change) and its own log file, as a DaemonSet's new pod has."""
    policy = ("services: [{name: everything, clients: [0.0.0.0/0], "
              "allow: [{zone: ., require: insecure-ok}]}]\n"
              "timeouts: {drain_ms: 5000}\n")
    _restart(tmp_path, policy)


def test_the_cache_is_written_at_sigterm_and_read_at_start(tree, tmp_path):
    config = tmp_path / "v1.yaml"
    config.write_text(config_text(tmp_path, 1))
    name = "www.rsasha256.example."
    first = Process(config)
    try:
        first.wait_for("services:")
        before = dns.query.udp(dns.message.make_query(name, "A"), ADDRESS, timeout=10)
        first.popen.send_signal(signal.SIGTERM)
        written = first.wait_for(r"cache: \d+ entries written to")
        assert int(written.split("cache: ")[1].split()[0]) >= 2  # the name, the root's keys
        first.wait_for("stopped")
    finally:
        first.stop()
    asked = len(tree.queries)
    second = Process(config)
    try:
        line = second.wait_for(r"cache: \d+ entries from ")
        assert f"from {tmp_path / 'cache'} (cache.persist), 0 dropped" in line
        second.wait_for("services:")
        after = dns.query.udp(dns.message.make_query(name, "A"), ADDRESS, timeout=10)
        assert after.answer[0].to_text().split()[2:] == before.answer[0].to_text().split()[2:]
        assert after.answer[0].ttl < before.answer[0].ttl
        # Answered from the cache read: nothing asked upstream about it.
        assert not [q for q in tree.queries[asked:] if "rsasha256" in q.qname]
    finally:
        second.stop()
    # A corrupt file: one line, and the process serves from an empty cache.
    (tmp_path / "cache").write_bytes(b"\x00garbage")
    third = Process(config)
    try:
        line = third.wait_for("cache.persist")
        assert "truncated or not a cache file; starting with an empty cache" in line
        third.wait_for("services:")
        assert dns.query.udp(dns.message.make_query(name, "A"), ADDRESS,
                             timeout=10).rcode() == dns.rcode.NOERROR
    finally:
        third.stop()
    assert "Traceback" not in "\n".join(third.seen)


def test_after_sigterm_the_old_process_answers_until_a_successor_does(tree, tmp_path):
    """``timeouts.drain_ms``: with no successor yet, SIGTERM does not stop the answers; the
    successor's arrival ends the wait at once."""
    first_config, second_config = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first_config.write_text(config_text(tmp_path, 1, "timeouts: {drain_ms: 600000}\n"))
    second_config.write_text(config_text(tmp_path, 2))
    first = Process(first_config)
    second = None
    try:
        first.wait_for("services:")
        first.popen.send_signal(signal.SIGTERM)
        for name, rdtype in QUESTIONS:  # answered after SIGTERM: nobody else would
            reply = dns.query.udp(dns.message.make_query(name, rdtype), ADDRESS, timeout=10)
            assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        assert first.popen.poll() is None
        second = Process(second_config)
        first.wait_for("a successor answers on every listener; handing over")
        assert first.popen.wait(timeout=60) == 0
        second.wait_for("services:")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_successor_writing_the_running_process_log_file_is_refused(tree, tmp_path):
    """Two writers of one forensic log would interleave two hash chains: one line, status 5."""
    config = tmp_path / "v1.yaml"
    config.write_text(config_text(tmp_path, 1))
    first = Process(config)
    try:
        first.wait_for("services:")
        done = subprocess.run([sys.executable, "-m", "resolver.cli", "serve", "--config",
                               str(config)], cwd=ROOT_DIR, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 5
        assert done.stderr.splitlines() == [
            f"dnssec-sidecar: {config}: log.path: {tmp_path / 'lookups.v1.jsonl'}: written by "
            f"the running process {first.popen.pid}, which serves these addresses: a successor "
            "needs its own log.path"]
        assert first.popen.poll() is None  # and the running one goes on
    finally:
        first.stop()
