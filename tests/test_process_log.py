"""``serve`` says what it is doing at the default log level (issue #14 §3): one line per
listener, the metrics address, where the forensic log goes, the trust anchors by key tag, the
services; a line on each reload, accepted or rejected; lines on shutdown. Nothing else: every
line is one of ours (the process log format of cli.py).

And with every upstream silently dropping packets, a client gets its SERVFAIL with EDE 22
before its stub gives up (glibc and musl wait 5 s): the default ``timeouts.query_ms`` is below
that.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode

from resolver.config import default_config, load_config
from tests.test_fresh_install import OURS

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.162"  # outside the test tree's .10 to .103
DEAD = ["127.0.0.163", "127.0.0.164", "127.0.0.165", "127.0.0.166"]  # never answer
ROOT_DS = ". IN DS 32309 8 2 b90a4931380ec7e7589c98eac15329337f58daae9cf323a0b5a6bca42de183f1"
STUB_TIMEOUT = 5.0  # glibc's and musl's resolv.conf default (timeout:5)


class Serve:
    """``dnssec-sidecar serve --config FILE`` at the default log level, its stderr read line
    by line in a thread."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS",
                                                                "PYTHONDEVMODE")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config", str(config)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, pattern: str) -> str:
        """The next line matching ``pattern`` (a regex, searched), waiting for it."""
        while True:
            line = self.lines.get(timeout=60)  # bounded: a hang fails, it does not wait forever
            assert line is not None, f"serve ended before {pattern!r}:\n" + "\n".join(self.seen)
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        while (line := self.lines.get(timeout=60)) is not None:
            self.seen.append(line)
        return code


def test_serve_says_what_it_serves_where_reloads_and_stops(tmp_path):
    key = tmp_path / "log.key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    log = tmp_path / "lookups.jsonl"
    config = tmp_path / "config.yaml"
    text = (f'listen: ["{HOST}:53", "{HOST}:5353"]\n'
            f'root_hints: [{{name: a.root-servers.test., addresses: ["127.0.0.10"]}}]\n'
            f'trust_anchors: ["{ROOT_DS}"]\n'
            f'metrics: {{listen: "{HOST}:9153"}}\n'
            f"log: {{path: {log}, hmac_key_file: {key}}}\n"
            "services:\n"
            f'  - {{name: agent, listeners: ["{HOST}:53"], allow: [{{zone: example.}}]}}\n'
            '  - {name: batch, clients: ["10.0.0.0/8"], allow: [{zone: test.}]}\n')
    config.write_text(text)
    serve = Serve(config)
    try:
        head = [serve.until(r"listening on ")]
        head.append(serve.until(r"listening on "))
        head += [serve.until(pattern) for pattern in (
            "metrics", "forensic log", "trust anchors", "services")]
        messages = [line.split(" dnssec-sidecar: ", 1)[1] for line in head]
        assert messages == [
            f"listening on {HOST}:53 (UDP and TCP)",
            f"listening on {HOST}:5353 (UDP and TCP)",
            f"metrics, /healthz and /readyz on http://{HOST}:9153/ (metrics.listen)",
            f"forensic log: {log} (HMAC-SHA-256 chain, key {key})",
            "trust anchors: . DS key tag 32309",
            f"services: 2 (agent, batch) and the default service (config {config})",
        ]
        assert all(" INFO dnssec-sidecar: " in line for line in head)
        socket.create_connection((HOST, 53), timeout=5).close()  # it does listen, as it says

        config.write_text(text.replace("allow: [{zone: test.}]", "allow: [{zone: org.}]"))
        serve.process.send_signal(signal.SIGHUP)
        assert serve.until("reload").endswith(
            "INFO dnssec-sidecar: reload (SIGHUP) applied; services: 2 (agent, batch) and the "
            "default service")
        config.write_text(text.replace("name: batch", "name: Batch!"))
        serve.process.send_signal(signal.SIGHUP)
        rejected = serve.until("reload")
        assert " ERROR dnssec-sidecar: reload (SIGHUP) rejected, keeping the running " \
               "configuration: services[1].name: 'Batch!'" in rejected
    finally:
        code = serve.stop()
    assert code == 0, "\n".join(serve.seen)
    stopping = [i for i, line in enumerate(serve.seen)
                if line.endswith("stopping: finishing queries in flight, then flushing the log")]
    assert len(stopping) == 1
    after = serve.seen[stopping[0] + 1:]
    assert after[-1].endswith("INFO dnssec-sidecar: stopped")
    # between them, the chain head once the log is flushed (log.checkpoint; the reloads' records)
    assert [" forensic log head: seq " in line for line in after[:-1]] == [True]
    assert [line for line in serve.seen if not OURS.match(line)] == [], serve.seen


def test_a_dead_upstream_is_a_servfail_with_ede_22_before_the_stub_gives_up(tmp_path):
    """Four root servers that take every packet and never answer (bound UDP sockets nobody
    reads: no ICMP refusal either): a cold query is answered SERVFAIL with EDE 22 once
    timeouts.query_ms runs out, which by default is below the 5 s a stub waits."""
    assert default_config().timeouts.query_ms < STUB_TIMEOUT * 1000
    holes = []
    for address in DEAD:
        hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hole.bind((address, 53))
        holes.append(hole)
    config = tmp_path / "config.yaml"
    config.write_text(f'listen: ["{HOST}:53"]\nmetrics: {{enabled: false}}\n'
                      "root_hints: [{name: a.root-servers.test., addresses: ["
                      + ", ".join(f'"{address}"' for address in DEAD) + "]}]\n"
                      f'trust_anchors: ["{ROOT_DS}"]\nlog: {{enabled: false}}\n')
    query_ms = load_config(str(config)).timeouts.query_ms
    assert query_ms == default_config().timeouts.query_ms  # the test runs the defaults
    serve = Serve(config)
    try:
        serve.until("services")
        query = dns.message.make_query("www.example.", "A", want_dnssec=True)
        started = time.monotonic()
        reply = dns.query.udp(query, HOST, port=53, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        serve.stop()
        dropped = 0
        for hole in holes:
            hole.setblocking(False)
            try:
                while hole.recv(4096):
                    dropped += 1
            except BlockingIOError:
                pass
            hole.close()
    assert dropped >= len(DEAD), "the queries must have reached the servers and been dropped"
    assert reply.rcode() == dns.rcode.SERVFAIL
    ede = [(option.code, option.text) for option in reply.options
           if option.otype == dns.edns.EDE]
    assert ede and ede[0][0] == 22, ede  # No Reachable Authority
    # Cut off at query_ms, or sooner: every root server timed out for this query's own
    # priming, or the start-up's priming found them dead and they are held (RFC 9520), and
    # the query fails from that cached failure.
    assert any(cause in ede[0][1] for cause in (f"within {query_ms / 1000}s", "cached failure",
                                                "no server of . answered")), ede
    # A generous bound only (the machine may be loaded): the reply waited for query_ms, not
    # for every server's try.
    assert elapsed < query_ms / 1000 + 10, elapsed
