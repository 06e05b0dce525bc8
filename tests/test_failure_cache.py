"""Negative caching of resolution failures (RFC 9520, resolver.resolve.failures): after the
servers of a zone stop answering, names under it fail at once with EDE 22 and send nothing
upstream, not even the parent's referral, until the hold ends; one query then tries again;
a hold grows with each failure in a row, up to a cap; a server that answers again is used at
once; other zones are untouched.

The iterator runs in this process against the test tree (127.0.0.x port 53: run as root in a
private network namespace); time is a clock the test moves, so no test waits on the clock.
"""

from __future__ import annotations

import asyncio

import dns.name
import dns.rdatatype
import pytest

from resolver.config.schema import Timeouts
from resolver.dnssec import Verdict
from resolver.dnssec.anchors import RootHint, parse_trust_anchors
from resolver.ede import EDE
from resolver.resolve import transport
from resolver.resolve.cache import Cache
from resolver.resolve.failures import FIRST_HOLD, MAX_HOLD, Holds
from resolver.resolve.iterator import Iterator, ResolutionFailed, Settings
from tests.testtree import NOW, authority, zonedata

DEAD = "ed448.test."  # its only server, 127.0.0.25, is made to drop every query
DEAD_SERVER = "127.0.0.25"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running
    assert not running.errors, "\n".join(running.errors)


def _iterator(sent: list[tuple[str, str]], clock: Clock) -> Iterator:
    """An iterator over the tree, each upstream query noted as (server, qname), its failure
    holds on ``clock``; a dropped query times out after 300 ms."""
    (hint_name, hint_address), = zonedata.manifest()["root_hints"].items()
    settings = Settings(root_hints=(RootHint(dns.name.from_text(hint_name), (hint_address,)),),
                        trust_anchors=parse_trust_anchors(authority.trust_anchor_lines()),
                        validation_time=NOW,
                        timeouts=Timeouts(upstream_ms=300, query_ms=3000))

    async def exchange(query, host, port=53, **kwargs):
        sent.append((host, str(query.qname)))
        return await transport.exchange(query, host, port, **kwargs)

    iterator = Iterator(settings, Cache(), exchange=exchange)
    iterator.infra.holds.clock = iterator.zone_holds.clock = clock
    return iterator


def _resolve(iterator: Iterator, name: str):
    """The answer for ``name`` A, or the ResolutionFailed it ends in."""
    async def run():
        try:
            return await iterator.chase(dns.name.from_text(name), dns.rdatatype.A,
                                        iterator.new_context())
        except ResolutionFailed as failure:
            return failure
    return asyncio.run(run())


def test_a_dead_zone_is_held_then_tried_again_and_recovers(tree):
    sent: list[tuple[str, str]] = []
    clock = Clock()
    iterator = _iterator(sent, clock)
    tree.set_faults(DEAD, drop=True)
    try:
        first = _resolve(iterator, f"n0.{DEAD}")
        assert isinstance(first, ResolutionFailed) and first.ede is EDE.NO_REACHABLE_AUTHORITY
        assert "timeout" in first.reason and "cached" not in first.reason, first.reason
        assert any(host == DEAD_SERVER for host, _ in sent)
        before = len(sent)
        for i in range(1, 30):  # a flood of names under the dead zone
            held = _resolve(iterator, f"n{i}.{DEAD}")
            assert isinstance(held, ResolutionFailed), held
            assert held.ede is EDE.NO_REACHABLE_AUTHORITY
            assert "cached failure, RFC 9520" in held.reason and "timeout" in held.reason
        assert sent[before:] == []  # nothing upstream: no referral, no query to the dead server
        healthy = _resolve(iterator, "www.rsasha256.example.")  # another zone resolves
        assert healthy.verdict is Verdict.SECURE and healthy.rrsets
        before = len(sent)

        clock.now += FIRST_HOLD  # the hold ends: one lookup tries again, and fails again
        again = _resolve(iterator, f"probe1.{DEAD}")
        assert isinstance(again, ResolutionFailed) and "cached" not in again.reason
        assert any(host == DEAD_SERVER for host, _ in sent[before:])
        before = len(sent)
        clock.now += FIRST_HOLD  # the hold has doubled: still held
        assert "cached failure" in _resolve(iterator, f"n99.{DEAD}").reason
        assert sent[before:] == []
    finally:
        tree.set_faults(DEAD, drop=False)
    clock.now += 2 * FIRST_HOLD  # the server is back, and the hold over: it is asked again
    answer = _resolve(iterator, f"www.{DEAD}")
    assert not isinstance(answer, ResolutionFailed), answer.reason
    assert answer.verdict is Verdict.SECURE and answer.rrsets
    before = len(sent)
    assert _resolve(iterator, f"nope.{DEAD}").verdict is Verdict.SECURE  # no hold left
    assert any(host == DEAD_SERVER for host, _ in sent[before:])


def test_holds_back_off_exponentially_up_to_the_cap():
    clock = Clock()
    holds: Holds[str] = Holds(10, probe=0.5, clock=clock)
    assert holds.held("s") is None
    holds.failed("s", "timeout")
    hold = holds.held("s")
    assert hold is not None and hold.until == clock.now + FIRST_HOLD and hold.what == "timeout"
    holds.failed("s", "timeout")  # a query already in flight: the hold does not grow
    assert holds.held("s").until == clock.now + FIRST_HOLD
    expected = FIRST_HOLD
    for _ in range(12):  # bounded: 2**12 s is far beyond the cap
        clock.now = holds.held("s").until
        assert holds.held("s") is None  # the probe goes through ...
        assert holds.held("s") is not None  # ... and the others stay held while it runs
        holds.failed("s", "timeout")
        expected = min(expected * 2, MAX_HOLD)
        assert holds.held("s").until == clock.now + expected
    assert expected == MAX_HOLD
    clock.now += MAX_HOLD
    assert holds.held("s") is None
    holds.answered("s")  # the probe was answered: the failure is forgotten
    clock.now += 0.1
    assert holds.held("s") is None and len(holds) == 0
    holds.failed("s", "timeout")
    assert holds.held("s").until == clock.now + FIRST_HOLD  # a new failure starts over


def test_holds_are_bounded():
    holds: Holds[int] = Holds(3, probe=1.0, clock=Clock())
    for key in range(10):
        holds.failed(key, "timeout")
    assert len(holds) == 3 and holds.held(9) is not None and holds.held(0) is None
