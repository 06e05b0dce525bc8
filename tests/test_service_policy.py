"""End to end: per-service allowlists and the forensic log, through the real server against the
test tree. A service is found by the listener a query arrives on; a denied name never leaves the
sidecar; every query leaves exactly one record in a chain that verify-log checks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.test_forensic import readme_check, readme_key
from tests.testtree import authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
AGENT, STRICT, NOBODY = "127.0.0.6", "127.0.0.7", "127.0.0.8"

SERVICES = """
services:
  - name: agent
    listeners: ["127.0.0.6:53"]
    allow:
      - {zone: rsasha256.example., require: secure}
      - {zone: insecure.example., require: insecure-ok}
      - {zone: ecdsap256.example., types: [A, AAAA]}
  - name: strict
    listeners: ["127.0.0.7:53"]
    refuse_with: nxdomain
    allow:
      - {zone: rsasha256.example., require: secure}
      - {zone: ns.rsasha256.example., require: secure, allow_private: true}
      - {zone: rsasha512.test.}
"""


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


@pytest.fixture(scope="module")
def sidecar(tree, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sidecar")
    key = directory / "hmac.key"
    key.write_bytes(os.urandom(32))
    log_path = directory / "lookups.jsonl"
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    config = directory / "config.yaml"
    config.write_text(
        f'listen: ["{AGENT}:53", "{STRICT}:53", "{NOBODY}:53"]\n'
        f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
        f"trust_anchors: [{anchors}]\n"
        f'validation: {{time: "{authority.validation_time()}"}}\n'
        f"{authority.outgoing_line()}\n"
        f"log: {{path: {log_path}, hmac_key_file: {key}, fsync_interval_ms: 0}}\n"
        f'metrics: {{listen: "{AGENT}:9153"}}\n'
        + SERVICES)
    process = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                str(config)], cwd=ROOT_DIR, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # bounded wait for the listeners: 60 s, for a loaded machine
        try:
            with socket.create_connection((AGENT, 53), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stderr.read())
            time.sleep(0.05)
    yield {"process": process, "log": log_path, "key": key}
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def ask(server: str, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    response = dns.query.udp(query, server, port=53, timeout=8)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server, port=53, timeout=8)
    return response


def ede(response: dns.message.Message) -> tuple[int, str] | None:
    return next(((int(o.code), o.text) for o in response.options if o.otype == dns.edns.EDE),
                None)


def test_allowed_secure_name(sidecar):
    response = ask(AGENT, "www.rsasha256.example.")
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AD


def test_denied_name_never_leaves_the_sidecar(tree, sidecar):
    tree.clear()
    response = ask(AGENT, "secret-payload.exfil.ed25519.example.", "TXT")
    assert response.rcode() == dns.rcode.REFUSED
    code, text = ede(response)
    assert code == 18 and "agent" in text
    assert not [q for q in tree.queries if "ed25519" in q.qname or "exfil" in q.qname]


@pytest.mark.parametrize("name", ["evil-rsasha256.example.", "rsasha256.example.evil.test.",
                                  "example.", "."])
def test_whole_label_matching(sidecar, name):
    assert ask(AGENT, name).rcode() == dns.rcode.REFUSED


def test_case_does_not_matter(sidecar):
    assert ask(AGENT, "WWW.RsaSha256.EXAMPLE.").rcode() == dns.rcode.NOERROR


def test_types_are_limited(sidecar):
    assert ask(AGENT, "www.ecdsap256.example.").rcode() == dns.rcode.NOERROR
    assert ask(AGENT, "ecdsap256.example.", "MX").rcode() == dns.rcode.REFUSED


def test_cname_target_outside_the_allowlist_is_refused(tree, sidecar):
    tree.clear()
    response = ask(AGENT, "cname-out.rsasha256.example.")  # -> www.rsasha512.test.
    assert response.rcode() == dns.rcode.REFUSED and ede(response)[0] == 18
    assert not tree.queried("www.rsasha512.test.")  # the target was never asked for
    assert ask(STRICT, "cname-out.rsasha256.example.").rcode() == dns.rcode.NOERROR


def test_required_secure_but_insecure_is_refused(sidecar):
    # insecure.rsasha256.example. is an unsigned child: for a zone expected signed, that is how
    # a removed DS looks.
    response = ask(STRICT, "www.insecure.rsasha256.example.")
    assert response.rcode() == dns.rcode.NXDOMAIN  # this service refuses with NXDOMAIN
    assert ede(response)[0] == 18 and "insecure" in ede(response)[1]


def test_rebinding_protection(sidecar):
    assert ask(AGENT, "ns.rsasha256.example.").rcode() == dns.rcode.REFUSED  # 127.0.0.20
    assert ask(STRICT, "ns.rsasha256.example.").rcode() == dns.rcode.NOERROR  # allow_private


def test_unknown_listener_gets_the_deny_all_default(sidecar):
    response = ask(NOBODY, "www.rsasha256.example.")
    assert response.rcode() == dns.rcode.REFUSED and "default" in ede(response)[1]


def test_one_record_per_query_and_the_chain_verifies(sidecar):
    process, log_path, key = sidecar["process"], sidecar["log"], sidecar["key"]
    sent = 0
    for i in range(20):
        ask(AGENT, f"n{i}.rsasha256.example.")
        sent += 1
    assert ask(AGENT, "www.rsasha256.example.").rcode() == dns.rcode.NOERROR  # cached now
    hit = dns.message.make_query("www.rsasha256.example.", "A", want_dnssec=True)
    sent_at = time.monotonic()
    dns.query.udp(hit, AGENT, port=53, timeout=8)
    round_trip_ms = (time.monotonic() - sent_at) * 1000
    process.send_signal(signal.SIGTERM)  # flushes the log
    process.wait(timeout=10)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len([r for r in records
                if re.fullmatch(r"n\d+\.rsasha256\.example\.", r["qname"] or "")]) == sent
    assert [r["seq"] for r in records] == list(range(len(records)))
    secure = next(r for r in records if r["qname"] == "www.rsasha256.example.")
    assert secure["verdict"] == "secure" and secure["service"] == "agent"
    assert secure["proof"]["zones"] == [".", "example.", "rsasha256.example."]
    assert secure["proof"]["signatures"][0]["signer"] == "rsasha256.example."
    assert any("dnskey rsasha256.example." in k for k in secure["proof"]["keys"])
    refused = next(r for r in records if r["qname"] == "secret-payload.exfil.ed25519.example.")
    assert refused["policy"]["decision"] == "refuse" and refused["upstream"] == []
    missing = next(r for r in records if r["qname"] == "n0.rsasha256.example.")
    assert missing["rcode"] == "NXDOMAIN" and missing["proof"]["denial"] in ("nsec", "nsec3")
    # The hit's duration, measured inside from its arrival to its record, lies within the
    # round trip this client saw (records are sealed before the reply is sent).
    logged = records[-1]
    # (A hit's record repeats the stored answer's qname, here as WWW.RsaSha256.EXAMPLE. asked
    # it, the question's second asking: the one the hit path keeps.)
    assert (logged["id"], logged["qname"].lower(), logged["cache_hit"]) == (
        hit.id, "www.rsasha256.example.", True)
    assert 0 <= logged["duration_ms"] <= round_trip_ms + 0.001, (logged, round_trip_ms)
    # The chain as README documents it, from the bytes on disk (json, hashlib, hmac alone).
    readme_check(log_path.read_bytes().splitlines(keepends=True), readme_key(key))
    ok = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", str(log_path),
                         "--hmac-key-file", str(key)], cwd=ROOT_DIR, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = log_path.read_text().splitlines()
    tampered = re.sub(r'"duration_ms":[0-9.]+', '"duration_ms":0.001', lines[5], count=1)
    assert tampered != lines[5]
    lines[5] = tampered
    log_path.write_text("\n".join(lines) + "\n")
    bad = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", str(log_path),
                          "--hmac-key-file", str(key)], cwd=ROOT_DIR, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "lookups.jsonl:6 (seq 5)" in bad.stdout
    assert "record changed" in bad.stdout
