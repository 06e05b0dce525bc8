"""The DNSSEC posture of expected zones (issue #18), end to end: a small hierarchy (., pt.,
app.pt., bogus.pt.) signed at run time by dnspython with a KSK and a ZSK per zone (an
independent signer), served by the test tree's authoritative servers and changed while the
resolver runs: a KSK and ZSK rollover to another algorithm, a DS removed, signatures nearing
expiry under the injected validation clock, canaries, and answers outside ``expect``. Each
event is looked for in the forensic log (and the chain verified), the metrics and /readyz;
the ``posture`` command reads both the log and /posture. Plus the units: a posture's events,
the configuration keys, the policy's ``expect``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.dnssec
import dns.edns
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.zone
import pytest
from dns.dnssectypes import Algorithm
from prometheus_client.parser import text_string_to_metric_families

from resolver.config import ConfigError, parse_config
from resolver.forensic.verify import verify
from resolver.frontend.policy import Policy
from resolver.monitor.posture import Posture
from tests.conftest import private_key
from tests.scenarios import runner
from tests.test_operations import wait_listening
from tests.testtree import NOW, authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.189"
METRICS = f"http://{ADDRESS}:9153"
SERVERS = {"127.0.0.185": ["."], "127.0.0.186": ["pt."], "127.0.0.187": ["app.pt."],
           "127.0.0.188": ["bogus.pt."]}
RECORDS = {".": "", "pt.": "", "app.pt.": "www 300 IN A 192.0.2.10\noff 300 IN A 198.51.100.7\n",
           "bogus.pt.": "www 300 IN A 192.0.2.20\n"}
EXPIRATION = NOW + 30 * 86400
WAIT = 60.0  # seconds at most for an event: bounded, for a loaded machine


def _keys(algorithm: int = 13) -> list:
    """A KSK (SEP flag) and a ZSK."""
    out = []
    for flags in (257, 256):
        private = private_key(algorithm)
        out.append((private, dns.dnssec.make_dnskey(private.public_key(), Algorithm(algorithm),
                                                    flags=flags)))
    return out


class Hierarchy:
    """The zones, their keys, and what the parents publish; :meth:`sign` writes every zone
    signed (children first, each parent with its children's DS) and serves it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.keys = {zone: _keys() for zone in RECORDS}
        self.no_ds: set[str] = set()
        self.wrong_ds = {"bogus.pt.": _keys()}  # pt. vouches for a key bogus.pt. never uses
        self.nsec3: dict[str, dict] = {}  # zone -> NSEC3 parameters (default: NSEC)
        self.version = 0
        self.servers = {address: {"zones": zones} for address, zones in SERVERS.items()}
        self.zones = self._signed()
        self.tree = authority.Tree([authority.Server(address, [self.zones[z] for z in zones])
                                    for address, zones in SERVERS.items()])

    def ds(self, zone: str) -> list[str]:
        keys = self.wrong_ds.get(zone, self.keys[zone])
        return [dns.dnssec.make_ds(zone, dnskey, "SHA256").to_text()
                for _, dnskey in keys if dnskey.flags & 1]

    def _signed(self) -> dict[str, zonedata.TestZone]:
        self.version += 1
        specs = {zone: {"records": text} for zone, text in RECORDS.items()}
        out = {}
        for zone in sorted(RECORDS, key=lambda z: -len(dns.name.from_text(z).labels)):
            text = runner._complete(zone, specs[zone], specs, self.servers)
            for child in RECORDS:
                if child != zone and runner._parent(specs, child) == zone \
                        and child not in self.no_ds:
                    text += "".join(f"{child} 300 IN DS {line}\n" for line in self.ds(child))
            z = dns.zone.from_text(text, origin=zone, relativize=False)
            if zone in self.nsec3:  # the scenario runner's NSEC3 chain, signed by the KSK alone
                denial = runner._sign(z, {"nsec3": self.nsec3[zone]}, NOW,
                                      {13: self.keys[zone][0]})
            else:
                denial = "nsec"
                dns.dnssec.sign_zone(z, keys=self.keys[zone], inception=NOW - 86400,
                                     expiration=EXPIRATION, policy=dns.dnssec.allow_all_policy)
            path = self.directory / f"{zone.rstrip('.') or 'root'}-{self.version}.zone"
            path.write_text(z.to_text(relativize=False))
            out[zone] = zonedata.TestZone(zone, {"file": str(path), "denial": denial,
                                                 "kind": "scenario"})
        return out

    def resign(self) -> None:
        """Sign every zone again with the current keys and DS choices, and serve it."""
        self.zones = self._signed()
        for address, zones in SERVERS.items():
            server = self.tree.servers[address]
            server.zones = [self.zones[z] for z in zones]
            server.responder = authority.Responder(server.zones, errors=server.errors)

    def anchor(self) -> str:
        return ", ".join(f'". IN DS {line}"' for line in self.ds("."))

    def tags(self, zone: str) -> list[int]:
        return sorted(dns.dnssec.key_id(dnskey) for _, dnskey in self.keys[zone])


def config(tree: Hierarchy, log: Path, *, time_: int = NOW, monitor: str = "",
           expect: str = "") -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_))
    return (f'listen: ["{ADDRESS}:53"]\n'
            'root_hints: [{name: ns0., addresses: ["127.0.0.185"]}]\n'
            f"trust_anchors: [{tree.anchor()}]\n"
            f'validation: {{time: "{when}"}}\n'
            f"{authority.outgoing_line()}\n"
            f'metrics: {{listen: "{ADDRESS}:9153"}}\n'
            f"log: {{path: {log}, fsync_interval_ms: 0}}\n"
            "timeouts: {upstream_ms: 300, query_ms: 3000}\n"
            f"monitor: {{interval: 1s{monitor}}}\n"
            "services:\n"
            "  - name: app\n"
            f'    listeners: ["{ADDRESS}:53"]\n'
            f"    allow: [{{zone: app.pt., require: secure{expect}}}]\n")


class Sidecar:
    """The resolver process; its config file is rewritten and reloaded with SIGHUP."""

    def __init__(self, directory: Path, text: str) -> None:
        self.path = directory / "config.yaml"
        self.log = directory / "lookups.jsonl"
        self.path.write_text(text)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config", str(self.path)],
            cwd=ROOT_DIR, stderr=subprocess.PIPE, text=True)
        wait_listening(self.process, ADDRESS)

    def reload(self, text: str) -> None:
        self.path.write_text(text)
        self.process.send_signal(1)  # SIGHUP

    def events(self, kind: str | None = None, zone: str | None = None) -> list[dict]:
        out = []
        for line in self.log.read_bytes().splitlines():
            rec = json.loads(line)
            if "event" in rec and (kind is None or rec["event"] == kind) \
                    and (zone is None or rec["zone"] == zone):
                out.append(rec)
        return out

    def wait_event(self, kind: str, zone: str, after: int = 0) -> dict:
        """The first ``kind`` event of ``zone`` after the first ``after`` ones of its kind."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = self.events(kind, zone) if self.log.exists() else []
            if len(found) > after:
                return found[after]
            if self.process.poll() is not None:
                pytest.fail(self.process.stderr.read())
            time.sleep(0.1)
        pytest.fail(f"no {kind} event for {zone} within {WAIT} s; events: "
                    f"{[(e['event'], e['zone']) for e in self.events()]}")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.communicate(timeout=15)[1]


@pytest.fixture
def hierarchy(tmp_path):
    tree = Hierarchy(tmp_path)
    tree.tree.start()
    yield tree
    tree.tree.stop()


@pytest.fixture
def start(hierarchy, tmp_path):
    running = []

    def make(**options) -> Sidecar:
        sidecar = Sidecar(tmp_path, config(hierarchy, tmp_path / "lookups.jsonl", **options))
        running.append(sidecar)
        return sidecar
    yield make
    for sidecar in running:
        sidecar.stop()


def scrape() -> dict[tuple, float]:
    text = urllib.request.urlopen(METRICS + "/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(metric_name: str, **labels) -> float | None:
    return scrape().get((metric_name, tuple(sorted(labels.items()))))


def ready() -> tuple[int, str]:
    try:
        with urllib.request.urlopen(METRICS + "/readyz", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(status: int) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        code, text = ready()
        if code == status:
            return text
        time.sleep(0.1)
    pytest.fail(f"/readyz did not answer {status} within {WAIT} s: {ready()}")


def ask(name: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A", want_dnssec=True), ADDRESS,
                         timeout=5)


def posture_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resolver.cli", "posture", *args],
                          cwd=ROOT_DIR, capture_output=True, text=True, timeout=30)


# --- end to end ------------------------------------------------------------------------------

def test_rollover_of_ksk_and_zsk_to_another_algorithm_is_seen(hierarchy, start):
    sidecar = start()
    for zone in (".", "pt.", "app.pt."):  # the expected zone and the cuts above it
        seen = sidecar.wait_event("zone_seen", zone)
        assert seen["posture"]["state"] == "secure"
    baseline = sidecar.wait_event("zone_seen", "app.pt.")["posture"]
    old = hierarchy.tags("app.pt.")
    assert sorted(int(k.split()[1].split("/")[0]) for k in baseline["dnskey"]) == old
    assert metric("dnssec_sidecar_zone_state", zone="app.pt.", state="secure") == 1

    hierarchy.keys["app.pt."] = _keys(15)  # a new KSK and ZSK, Ed25519; pt. publishes its DS
    hierarchy.resign()
    new = hierarchy.tags("app.pt.")
    changed = sidecar.wait_event("dnskey_changed", "app.pt.")
    assert changed["detail"]["added"] == new and changed["detail"]["removed"] == old
    assert sidecar.wait_event("algorithm_changed", "app.pt.")["detail"] == {"from": [13],
                                                                           "to": [15]}
    ds = sidecar.wait_event("ds_changed", "app.pt.")["detail"]
    assert len(ds["added"]) == 1 and ds["added"][0].endswith("/15/2")
    assert len(ds["removed"]) == 1 and ds["removed"][0].endswith("/13/2")
    assert not sidecar.events("became_bogus") and not sidecar.events("became_insecure")
    for kind in ("dnskey", "ds", "algorithm"):
        assert metric("dnssec_sidecar_zone_key_changes_total", zone="app.pt.", kind=kind) >= 1
    assert metric("dnssec_sidecar_dnssec_events_total", event="dnskey_changed") >= 1
    assert ask("www.app.pt.").rcode() == dns.rcode.NOERROR  # the new keys validate

    shown = posture_command("--api", f"{ADDRESS}:9153")
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("app.pt."))
    assert f"KSK {new[0]}/15" in row or f"KSK {new[1]}/15" in row
    assert "secure" in row
    logged = sidecar.stop()
    assert "posture: dnskey_changed app.pt." in logged  # the process log
    report = verify([str(sidecar.log)])  # event records are links of the chain like any
    assert report.ok, report.text()
    table = posture_command("--log", str(sidecar.log))
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("app.pt."))
    assert "/15" in row and ("dnskey_changed" in row or "ds_changed" in row
                             or "algorithm_changed" in row)


def test_a_removed_ds_makes_the_zone_insecure(hierarchy, start):
    sidecar = start()
    sidecar.wait_event("zone_seen", "app.pt.")
    assert ask("www.app.pt.").rcode() == dns.rcode.NOERROR
    hierarchy.no_ds.add("app.pt.")  # the registrar-compromise signal: pt. drops the DS
    hierarchy.resign()
    event = sidecar.wait_event("became_insecure", "app.pt.")
    assert event["detail"]["from"] == "secure" and event["posture"]["state"] == "insecure"
    assert event["posture"]["ds"] == []
    removed = sidecar.wait_event("ds_changed", "app.pt.")["detail"]
    assert removed["added"] == [] and len(removed["removed"]) == 1
    assert metric("dnssec_sidecar_zone_state", zone="app.pt.", state="insecure") == 1
    assert metric("dnssec_sidecar_zone_state", zone="app.pt.", state="secure") == 0
    assert metric("dnssec_sidecar_dnssec_events_total", event="became_insecure") >= 1
    assert sidecar.wait_event("zone_seen", "pt.")["posture"]["state"] == "secure"
    assert not sidecar.events("became_insecure", "pt.")


def test_signatures_nearing_expiry_under_the_injected_clock(hierarchy, start, tmp_path):
    sidecar = start()
    sidecar.wait_event("zone_seen", "app.pt.")
    assert metric("dnssec_sidecar_zone_signature_expiry_timestamp_seconds",
                  zone="app.pt.") == EXPIRATION
    assert not sidecar.events("signatures_expiring")
    # The validation clock moves to 48 h before the signatures expire (monitor.expiry_warning
    # is 72 h): the data still validates, and the next check warns.
    sidecar.reload(config(hierarchy, tmp_path / "lookups.jsonl", time_=EXPIRATION - 48 * 3600))
    event = sidecar.wait_event("signatures_expiring", "app.pt.")
    assert event["detail"]["seconds_left"] == 48 * 3600
    assert event["detail"]["warning"] == 72 * 3600
    assert event["posture"]["expiry"] == time.strftime("%Y-%m-%dT%H:%M:%S.000000Z",
                                                       time.gmtime(EXPIRATION))
    assert ask("www.app.pt.").rcode() == dns.rcode.NOERROR
    checked_after(event["time"], "app.pt.")  # a later check: no second warning
    assert len(sidecar.events("signatures_expiring", "app.pt.")) == 1


def test_a_ds_of_another_key_makes_the_zone_bogus(hierarchy, start):
    sidecar = start()
    sidecar.wait_event("zone_seen", "app.pt.")
    hierarchy.wrong_ds["app.pt."] = _keys()  # pt. vouches for a key app.pt. does not have
    hierarchy.resign()
    event = sidecar.wait_event("became_bogus", "app.pt.")
    assert event["detail"]["from"] == "secure" and "DS" in event["detail"]["reason"]
    assert metric("dnssec_sidecar_zone_state", zone="app.pt.", state="bogus") == 1
    assert ask("www.app.pt.").rcode() == dns.rcode.SERVFAIL


def test_a_switch_to_nsec3_is_seen(hierarchy, start):
    sidecar = start()
    assert sidecar.wait_event("zone_seen", "app.pt.")["posture"]["denial"] == "nsec"
    hierarchy.nsec3["app.pt."] = {"iterations": 0, "salt": "cafe"}
    hierarchy.resign()
    event = sidecar.wait_event("nsec3_changed", "app.pt.")
    assert event["detail"] == {"from": "nsec", "to": "nsec3 iterations 0 salt cafe"}
    assert metric("dnssec_sidecar_zone_key_changes_total", zone="app.pt.", kind="nsec3") == 1
    assert event["posture"]["state"] == "secure"


def checked_after(when: str, zone: str) -> None:
    """Wait for a background check of ``zone`` that began after the RFC 3339 time ``when``:
    the second one to end after it (the first may have made the event)."""
    deadline = time.monotonic() + WAIT
    ends: set[str] = set()
    while time.monotonic() < deadline:
        report = json.loads(urllib.request.urlopen(METRICS + "/posture", timeout=5).read())
        checked = next(z for z in report["zones"] if z["zone"] == zone)["checked"]
        if checked > when:
            ends.add(checked)
        if len(ends) >= 2:
            return
        time.sleep(0.1)
    pytest.fail(f"{zone} not checked again within {WAIT} s")


def test_a_canary_that_resolves_fails_readiness(hierarchy, start, tmp_path):
    sidecar = start(monitor=", canary: [www.app.pt., www.bogus.pt.]")
    event = sidecar.wait_event("canary_resolved", "www.app.pt.")
    assert event["detail"]["verdict"] == "secure"
    text = wait_ready(503)
    assert "www.app.pt." in text and "monitor.canary" in text and "bogus" not in text
    assert metric("dnssec_sidecar_canary_resolved", name="www.app.pt.") == 1
    assert metric("dnssec_sidecar_canary_resolved", name="www.bogus.pt.") == 0
    assert not sidecar.events("canary_resolved", "www.bogus.pt.")
    shown = posture_command("--api", f"{ADDRESS}:9153")
    assert shown.returncode == 1 and "canary www.app.pt.: RESOLVED" in shown.stdout
    # Only the canary that must fail: ready again.
    sidecar.reload(config(hierarchy, tmp_path / "lookups.jsonl",
                          monitor=", canary: [www.bogus.pt.]"))
    wait_ready(200)


def test_answers_outside_expect_are_refused_on_both_paths(hierarchy, start):
    sidecar = start(expect=", expect: {addresses: [192.0.2.0/24, '2001:db8::/32']}")
    for _ in range(3):  # the second and third may come from the hit path: still inside
        reply = ask("www.app.pt.")
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rd.address for r in reply.answer for rd in r if r.rdtype == 1] == ["192.0.2.10"]
    for _ in range(3):  # a validated answer outside expect is never served, not even cached
        reply = ask("off.app.pt.")
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
        codes = [(o.code, o.text) for o in reply.options if o.otype == dns.edns.EDE]
        assert codes and codes[0][0] == 18 and "198.51.100.7" in codes[0][1]
        assert "outside expect.addresses" in codes[0][1]
    event = sidecar.wait_event("answer_unexpected", "app.pt.")
    assert event["detail"]["qname"] == "off.app.pt." and event["detail"]["service"] == "app"
    sidecar.stop()
    assert len(sidecar.events("answer_unexpected")) == 1  # once per name an interval
    records = [json.loads(line) for line in sidecar.log.read_bytes().splitlines()]
    refused = [r for r in records if r.get("qname") == "off.app.pt."]
    assert len(refused) == 3 and all(r["policy"]["decision"] == "refuse" for r in refused)
    assert all(r["verdict"] is None and r["rcode"] == "REFUSED" for r in refused)
    assert verify([str(sidecar.log)]).ok


# --- units -----------------------------------------------------------------------------------

def test_a_first_view_is_a_baseline_and_changes_make_events():
    p = Posture("example.")
    keys = frozenset({(1, 13, 1), (2, 13, 0)})
    assert p.update(0, NOW, 3600, state="secure", ds=frozenset({(1, 13, 2)}), dnskey=keys,
                    denial=("nsec3", 0, "", None), expiry=NOW + 86400, serial=1) == []
    events = p.update(1, NOW, 3600, dnskey=frozenset({(1, 13, 1), (3, 13, 0)}),
                      denial=("nsec3", 10, "", None))
    assert [e[0] for e in events] == ["dnskey_changed", "nsec3_changed"]
    assert events[0][1]["added"] == [3] and events[0][1]["removed"] == [2]
    assert p.change == "nsec3_changed" and p.changed == 1
    # an NSEC3PARAM says nothing of opt-out: what NSEC3 records said is kept
    assert p.update(2, NOW, 3600, denial=("nsec3", 10, "", True))[0][0] == "nsec3_changed"
    assert p.update(3, NOW, 3600, denial=("nsec3", 10, "", None)) == []
    assert p.update(4, NOW, 3600, state="bogus", reason="x")[0] == (
        "became_bogus", {"from": "secure", "reason": "x"})
    assert p.dnskey is None  # keys are known from a validated set only
    assert p.update(5, NOW + 86400 - 10, 3600)[0][0] == "signatures_expiring"
    assert p.update(6, NOW + 86400 - 5, 3600) == []  # once per expiry


@pytest.mark.parametrize("text, field, reason", [
    ("monitor: {interval: 0}", "monitor.interval", "out of range"),
    ("monitor: {interval: 2d}", "monitor.interval", "out of range"),
    ("monitor: {expiry_warning: 10m}", "monitor.expiry_warning", "out of range"),
    ("monitor: {budget: 0}", "monitor.budget", "out of range"),
    ("monitor: {canary: www.example.}", "monitor.canary", "expected a list"),
    ("monitor: {canary: [a., a.]}", "monitor.canary[1]", "duplicate"),
    ("monitor: {canary: [" + ", ".join(f"n{i}." for i in range(17)) + "]}", "monitor.canary",
     "at most 16"),
    ("monitor: {every: 1}", "monitor.every", "unknown key"),
    ("services: [{name: a, clients: [10.0.0.0/8], allow: [{zone: a., expect: {addresses: "
     "[not-an-address]}}]}]", "services[0].allow[0].expect.addresses[0]",
     "not an address prefix"),
    ("services: [{name: a, clients: [10.0.0.0/8], allow: [{zone: a., expect: {}}]}]",
     "services[0].allow[0].expect.addresses", "missing"),
    ("services: [{name: a, clients: [10.0.0.0/8], allow: [{zone: a., expect: {cidrs: []}}]}]",
     "services[0].allow[0].expect.cidrs", "unknown key"),
])
def test_monitor_and_expect_errors_name_the_field(text, field, reason):
    import yaml
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_load(text))
    assert caught.value.field == field and reason in caught.value.reason


def test_monitor_defaults():
    monitor = parse_config({}).monitor
    assert (monitor.interval, monitor.expiry_warning, monitor.canary, monitor.enabled) == (
        300, 72 * 3600, (), True)


def test_expect_judges_every_address_of_the_rule():
    config = parse_config({"services": [{"name": "a", "clients": ["10.0.0.0/8"],
                                         "rebinding_protection": False, "allow": [
        {"zone": "example.", "expect": {"addresses": ["192.0.2.0/24", "2001:db8::/32"]}},
        {"zone": "other."}]}]})
    policy = Policy(config)
    service = config.services[0]
    rule, other = service.allow
    assert policy.check_answer(service, rule, "secure", ["192.0.2.1", "2001:db8::1"]).allowed
    for outside in ("192.0.3.1", "2001:db9::1", "::ffff:198.51.100.1", "junk"):
        decision = policy.check_answer(service, rule, "secure", ["192.0.2.1", outside])
        assert not decision.allowed and decision.kind == "unexpected"
        assert decision.ede == 18 and decision.zone == "example." and outside in decision.reason
    assert policy.check_answer(service, rule, "secure", ["::ffff:192.0.2.7"]).allowed
    assert policy.check_answer(service, other, "secure", ["198.51.100.1"]).allowed


class _FakeIterator:
    """What the monitor uses of the iterator, answering every question Secure from a chain
    ., pt., app.pt., and recording the questions."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from resolver.dnssec.zone import Lru
        self.asked: list[tuple[str, str]] = []
        self.zones, self.trust = Lru(10), SimpleNamespace(secured=Lru(10))
        self.cache, self.s = SimpleNamespace(ranges=None), SimpleNamespace(query_timeout=5)

    def now(self) -> int:
        return NOW

    def new_context(self):
        from types import SimpleNamespace
        return SimpleNamespace(refresh_until=0.0)

    async def chase(self, name, rdtype, ctx):
        import math

        import dns.rdatatype
        import dns.rrset

        from resolver.dnssec import Verdict
        from resolver.dnssec.result import Answer, Proof
        assert ctx.refresh_until == math.inf  # nothing cached is taken
        text = dns.rdatatype.to_text(rdtype)
        self.asked.append((name.to_text(), text))
        chain = [".", "pt.", "app.pt."][:len(name.labels)]
        data = {"SOA": "ns0. hostmaster. 7 3600 600 86400 300", "DS": "1 13 2 " + "00" * 32,
                "DNSKEY": "257 3 13 " + "A" * 88}.get(text)
        rrsets = [dns.rrset.from_text(name, 300, "IN", text, data)] if data else []
        return Answer(0, Verdict.SECURE, rrsets, proof=Proof(name, zones=chain))


def test_the_background_check_keeps_to_its_budget_and_goes_round():
    import asyncio

    from resolver.monitor.check import Monitor
    from resolver.monitor.events import Events
    config = parse_config({"monitor": {"budget": 5}, "services": [
        {"name": "a", "clients": ["10.0.0.0/8"], "allow": [{"zone": "app.pt."}]}]})
    fake = _FakeIterator()
    events = Events()
    monitor = Monitor(config, lambda: fake, events)
    assert asyncio.run(monitor.check()) == 5
    assert fake.asked == [("app.pt.", "SOA"), ("app.pt.", "DS"), ("app.pt.", "DNSKEY"),
                          ("app.pt.", "NSEC3PARAM"), (".", "SOA")]
    assert monitor.zones[dns.name.from_text("app.pt.")].serial == 7
    assert events.counts["zone_seen"] == 1  # the root's check was cut short by the budget
    fake.asked.clear()
    assert asyncio.run(monitor.check()) == 5  # zones not fully checked first, parents first
    assert fake.asked[:3] == [(".", "SOA"), (".", "DNSKEY"), (".", "NSEC3PARAM")]
    assert fake.asked[3:] == [("pt.", "SOA"), ("pt.", "DS")]
    fake.asked.clear()
    assert asyncio.run(monitor.check()) == 5  # then the one checked longest ago
    assert fake.asked[0] == ("pt.", "SOA") and fake.asked[4] == ("app.pt.", "SOA")
    # A fetched answer's signature expiring earlier than what the check saw: the earliest.
    app = monitor.zones[dns.name.from_text("app.pt.")]
    monitor.signed([{"signer": "app.pt.", "expiration": NOW + 3600},
                    {"signer": "elsewhere.", "expiration": NOW + 60}])
    assert app.expiry == NOW + 3600 and events.counts["signatures_expiring"] == 1
    asyncio.run(monitor.check())  # kept through the next check of the zone
    assert app.expiry == NOW + 3600 and events.counts["signatures_expiring"] == 1
    # A reload that expects other zones forgets those no rule leads to (and their metrics).
    monitor.configure(parse_config({"services": [{"name": "a", "clients": ["10.0.0.0/8"],
                                                  "allow": [{"zone": "other."}]}]}))
    assert set(monitor.zones) == {dns.name.root}
    assert [z["zone"] for z in monitor.report()["zones"]] == ["."]


def test_posture_command_names_what_it_cannot_read(tmp_path):
    missing = posture_command("--log", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 4 and missing.stdout == ""
    assert missing.stderr.strip() == f"posture: --log: {tmp_path / 'nope.jsonl'}: cannot read: " \
                                     "No such file or directory"
    refused = posture_command("--api", "127.0.0.1:1")
    assert refused.returncode == 4 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("posture: --api 127.0.0.1:1: cannot read:")
    usage = posture_command()
    assert usage.returncode == 2 and "one of the arguments --api --log is required" in usage.stderr
    # A log of replies only (no event records) is an empty table, not an error.
    (tmp_path / "log").write_text('{"qname":"www.example.","seq":0}\nnot json\n')
    empty = posture_command("--log", str(tmp_path / "log"))
    assert empty.returncode == 0 and empty.stdout.split() == list(
        " ".join(("ZONE", "STATE", "KEYS", "DS", "DENIAL", "SERIAL", "EARLIEST EXPIRY",
                  "LAST CHANGE")).split())
