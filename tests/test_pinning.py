"""Pinning (issue #17, ``services[].pin``): the configuration, the addresses and targets an answer
carries (SVCB/HTTPS hints under rebinding protection, SVCB/HTTPS/SRV targets under the
allowlist), and, each in a network namespace of its own (tests/pinning_netns.py), the Pinner
against the kernel's nftables sets and a sandbox whose client reaches only what it resolved."""

from __future__ import annotations

import asyncio
import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
import yaml

from resolver.config import ConfigError, parse_config
from resolver.dnssec import Verdict
from resolver.frontend.addresses import addresses, targets
from resolver.frontend.admission import Admission
from resolver.frontend.pinning import Pinner, elements
from resolver.frontend.pipeline import Frontend, _service_scope
from resolver.frontend.policy import Policy
from resolver.frontend.resolution import Resolver
from resolver.nft import NftError
from resolver.resolve.cache import Cache
from tests.testtree import memory

ROOT_DIR = Path(__file__).resolve().parent.parent


def _netns_skip() -> str | None:
    """Why the namespace cases cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace with nftables (unshare -n)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    if ctypes.util.find_library("nftables") is None:
        return "needs libnftables (Debian package libnftables1) and nft (package nftables)"
    if shutil.which("nft") is None:
        return "needs the nft command (Debian package nftables) to set up the ruleset"
    return None


netns = pytest.mark.skipif(_netns_skip() is not None, reason=str(_netns_skip()))


def run_case(case: str, directory: Path) -> dict:
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.pinning_netns", case,
                           str(directory)], cwd=ROOT_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def config(pin: str, extra: str = "") -> object:
    return parse_config(yaml.safe_load(
        'services:\n  - {name: s, clients: ["10.0.0.0/8"], allow: [{zone: example.}], '
        f"pin: {pin}}}\n" + extra))


# --- configuration ---------------------------------------------------------------------------

def test_pin_config():
    pin = config('{nft: {table: "inet sandbox", set4: a4, set6: a6}, grace: 60}').services[0].pin
    assert (pin.family, pin.table, pin.set4, pin.set6, pin.grace) == ("inet", "sandbox", "a4",
                                                                      "a6", 60)
    pin = config('{nft: {table: "ip6 t", set6: a6}}').services[0].pin
    assert (pin.set4, pin.grace, pin.sets()) == (None, 300, ((6, "a6"),))


@pytest.mark.parametrize("pin, field, text", [
    ("{grace: 5}", "services[0].pin.nft", "missing"),
    ('{nft: {table: "inet t"}}', "services[0].pin.nft", "needs set4 or set6"),
    ('{nft: {table: "inet t", set4: a, set6: a}}', "services[0].pin.nft.set6", "set4 too"),
    ('{nft: {table: "ip t", set6: a}}', "services[0].pin.nft.set6", "family ip holds no IPv6"),
    ('{nft: {table: "foo t", set4: a}}', "services[0].pin.nft.table", "family 'foo'"),
    ('{nft: {table: "inet t x", set4: a}}', "services[0].pin.nft.table", "expected"),
    ('{nft: {table: "inet t", set4: "a b"}}', "services[0].pin.nft.set4", "not an nftables"),
    ('{nft: {table: "inet t", set4: a}, grace: -1}', "services[0].pin.grace", "out of range"),
    ('{nft: {table: "inet t", set4: a}, timeout: 1}', "services[0].pin.timeout", "unknown"),
])
def test_pin_config_errors(pin, field, text):
    with pytest.raises(ConfigError) as caught:
        config(pin)
    assert caught.value.field == field and text in str(caught.value)


def test_each_service_pins_into_its_own_sets():
    with pytest.raises(ConfigError) as caught:
        config('{nft: {table: "inet t", set4: a}}',
               'default_service: {pin: {nft: {table: "inet t", set4: a}}}')
    assert caught.value.field == "default_service.pin.nft.set4"
    assert "also services[0]'s" in str(caught.value)


def test_pinned_services_take_the_full_path():
    """The compiled hit path cannot wait for a commit: a pinned service gets no hit-path
    scope, so each cached answer is pinned again (shown end to end in test_sandbox)."""
    cfg = config('{nft: {table: "inet t", set4: a}}',
                 'default_service: {allow: [{zone: example.}]}')
    policy = Policy(cfg)
    assert _service_scope(policy, ("127.0.0.1", 53), "10.1.2.3") is None
    assert _service_scope(policy, ("127.0.0.1", 53), "192.0.2.9") == "default"


# --- what an answer carries ------------------------------------------------------------------

def rrset(text: str) -> dns.rrset.RRset:
    name, ttl, rdtype, *rdata = text.split(maxsplit=3)
    return dns.rrset.from_text(name, int(ttl), "IN", rdtype, *rdata)


def test_addresses_and_targets():
    https = rrset('svc.example. 60 HTTPS 1 . alpn="h2" ipv4hint="192.0.2.4,192.0.2.5" '
                  'ipv6hint="2001:db8::4"')
    assert addresses(https) == ["192.0.2.4", "192.0.2.5", "2001:db8::4"]
    assert targets(https) == []  # "." is the owner itself
    alias = rrset("alias.example. 60 SVCB 0 pool.other.")
    assert targets(alias) == [dns.name.from_text("pool.other.")] and addresses(alias) == []
    srv = rrset("_x._tcp.example. 60 SRV 0 0 443 host.other.")
    assert targets(srv) == [dns.name.from_text("host.other.")]
    assert targets(rrset("_x._tcp.example. 60 SRV 0 0 0 .")) == []  # no service
    assert addresses(rrset("www.example. 60 A 192.0.2.1")) == ["192.0.2.1"]
    assert addresses(rrset("www.example. 60 TXT hello")) == []
    found = elements([https, rrset("www.example. 30 AAAA 2001:db8::1")])
    assert [(e.address, e.version, e.owner, e.ttl) for e in found] == [
        ("192.0.2.4", 4, "svc.example.", 60), ("192.0.2.5", 4, "svc.example.", 60),
        ("2001:db8::4", 6, "svc.example.", 60), ("2001:db8::1", 6, "www.example.", 30)]


class _Answer:
    """What Frontend._check_answer reads of a validated answer: its RRsets, all Secure."""

    def __init__(self, *texts: str) -> None:
        self.rrsets = [rrset(text) for text in texts]
        self.verdicts: dict = {}

    def verdict_of(self, name):
        return Verdict.SECURE


@pytest.mark.parametrize("data, allowed, text", [
    (["svc.example. 60 HTTPS 1 . ipv4hint=192.0.2.4 ipv6hint=2001:db8::4"], True, None),
    (["svc.example. 60 HTTPS 1 . ipv4hint=192.0.2.4,127.0.0.1"], False,
     "answer address 127.0.0.1 is loopback"),
    (["svc.example. 60 SVCB 1 . ipv6hint=::1"], False, "answer address ::1 is loopback"),
    (["svc.example. 60 HTTPS 1 . ipv6hint=::ffff:10.0.0.1"], False, "IPv4-mapped private"),
    (["svc.example. 60 HTTPS 1 pool.example."], True, None),
    (["svc.example. 60 HTTPS 0 pool.other."], False,
     "pool.other. (the target of svc.example. HTTPS) is not in an allowed zone"),
    (["svc.example. 60 SRV 0 0 443 host.other."], False,
     "host.other. (the target of svc.example. SRV) is not in an allowed zone"),
    (["svc.example. 60 SRV 0 0 443 host.example."], True, None),
])
def test_hints_and_targets_are_judged_like_addresses_and_cnames(data, allowed, text):
    """RFC 9460 §7.3: a client may connect to a hint before its A/AAAA answer, so rebinding
    protection judges hints; SVCB, HTTPS and SRV targets must be in an allowed zone."""
    cfg = config('{nft: {table: "inet t", set4: a}}')
    policy = Policy(cfg)
    decision = Frontend._check_answer(policy, cfg.services[0], dns.name.from_text("svc.example."),
                                      _Answer(*data))
    assert decision.allowed is allowed, decision
    assert text is None or text in decision.reason


# --- against the kernel, in a namespace of its own -------------------------------------------

@netns
@pytest.mark.parametrize("case", ["pinner", "pinner-readd"])
def test_pinner_against_nftables(case, tmp_path):
    """The Pinner with the kernel's own refresh (Linux 6.10 and later updates an element's
    timeout on ``add``), and with add, delete, add, as on an older kernel."""
    seen = run_case(case, tmp_path)
    assert seen["readd"] is (True if case == "pinner-readd" else not seen["kernel_updates"])
    assert seen["first"] == [["192.0.2.1", 150], ["2001:db8::1", 150]]  # TTL 50 + grace 100
    assert seen["after_first"]["192.0.2.1"]["timeout"] == 150
    assert seen["after_first"]["2001:db8::1"]["timeout"] == 150
    assert seen["longer"]["timeout"] == 600  # refreshed on an existing element
    assert seen["shorter"]["timeout"] == 600  # never shortened by another name's answer
    assert seen["lookup"] == [["www.example.", 1000600.0], ["cdn.example.", 1000105.0]]
    assert seen["lookup_none"] == []
    assert seen["revoked"] == 1 and seen["after_revoke"] == ["192.0.2.1"]  # a reload's rules
    assert seen["concurrent_transactions"] == 1  # 20 answers at once: one transaction
    assert seen["concurrent_elements"] == [f"192.0.2.{i}" for i in range(10, 30)]
    assert seen["snapshot"] == seen["forgotten"] == 22
    assert seen["after_forget"] == {} and seen["lookup_after_forget"] == []
    assert "No such file or directory" in seen["failed"]  # the table is gone: fail closed
    assert seen["batch_good"] == [["192.0.2.5", 150]]  # a failed answer fails alone
    assert seen["batch_bad"] == "PinError" and seen["lookup_failed"] == []
    assert seen["lookup_expired"] == []
    assert seen["full"] == "1 addresses pinned for service a: the table is full"


@netns
def test_sandbox(tmp_path):
    seen = run_case("sandbox", tmp_path)
    refused = "ECONNREFUSED"  # the ruleset's reject (the README's drops)
    assert set(seen["before"].values()) == {refused}
    for key in ("www_a", "www_aaaa", "svc"):
        assert seen[key]["rcode"] == 0, seen[key]
    assert seen["denied"]["rcode"] == 5
    assert "loopback" in seen["rebind"]["ede"] and seen["rebind"]["rcode"] == 5
    assert "the target of srv.allowed.sc. SRV" in seen["srv"]["ede"]
    assert "the target of out.allowed.sc. HTTPS" in seen["out"]["ede"]
    assert sorted(seen["pinned"]) == ["192.0.2.1", "192.0.2.4", "2001:db8::1", "2001:db8::4"]
    timeouts = {a: e["timeout"] for a, e in seen["pinned"].items()}
    assert timeouts == {"192.0.2.1": 6, "2001:db8::1": 6,  # TTL 4 + grace 2
                        "192.0.2.4": 302, "2001:db8::4": 302}
    assert seen["after"] == {"192.0.2.1": "ok", "192.0.2.2": refused, "192.0.2.3": refused,
                             "192.0.2.4": "ok", "2001:db8::1": "ok", "2001:db8::4": "ok"}
    # a reload removed svc's rule: its pins (TTL 300) went at once; www's stay while they last
    assert not {"192.0.2.4", "2001:db8::4"} & set(seen["reloaded"])
    assert seen["expired"] == {}
    assert seen["after_expiry"] == {"192.0.2.1": refused, "2001:db8::1": refused}
    records: dict = {}  # the first record of each question, and whether it was a cache hit
    for r in seen["records"]:
        if "event" in r:  # the reload's policy_change records (issue #17's API)
            continue
        records.setdefault((r["qname"], r["qtype"], r["cache_hit"]), r)
    assert records[("www.allowed.sc.", "A", False)]["pin"] == {
        "added": [{"address": "192.0.2.1", "timeout": 6}], "error": None}
    again = records[("www.allowed.sc.", "A", True)]  # a cache hit is pinned again
    assert again["pin"]["added"][0]["address"] == "192.0.2.1" and again["pin"]["error"] is None
    assert records[("svc.allowed.sc.", "HTTPS", False)]["pin"]["added"] == [
        {"address": "192.0.2.4", "timeout": 302}, {"address": "2001:db8::4", "timeout": 302}]
    assert "pin" not in records[("www.denied.sc.", "A", False)]  # only with addresses
    # fail closed: with the ruleset flushed, the answer is SERVFAIL, EDE 14, and says why
    assert seen["unpinnable"]["rcode"] == 2 and seen["unpinnable"]["answer"] == []
    assert "pin failed" in seen["unpinnable"]["ede"]
    assert "not answering unpinned" in seen["unpinnable"]["ede"]
    failed = [r for r in seen["records"] if r.get("rcode") == "SERVFAIL"]
    assert len(failed) == 1 and failed[0]["ede"]["code"] == 14
    assert failed[0]["pin"]["added"] == [] and "No such file" in failed[0]["pin"]["error"]


@netns
def test_k8s_ruleset_loads():
    """The pod ruleset of k8s/README.md is one nft accepts (in a namespace of its own)."""
    text = (ROOT_DIR / "k8s" / "README.md").read_text()
    ruleset = text.split("```nft\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(["unshare", "-n", "nft", "-f", "-"], input=ruleset, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_missing_library_is_named(monkeypatch, tmp_path, capsys):
    """check-config (and serve, which runs the same check) stops with exit status 8 naming
    the key and the Debian package when libnftables cannot be loaded."""
    from resolver import configcheck, preflight, status
    from resolver.nft import Nft, NftError
    with pytest.raises(NftError, match="libnftables1"):
        Nft("/nonexistent/libnftables.so.1")
    monkeypatch.setattr(preflight, "Nft", lambda: Nft("/nonexistent/libnftables.so.1"))
    path = tmp_path / "config.yaml"
    path.write_text('listen: ["127.0.0.1:53"]\nmetrics: {enabled: false}\nservices:\n'
                    '  - {name: s, clients: ["10.0.0.0/8"], allow: [{zone: example.}],\n'
                    '     pin: {nft: {table: "inet sandbox", set4: allowed4}}}\n')
    assert configcheck.run(str(path)) == status.NFTABLES == 8
    error = capsys.readouterr().err
    assert "services[0].pin: /nonexistent/libnftables.so.1 cannot be loaded" in error
    assert "install the Debian package libnftables1" in error


@netns
def test_check_config_names_the_missing_table_or_set(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text('listen: ["127.0.0.1:53"]\nmetrics: {enabled: false}\nservices:\n'
                    '  - {name: s, clients: ["10.0.0.0/8"], allow: [{zone: example.}],\n'
                    '     pin: {nft: {table: "inet sandbox", set4: allowed4, set6: a6}}}\n')
    script = ('ip link set lo up && "$0" -m resolver.cli check-config "$1"; echo "status $?"; '
              "nft add table inet sandbox && "
              "nft add set inet sandbox allowed4 '{ type ipv4_addr; flags timeout; }' && "
              "nft add set inet sandbox a6 '{ type ipv6_addr; }' && "
              '"$0" -m resolver.cli check-config "$1"; echo "status $?"')
    done = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, str(path)],
                          cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
    assert done.stdout.count("status 8") == 2, done.stdout + done.stderr
    assert "services[0].pin.nft.set4: no table inet sandbox" in done.stderr
    assert "services[0].pin.nft.set6: set inet sandbox a6: no 'flags timeout'" in done.stderr


# --- the frontend with a Pinner over a stand-in for libnftables (no kernel needed) ----------

class FakeNft:
    """Stands for resolver.nft.Nft: records each command list it is given; while ``hold`` is
    clear, a run waits for it (the kernel busy); ``fail`` makes a run raise NftError."""

    def __init__(self) -> None:
        self.runs: list[list[dict]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail: str | None = None

    def run(self, commands, terse=False):
        self.entered.set()
        assert self.hold.wait(30)
        if self.fail is not None:
            raise NftError(self.fail)
        self.runs.append(commands)
        return []

    def close(self) -> None:
        pass


def test_an_answer_leaves_only_once_its_pins_are_committed():
    """Frontend.handle awaits the commit (held here until released), a cache hit of a pinned
    service takes the full path and is pinned again, and a failed commit is SERVFAIL with
    EDE 14 (fail closed); the pins of concurrent answers are one command list."""
    cfg = parse_config(yaml.safe_load("""
        listen: ["127.0.0.1:53"]
        services:
          - {name: svc, listeners: ["127.0.0.1:53"], allow: [{zone: rsasha256.example.}],
             pin: {nft: {table: "inet sandbox", set4: allowed4}, grace: 100}}
    """))
    nft = FakeNft()
    pinner = Pinner(cfg.services, nft=nft, readd=False)
    resolver = Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                        exchange=memory.Upstream())
    frontend = Frontend(resolver, Policy(cfg), None, None, None, pinner=pinner)
    listener, client = ("127.0.0.1", 53), ("127.0.0.2", 5353)
    wire = dns.message.make_query("www.rsasha256.example.", "A", use_edns=0).to_wire()

    async def run():
        nft.hold.clear()
        task = asyncio.ensure_future(frontend.handle(wire, "udp", listener, client, 1232))
        await asyncio.get_running_loop().run_in_executor(None, nft.entered.wait, 30)
        await asyncio.sleep(0)
        held = task.done()  # the commit is still running: no reply yet
        nft.hold.set()
        first = dns.message.from_wire(await task)
        hit = frontend.fast(wire, "udp", listener, client)  # None: the full path again
        second = dns.message.from_wire(await frontend.handle(wire, "udp", listener, client,
                                                             1232))
        both = await asyncio.gather(*(frontend.handle(wire, "udp", listener, client, 1232)
                                      for _ in range(5)))
        nft.fail = "Operation not permitted"
        failed = dns.message.from_wire(await frontend.handle(wire, "udp", listener, client,
                                                             1232))
        return held, first, hit, second, both, failed

    held, first, hit, second, both, failed = asyncio.run(run())
    assert held is False
    assert first.rcode() == dns.rcode.NOERROR and hit is None and second.rcode() == 0
    assert all(dns.message.from_wire(b).rcode() == 0 for b in both)
    elements = [c["add"]["element"] for commands in nft.runs for c in commands]
    assert {e["name"] for e in elements} == {"allowed4"}
    assert {e["elem"][0]["elem"]["val"] for e in elements} == {"192.0.2.20"}
    assert 3600 < elements[0]["elem"][0]["elem"]["timeout"] <= 3700  # TTL 3600 + grace 100
    assert len(nft.runs) <= 4  # two alone, then the five concurrent in one or two lists
    assert failed.rcode() == dns.rcode.SERVFAIL
    (ede,) = [o for o in failed.options if o.otype == 15]
    assert ede.code == 14 and ede.text == (
        "pin failed (nftables: Operation not permitted): not answering unpinned")
    assert pinner.lookup("svc", "192.0.2.20")[0][0] == "www.rsasha256.example."


def test_lookup_names_are_lowercase():
    """A proxy compares SNI or Host in lower case: the names behind a pin are kept so."""
    found = elements([rrset("WWW.Example. 60 A 192.0.2.1")])
    assert found[0].owner == "www.example."
