"""Aggressive use of the validated cache (RFC 8198; resolver.resolve.negative): after one
proven NXDOMAIN, NODATA or wildcard answer, other names the kept NSEC or NSEC3 records cover
are answered with no upstream query (the test authorities count them), with the proof a
server would send; never from an opt-out span, an expired signature, NSEC3 iterations over
the cap, below a DNAME, nor from a record that was not validated.

The iterator runs in this process against the test tree (127.0.0.x port 53: run as root in a
private network namespace, like the end-to-end tests).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import urllib.request

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from resolver.dnssec import Budget, Limits, ValidatorConfig, Verdict
from resolver.dnssec.anchors import RootHint, parse_trust_anchors
from resolver.dnssec.result import Answer, Proof
from resolver.resolve.cache import Cache
from resolver.resolve.iterator import Iterator, Settings
from resolver.resolve.negative import MAX_RECORDS_PER_ZONE, Ranges
from tests import test_resolver
from tests.testtree import EXPIRATION_EPOCH, NOW, authority, zonedata

A, TXT, MX, NSEC, NSEC3, RRSIG, SOA = (dns.rdatatype.A, dns.rdatatype.TXT, dns.rdatatype.MX,
                                       dns.rdatatype.NSEC, dns.rdatatype.NSEC3,
                                       dns.rdatatype.RRSIG, dns.rdatatype.SOA)


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


class Clock:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _iterator(*, aggressive: bool = True, iterations: int | None = None) -> Iterator:
    (hint_name, hint_address), = zonedata.manifest()["root_hints"].items()
    validator = ValidatorConfig() if iterations is None else \
        ValidatorConfig(limits=Limits(nsec3_max_iterations=iterations))
    settings = Settings(root_hints=(RootHint(dns.name.from_text(hint_name), (hint_address,)),),
                        trust_anchors=parse_trust_anchors(authority.trust_anchor_lines()),
                        validation_time=NOW, validator=validator)
    return Iterator(settings, Cache(clock=Clock(), aggressive_nsec=aggressive))


def _resolve(iterator: Iterator, name: str, qtype: int = A) -> Answer:
    async def run():
        return await iterator.chase(dns.name.from_text(name), qtype, iterator.new_context())
    return asyncio.run(run())


def _random_names(zone: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz0123456789', k=10))}.{zone}"
            for _ in range(count)]


def _asked(tree, zone: str, names: list[str]) -> int:
    return sum(len(tree.queried(name, server=zone)) for name in names)


@pytest.mark.parametrize("zone", ["rsasha256.example.", "ed448.test.",  # NSEC
                                  "rsasha512.test.", "ed25519.example."])  # NSEC3
def test_random_names_in_a_proven_range_cost_no_upstream_query(tree, zone):
    iterator = _iterator()
    warm = _random_names(zone, 60, seed=1)
    for name in warm:  # learn the zone's ranges: a few dozen names cover it all
        assert _resolve(iterator, name).rcode == dns.rcode.NXDOMAIN
    tree.clear()
    names = _random_names(zone, 200, seed=2)
    synthesised = []
    for name in names:
        answer = _resolve(iterator, name)
        assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.SECURE
        if answer.proof.synthesised:
            synthesised.append(answer)
    asked = _asked(tree, zone, names)
    assert asked <= 20, f"{asked} upstream queries for 200 names after the ranges were learned"
    assert len(synthesised) + asked >= 200
    answer = synthesised[-1]
    # What a server would send: SOA, the denial records, each with its RRSIGs.
    types = {(r.rdtype, r.covers) for r in answer.authority}
    denial = NSEC if zonedata.entry(zone)["denial"] == "nsec" else NSEC3
    assert {(SOA, 0), (RRSIG, SOA), (denial, 0), (RRSIG, denial)} <= types
    assert {s[1] for s in answer.proof.signatures} >= {"SOA", dns.rdatatype.to_text(denial)}
    assert 0 < answer.ttl <= 3600  # the SOA's MINIMUM caps it (RFC 9077)


@pytest.mark.parametrize("zone", ["rsasha256.example.", "rsasha512.test."])
def test_off_asks_upstream_for_every_name(tree, zone):
    iterator = _iterator(aggressive=False)
    for name in _random_names(zone, 30, seed=1):
        _resolve(iterator, name)
    tree.clear()
    names = _random_names(zone, 20, seed=3)
    for name in names:
        assert not _resolve(iterator, name).proof.synthesised
    assert _asked(tree, zone, names) >= 20


def test_the_first_name_is_asked_and_the_next_covered_one_is_not(tree):
    """One NXDOMAIN's NSEC (www.ed448.test. to the next name) covers its neighbours."""
    iterator = _iterator()
    zone = zonedata.load("ed448.test.")
    first = dns.name.from_text("wwa.ed448.test.")
    owner, _ = zone.nsec_covering(first)
    tree.clear()
    assert _resolve(iterator, first.to_text()).rcode == dns.rcode.NXDOMAIN
    assert tree.queried(first, server="ed448.test.")
    neighbour = "wwb.ed448.test."
    assert zone.nsec_covering(dns.name.from_text(neighbour))[0] == owner
    answer = _resolve(iterator, neighbour)
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.SECURE
    assert not tree.queried(neighbour)
    assert answer.proof.synthesised[0].endswith(" NSEC") and answer.proof.denial == "nsec"


@pytest.mark.parametrize("zone", ["rsasha256.example.", "ecdsap384.test."])
def test_nodata_from_the_kept_record_of_a_name(tree, zone):
    """www has A and AAAA only: after its NODATA for TXT, its MX NODATA needs no query."""
    iterator = _iterator()
    www = f"www.{zone}"
    assert _resolve(iterator, www, TXT).rcode == dns.rcode.NOERROR
    tree.clear()
    answer = _resolve(iterator, www, MX)
    assert answer.rcode == dns.rcode.NOERROR and not answer.rrsets
    assert answer.verdict is Verdict.SECURE and answer.proof.synthesised
    assert not tree.queried(www, "MX")


def test_nodata_for_an_empty_non_terminal_not_nxdomain(tree):
    """c.<zone> is an empty non-terminal (a.b.c exists): its NSEC proves NODATA, never
    NXDOMAIN (RFC 8198 §5.1 with RFC 4035 §3.1.3.1)."""
    iterator = _iterator()
    zone = "rsasha256.example."
    assert _resolve(iterator, f"b.c.{zone}", TXT).rcode == dns.rcode.NOERROR
    tree.clear()
    answer = _resolve(iterator, f"c.{zone}", TXT)
    assert answer.rcode == dns.rcode.NOERROR and not answer.rrsets
    assert answer.proof.synthesised and not tree.queried(f"c.{zone}")


@pytest.mark.parametrize("zone", ["rsasha256.example.", "ed448.test.", "rsasha512.test."])
def test_wildcard_answers_synthesised_with_the_wildcards_signed_data(tree, zone):
    iterator = _iterator()
    first = _resolve(iterator, f"one.wild.{zone}")
    assert first.verdict is Verdict.SECURE and first.rrsets and not first.proof.synthesised
    for name in _random_names(f"wild.{zone}", 40, seed=5):  # learn the wildcard's spans
        _resolve(iterator, name)
    tree.clear()
    names = _random_names(f"wild.{zone}", 40, seed=6)
    synthesised = 0
    for name in names:
        answer = _resolve(iterator, name)
        assert answer.rcode == dns.rcode.NOERROR and answer.verdict is Verdict.SECURE
        data = next(r for r in answer.rrsets if r.rdtype == A)
        assert data.name == dns.name.from_text(name)
        sigs = next(r for r in answer.rrsets if r.rdtype == RRSIG)
        assert sigs.name == data.name and sigs[0].labels == len(dns.name.from_text(zone))
        if answer.proof.synthesised:
            synthesised += 1
            assert any(r.rdtype in (NSEC, NSEC3) for r in answer.authority)
    assert synthesised >= 30 and _asked(tree, zone, names) <= 10


def test_a_synthesised_wildcard_answer_validates_again():
    """The expanded data and its RRSIG, renamed to the query name, verify with the zone's
    keys: what a validating client behind us checks."""
    from resolver.dnssec import validate_rrset
    zone = zonedata.load("rsasha256.example.")
    data, sigs = zone.pair("*.wild.rsasha256.example.", "A")
    name = dns.name.from_text("x.wild.rsasha256.example.")
    expanded = dns.rrset.from_rdata_list(name, data.ttl, list(data))
    expanded_sigs = dns.rrset.from_rdata_list(name, sigs.ttl, list(sigs))
    result = validate_rrset(expanded, expanded_sigs, zone.dnskeys(), now=NOW)
    assert result.secure


def test_an_opt_out_span_never_answers(tree):
    """test. is NSEC3 with opt-out: its NXDOMAIN proofs are only Insecure, kept nowhere;
    and even its records kept from a Secure answer prove nothing in an opt-out span."""
    iterator = _iterator()
    names = _random_names("test.", 10, seed=7)
    for name in names:
        answer = _resolve(iterator, name)
        assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.INSECURE
    tree.clear()
    names = _random_names("test.", 10, seed=70)
    for name in names:
        assert not _resolve(iterator, name).proof.synthesised
    assert _asked(tree, "test.", names) >= len(names)
    # Every NSEC3 record of test., kept as though validated: still no answer from them.
    ranges = _ranges_of("test.")
    for name in _random_names("test.", 20, seed=8):
        assert ranges.answer(dns.name.from_text(name), A, NOW, ValidatorConfig(),
                             Budget()) is None


def _ranges_of(zone_name: str, clock=None) -> Ranges:
    """Ranges holding every NSEC or NSEC3 record of a zone of the tree, with its SOA, as a
    Secure negative answer would bring them."""
    zone = zonedata.load(zone_name)
    kind = NSEC if zone.denial == "nsec" else NSEC3
    pairs = [zone.pair(zone_name, "SOA")] + [p for p in zone.signed_rrsets()
                                              if p[0].rdtype == kind]
    authority = [r for pair in pairs for r in pair]
    signatures = [(str(r.name), dns.rdatatype.to_text(r.rdtype), zone_name, s[0].key_tag,
                   s[0].algorithm, s[0].inception, s[0].expiration) for r, s in pairs]
    ranges = Ranges(clock or Clock())
    proof = Proof(dns.name.from_text(zone_name), [".", zone_name], signatures,
                  "nsec3" if kind == NSEC3 else "nsec")
    ranges.learn(dns.name.from_text(f"nope.{zone_name}"),
                 Answer(dns.rcode.NXDOMAIN, Verdict.SECURE, [], authority, proof=proof,
                        ttl=3600), 3600)
    return ranges


def test_expired_signatures_and_ttls_are_not_used():
    clock = Clock()
    ranges = _ranges_of("ed448.test.", clock)
    name = dns.name.from_text("nothere.ed448.test.")
    config = ValidatorConfig()
    assert ranges.answer(name, A, NOW, config, Budget()).rcode == dns.rcode.NXDOMAIN
    assert ranges.answer(name, A, EXPIRATION_EPOCH + 1, config, Budget()) is None  # RFC 4035 §5.3.1
    ranges = _ranges_of("ed448.test.", clock)
    clock.now += 100  # counted down like any cached answer
    assert ranges.answer(name, A, NOW, config, Budget()).ttl == 3500
    clock.now += 3501  # past the TTL
    assert ranges.answer(name, A, NOW, config, Budget()) is None


def test_a_negative_answers_ttl_is_capped_by_the_soa():
    """RFC 8198 §5.4, RFC 9077: never longer than the SOA's TTL and MINIMUM, even when the
    NSEC records were learned for longer (from a wildcard answer, say)."""
    ranges = _ranges_of("ed448.test.")
    zone = zonedata.load("ed448.test.")
    soa, sigs = zone.pair("ed448.test.", "SOA")
    evidence = ("ed448.test.", "SOA", "ed448.test.", sigs[0].key_tag, sigs[0].algorithm,
                sigs[0].inception, sigs[0].expiration)
    proof = Proof(dns.name.from_text("ed448.test."), [], [evidence], "nsec")
    ranges.learn(dns.name.from_text("other.ed448.test."),  # the SOA again, 600 s left
                 Answer(dns.rcode.NXDOMAIN, Verdict.SECURE, [], [soa, sigs], proof=proof,
                        ttl=600), 600)
    answer = ranges.answer(dns.name.from_text("nothere.ed448.test."), A, NOW,
                           ValidatorConfig(), Budget())
    assert answer.ttl == 600


def test_nsec3_iterations_over_the_cap_are_never_used(tree):
    """nsec3iter.test. uses 100 iterations: learned under a cap of 150, unused under 50."""
    iterator = _iterator(iterations=150)
    zone = "nsec3iter.test."
    for name in _random_names(zone, 30, seed=9):
        assert _resolve(iterator, name).verdict is Verdict.SECURE
    name = dns.name.from_text(_random_names(zone, 200, seed=10)[-1])
    cache = iterator.cache
    kept = [cache.ranges.answer(dns.name.from_text(n), A, NOW, iterator.s.validator, Budget())
            for n in _random_names(zone, 50, seed=10)]
    assert any(kept)  # proven under the cap it was learned with
    assert cache.ranges.answer(name, A, NOW, ValidatorConfig(), Budget()) is None


def test_nsec3_hashing_is_bounded_per_lookup():
    """A deep random name costs no NSEC3 hash at all; a shallow one a handful."""
    ranges = _ranges_of("rsasha512.test.")
    budget = Budget()
    deep = dns.name.from_text(".".join(["x"] * 20) + ".rsasha512.test.")
    assert ranges.answer(deep, A, NOW, ValidatorConfig(), budget) is None
    assert budget.nsec3_hashes == 0
    assert ranges.answer(dns.name.from_text("abc.rsasha512.test."), A, NOW, ValidatorConfig(),
                         budget).rcode == dns.rcode.NXDOMAIN
    assert 0 < budget.nsec3_hashes <= 4


def test_a_zone_keeps_a_bounded_number_of_records():
    zone = zonedata.load("rsasha256.example.")
    soa, soa_sigs = zone.pair("rsasha256.example.", "SOA")
    nsec_rrset, nsec_sigs = next(p for p in zone.signed_rrsets() if p[0].rdtype == NSEC)
    ranges = Ranges(Clock())
    for i in range(MAX_RECORDS_PER_ZONE + 50):
        owner = dns.name.from_text(f"n{i:05d}.rsasha256.example.")
        forged = dns.rrset.from_rdata_list(owner, 300, list(nsec_rrset))
        sigs = dns.rrset.from_rdata_list(owner, 300, list(nsec_sigs))
        sig = sigs[0]
        proof = Proof(dns.name.from_text("rsasha256.example."), [], [
            (str(owner), "NSEC", "rsasha256.example.", sig.key_tag, 8, sig.inception,
             sig.expiration)], "nsec")
        ranges.learn(owner, Answer(dns.rcode.NXDOMAIN, Verdict.SECURE, [],
                                   [soa, soa_sigs, forged, sigs], proof=proof, ttl=300), 300)
    assert len(ranges) == MAX_RECORDS_PER_ZONE


def test_an_unvalidated_record_is_never_kept():
    """Records without the evidence of a validated signature (an unsigned NSEC an attacker
    slipped in beside a proof) are not kept."""
    zone = zonedata.load("rsasha256.example.")
    soa, soa_sigs = zone.pair("rsasha256.example.", "SOA")
    nsec_rrset, nsec_sigs = next(p for p in zone.signed_rrsets() if p[0].rdtype == NSEC)
    ranges = Ranges(Clock())
    proof = Proof(dns.name.from_text("rsasha256.example."), [], [], "nsec")
    ranges.learn(dns.name.from_text("x.rsasha256.example."),
                 Answer(dns.rcode.NXDOMAIN, Verdict.SECURE, [], [soa, nsec_rrset], proof=proof,
                        ttl=300), 300)
    assert len(ranges) == 0


def test_nothing_below_a_dname(tree):
    """dname.ecdsap256.example. is a DNAME: its NSEC covers the names below it in canonical
    order, but proves nothing there (RFC 6672 §5.3.1, RFC 6840 §4.1); they are asked."""
    iterator = _iterator()
    zone = "ecdsap256.example."
    assert _resolve(iterator, f"dname.{zone}", TXT).rcode == dns.rcode.NOERROR
    for name in _random_names(zone, 40, seed=11):
        _resolve(iterator, name)
    tree.clear()
    answer = _resolve(iterator, f"www.dname.{zone}")
    assert not answer.proof.synthesised and answer.rcode == dns.rcode.NOERROR
    assert any(r.rdtype == dns.rdatatype.DNAME for r in answer.rrsets)
    assert tree.queried(f"www.dname.{zone}")


# --- through the real server: AD, the proof sent, policy first, the forensic record -------

ADDRESS, OPEN, NARROW = "127.0.0.14", "127.0.0.98", "127.0.0.99"  # the sidecar; two clients


@pytest.fixture(scope="module")
def sidecar(tree, tmp_path_factory):
    directory = tmp_path_factory.mktemp("aggressive")
    log_path = directory / "lookups.jsonl"
    process = test_resolver._start(ADDRESS, directory, (
        f"log: {{path: {log_path}, fsync_interval_ms: 0}}\n"
        "services:\n"
        f'  - {{name: open, clients: ["{OPEN}/32"], allow: [{{zone: ed448.test.}}]}}\n'
        f'  - {{name: narrow, clients: ["{NARROW}/32"], allow: [{{zone: www.ed448.test.}}]}}\n'))
    yield {"process": process, "log": log_path}
    if process.poll() is None:
        test_resolver._stop(process)


def _ask(client: str, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.query.tcp(query, ADDRESS, port=53, timeout=8, source=client)


def test_a_synthesised_answer_is_a_dnssec_answer_logged_as_such(tree, sidecar):
    for name in _random_names("ed448.test.", 40, seed=12):
        assert _ask(OPEN, name).rcode() == dns.rcode.NXDOMAIN
    tree.clear()
    names = _random_names("ed448.test.", 20, seed=13)
    responses = {name: _ask(OPEN, name) for name in names}
    quiet = [n for n in names if not tree.queried(n)]
    assert len(quiet) >= 15
    response = responses[quiet[0]]
    assert response.rcode() == dns.rcode.NXDOMAIN and response.flags & dns.flags.AD
    types = {(r.rdtype, r.covers) for r in response.authority}
    assert {(SOA, 0), (RRSIG, SOA), (NSEC, 0), (RRSIG, NSEC)} <= types
    # policy first: the narrow service may not ask for these names, whatever the cache holds
    refused = _ask(NARROW, quiet[1])
    assert refused.rcode() == dns.rcode.REFUSED
    metrics = urllib.request.urlopen(f"http://{ADDRESS}:9153/metrics", timeout=8).read().decode()
    answered = re.search(r"^dnssec_sidecar_aggressive_nsec_answers_total (\S+)$", metrics, re.M)
    assert answered and float(answered.group(1)) >= len(quiet)
    sidecar["process"].send_signal(signal.SIGTERM)  # flushes the log
    sidecar["process"].wait(timeout=10)
    records = [json.loads(line) for line in sidecar["log"].read_text().splitlines()]
    record = next(r for r in records if r["qname"] == quiet[0])
    assert record["cache_hit"] is True and record["upstream"] == []
    assert record["verdict"] == "secure" and record["proof"]["denial"] == "nsec"
    assert record["proof"]["synthesised"] and \
        all(s.endswith(" NSEC") for s in record["proof"]["synthesised"])
    assert {s["type"] for s in record["proof"]["signatures"]} >= {"SOA", "NSEC"}
    fetched = next(r for r in records if r["qname"] == _random_names("ed448.test.", 1, 12)[0])
    assert fetched["proof"]["synthesised"] == [] and fetched["upstream"]
    narrow = next(r for r in records if r["qname"] == quiet[1] and r["service"] == "narrow")
    assert narrow["policy"]["decision"] == "refuse" and narrow["proof"] is None


@pytest.mark.parametrize("zone", ["rsasha256.example.", "ecdsap384.test."])
def test_nodata_from_a_wildcard_without_the_type(tree, zone):
    """*.wild has A and TXT: after one wildcard NODATA for MX, other names below wild get
    theirs from the kept records (RFC 4035 §3.1.3.4, RFC 5155 §8.7)."""
    iterator = _iterator()
    for name in _random_names(f"wild.{zone}", 30, seed=14):
        answer = _resolve(iterator, name, MX)
        assert answer.rcode == dns.rcode.NOERROR and not answer.rrsets
    tree.clear()
    names = _random_names(f"wild.{zone}", 30, seed=15)
    synthesised = sum(bool(_resolve(iterator, name, MX).proof.synthesised) for name in names)
    assert synthesised >= 20 and _asked(tree, zone, names) <= 10


def test_an_empty_non_terminal_is_never_a_name_error():
    """The NSEC before c.<zone> (an empty non-terminal: a.b.c exists) covers it; as a name
    error proof it is Bogus (RFC 4035 §3.1.3.2 needs the name not to exist at all)."""
    from resolver.dnssec import nsec
    zone = zonedata.load("rsasha256.example.")
    ent = dns.name.from_text("c.rsasha256.example.")
    proof = [r for r in zone.nsec_covering(ent) if r is not None]
    assert not nsec.prove_nxdomain(ent, proof).secure
    assert nsec.prove_nodata(ent, TXT, proof).secure
