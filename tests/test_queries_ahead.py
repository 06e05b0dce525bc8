"""Queries sent ahead (resolver.resolve.ahead): after a referral to a signed child, the
child's DNSKEY query and the lookup's next question leave together, before the DS and the DNSKEY set are
validated; a referral in reply to that question sends the next hop's queries on arrival, while
the child is still being established; replies are used only once their zone's security is
established (RFC 4035 §5.2), and a child that proves bogus answers nothing.

The iterator runs in this process against the test tree (127.0.0.x port 53: run as root in a
private network namespace, like the end-to-end tests).
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from resolver.resolve import transport
from resolver.dnssec.anchors import RootHint, parse_trust_anchors
from resolver.resolve.cache import Cache
from resolver.dnssec import Verdict
from resolver.ede import EDE
from resolver.resolve.iterator import Iterator, ResolutionFailed, Settings
from tests.testtree import NOW, authority, zonedata


@pytest.fixture(scope="module")
def tree():
    """The servers below the root answer after 50 ms, so that a reply cannot arrive between
    two queries sent together (the tree shares this process)."""
    slow = {"delay_ms": 50}
    with authority.start_tree({"example.": slow, "rsasha256.example.": slow,
                               "wrongds.example.": slow}) as running:
        yield running


def _iterator(log: list[tuple[str, str, str]], slower: tuple[str, str] | None = None) -> Iterator:
    """An iterator over the tree whose exchanges log ("send"/"reply", qname, qtype); the
    reply to the question ``slower`` (qname, qtype) is held 150 ms more."""
    (hint_name, hint_address), = zonedata.manifest()["root_hints"].items()
    settings = Settings(root_hints=(RootHint(dns.name.from_text(hint_name), (hint_address,)),),
                        trust_anchors=parse_trust_anchors(authority.trust_anchor_lines()),
                        validation_time=NOW)

    async def exchange(query, host, port=53, **kwargs):
        question = (str(query.qname), dns.rdatatype.to_text(query.rdtype))
        log.append(("send", *question))
        reply = await transport.exchange(query, host, port, **kwargs)
        if question == slower:
            await asyncio.sleep(0.15)
        log.append(("reply", *question))
        return reply

    return Iterator(settings, Cache(), exchange=exchange)


def _resolve(iterator: Iterator, name: str):
    async def run():
        return await iterator.chase(dns.name.from_text(name), dns.rdatatype.A,
                                    iterator.new_context())
    return asyncio.run(run())


def test_dnskey_and_next_question_travel_together(tree):
    log: list[tuple[str, str, str]] = []
    answer = _resolve(_iterator(log), "www.rsasha256.example.")
    assert answer.rcode == dns.rcode.NOERROR and answer.verdict is Verdict.SECURE
    sends = [entry[1:] for entry in log if entry[0] == "send"]
    assert sends == [(".", "DNSKEY"), ("example.", "A"),
                     ("example.", "DNSKEY"), ("rsasha256.example.", "A"),
                     ("rsasha256.example.", "DNSKEY"), ("www.rsasha256.example.", "A")]
    for keys, question in ((("example.", "DNSKEY"), ("rsasha256.example.", "A")),
                           (("rsasha256.example.", "DNSKEY"), ("www.rsasha256.example.", "A"))):
        # both sent before either reply arrived
        assert log.index(("send", *question)) < log.index(("reply", *keys))


def test_a_child_whose_dnskey_set_is_bogus_answers_nothing(tree):
    """wrongds.example.: its parent's DS matches none of its keys. Its DNSKEY query and the
    question went together; the lookup fails on the keys, and nothing more is asked."""
    log: list[tuple[str, str, str]] = []
    with pytest.raises(ResolutionFailed) as failure:
        _resolve(_iterator(log), "www.wrongds.example.")
    assert failure.value.ede == EDE.DNSKEY_MISSING and "wrongds.example." in failure.value.reason
    sends = [entry[1:] for entry in log if entry[0] == "send"]
    assert sends[-2:] == [("wrongds.example.", "DNSKEY"), ("www.wrongds.example.", "A")]


def test_the_next_hop_leaves_on_the_referral_before_the_zone_above_is_established(tree):
    """example.'s DNSKEY reply comes late: the referral to rsasha256.example. arrives first and
    sends that zone's DNSKEY query and the next question at once, while example. is still
    waiting for its keys; the answer is still judged with both zones established."""
    log: list[tuple[str, str, str]] = []
    answer = _resolve(_iterator(log, slower=("example.", "DNSKEY")), "www.rsasha256.example.")
    assert answer.rcode == dns.rcode.NOERROR and answer.verdict is Verdict.SECURE
    late = log.index(("reply", "example.", "DNSKEY"))
    assert log.index(("reply", "rsasha256.example.", "A")) < late
    assert log.index(("send", "rsasha256.example.", "DNSKEY")) < late
    assert log.index(("send", "www.rsasha256.example.", "A")) < late
    sends = [entry[1:] for entry in log if entry[0] == "send"]
    assert len(sends) == len(set(sends)) == 6  # nothing asked twice
