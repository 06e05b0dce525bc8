"""`workers: N`: N processes on SO_REUSEPORT listeners under a supervisor, each with its own
cache, its own log chain (<path>.w<N>) and its own metrics port; signals reach every worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from resolver.config import sections
from resolver.config import ConfigError, available_cores, parse_config
from tests.testtree import authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.14"


@pytest.fixture
def tree():
    with authority.start_tree() as running:
        yield running


def config_text(log: Path, extra: str = "") -> str:
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    return (f'listen: ["{ADDRESS}:53"]\nworkers: 2\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            f'metrics: {{listen: "{ADDRESS}:9153"}}\n'
            f"log: {{path: {log}, fsync_interval_ms: 0}}\n" + extra)


def wait_listening(process) -> None:
    for _ in range(1200):  # bounded: 60 s, for a loaded machine
        try:
            for port in (53, 9153, 9154):
                socket.create_connection((ADDRESS, port), timeout=0.2).close()
            return
        except OSError:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
    pytest.fail("the workers did not start")


def test_two_workers(tree, tmp_path):
    log = tmp_path / "lookups.jsonl"
    config = tmp_path / "config.yaml"
    config.write_text(config_text(log))
    process = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                str(config), "-v"], cwd=ROOT_DIR, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_listening(process)
        sent = 0
        for i in range(120):  # each query from a fresh source port: the kernel spreads them
            response = dns.query.udp(dns.message.make_query(f"w{i}.wild.rsasha256.example.",
                                                            "A", want_dnssec=True),
                                     ADDRESS, port=53, timeout=5)
            assert response.rcode() == dns.rcode.NOERROR
            sent += 1
        for port in (9153, 9154):  # each worker answers on its own metrics port
            body = urllib.request.urlopen(f"http://{ADDRESS}:{port}/metrics", timeout=5).read()
            assert b"dnssec_sidecar_queries_total" in body
        config.write_text(config_text(log, "negative_trust_anchors: [badsig.test.]\n"))
        process.send_signal(signal.SIGHUP)  # the supervisor passes it on to both workers
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answers = {dns.query.udp(dns.message.make_query("www.badsig.test.", "A"),
                                     ADDRESS, port=53, timeout=5).rcode() for _ in range(10)}
            if answers == {dns.rcode.NOERROR}:
                break
            time.sleep(0.2)
        assert answers == {dns.rcode.NOERROR}, "every worker took the reloaded NTA"
    finally:
        process.send_signal(signal.SIGTERM)
        errors = process.communicate(timeout=30)[1]
    assert process.returncode == 0, errors
    chains = [tmp_path / "lookups.jsonl.w0", tmp_path / "lookups.jsonl.w1"]
    records = [[json.loads(line) for line in path.read_text().splitlines()] for path in chains]
    wild = [r for chain in records for r in chain if r["qname"].startswith("w")
            and r["qname"].endswith(".wild.rsasha256.example.")]
    assert len(wild) == sent
    assert all(len(chain) > 0 for chain in records), "both workers served"
    for index, chain in enumerate(records):
        assert {r["worker"] for r in chain} == {index}
    for path in chains:
        check = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", str(path)],
                               cwd=ROOT_DIR, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_more_than_one_worker_needs_a_log_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("workers: 2\n")
    done = subprocess.run([sys.executable, "-m", "resolver.cli", "check-config", str(config)],
                          cwd=ROOT_DIR, capture_output=True, text=True)
    assert done.returncode == 3 and "workers:" in done.stderr  # invalid input


def test_workers_auto_is_the_cpus_available(tmp_path, monkeypatch):
    log = {"path": str(tmp_path / "log.jsonl")}
    assert parse_config({"workers": "auto", "log": log}).workers == available_cores()
    (tmp_path / "kubepods" / "pod1").mkdir(parents=True)
    membership = tmp_path / "cgroup"
    membership.write_text("0::/kubepods/pod1\n")
    limit = tmp_path / "kubepods" / "pod1" / "cpu.max"
    limit.write_text("150000 100000\n")  # a container limit of 1.5 CPUs: 2 workers
    assert available_cores(str(tmp_path), str(membership)) == min(2, len(os.sched_getaffinity(0)))
    limit.write_text("max 100000\n")
    assert available_cores(str(tmp_path), str(membership)) == len(os.sched_getaffinity(0))
    assert available_cores(str(tmp_path / "none"), str(membership)) == \
        len(os.sched_getaffinity(0))  # no cgroup v2 here: the affinity mask alone
    monkeypatch.setattr(sections, "available_cores", lambda: 4)
    assert parse_config({"workers": "auto", "log": log}).workers == 4
    with pytest.raises(ConfigError, match=r"workers: auto: 4 CPUs here; more than one worker"):
        parse_config({"workers": "auto"})
    with pytest.raises(ConfigError, match=r'workers: expected an integer or "auto"'):
        parse_config({"workers": "all", "log": log})
