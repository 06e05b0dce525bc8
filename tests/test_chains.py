"""CNAME chains across zones (issue #15, findings 5 and 7): what the cache gives back is the
whole chain, it lives as long as its shortest link within the cache's caps, and each link is
judged by the policy of the zone that owns it. resolver.frontend.resolution.Resolver runs in-process
over the test tree served from memory (tests/testtree/memory.py).
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml

from resolver.frontend.admission import Admission
from resolver.resolve.cache import Cache
from resolver.config import parse_config
from resolver.dnssec import Verdict
from resolver.dnssec.result import ResolutionFailed
from resolver.ede import EDE
from resolver.frontend.policy import Policy
from resolver.frontend.pipeline import Frontend
from resolver.frontend.resolution import Resolver
from resolver.resolve.chase import chain_end
from resolver.resolve.iterator import Iterator
from tests.testtree import memory

A = dns.rdatatype.A
N = dns.name.from_text
HUGE_TTL = 2_000_000_000
ADMISSION = Admission(100, 10, False, 10)  # only client queries are counted: none here


def _twice(resolver: Resolver, name: str, rdtype: int = A):
    async def run():
        return (await resolver.resolve(N(name), rdtype), await resolver.resolve(N(name), rdtype))
    return asyncio.run(run())


def _owners(answer) -> set[tuple[str, str]]:
    return {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in answer.rrsets
            if r.rdtype != dns.rdatatype.RRSIG}


def test_a_chain_leaving_its_zone_comes_back_whole_from_the_cache():
    resolver = Resolver(memory.settings(), Cache(), ADMISSION, exchange=memory.Upstream())
    first, second = _twice(resolver, "cname-out.rsasha256.example.")
    whole = {("cname-out.rsasha256.example.", "CNAME"), ("www.rsasha512.test.", "A")}
    assert _owners(first.answer) == whole and first.answer.verdict is Verdict.SECURE
    assert _owners(second.answer) == whole and second.answer.verdict is Verdict.SECURE
    notes = first.answer.proof.notes  # the root's key, met by both links, listed once
    assert len(notes) == len(set(notes))
    assert sum(note.startswith("dnskey . ") for note in notes) == 1, notes


def _huge_ttl(host, query, response):
    """The unsigned child's server gives its data a TTL of 63 years."""
    if host == "127.0.0.32":
        for rrset in response.answer:
            rrset.ttl = HUGE_TTL
    return response


def test_a_chain_lives_as_long_as_its_shortest_link():
    """The signed CNAME (TTL 3600) into the unsigned child whose A has a huge TTL: the chain's
    TTL is the CNAME's, not the last link's."""
    resolver = Resolver(memory.settings(), Cache(), ADMISSION, exchange=memory.Upstream(_huge_ttl))
    first, second = _twice(resolver, "cname-insecure.rsasha256.example.")
    assert first.answer.verdict is Verdict.INSECURE
    assert 0 < first.answer.ttl <= 3600 and 0 < second.answer.ttl <= 3600


def test_an_answer_never_outlives_the_cache_cap():
    cache = Cache(max_ttl=300)
    resolver = Resolver(memory.settings(), cache, ADMISSION, exchange=memory.Upstream(_huge_ttl))
    first, second = _twice(resolver, "www.insecure.rsasha256.example.")
    assert first.answer.rcode == dns.rcode.NOERROR and first.answer.verdict is Verdict.INSECURE
    assert 0 < first.answer.ttl <= 300 and 0 < second.answer.ttl <= 300


def _frontend(allow: str) -> tuple[Frontend, object]:
    """A frontend over the tree in memory with one service allowing ``allow`` (YAML)."""
    conf = parse_config(yaml.safe_load(f"""
        listen: ["127.0.0.1:53"]
        services:
          - {{name: svc, listeners: ["127.0.0.1:53"], allow: {allow}}}
    """))
    resolver = Resolver(memory.settings(), Cache(), ADMISSION, exchange=memory.Upstream())
    return Frontend(resolver, Policy(conf)), conf.services[0]


def _decide(frontend: Frontend, service, name: str, rdtype: int = A):
    outcome = asyncio.run(frontend.resolver.resolve(N(name), rdtype))
    return frontend._check_answer(frontend.policy, service, N(name), outcome.answer)


SIGNED_THEN_UNSIGNED = "cname-insecure.rsasha256.example."  # CNAME www.insecure.rsasha256...


def test_each_link_is_judged_by_the_rule_of_the_zone_that_owns_it():
    """Finding 7: the secure CNAME owned by a require-secure zone, the insecure A owned by an
    insecure-ok zone: allowed."""
    frontend, service = _frontend("[{zone: rsasha256.example., require: secure}, "
                                  "{zone: insecure.rsasha256.example., require: insecure-ok}]")
    assert _decide(frontend, service, SIGNED_THEN_UNSIGNED).allowed


def test_an_insecure_record_under_a_require_secure_rule_is_still_refused():
    frontend, service = _frontend("[{zone: rsasha256.example., require: secure}]")
    decision = _decide(frontend, service, SIGNED_THEN_UNSIGNED)
    assert not decision.allowed and decision.kind == "insecure"
    assert "rsasha256.example." in decision.reason


def test_a_dname_asked_for_is_refused_when_its_target_is_denied():
    """Finding 6: a query of type DNAME returns the DNAME itself; its target is checked like
    a CNAME's."""
    frontend, service = _frontend("[{zone: ecdsap256.example., require: secure}]")
    decision = _decide(frontend, service, "dname.ecdsap256.example.", dns.rdatatype.DNAME)
    assert not decision.allowed and "ed25519.example." in decision.reason


def test_a_cname_loop_is_named_and_each_link_judged_once():
    """loop-a CNAME loop-b CNAME loop-a, both links in one signed reply: the validator follows
    each once (an RRset appears once, RFC 2181 §5) and the lookup fails on the loop (RFC 1034
    §3.6.2), not on the chain's length limit after the same two RRsets twelve times over."""
    iterator = Iterator(memory.settings(), Cache(), exchange=memory.Upstream())
    with pytest.raises(ResolutionFailed) as failed:
        asyncio.run(iterator.chase(N("loop-a.ecdsap256.example."), A, iterator.new_context()))
    assert str(failed.value) == "CNAME loop at loop-a.ecdsap256.example."
    assert [s[:2] for s in failed.value.proof.signatures] == [
        ("loop-a.ecdsap256.example.", "CNAME"), ("loop-b.ecdsap256.example.", "CNAME")]


def _cname(owner: str, target: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner, 300, "IN", "CNAME", target)


def test_chain_end_leads_a_loop_back_to_the_name_it_passed():
    """Where a chain goes: its last name without data, None when complete, and the name a loop
    comes back to (the iterator asked for it before, so it sees the loop), also when the loop
    starts further down the chain."""
    x_a, a_b, b_a = _cname("x.", "a."), _cname("a.", "b."), _cname("b.", "a.")
    assert chain_end(N("x."), A, [x_a]) == N("a.")
    assert chain_end(N("x."), A, [x_a, dns.rrset.from_text("a.", 300, "IN", "A", "192.0.2.1")]) \
        is None
    assert chain_end(N("a."), A, [a_b, b_a]) == N("a.")
    assert chain_end(N("x."), A, [x_a, a_b, b_a]) == N("a.")


def _forge_cname(owner: str, target: str):
    """An on-path forger: ``owner`` A answered by an unsigned CNAME to ``target``."""
    def tamper(host, query, response):
        question = query.question[0]
        if question.name == N(owner) and question.rdtype == A:
            response.set_rcode(dns.rcode.NOERROR)
            response.answer, response.authority = [_cname(owner, target)], []
        return response
    return tamper


def test_a_forged_cname_to_a_refused_name_is_bogus_not_refused():
    """A chain is followed before it is judged (resolver.resolve.chase): a forged CNAME from a
    signed zone to a name the policy refuses is found Bogus (no RRSIG) before any refusal is
    given, so that a forger cannot make a name look refused by the policy; the refused name
    is never asked."""
    frontend, service = _frontend("[{zone: rsasha256.example., require: secure}]")
    upstream = memory.Upstream(_forge_cname("www.rsasha256.example.", "www.ed25519.example."))
    frontend.resolver.iterator.exchange = upstream
    outcome = asyncio.run(frontend.resolver.resolve(
        N("www.rsasha256.example."), A,
        permit=lambda name: frontend.policy.check_name(service, name)))
    assert outcome.denied is None and outcome.answer is None
    assert outcome.failure.ede == EDE.RRSIGS_MISSING, outcome.failure.reason
    assert not [a for a in upstream.asked if "ed25519" in a[1]]
    # Honest, the same target is refused by the policy, and never asked either.
    frontend, service = _frontend("[{zone: ecdsap256.example., require: secure}]")
    outcome = asyncio.run(frontend.resolver.resolve(
        N("cname-out.ecdsap256.example."), A,
        permit=lambda name: frontend.policy.check_name(service, name)))
    assert outcome.denied is not None and outcome.failure is None


def test_a_forged_cname_to_an_unreachable_zone_is_reported_bogus():
    """The forged link is judged before the failure of the target it leads to is reported:
    an unsigned CNAME from a signed zone into hop-a.example. (no server of which answers in
    memory) is SERVFAIL for its missing RRSIG, not for the unreachable target."""
    upstream = memory.Upstream(_forge_cname("www.rsasha256.example.", "www.hop-a.example."))
    resolver = Resolver(memory.settings(), Cache(), ADMISSION, exchange=upstream)
    outcome = asyncio.run(resolver.resolve(N("www.rsasha256.example."), A))
    assert outcome.failure.ede == EDE.RRSIGS_MISSING, outcome.failure.reason
    assert [a for a in upstream.asked if "hop-a" in a[1]]  # the target was asked, and failed
