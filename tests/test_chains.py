"""CNAME chains across zones (issue #15, finding 5): what the cache gives back is the whole
chain, and it lives as long as its shortest link within the cache's caps. resolver.server.Resolver runs in-process over
the test tree served from memory (tests/testtree/memory.py).
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdatatype

from resolver.cache import Cache
from resolver.dnssec import Verdict
from resolver.server import Resolver
from tests.testtree import memory

A = dns.rdatatype.A
N = dns.name.from_text
HUGE_TTL = 2_000_000_000


def _twice(resolver: Resolver, name: str, rdtype: int = A):
    async def run():
        return (await resolver.resolve(N(name), rdtype), await resolver.resolve(N(name), rdtype))
    return asyncio.run(run())


def _owners(answer) -> set[tuple[str, str]]:
    return {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in answer.rrsets
            if r.rdtype != dns.rdatatype.RRSIG}


def test_a_chain_leaving_its_zone_comes_back_whole_from_the_cache():
    resolver = Resolver(memory.settings(), Cache(), exchange=memory.Upstream())
    first, second = _twice(resolver, "cname-out.rsasha256.example.")
    whole = {("cname-out.rsasha256.example.", "CNAME"), ("www.rsasha512.test.", "A")}
    assert _owners(first.answer) == whole and first.answer.verdict is Verdict.SECURE
    assert _owners(second.answer) == whole and second.answer.verdict is Verdict.SECURE


def _huge_ttl(host, query, response):
    """The unsigned child's server gives its data a TTL of 63 years."""
    if host == "127.0.0.32":
        for rrset in response.answer:
            rrset.ttl = HUGE_TTL
    return response


def test_a_chain_lives_as_long_as_its_shortest_link():
    """The signed CNAME (TTL 3600) into the unsigned child whose A has a huge TTL: the chain's
    TTL is the CNAME's, not the last link's."""
    resolver = Resolver(memory.settings(), Cache(), exchange=memory.Upstream(_huge_ttl))
    first, second = _twice(resolver, "cname-insecure.rsasha256.example.")
    assert first.answer.verdict is Verdict.INSECURE
    assert 0 < first.answer.ttl <= 3600 and 0 < second.answer.ttl <= 3600


def test_an_answer_never_outlives_the_cache_cap():
    cache = Cache(max_ttl=300)
    resolver = Resolver(memory.settings(), cache, exchange=memory.Upstream(_huge_ttl))
    first, second = _twice(resolver, "www.insecure.rsasha256.example.")
    assert first.answer.rcode == dns.rcode.NOERROR and first.answer.verdict is Verdict.INSECURE
    assert 0 < first.answer.ttl <= 300 and 0 < second.answer.ttl <= 300

