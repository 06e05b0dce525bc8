"""Issue #15: an on-path attacker without the zones' keys cannot make a name of a signed zone
resolve to its data, Insecure or otherwise, and leaves no bad state behind. The iterator runs
in-process over the test tree served from memory (tests/testtree/memory.py), with chosen
replies rewritten; no socket is opened.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.frontend.admission import Admission
from resolver.resolve.cache import Cache
from resolver.config import Endpoint, Forward
from resolver.dnssec import Verdict
from resolver.dnssec.chain import MAX_CUT_PROBES
from resolver.ede import EDE
from resolver.resolve.iterator import Iterator, ResolutionFailed
from resolver.frontend.pipeline import Frontend
from resolver.frontend.resolution import Resolver
from tests.testtree import authority, memory, zonedata

ATTACKER = "127.0.0.99"  # the forged NS's glue: a server of the attacker's
EVIL = "198.51.100.66"
ZONE = dns.name.from_text("rsasha256.example.")
ZONE_SERVER = "127.0.0.20"
WWW = dns.name.from_text("www.rsasha256.example.")
A = dns.rdatatype.A
N = dns.name.from_text


def _attacker(query: dns.message.Message) -> dns.message.Message:
    """The attacker's own server: authoritative, unsigned, EVIL for every A."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    q = query.question[0]
    if q.rdtype == A:
        response.answer.append(dns.rrset.from_text(q.name, 300, "IN", "A", EVIL))
    return response


def _run(iterator: Iterator, name: dns.name.Name | str, rdtype: int = A):
    name = dns.name.from_text(name) if isinstance(name, str) else name
    return asyncio.run(iterator.chase(name, rdtype, iterator.new_context()))


def _addresses(answer) -> set[str]:
    return {rd.address for r in answer.rrsets if r.rdtype == A for rd in r}


def _honest_afterwards(iterator: Iterator, upstream: memory.Upstream) -> None:
    """Once the attacker stops, the same iterator (its caches kept) answers the name Secure."""
    upstream.tamper = None
    answer = _run(iterator, WWW)
    assert answer.verdict is Verdict.SECURE and _addresses(answer) == {"192.0.2.20"}


def _forged_referral(cut: dns.name.Name):
    """Rewrites the zone server's replies for names at or below ``cut`` (DS queries aside,
    which the attacker lets through) into a referral to ``cut`` served by the attacker."""
    ns_name = dns.name.from_text("ns", origin=cut)

    def tamper(host, query, response):
        q = query.question[0]
        if host != ZONE_SERVER or not q.name.is_subdomain(cut) or q.rdtype == dns.rdatatype.DS:
            return response
        forged = dns.message.make_response(query)
        forged.use_edns(0, dns.flags.DO, 1232)
        forged.authority.append(dns.rrset.from_text(cut, 300, "IN", "NS", ns_name.to_text()))
        forged.additional.append(dns.rrset.from_text(ns_name, 300, "IN", "A", ATTACKER))
        return forged
    return tamper


@pytest.mark.parametrize("cut", ["www.rsasha256.example.", "x.www.rsasha256.example."],
                         ids=["at-existing-name", "below-existing-name"])
def test_forged_referral_is_bogus_not_an_insecure_cut(cut):
    """Finding 1: the parent's signed NSEC for www lists no NS: the referral is contradicted
    (RFC 4035 §5.2), never a proof that the forged child is unsigned."""
    cut = dns.name.from_text(cut)
    name = dns.name.from_text("x.www.rsasha256.example.") if len(cut) > len(WWW) else WWW
    upstream = memory.Upstream(_forged_referral(cut), {ATTACKER: _attacker})
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, name)
    assert failure.value.ede == EDE.DNSSEC_BOGUS
    assert failure.value.reason.startswith(f"zone {ZONE}: ") and str(cut) in failure.value.reason
    assert not any(host == ATTACKER for host, *_ in upstream.asked)
    _honest_afterwards(iterator, upstream)


def test_forged_signer_is_bogus_not_a_new_zone():
    """Finding 2: a forged answer whose RRSIG names the owner itself as signer is no zone cut
    of its own: the parent proves there is none there."""
    def tamper(host, query, response):
        q = query.question[0]
        if host != ZONE_SERVER or q.name != WWW or q.rdtype != A:
            return response
        (sig,) = [r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG]
        forged_sig = dns.rrset.RRset(WWW, dns.rdataclass.IN, dns.rdatatype.RRSIG, A)
        forged_sig.add(sig[0].replace(signer=WWW), sig.ttl)
        response.answer = [dns.rrset.from_text(WWW, 300, "IN", "A", EVIL), forged_sig]
        return response

    upstream = memory.Upstream(tamper)
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, WWW)
    assert failure.value.ede == EDE.DNSSEC_BOGUS
    _honest_afterwards(iterator, upstream)


def test_cached_nodata_for_cname_does_not_hide_other_types():
    """Finding 3: www has no CNAME (a proven NODATA, cached); its A is still answered."""
    iterator = Iterator(memory.settings(), Cache(), exchange=memory.Upstream())
    nodata = _run(iterator, WWW, dns.rdatatype.CNAME)
    assert nodata.rcode == dns.rcode.NOERROR and not nodata.rrsets
    answer = _run(iterator, WWW)
    assert answer.verdict is Verdict.SECURE and _addresses(answer) == {"192.0.2.20"}


def _sharing(upstream: memory.Upstream, address: str, *zones: str) -> None:
    """``address`` serves ``zones`` together, as one server authoritative for several."""
    upstream.responders[address] = authority.Responder([zonedata.load(z) for z in zones])


def test_cname_into_another_zone_on_the_same_server():
    """Finding 4: the server follows the DNAME's CNAME into ed25519.example., which it also
    serves, and adds that zone's NXDOMAIN proof: each part is judged in its own zone, with
    that zone's chain of trust, never with the first zone's keys."""
    upstream = memory.Upstream()
    _sharing(upstream, "127.0.0.22", "ecdsap256.example.", "ed25519.example.")
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    answer = _run(iterator, "nope.dname.ecdsap256.example.")
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.SECURE
    assert answer.proof.denial == "nsec3"
    owners = {(r.name.to_text(), r.rdtype) for r in answer.rrsets}
    assert ("dname.ecdsap256.example.", dns.rdatatype.DNAME) in owners
    assert ("nope.dname.ecdsap256.example.", dns.rdatatype.CNAME) in owners


def test_insecure_negative_answer_keeps_only_its_own_zones_soa():
    """Finding 6: an unsigned zone's NXDOMAIN carrying an ancestor zone's SOA (here the
    root's, added by the attacker) passes no SOA of another zone to the client."""
    root = zonedata.load(".")

    def tamper(host, query, response):
        if response.rcode() == dns.rcode.NXDOMAIN and host == "127.0.0.30":
            response.authority = [root.rrset(".", "SOA")]
        return response

    iterator = Iterator(memory.settings(), Cache(), exchange=memory.Upstream(tamper))
    answer = _run(iterator, "nope.insecure.example.")
    assert answer.rcode == dns.rcode.NXDOMAIN and answer.verdict is Verdict.INSECURE
    assert not [r for r in answer.authority if r.rdtype == dns.rdatatype.SOA]


def _ds_asked(upstream: memory.Upstream) -> list[str]:
    return [qname for _, qname, qtype in upstream.asked if qtype == "DS"]


def test_unsigned_child_on_the_parents_server_is_found_by_its_ds():
    """The parent's server also serves its unsigned child and answers www of the child with
    no referral: the cut is found by asking DS (RFC 4035 §5.2), proven by the parent's
    signed NSEC with NS and no DS, so the data is Insecure, not judged with the parent's
    keys; the cut is remembered, so the next name of the child needs no DS question."""
    upstream = memory.Upstream()
    _sharing(upstream, ZONE_SERVER, "rsasha256.example.", "insecure.rsasha256.example.")
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    answer = _run(iterator, "www.insecure.rsasha256.example.")
    assert answer.verdict is Verdict.INSECURE and _addresses(answer) == {"192.0.2.32"}
    assert _ds_asked(upstream) == ["insecure.rsasha256.example."]
    nope = _run(iterator, "nope.insecure.rsasha256.example.")
    assert nope.rcode == dns.rcode.NXDOMAIN and nope.verdict is Verdict.INSECURE
    assert _ds_asked(upstream) == ["insecure.rsasha256.example."]
    assert _run(iterator, WWW).verdict is Verdict.SECURE


def _unsigned_forgery(name: dns.name.Name, deny_ds: bool = False):
    """The attacker answers ``name`` A with EVIL and no RRSIG; with ``deny_ds``, every DS
    question is answered NODATA without proof."""
    def tamper(host, query, response):
        q = query.question[0]
        if q.name == name and q.rdtype == A:
            response.set_rcode(dns.rcode.NOERROR)
            response.answer = [dns.rrset.from_text(name, 300, "IN", "A", EVIL)]
            response.authority = []
        elif deny_ds and q.rdtype == dns.rdatatype.DS:
            response.set_rcode(dns.rcode.NOERROR)
            response.answer, response.authority = [], []
        return response
    return tamper


def test_unsigned_data_in_a_signed_zone_stays_bogus_when_no_cut_is_proven():
    """Looking for a cut never accepts "unsigned" without the parent's proof: www of the
    signed zone, its RRSIGs stripped, is asked DS once (the parent's NSEC shows no NS there)
    and stays Bogus; no zone is learned at www."""
    upstream = memory.Upstream(_unsigned_forgery(WWW))
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, WWW)
    assert failure.value.ede == EDE.RRSIGS_MISSING and str(ZONE) in failure.value.reason
    assert _ds_asked(upstream) == [str(WWW)] and WWW not in iterator.zones
    _honest_afterwards(iterator, upstream)


def test_looking_for_a_cut_is_bounded_and_counted():
    """A forged unsigned answer 12 labels below the zone, every DS question denied without
    proof: at most MAX_CUT_PROBES DS questions, each spent from the query's upstream budget,
    and the answer is Bogus."""
    deep = dns.name.from_text("a." * 12 + str(ZONE))
    upstream = memory.Upstream(_unsigned_forgery(deep, deny_ds=True))
    iterator = Iterator(memory.settings(qname_minimisation=False), Cache(), exchange=upstream)
    _run(iterator, WWW)  # the zone's chain of trust, already established
    upstream.asked.clear()
    ctx = iterator.new_context()
    with pytest.raises(ResolutionFailed) as failure:
        asyncio.run(iterator.chase(deep, A, ctx))
    assert failure.value.ede == EDE.RRSIGS_MISSING
    assert len(_ds_asked(upstream)) == MAX_CUT_PROBES and ctx.queries == 1 + MAX_CUT_PROBES


def test_island_of_security_does_not_ask_the_root_for_keys():
    """Finding 6: with a trust anchor for rsasha256.example. only, the zones above it are
    insecure and their DNSKEY sets are never asked for; the island itself is Secure."""
    anchor = zonedata.load("rsasha256.example.").ds()
    upstream = memory.Upstream()
    iterator = Iterator(memory.settings(trust_anchors=[anchor]), Cache(), exchange=upstream)
    answer = _run(iterator, WWW)
    assert answer.verdict is Verdict.SECURE and _addresses(answer) == {"192.0.2.20"}
    keys_asked = {qname for _, qname, qtype in upstream.asked if qtype == "DNSKEY"}
    assert keys_asked == {"rsasha256.example."}
    outside = _run(iterator, "www.ecdsap256.example.")
    assert outside.verdict is Verdict.INSECURE


def test_island_of_security_behind_a_forwarder():
    """Finding 6: a forwarded zone with its own trust anchor and none for the root is
    validated from that anchor (RFC 4035 §4.4), not judged insecure from an unanchored root,
    and nothing above the island is asked for."""
    anchor = zonedata.load("rsasha256.example.").ds()
    forward = (Forward(ZONE, (Endpoint(authority.FORWARDER, 53),)),)
    upstream = memory.Upstream()
    iterator = Iterator(memory.settings(trust_anchors=[anchor], forward=forward), Cache(),
                        exchange=upstream)
    answer = _run(iterator, WWW)
    assert answer.verdict is Verdict.SECURE and _addresses(answer) == {"192.0.2.20"}
    assert {qname for _, qname, _ in upstream.asked} <= {"rsasha256.example.", str(WWW)}


def test_chain_of_trust_tables_stay_within_max_zones():
    """Issue #14 §5: the tables keyed by zone names a query stream chooses (zone cuts, the
    security of forwarded zones, the key tags seen) hold at most ``max_zones`` entries."""
    forward = (Forward(dns.name.root, (Endpoint(authority.FORWARDER, 53),)),)
    iterator = Iterator(memory.settings(forward=forward, max_zones=3), Cache(),
                        exchange=memory.Upstream())
    for zone in zonedata.zone_names("child"):
        answer = _run(iterator, f"www.{zone}")
        assert answer.verdict is Verdict.SECURE
    assert len(zonedata.zone_names("child")) > 3
    assert len(iterator.trust.secured) <= 3 and len(iterator.trust.key_tags) <= 3
    assert len(iterator.zones) <= 3


def _client(frontend: Frontend, name: dns.name.Name, rdtype: int) -> dns.message.Message:
    """One client query with DO, the hit path first and then the full path, as served."""
    wire = dns.message.make_query(name, rdtype, want_dnssec=True).to_wire()
    listener, client = ("127.0.0.1", 53), ("127.0.0.2", 5353)
    reply = frontend.fast(wire, "udp", listener, client)
    if reply is None:
        reply = asyncio.run(frontend.handle(wire, "udp", listener, client, 1232))
    return dns.message.from_wire(reply)


def test_a_query_of_type_rrsig_is_not_served():
    """Finding 6 (RFC 4034 §3): RRSIGs alone carry no signature, so they can be neither Secure
    nor proven Insecure: NOTIMP with EDE 21, nothing asked upstream, before and after the
    same RRSIGs were validated with the A they sign and cached (resolver/wire.py)."""
    upstream = memory.Upstream()
    frontend = Frontend(Resolver(memory.settings(), Cache(), Admission(100, 10, False, 10),
                                 exchange=upstream))
    refused = _client(frontend, WWW, dns.rdatatype.RRSIG)
    assert refused.rcode() == dns.rcode.NOTIMP and not refused.answer and not upstream.asked
    assert [(o.code, o.text) for o in refused.options] == [(21, "RRSIG is not served")]
    for _ in range(3):  # the full path twice (the hit path keeps a repeat), then the hit path
        data = _client(frontend, WWW, A)
        assert data.rcode() == dns.rcode.NOERROR and data.flags & dns.flags.AD
        sigs = [r for r in data.answer if r.rdtype == dns.rdatatype.RRSIG]
        assert sigs and {rd.signer for r in sigs for rd in r} == {ZONE}
    assert frontend.wirecache.hits == 1
    asked = len(upstream.asked)
    assert _client(frontend, WWW, dns.rdatatype.RRSIG).rcode() == dns.rcode.NOTIMP
    assert len(upstream.asked) == asked


def _referral_rewrite(rewrite):
    """Rewrites the referral from example. (127.0.0.12) to rsasha256.example."""
    def tamper(host, query, response):
        if host == "127.0.0.12" and any(r.rdtype == dns.rdatatype.NS and r.name == ZONE
                                        for r in response.authority):
            rewrite(response)
        return response
    return tamper


def test_ds_stripped_from_a_real_referral_is_asked_again():
    """The DS and its RRSIG removed from a real cut's referral: the DS is asked for, found,
    and the zone stays Secure (RFC 4035 §5.2), never insecure for lack of a DS."""
    def strip(response):
        response.authority = [r for r in response.authority if r.rdtype == dns.rdatatype.NS]
    upstream = memory.Upstream(_referral_rewrite(strip))
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    answer = _run(iterator, WWW)
    assert answer.verdict is Verdict.SECURE and _addresses(answer) == {"192.0.2.20"}
    assert ("127.0.0.12", str(ZONE), "DS") in upstream.asked


def test_ds_replaced_by_another_delegations_proof_is_bogus():
    """The DS removed and the no-DS proof of insecure.example. (signed, genuine, replayed)
    put in its place: it proves nothing about rsasha256.example."""
    example = zonedata.load("example.")
    replayed = [r for pair in example.select_no_ds(N("insecure.example.")) for r in pair if r]

    def replay(response):
        response.authority = [r for r in response.authority
                              if r.rdtype == dns.rdatatype.NS] + replayed

    def tamper(host, query, response):
        q = query.question[0]
        if host == "127.0.0.12" and q.rdtype == dns.rdatatype.DS and q.name == ZONE:
            response.answer = []
            replay(response)
            return response
        return _referral_rewrite(replay)(host, query, response)

    iterator = Iterator(memory.settings(), Cache(), exchange=memory.Upstream(tamper))
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, WWW)
    assert failure.value.ede == EDE.DNSSEC_BOGUS
    assert failure.value.reason.startswith(f"zone example.: no delegation to {ZONE} is proven")
