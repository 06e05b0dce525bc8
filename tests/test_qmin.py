"""RFC 9156 §2.3: at most MAX_MINIMISE_COUNT minimised queries per lookup, the first
MINIMISE_ONE_LAB adding one label each (resolver.resolve.qmin); and the zone cuts a reply from a
server holding several zones went past, each still established from its parent's signed data
(resolver.resolve.cuts, RFC 4035 §5.2). The iterator runs in-process over the test tree served
from memory (tests/testtree/memory.py), replies rewritten as an on-path attacker without the
zones' keys could; no socket is opened.
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

from resolver.dnssec import Verdict
from resolver.ede import EDE
from resolver.resolve.cache import Cache
from resolver.resolve.iterator import Iterator, ResolutionFailed
from resolver.resolve.qmin import MAX_MINIMISE_COUNT, MINIMISE_ONE_LAB, Minimiser
from resolver.resolve.transport import Reply
from tests.testtree import authority, memory, zonedata

N = dns.name.from_text
A, DS, DNSKEY = dns.rdatatype.A, dns.rdatatype.DS, dns.rdatatype.DNSKEY
ROOT_SERVER, EXAMPLE_SERVER, RSASHA256_SERVER = "127.0.0.10", "127.0.0.12", "127.0.0.20"
DEEP = "www." + "a." * 32 + "deep.example."


def _steps(minimiser: Minimiser, zone: dns.name.Name) -> list[int]:
    """The labels each question adds, asked of ``zone`` with no referral, to the full name."""
    added, exposed = [], len(zone.labels)
    while True:
        qname, qtype = minimiser.question(zone)
        added.append(len(qname.labels) - exposed)
        exposed = len(qname.labels)
        if qname == minimiser.name:
            assert qtype == minimiser.qtype
            return added
        assert qtype == A
        minimiser = minimiser.after(qname, referral=False)


def test_labels_are_spread_as_in_rfc_9156_section_2_3():
    """The RFC's example: 18 labels from the root take 1,1,1,1,2,2,2,2,3,3 labels a query, the
    last one the full name."""
    name = N(".".join(f"l{i}" for i in range(18)) + ".")
    assert _steps(Minimiser(name, dns.rdatatype.AAAA, True), dns.name.root) == \
        [1] * MINIMISE_ONE_LAB + [2, 2, 2, 2, 3, 3]
    assert MAX_MINIMISE_COUNT == 10 and MINIMISE_ONE_LAB == 4


def test_short_names_go_one_label_at_a_time_and_off_asks_the_name():
    name = N("a.b.c.example.")
    assert _steps(Minimiser(name, A, True), dns.name.root) == [1, 1, 1, 1]
    assert Minimiser(name, A, False).question(dns.name.root) == (name, A)


def test_the_count_is_per_lookup_across_zones_and_a_referral_starts_from_the_new_zone():
    name = N("x." + "a." * 30 + "example.")
    m = Minimiser(name, A, True)
    for _ in range(MAX_MINIMISE_COUNT):  # each question referred one label down
        qname, _ = m.question(N("example."))
        m = m.after(qname, referral=True)
    assert m.question(N("a.example.")) == (name, A)  # spent: the full name, whatever the zone
    m = Minimiser(name, A, True).after(N("a.example."), referral=True)
    assert m.question(N("a.a.a.example."))[0] == N("a.a.a.a.example.")  # from the new zone
    assert m.relaxed().question(N("a.a.a.example.")) == (name, A)


def _with_deep_servers(upstream: memory.Upstream) -> memory.Upstream:
    """The tree's deep.example. servers (hostile role, not in memory.Upstream by default)."""
    for address in ("127.0.0.100", "127.0.0.101"):
        zones = zonedata.manifest()["servers"][address]["zones"]
        upstream.responders[address] = authority.Responder([zonedata.load(z) for z in zones])
    return upstream


def test_deep_delegation_is_answered_within_ten_minimised_queries():
    """32 cuts below deep.example., on two servers that each hold every other level: after the
    first four one-label questions the remaining labels are spread, each server answers from
    the deepest zone it holds (a referral several labels down), and the full name is asked on
    the tenth: 10 referrals, 11 questions (and example.'s DNSKEY query), answered (Insecure:
    deep.example. has no DS), as Unbound 1.17 does, where one label a zone took 34 referrals
    and failed."""
    upstream = _with_deep_servers(memory.Upstream())
    iterator = Iterator(memory.settings(), Cache(), exchange=upstream)
    ctx = iterator.new_context()
    asyncio.run(iterator.trust.prime_root(iterator._root(), ctx))
    upstream.asked.clear()
    ctx = iterator.new_context()
    answer = asyncio.run(iterator.chase(N(DEEP), A, ctx))
    assert answer.rcode == dns.rcode.NOERROR and answer.verdict is Verdict.INSECURE
    asked = [(host, qname.count("a.") if "deep" in qname else qname)
             for host, qname, qtype in upstream.asked if qtype == "A"]
    assert upstream.asked[1] == (EXAMPLE_SERVER, "example.", "DNSKEY")
    assert asked[:2] == [(ROOT_SERVER, "example."), (EXAMPLE_SERVER, 0)]
    # the a. labels of each question below deep.example.: 1, 1 (four one-label questions in
    # all), then 5 at a time (28 left over 6), then the full name, twice (refer, answer)
    assert [level for _, level in asked[1:]] == [0, 1, 2, 7, 12, 17, 22, 27, 32, 32]
    assert [host for host, _ in asked[2:]] == ["127.0.0.100", "127.0.0.101"] * 4 + \
        ["127.0.0.100"]
    assert upstream.asked[-2][1] == upstream.asked[-1][1] == DEEP
    assert len(asked) == 11 and ctx.queries == 12 and ctx.referrals == 10


def _chain_exchange(levels: int):
    """A deep chain with every level on a server of its own: the root refers invalid. to
    127.1.0.0, and 127.1.0.k, serving a^k.invalid. only, refers every name below it one label
    down to 127.1.0.k+1, down to ``levels``: no cut can be skipped."""
    top = N("invalid.")

    async def exchange(query, host, port=53, **_):
        query = query.message()  # the transport's Query, as a dnspython message
        q = query.question[0]
        reply = dns.message.make_response(query)
        if host == ROOT_SERVER:
            child, address = top, "127.1.0.0"
        else:
            level = int(host.rsplit(".", 1)[1])
            zone = dns.name.Name((b"a",) * level).concatenate(top)
            child, address = dns.name.Name((b"a",)).concatenate(zone), f"127.1.0.{level + 1}"
            if level == levels or not q.name.is_subdomain(child):
                child = None
        if child is None:
            reply.flags |= dns.flags.AA
            if q.rdtype == A and q.name.labels[0] == b"www":
                reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", "192.0.2.1"))
        else:
            ns = dns.name.from_text("ns", origin=child)
            reply.authority.append(dns.rrset.from_text(child, 60, "IN", "NS", ns.to_text()))
            reply.additional.append(dns.rrset.from_text(ns, 60, "IN", "A", address))
        wire = reply.to_wire()
        return Reply(dns.message.from_wire(wire), False, 0.001, len(wire), wire)
    return exchange


def test_a_deep_chain_on_distinct_servers_still_stops_at_the_depth_budget():
    """The hostile deep delegation the cap cannot shorten: every level on a server of its own
    refers one label down however deep the question; the lookup stops after
    max_referral_depth (30) referrals, SERVFAIL with EDE 0, within the upstream budget."""
    settings = memory.settings(trust_anchors=[])  # unsigned: nothing but referrals
    iterator = Iterator(settings, Cache(), exchange=_chain_exchange(40))
    ctx = iterator.new_context()
    with pytest.raises(ResolutionFailed) as failure:
        asyncio.run(iterator.chase(N("www." + "a." * 40 + "invalid."), A, ctx))
    assert failure.value.ede == EDE.OTHER and "more than 30 referrals" in failure.value.reason
    assert ctx.referrals == 31 and ctx.queries == 31
    shallow = asyncio.run(iterator.chase(N("www." + "a." * 20 + "invalid."), A,
                                         iterator.new_context()))
    assert shallow.rcode == dns.rcode.NOERROR and shallow.verdict is Verdict.INSECURE


# --- skipped cuts in the signed tree --------------------------------------------------------


def _sharing(upstream: memory.Upstream, address: str, *zones: str) -> memory.Upstream:
    """``address`` serves ``zones`` together, as one server authoritative for several."""
    upstream.responders[address] = authority.Responder([zonedata.load(z) for z in zones])
    return upstream


def _full_names(upstream: memory.Upstream) -> Iterator:
    """Full names asked from the root (as after the cap, or without minimisation): a server
    holding a zone and its grandchild answers from the grandchild."""
    return Iterator(memory.settings(qname_minimisation=False), Cache(), exchange=upstream)


def _run(iterator: Iterator, name: str):
    return asyncio.run(iterator.chase(N(name), A, iterator.new_context()))


def _ds_rewrite(host: str, owner: str, rewrite):
    """Applies ``rewrite(response)`` to ``host``'s reply to the DS question for ``owner``."""
    def tamper(address, query, response):
        q = query.question[0]
        if address == host and q.name == N(owner) and q.rdtype == DS:
            rewrite(response)
        return response
    return tamper


def _break_ds(response) -> None:
    """The DS RRset's digest changed; its RRSIG (which the attacker cannot redo) kept."""
    for rrset in response.answer:
        if rrset.rdtype == DS:
            rd = rrset[0]
            rrset.remove(rd)
            rrset.add(rd.replace(digest=bytes(b ^ 0xFF for b in rd.digest)))


def _keys_checked(upstream: memory.Upstream) -> set[tuple[str, str, str]]:
    return {entry for entry in upstream.asked if entry[2] in ("DS", "DNSKEY")}


def test_answer_from_a_grandchild_on_the_same_server_is_secure_through_every_cut():
    """The root's server also holds rsasha256.example. and answers www of it directly, signed
    by the grandchild: example.'s DS (from the root) and DNSKEY set (its server, found by the
    root's referral), then rsasha256.example.'s DS (from example.) and DNSKEY set are all
    asked and checked before the answer is Secure."""
    upstream = _sharing(memory.Upstream(), ROOT_SERVER, ".", "rsasha256.example.")
    iterator = _full_names(upstream)
    answer = _run(iterator, "www.rsasha256.example.")
    assert answer.verdict is Verdict.SECURE and answer.rcode == dns.rcode.NOERROR
    assert upstream.asked[1] == (ROOT_SERVER, "www.rsasha256.example.", "A")  # no referral
    assert {(ROOT_SERVER, "example.", "DS"), (EXAMPLE_SERVER, "example.", "DNSKEY"),
            (EXAMPLE_SERVER, "rsasha256.example.", "DS")} <= _keys_checked(upstream)
    assert any(entry[1:] == ("rsasha256.example.", "DNSKEY") for entry in upstream.asked)
    notes = " | ".join(answer.proof.notes)
    for note in ("ds example.", "dnskey example.", "ds rsasha256.example.",
                 "dnskey rsasha256.example."):
        assert note in notes, notes
    assert answer.proof.zones == [".", "example.", "rsasha256.example."]


@pytest.mark.parametrize("host,owner", [(ROOT_SERVER, "example."),
                                        (EXAMPLE_SERVER, "rsasha256.example.")],
                         ids=["example-ds", "rsasha256-ds"])
def test_a_skipped_cut_whose_ds_is_broken_is_bogus(host, owner):
    """The same answer from the grandchild, the DS of one cut it went past altered on the
    path: Bogus, never Secure, and the grandchild's data never reaches the cache."""
    upstream = _sharing(memory.Upstream(_ds_rewrite(host, owner, _break_ds)), ROOT_SERVER,
                        ".", "rsasha256.example.")
    iterator = _full_names(upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, "www.rsasha256.example.")
    assert failure.value.ede in (EDE.DNSSEC_BOGUS, EDE.DNSKEY_MISSING)
    assert iterator.cache.get(N("www.rsasha256.example."), A) is None
    assert iterator.zones.get(N(owner)).security is Verdict.BOGUS  # remembered as such
    assert all(iterator.zones.get(N(z)) is None or iterator.zones.get(N(z)).security is not
               Verdict.SECURE for z in ("rsasha256.example.", owner))


def test_referral_from_a_grandchild_on_the_same_server_establishes_every_cut():
    """The root's server holds rsasha256.example. too and refers the full name straight to
    insecure.rsasha256.example. (three labels down, its no-DS proof signed by rsasha256.
    example.): example. and rsasha256.example. are established first, and the cut is proven
    insecure by its own parent, so the answer is Insecure."""
    upstream = _sharing(memory.Upstream(), ROOT_SERVER, ".", "rsasha256.example.")
    iterator = _full_names(upstream)
    answer = _run(iterator, "www.insecure.rsasha256.example.")
    assert answer.verdict is Verdict.INSECURE and answer.rcode == dns.rcode.NOERROR
    assert {(ROOT_SERVER, "example.", "DS"), (EXAMPLE_SERVER, "rsasha256.example.", "DS")} <= \
        _keys_checked(upstream)
    assert iterator.zones.get(N("rsasha256.example.")).security is Verdict.SECURE
    assert answer.proof.zones[-2:] == ["rsasha256.example.", "insecure.rsasha256.example."]


def _deny_ds(response) -> None:
    """The DS and its RRSIG removed; the no-DS proof of insecure.example. (genuine, signed,
    replayed) put in their place."""
    example = zonedata.load("example.")
    response.answer = []
    response.authority = [r for pair in example.select_no_ds(N("insecure.example."))
                          for r in pair if r]


@pytest.mark.parametrize("full_names", [True, False], ids=["skipped", "referred"])
def test_a_forged_insecure_cut_in_the_skipped_range_is_caught(full_names):
    """rsasha256.example., a signed cut the referral went past, claimed unsigned on the path
    (its DS replaced by another delegation's genuine no-DS proof): Bogus, never Insecure; the
    same forgery without skipping (one label a zone) is caught the same way."""
    tamper = _ds_rewrite(EXAMPLE_SERVER, "rsasha256.example.", _deny_ds)

    def referral_too(address, query, response):  # the referral's DS, for the unskipped walk
        if address == EXAMPLE_SERVER and any(r.rdtype == dns.rdatatype.NS and
                                             r.name == N("rsasha256.example.")
                                             for r in response.authority):
            response.authority = [r for r in response.authority
                                  if r.rdtype == dns.rdatatype.NS]
        return tamper(address, query, response)

    upstream = memory.Upstream(referral_too)
    if full_names:
        _sharing(upstream, ROOT_SERVER, ".", "rsasha256.example.")
    iterator = _full_names(upstream) if full_names else \
        Iterator(memory.settings(), Cache(), exchange=upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, "www.insecure.rsasha256.example.")
    assert failure.value.ede in (EDE.DNSSEC_BOGUS, EDE.NSEC_MISSING)


def test_insecure_grandchild_answering_on_the_parents_server_is_insecure():
    """example.'s server also holds the unsigned insecure.rsasha256.example. and answers www of
    it with no referral and no signature: the secure cut between (rsasha256.example., on
    another server) is found and established, then the unsigned one below it proven by its
    parent's NSEC: Insecure, never Secure, and never Bogus."""
    upstream = _sharing(memory.Upstream(), EXAMPLE_SERVER, "example.",
                        "insecure.rsasha256.example.")
    iterator = _full_names(upstream)
    answer = _run(iterator, "www.insecure.rsasha256.example.")
    assert answer.verdict is Verdict.INSECURE and answer.rcode == dns.rcode.NOERROR
    assert (EXAMPLE_SERVER, "rsasha256.example.", "DS") in upstream.asked
    assert (RSASHA256_SERVER, "insecure.rsasha256.example.", "DS") in upstream.asked
    assert iterator.zones.get(N("rsasha256.example.")).security is Verdict.SECURE


def test_an_island_of_security_a_reply_went_past_is_still_validated():
    """With a trust anchor for rsasha256.example. only (everything above it insecure), the
    root's server, holding the island too, answers www of it directly: the island is
    established from its anchor, the answer Secure, never Insecure from the unsigned root."""
    anchor = zonedata.load("rsasha256.example.").ds()
    upstream = _sharing(memory.Upstream(), ROOT_SERVER, ".", "rsasha256.example.")
    iterator = Iterator(memory.settings(trust_anchors=[anchor], qname_minimisation=False),
                        Cache(), exchange=upstream)
    answer = _run(iterator, "www.rsasha256.example.")
    assert answer.verdict is Verdict.SECURE and answer.rcode == dns.rcode.NOERROR
    below = _run(iterator, "www.insecure.rsasha256.example.")  # a referral from the island
    assert below.verdict is Verdict.INSECURE
    iterator = Iterator(memory.settings(trust_anchors=[anchor], qname_minimisation=False),
                        Cache(), exchange=upstream)
    assert _run(iterator, "www.insecure.rsasha256.example.").verdict is Verdict.INSECURE
    assert iterator.zones.get(N("rsasha256.example.")).security is Verdict.SECURE


def test_island_data_stripped_of_signatures_on_the_way_past_is_bogus():
    """The same island answered by the root's server, its RRSIGs stripped on the path: the
    island is still established from its anchor and the unsigned answer judged in it, Bogus,
    never Insecure because the unsigned root answered."""
    anchor = zonedata.load("rsasha256.example.").ds()

    def strip(address, query, response):
        if address == ROOT_SERVER and query.question[0].rdtype == A:
            response.answer = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
        return response

    upstream = _sharing(memory.Upstream(strip), ROOT_SERVER, ".", "rsasha256.example.")
    iterator = Iterator(memory.settings(trust_anchors=[anchor], qname_minimisation=False),
                        Cache(), exchange=upstream)
    with pytest.raises(ResolutionFailed) as failure:
        _run(iterator, "www.rsasha256.example.")
    assert failure.value.ede == EDE.RRSIGS_MISSING and "rsasha256.example." in \
        failure.value.reason
    assert iterator.zones.get(N("rsasha256.example.")).security is Verdict.SECURE
