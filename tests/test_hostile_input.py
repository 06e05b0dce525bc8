"""Hostile input (issue #7): every parser and the validator fed random and mutated messages,
RRsets, RRSIGs, NSEC3 chains and names never raise an unhandled exception; malformed client
packets are answered FORMERR or dropped and counted; a real server keeps serving under a spray
of them; the atheris harnesses in fuzz/ run clean for a bounded time.

Mutations start from real messages of the signed test tree (fuzz/tree.py) and come from
fuzz/mutate.py: bit flips, truncation, splices, compression pointer loops, huge counts, bad
label lengths, long names, EDNS option garbage."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import random
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fuzz import mutate, tree
from resolver.dnssec import canonical, crypto, verify
from resolver.resolve._fastcache import WireCache, parse_query
from resolver.dnssec import (Budget, Limits, ValidatorConfig, Verdict, authenticate_dnskeys,
                             denial, validate_rrset)
from resolver.ops.metrics import Metrics
from resolver.frontend.answers import header_only
from tests.testtree import NOW, authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=60)
SIGNED = ("rsasha256.example.", "rsasha512.test.", "ecdsap256.example.", "ecdsap384.test.",
          "ed25519.example.", "ed448.test.")
IN = dns.rdataclass.IN


def _picker(data):
    return lambda n: data.draw(st.integers(0, n - 1))


@st.composite
def mutated(draw, seeds):
    """A seed message mutated one to three times, or random octets."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=600))
    wire = draw(st.sampled_from(seeds))
    return mutate.mutate(wire, lambda n: draw(st.integers(0, n - 1)), tree.seed_messages())


def _dnspython(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None


# --- the compiled hit path (resolver/resolve/_fastcache.pyx) -------------------------------------

@FAST
@given(mutated(tree.seed_queries()))
def test_parse_query_takes_only_what_dnspython_reads_the_same(wire):
    query = parse_query(wire)
    if query is None:
        return
    message = _dnspython(wire)
    assert message is not None, wire.hex()
    q, = message.question
    assert message.id == query.id and not message.flags & dns.flags.QR
    assert query.key[:query.qname_end - 12] == q.name.canonicalize().to_wire()
    assert query.qtype == q.rdtype and q.rdclass == IN
    assert query.edns == (message.edns >= 0) and not message.answer and not message.authority
    assert query.do == bool(message.edns >= 0 and message.ednsflags & dns.flags.DO)


@FAST
@given(st.data())
def test_wire_cache_store_and_answer_never_raise(data):
    query = data.draw(mutated(tree.seed_queries()))
    real = dns.message.make_query("www.rsasha256.example.", "A", want_dnssec=True)
    good = dns.message.make_response(real)
    good.answer.append(dns.rrset.from_text(real.question[0].name, 300, IN, "A", "192.0.2.1"))
    response = data.draw(st.sampled_from([good.to_wire(), *tree.seed_responses()[:400]]))
    response = mutate.mutate(response, _picker(data), tree.seed_messages())
    cache = WireCache(4)
    for question in (query, real.to_wire()):
        stored = cache.store(question, "svc", response, 1000.0, 60, {"x": 1})
        reply = cache.answer(question, "svc", 1005.0 + data.draw(st.floats(0, 100)), 65535)
        if stored:
            assert reply is not None and len(reply) == len(response)
            assert reply[:2] == question[:2]  # the ID is the asker's
        assert cache.answer(data.draw(mutated(tree.seed_queries())), "svc", 1001.0) is None \
            or stored


# --- the compiled verification core (resolver/dnssec/canonical, crypto, verify) -------------------

def _tree_rdatas():
    out = []
    for zone in SIGNED:
        for rrset, rrsigs in zonedata.load(zone).signed_rrsets():
            out += [(rrset.rdtype, rd.to_digestable()) for rd in rrset]
            out += [(rrsigs.rdtype, rd.to_digestable()) for rd in rrsigs or ()]
    return out


TREE_RDATAS = _tree_rdatas()
TYPES = sorted({t for t, _ in TREE_RDATAS} | {3, 4, 7, 14, 17, 18, 21, 24, 26, 30, 35, 36, 38})


@FAST
@given(st.data())
def test_canonical_rdata_on_random_and_mutated_rdata(data):
    if data.draw(st.booleans()):
        rdtype, wire = data.draw(st.sampled_from(TREE_RDATAS))
        wire = mutate.mutate(wire, _picker(data))
    else:
        rdtype, wire = data.draw(st.sampled_from(TYPES)), data.draw(st.binary(max_size=80))
    try:
        canon = canonical.canonical_rdata(rdtype, wire)
    except canonical.MalformedData:
        return
    assert len(canon) == len(wire)
    try:
        parsed = dns.rdata.from_wire(IN, rdtype, wire, 0, len(wire))
    except (dns.exception.DNSException, ValueError):
        return
    if rdtype != dns.rdatatype.NSEC:  # dnspython keeps NSEC's next name as is (RFC 6840 §5.1)
        assert canon == parsed.to_digestable(), (rdtype, wire.hex())


@FAST
@given(st.binary(min_size=4, max_size=300), st.binary(max_size=140), st.binary(max_size=64))
def test_keys_from_random_dnskey_bytes_never_verify_random_signatures(wire, signature, data):
    for algorithm in (5, 8, 10, 13, 14, 15, 16, 200, wire[3]):
        key_wire = wire[:3] + bytes([algorithm]) + wire[4:]
        key = crypto.Key(key_wire)
        parsed = dns.rdata.from_wire(IN, dns.rdatatype.DNSKEY, key_wire, 0, len(key_wire))
        assert key.tag == dns.dnssec.key_id(parsed)
        assert (key.public is None) == (key.error is not None)
        assert crypto.verify_signature(key, signature, data) is False
        digest = crypto.ds_digest(2, b"\x07example\x00", key_wire)
        assert digest == dns.dnssec.make_ds("example.", parsed, 2).digest


@FAST
@given(st.lists(st.binary(min_size=1, max_size=63), max_size=6), st.binary(max_size=255),
       st.integers(0, 20))
def test_nsec3_hash_and_names_agree_with_dnspython(labels, salt, iterations):
    try:
        name = dns.name.Name(labels + [b""])
    except dns.name.NameTooLong:
        with pytest.raises(canonical.MalformedData):
            canonical.name_wire(tuple(labels) + (b"",))
        return
    wire = canonical.name_wire(name.labels)
    assert wire == name.canonicalize().to_wire()
    ours = crypto.nsec3_hash(wire, salt, iterations)
    assert _base32hex(ours) == dns.dnssec.nsec3_hash(name, salt, iterations, 1).lower()


def _base32hex(digest: bytes) -> str:
    return base64.b32hexencode(digest).decode().lower()


@FAST
@given(st.binary(max_size=120), st.binary(max_size=300),
       st.lists(st.binary(max_size=70), max_size=5), st.integers(-5, 40))
def test_signed_data_and_owner_on_random_input(header, owner, rdatas, labels):
    data = verify.signed_data(header, owner, 1, 1, 3600, rdatas)
    assert len(data) == len(header) + sum(len(owner) + 10 + len(r) for r in set(rdatas))
    name = dns.name.from_text("a.b.c.example.")
    try:
        signed = verify.signed_owner(name.labels, labels)
    except canonical.MalformedData:
        assert not 0 <= labels <= 4
    else:  # RFC 4035 §5.3.2: the owner, or the wildcard it was expanded from
        kept = dns.name.Name(name.labels[4 - labels:])
        assert signed == (kept if labels == 4 else dns.name.Name((b"*",) + kept.labels)).to_wire()
    for half in (0, 16, 32, 48, 64):
        try:
            der = crypto.ecdsa_der(header, half)
        except canonical.MalformedData:
            continue
        assert len(header) == 2 * half and der[0] == 0x30


# --- the validator (resolver.dnssec) -------------------------------------------------------------

def test_a_stub_rsamd5_key_does_not_stop_validation():
    """Regression (found by the key property test): an algorithm-1 DNSKEY with under 3 octets
    of key made key_tag raise, and with it validate_rrset and authenticate_dnskeys."""
    z = zonedata.load("ecdsap256.example.")
    stub = dns.rdata.from_wire(IN, dns.rdatatype.DNSKEY, b"\x01\x01\x03\x01\x00", 0, 5)
    assert crypto.key_tag(stub.to_digestable()) == dns.dnssec.key_id(stub)
    keys = dns.rrset.from_rdata_list(z.name, 300, [*z.dnskeys(), stub])
    assert validate_rrset(*z.pair("www.ecdsap256.example.", "A"), keys, now=NOW).secure
    trusted = authenticate_dnskeys(keys, z.rrsigs(z.name, "DNSKEY"), z.ds(), now=NOW)
    assert trusted.verdict is Verdict.BOGUS  # the set was signed without the stub



def _signed_pairs():
    out = []
    for zone in SIGNED + ("keytrap.example.", "nsec3iter.test.", "unknownalg.example."):
        z = zonedata.load(zone)
        out += [(z, rrset, rrsigs) for rrset, rrsigs in z.signed_rrsets()
                if rrsigs is not None and rrset.rdtype != dns.rdatatype.DNSKEY][:12]
    return out


PAIRS = _signed_pairs()


def _mutate_rrset(rrset: dns.rrset.RRset, data) -> dns.rrset.RRset:
    """One RR's RDATA mutated at the wire level (kept only if dnspython still parses it), or
    the owner name changed."""
    rdatas = list(rrset)
    if data.draw(st.integers(0, 4)) == 0:
        prefix = data.draw(st.sampled_from(["*", "x", "a.b", "\\000", "*.*", "WWW"]))
        return dns.rrset.from_rdata_list(dns.name.from_text(prefix, rrset.name), rrset.ttl,
                                         rdatas)
    i = data.draw(st.integers(0, len(rdatas) - 1))
    wire = mutate.mutate(rdatas[i].to_digestable(), _picker(data))
    try:  # dnspython refuses some results itself: RRSIGs of differing covered types
        rdatas[i] = dns.rdata.from_wire(IN, rrset.rdtype, wire, 0, len(wire))
        return dns.rrset.from_rdata_list(rrset.name, rrset.ttl, rdatas)
    except (dns.exception.DNSException, ValueError):
        return rrset


def _canonical(rrset: dns.rrset.RRset) -> tuple:
    return rrset.name.canonicalize(), frozenset(rd.to_digestable() for rd in rrset)


@SLOW
@given(st.data())
def test_validate_rrset_on_mutated_rrsets_and_rrsigs(data):
    zone, rrset, rrsigs = data.draw(st.sampled_from(PAIRS))
    which = data.draw(st.sampled_from(["rrset", "rrsigs", "keys", "both"]))
    new_rrset = _mutate_rrset(rrset, data) if which in ("rrset", "both") else rrset
    new_sigs = _mutate_rrset(rrsigs, data) if which in ("rrsigs", "both") else rrsigs
    keys = zone.dnskeys()
    new_keys = _mutate_rrset(keys, data) if which == "keys" else keys
    budget = Budget(Limits())
    result = validate_rrset(new_rrset, new_sigs, new_keys, now=NOW, budget=budget)
    assert result.verdict in (Verdict.SECURE, Verdict.BOGUS, Verdict.INSECURE)
    if result.secure:  # a changed RRset is never proven
        assert _canonical(new_rrset) == _canonical(rrset)
        proving = result.rrsig.to_digestable()
        assert proving in {rd.to_digestable() for rd in rrsigs}


@SLOW
@given(st.data())
def test_authenticate_dnskeys_on_mutated_keys_and_ds(data):
    name = data.draw(st.sampled_from(SIGNED + ("keytrap.example.", "wrongds.example.")))
    zone = zonedata.load(name)
    keys, sigs, ds = zone.dnskeys(), zone.rrsigs(name, "DNSKEY"), zone.ds()
    which = data.draw(st.sampled_from(["keys", "sigs", "ds"]))
    new_keys = _mutate_rrset(keys, data) if which == "keys" else keys
    new_sigs = _mutate_rrset(sigs, data) if which == "sigs" else sigs
    new_ds = _mutate_rrset(ds, data) if which == "ds" else ds
    result = authenticate_dnskeys(new_keys, new_sigs, new_ds, now=NOW,
                                  config=ValidatorConfig(allow_sha1=True))
    if result.secure:
        assert _canonical(new_keys) == _canonical(keys)


def _denial_material():
    """Denial records as servers send them: NXDOMAIN and NODATA proofs (NSEC, NSEC3, opt-out,
    100 iterations) for names of several zones."""
    out = []
    for name in ("ecdsap256.example.", "rsasha512.test.", "test.", "nsec3iter.test.",
                 "ed448.test.", "ecdsap384.test."):
        z = zonedata.load(name)
        for relative in ("nope", "a.nope", "c", "b.c", "www", "@"):
            q = dns.name.from_text(relative, z.name)
            pairs = z.select_nodata(q) if z.exists(q) else z.select_nxdomain(q)
            out.append((z, [rrset for rrset, _ in pairs]))
    return out


DENIALS = _denial_material()


HASHES = st.sampled_from([5, 10, 20]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@st.composite
def nsec3_chain(draw, zone: dns.name.Name):
    """Random NSEC3 records: hashes, flags, iteration counts up to 3000, salts up to 255
    octets, type bitmaps; owners hashed or not, in or out of the zone."""
    records = []
    for _ in range(draw(st.integers(1, 12))):
        owner_hash = draw(HASHES)
        owner = dns.name.Name([_base32hex(owner_hash).encode()]
                              + list(draw(st.sampled_from([zone, zone.parent()])).labels))
        text = "1 {} {} {} {} {}".format(
            draw(st.integers(0, 255)), draw(st.sampled_from([0, 1, 50, 51, 150, 3000])),
            draw(st.binary(max_size=255)).hex() or "-",
            _base32hex(draw(HASHES)).upper(),
            " ".join(draw(st.lists(st.sampled_from(["A", "NS", "SOA", "DS", "RRSIG", "CNAME",
                                                    "TYPE65534"]), max_size=4))))
        records.append(dns.rrset.from_text(owner, 300, IN, "NSEC3", text))
    return records


NAMES = st.one_of(
    st.sampled_from(["nope", "a.b.c", "*", "x.wild", "www", "", "insecure", "\\000.\\255"]),
    st.lists(st.text("abz*-", min_size=1, max_size=63), max_size=5).map(".".join))


def _qname(text: str, zone: dns.name.Name) -> dns.name.Name:
    try:
        return dns.name.from_text(text, zone) if text else zone
    except dns.exception.DNSException:
        return zone


@SLOW
@given(st.data())
def test_denial_proofs_on_mutated_and_random_records(data):
    zone, rrsets = data.draw(st.sampled_from(DENIALS))
    if data.draw(st.booleans()):
        rrsets = [_mutate_rrset(r, data) if data.draw(st.booleans()) else r for r in rrsets]
    else:
        rrsets = data.draw(nsec3_chain(zone.name))
    qname = _qname(data.draw(NAMES), zone.name)
    qtype = data.draw(st.sampled_from([1, 2, 6, 28, 43, 48, 65534]))
    limits = Limits(nsec3_max_iterations=data.draw(st.sampled_from([0, 50, 150])))
    budget = Budget(limits)
    config = ValidatorConfig(limits=limits)
    for prove in (lambda: denial.prove_nxdomain(qname, rrsets, config=config, budget=budget),
                  lambda: denial.prove_nodata(qname, qtype, rrsets, config=config, budget=budget),
                  lambda: denial.prove_wildcard_nodata(qname, qtype, rrsets, config=config,
                                                       budget=budget),
                  lambda: denial.prove_wildcard_answer(qname, dns.name.from_text("*", zone.name),
                                                       rrsets, config=config, budget=budget),
                  lambda: denial.prove_no_ds(qname, rrsets, config=config, budget=budget)):
        result = prove()
        assert result.verdict in (Verdict.SECURE, Verdict.BOGUS, Verdict.INSECURE)
        if result.kind == "nsec3" and all(rd.iterations > limits.nsec3_max_iterations
                                          for r in rrsets for rd in r):
            assert result.verdict is not Verdict.SECURE  # RFC 9276 §3.2


# --- the server front end (resolver/frontend/) -----------------------------------------------------

@pytest.mark.parametrize("rcode", [dns.rcode.FORMERR, dns.rcode.SERVFAIL])
@FAST
@given(mutated(tree.seed_queries()))
def test_header_only_reply_for_any_bytes(rcode, wire):
    reply = header_only(wire, rcode)
    if len(wire) < 12 or wire[2] & 0x80:
        assert reply is None
        return
    message = dns.message.from_wire(reply)
    assert message.id == int.from_bytes(wire[:2], "big") and message.flags & dns.flags.QR
    assert message.rcode() == rcode and message.opcode() == (wire[2] >> 3) & 0xF
    assert not (message.question or message.answer or message.authority or message.additional)


def _expected_malformed(wire: bytes) -> str | None:
    """What the front end must do with a client packet, by dnspython's reading of it: "formerr"
    or "dropped" for a malformed one, None for a query it serves (RFC 1035 §4.1.1)."""
    message = _dnspython(wire)
    if message is None:
        return "dropped" if len(wire) < 12 or wire[2] & 0x80 else "formerr"
    if message.flags & dns.flags.QR:
        return "dropped"
    if message.opcode() == dns.opcode.QUERY and len(message.question) != 1:
        return "formerr"
    return None


def _malformed_counts(metrics: Metrics, transport: str) -> dict[str, float]:
    return {action: metrics.registry.get_sample_value(
        "dnssec_sidecar_malformed_queries_total", {"transport": transport, "action": action})
        or 0.0 for action in ("formerr", "dropped")}


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def frontend():
    metrics = Metrics()
    return tree.frontend(metrics=metrics), metrics


@SLOW
@given(mutated(tree.seed_queries()), st.sampled_from(["udp", "tcp"]))
def test_front_end_answers_formerr_or_drops_and_counts(frontend, loop, wire, transport):
    front, metrics = frontend
    before = _malformed_counts(metrics, transport)
    endpoint, client = ("127.0.0.80", 53), ("127.0.0.1", 4242)
    reply = front.fast(wire, transport, endpoint, client)
    if reply is None:
        reply = loop.run_until_complete(asyncio.wait_for(
            front.handle(wire, transport, endpoint, client, 512 if transport == "udp" else None),
            10))
    after = _malformed_counts(metrics, transport)
    expected = _expected_malformed(wire)
    counted = {a: after[a] - before[a] for a in after}
    assert counted == {a: float(a == expected) for a in after}, (wire.hex(), reply)
    if expected == "dropped":
        assert reply is None
        return
    response = dns.message.from_wire(reply)
    assert response.id == int.from_bytes(wire[:2], "big") and response.flags & dns.flags.QR
    if expected == "formerr":
        assert response.rcode() == dns.rcode.FORMERR
    if transport == "udp":
        assert len(reply) <= 1232


TRUTH = {("www.rsasha256.example.", "A"), ("www.ecdsap256.example.", "AAAA"),
         ("www.ed448.test.", "TXT"), ("nope.rsasha512.test.", "A"), ("x.wild.ed25519.example.", "A"),
         ("www.ecdsap384.test.", "A"), ("cname.ecdsap256.example.", "A")}


@pytest.fixture(scope="module")
def truth(loop):
    """What the honest tree makes the resolver answer for TRUTH."""
    front = tree.frontend()
    out = {}
    for name, rdtype in sorted(TRUTH):
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        wire = loop.run_until_complete(front.handle(query.to_wire(), "tcp", ("127.0.0.80", 53),
                                                    ("127.0.0.1", 1), None))
        response = dns.message.from_wire(wire)
        assert response.flags & dns.flags.AD
        out[name, rdtype] = response
    return out


@settings(SLOW, max_examples=25)
@given(st.randoms(use_true_random=False), st.sampled_from(sorted(TRUTH)))
def test_hostile_upstream_never_gets_forged_data_through(loop, truth, rnd, question):
    """Every upstream reply mutated on its way (a third of them): the resolver never raises,
    and whatever it marks AD is exactly what the honest tree gives."""
    seeds = tree.seed_messages()
    front = tree.frontend(tamper=lambda w: mutate.mutate(w, rnd.randrange, seeds)
                          if rnd.random() < 0.35 else w)
    query = dns.message.make_query(*question, want_dnssec=True)
    wire = loop.run_until_complete(asyncio.wait_for(front.handle(
        query.to_wire(), "tcp", ("127.0.0.80", 53), ("127.0.0.1", 1), None), 20))
    response = dns.message.from_wire(wire)
    if response.rcode() == dns.rcode.SERVFAIL:
        return
    honest = truth[question]  # signed zones: anything but SERVFAIL must be the proven truth
    assert response.flags & dns.flags.AD and response.rcode() == honest.rcode()
    assert sorted(map(_canonical, response.answer)) == sorted(map(_canonical, honest.answer))


# --- a real server under a spray (end to end) ----------------------------------------------------

SPRAY_ADDRESS = "127.0.0.80"
SPRAY_UDP = 1500
SPRAY_TCP = 600


def _spray_packets(count: int, seed: int) -> list[bytes]:
    """Mutated client messages, bounded, that are malformed or ask for names the tree answers
    at once (names whose resolution waits on unreachable servers are left out)."""
    rnd = random.Random(seed)
    queries, seeds, out = tree.seed_queries(), tree.seed_messages(), []
    while len(out) < count:
        wire = mutate.mutate(rnd.choice(queries), rnd.randrange, seeds)
        message = _dnspython(wire)
        if message is not None and message.question and not str(message.question[0].name) \
                .endswith(tuple(f"{z}." for z in ("rsasha256.example", "ecdsap256.example"))):
            continue
        out.append(wire)
    return out


def _scrape(address: str) -> dict:
    text = urllib.request.urlopen(f"http://{address}:9153/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _spray_udp(packets: list[bytes]) -> dict[str, int]:
    sent = {"formerr": 0, "dropped": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((SPRAY_ADDRESS, 53))
        for wire in packets:
            expected = _expected_malformed(wire)
            sock.send(wire)
            if expected is not None:
                sent[expected] += 1
            if expected == "dropped":
                continue
            sock.settimeout(10)
            while True:  # a late reply to an earlier packet has another ID
                reply = sock.recv(65535)
                if reply[:2] == wire[:2] or len(wire) < 2:
                    break
            if expected == "formerr":
                assert reply[3] & 0x0F == dns.rcode.FORMERR
    return sent


def _spray_tcp(packets: list[bytes]) -> dict[str, int]:
    """Several framed messages per connection; a reply is awaited for each one that gets one."""
    sent = {"formerr": 0, "dropped": 0}
    for start in range(0, len(packets), 50):
        with socket.create_connection((SPRAY_ADDRESS, 53), timeout=10) as sock:
            stream = sock.makefile("rb")
            for wire in packets[start:start + 50]:
                expected = _expected_malformed(wire)
                sock.sendall(struct.pack("!H", len(wire)) + wire)
                if expected is not None:
                    sent[expected] += 1
                if expected == "dropped":
                    continue
                length, = struct.unpack("!H", stream.read(2))
                reply = stream.read(length)
                assert reply[:2] == wire[:2]
                if expected == "formerr":
                    assert reply[3] & 0x0F == dns.rcode.FORMERR
        # a half-sent frame, then the connection goes away: not a message, not counted
        with socket.create_connection((SPRAY_ADDRESS, 53), timeout=10) as sock:
            sock.sendall(b"\x01\x00\x12\x34\x01")
    return sent


def test_server_keeps_serving_under_a_spray_of_malformed_packets(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(tree.config_text(f"{SPRAY_ADDRESS}:53",
                                       f'metrics: {{listen: "{SPRAY_ADDRESS}:9153"}}\n'))
    with authority.start_tree() as running:
        process = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                    str(config)], cwd=ROOT_DIR, stderr=subprocess.PIPE,
                                   text=True)
        try:
            for _ in range(1200):  # bounded wait for the listener (60 s)
                try:
                    socket.create_connection((SPRAY_ADDRESS, 53), timeout=0.2).close()
                    break
                except OSError:
                    assert process.poll() is None, process.stderr.read()
                    time.sleep(0.05)
            udp = _spray_udp(_spray_packets(SPRAY_UDP, 1))
            tcp = _spray_tcp(_spray_packets(SPRAY_TCP, 2))
            good = dns.query.udp(dns.message.make_query("www.ed448.test.", "A",
                                                        want_dnssec=True),
                                 SPRAY_ADDRESS, timeout=5)
            assert good.rcode() == dns.rcode.NOERROR and good.flags & dns.flags.AD
            metrics = _scrape(SPRAY_ADDRESS)
            for transport, sent in (("udp", udp), ("tcp", tcp)):
                for action, count in sent.items():
                    key = ("dnssec_sidecar_malformed_queries_total",
                           (("action", action), ("transport", transport)))
                    assert metrics.get(key, 0.0) == count, (transport, action, sent)
            assert udp["formerr"] > 100 and udp["dropped"] > 10 and tcp["formerr"] > 50
        finally:
            process.terminate()
            stderr = process.communicate(timeout=15)[1]
        assert not running.errors, running.errors
    assert "Traceback" not in stderr, stderr[-3000:]


# --- atheris harnesses (fuzz/) -------------------------------------------------------------------

HARNESSES = sorted(p.name for p in (ROOT_DIR / "fuzz").glob("fuzz_*.py"))
FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "8"))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed: the test extra installs it only on "
                           "x86_64 Linux, where it has wheels")
@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_harness_runs_clean(harness, tmp_path):
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, "-m", "fuzz.corpus", str(corpus), "--limit", "150"],
                   cwd=ROOT_DIR, check=True, capture_output=True)
    run = subprocess.run([sys.executable, f"fuzz/{harness}", str(corpus),
                          f"-max_total_time={FUZZ_SECONDS}", "-rss_limit_mb=2048",
                          f"-artifact_prefix={tmp_path}/"],
                         cwd=ROOT_DIR, capture_output=True, text=True,
                         timeout=FUZZ_SECONDS + 120, env=dict(os.environ, PYTHONPATH="."))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done" in run.stderr and "#" in run.stderr
