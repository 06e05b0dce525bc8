"""Operations, end to end through the real server: Prometheus metrics after a mixed load,
readiness following the root's reachability, reload on SIGHUP and on a ConfigMap-style symlink
swap (a bad file rejected, the old policy kept, the cache kept), and SIGTERM under load leaving
a complete forensic log."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.testtree import authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.9"
METRICS = f"http://{ADDRESS}:9153"


def tree_config(address: str) -> str:
    """The test tree's configuration for a resolver listening on ``address``:53, its metrics
    on ``address``:9153: hints, anchors, the pinned validation time."""
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    return (f'listen: ["{address}:53"]\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            f'metrics: {{listen: "{address}:9153"}}\n')


def base_config(log_path: Path, extra: str = "") -> str:
    return (tree_config(ADDRESS) + f"log: {{path: {log_path}, fsync_interval_ms: 0}}\n"
            "timeouts: {upstream_ms: 300, query_ms: 3000}\n" + extra)


AGENT_ONLY = """services:
  - name: agent
    listeners: ["127.0.0.9:53"]
    allow: [{zone: rsasha256.example., require: secure}]
"""


@pytest.fixture
def tree():
    with authority.start_tree() as running:
        yield running


def wait_listening(process: subprocess.Popen, address: str) -> None:
    """Wait until ``process`` (``serve``, stderr piped) accepts TCP on ``address``:53: at most
    60 s, for a loaded machine; its stderr is the failure if it exits first."""
    for _ in range(1200):
        try:
            with socket.create_connection((address, 53), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stderr.read())
            time.sleep(0.05)
    pytest.fail("resolver did not start")


class Sidecar:
    """The resolver process with its config in a ConfigMap-like directory: config.yaml is a
    symlink into a ..data directory that an update swaps."""

    def __init__(self, directory: Path, text: str) -> None:
        self.directory = directory
        self.log = directory / "lookups.jsonl"
        self.generation = 0
        self.write(text)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config",
             str(directory / "config.yaml"), "-v"], cwd=ROOT_DIR, stderr=subprocess.PIPE,
            text=True)
        wait_listening(self.process, ADDRESS)

    def write(self, text: str) -> None:
        """Update like the kubelet does: a new timestamped directory, then swap ..data."""
        self.generation += 1
        target = self.directory / f"..{self.generation}"
        target.mkdir()
        (target / "config.yaml").write_text(text)
        link = self.directory / "..data_tmp"
        link.symlink_to(target.name)
        os.replace(link, self.directory / "..data")
        config = self.directory / "config.yaml"
        if not config.is_symlink():
            config.symlink_to("..data/config.yaml")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.communicate(timeout=15)[1]


@pytest.fixture
def sidecar(tree, tmp_path):
    running = Sidecar(tmp_path, base_config(tmp_path / "lookups.jsonl"))
    yield running
    running.stop()


def ask(name: str, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), ADDRESS,
                         port=53, timeout=5)


def scrape() -> dict[tuple, float]:
    text = urllib.request.urlopen(METRICS + "/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(metrics: dict, name: str, **labels) -> float:
    wanted = tuple(sorted(labels.items()))
    return sum(v for (n, l), v in metrics.items() if n == name and set(wanted) <= set(l))


def http_status(path: str) -> int:
    """The endpoint's HTTP status; 0 while it accepts no connection (the service binds it just
    after the DNS listeners that Sidecar waits for)."""
    try:
        return urllib.request.urlopen(METRICS + path, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return 0
        raise


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_metrics_after_mixed_load(sidecar):
    for name in ("www.rsasha256.example.", "www.rsasha256.example.", "nope.ed448.test.",
                 "www.insecure.example.", "www.badsig.test.", "www.unreachable.example.",
                 "one.wild.ed25519.example.", "two.wild.ed25519.example."):
        ask(name)
    m = scrape()
    p = "dnssec_sidecar_"
    assert value(m, p + "queries_total") >= 6
    assert value(m, p + "queries_total", rcode="SERVFAIL") == 2
    assert value(m, p + "queries_total", rcode="NXDOMAIN", qtype="A") == 1
    assert value(m, p + "validation_total", verdict="secure") >= 3
    assert value(m, p + "validation_total", verdict="bogus", reason="6") == 1
    assert value(m, p + "validation_total", verdict="insecure") == 1
    assert value(m, p + "cache_hits_total") >= 1 and value(m, p + "cache_entries") >= 3
    assert value(m, p + "upstream_queries_total") > 5
    assert value(m, p + "upstream_rtt_seconds_count") > 5
    assert value(m, p + "query_duration_seconds_count", transport="udp") >= 6
    assert value(m, p + "log_records_total") >= 1
    # the second expansion of one wildcard reuses its verified RRSIG (and the same NSEC proof)
    assert value(m, p + "signature_cache_hits_total") >= 1
    assert value(m, p + "signature_cache_misses_total") > 5


def test_health_and_readiness_follow_the_root(tree, tmp_path):
    tree.set_faults(".", drop=True)  # the root server stops answering
    sidecar = Sidecar(tmp_path, base_config(tmp_path / "lookups.jsonl"))
    try:
        assert wait_for(lambda: http_status("/healthz") == 200)
        assert http_status("/readyz") == 503
        tree.set_faults(".", drop=False)
        assert wait_for(lambda: http_status("/readyz") == 200, 15)
        assert http_status("/nothing") == 404
    finally:
        sidecar.stop()


def test_reload_good_then_bad_config(sidecar):
    assert ask("www.ed448.test.").rcode() == dns.rcode.NOERROR
    warm = ask("www.rsasha256.example.")
    entries = value(scrape(), "dnssec_sidecar_cache_entries")
    sidecar.write(base_config(sidecar.log, AGENT_ONLY))  # a policy: only rsasha256.example.
    sidecar.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: ask("www.ed448.test.").rcode() == dns.rcode.REFUSED)
    m = scrape()
    assert value(m, "dnssec_sidecar_config_reloads_total", result="applied") >= 1
    assert value(m, "dnssec_sidecar_cache_entries") >= entries  # the cache survived
    cached = ask("www.rsasha256.example.")
    assert cached.answer[0].ttl <= warm.answer[0].ttl
    sidecar.write("listen: [oops\n")  # broken YAML
    sidecar.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: value(scrape(), "dnssec_sidecar_config_reloads_total",
                                  result="rejected") >= 1)
    assert ask("www.ed448.test.").rcode() == dns.rcode.REFUSED  # the old policy still holds
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.NOERROR
    assert "reload (SIGHUP) rejected" in sidecar.stop()


def test_reload_when_the_mounted_file_changes(sidecar):
    assert ask("www.ed448.test.").rcode() == dns.rcode.NOERROR
    sidecar.write(base_config(sidecar.log, AGENT_ONLY))  # no signal: the watcher sees it
    assert wait_for(lambda: ask("www.ed448.test.").rcode() == dns.rcode.REFUSED, 10)


def test_sigterm_under_load_leaves_a_complete_log(sidecar):
    answered = []

    def client(i: int) -> None:
        for j in range(30):
            try:
                ask(f"q{i}-{j}.rsasha256.example.")
                answered.append((i, j))
            except (OSError, dns.exception.Timeout):
                return  # the server went away

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, i) for i in range(4)]
        assert wait_for(lambda: len(answered) >= 4)  # under load: answers are coming
        sidecar.process.send_signal(signal.SIGTERM)
        for future in futures:
            future.result(timeout=30)
    assert sidecar.process.wait(timeout=15) == 0
    records = [json.loads(line) for line in sidecar.log.read_text().splitlines()]
    logged = {r["qname"] for r in records}
    assert answered, "some queries were answered before the stop"
    assert all(f"q{i}-{j}.rsasha256.example." in logged for i, j in answered)
    assert [r["seq"] for r in records] == list(range(len(records)))
