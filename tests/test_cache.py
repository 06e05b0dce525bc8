"""The answer cache on its own: TTL countdown, negative entries, LRU bound, and identical proof
records held once (issue #5 memory)."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rrset

from resolver.cache import Answer, Cache, Proof
from resolver.dnssec import Verdict

NSEC = ("*.wild.example.", 300, "IN", "NSEC", "zz.example. A RRSIG NSEC")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wildcard_answer(i: int) -> Answer:
    """What the iterator stores for one wildcard expansion: its own A RRset, and a proof
    (an NSEC RRset, parsed anew from every response) shared with every other expansion."""
    name = f"q{i}.wild.example."
    return Answer(dns.rcode.NOERROR, Verdict.SECURE,
                  rrsets=[dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1")],
                  authority=[dns.rrset.from_text(*NSEC)],
                  proof=Proof(zones=[".", "".join(["exa", "mple."])],
                              notes=["dnskey example. 4711/13 " + "(DS from .)"]),
                  ttl=300)


def test_ttl_counts_down_and_expires() -> None:
    clock = Clock()
    cache = Cache(clock=clock)
    name = dns.name.from_text("q1.wild.example.")
    cache.put(name, 1, wildcard_answer(1))
    clock.now += 100
    assert cache.get(name, 1).ttl == 200
    clock.now += 200
    assert cache.get(name, 1) is None and cache.misses == 1


def test_name_error_covers_every_type() -> None:
    cache = Cache()
    name = dns.name.from_text("nx.example.")
    cache.put(name, 1, Answer(dns.rcode.NXDOMAIN, Verdict.SECURE, ttl=60))
    assert cache.get(name, 28).rcode == dns.rcode.NXDOMAIN


def test_bogus_is_never_cached() -> None:
    cache = Cache()
    cache.put(dns.name.from_text("b.example."), 1, Answer(dns.rcode.SERVFAIL, Verdict.BOGUS,
                                                           ttl=60))
    assert len(cache) == 0


def test_least_recently_used_goes_first() -> None:
    cache = Cache(max_entries=2)
    names = [dns.name.from_text(f"q{i}.wild.example.") for i in range(3)]
    cache.put(names[0], 1, wildcard_answer(0))
    cache.put(names[1], 1, wildcard_answer(1))
    assert cache.get(names[0], 1) is not None  # 0 is now the most recent
    cache.put(names[2], 1, wildcard_answer(2))
    assert cache.get(names[1], 1) is None and cache.get(names[0], 1) is not None
    assert cache.evictions == 1


def test_identical_proofs_and_texts_are_held_once() -> None:
    cache = Cache()
    for i in range(3):
        cache.put(dns.name.from_text(f"q{i}.wild.example."), 1, wildcard_answer(i))
    got = [cache.get(dns.name.from_text(f"q{i}.wild.example."), 1) for i in range(3)]
    assert got[0].authority[0] is got[1].authority[0] is got[2].authority[0]
    assert got[0].authority[0] == dns.rrset.from_text(*NSEC)
    assert got[0].rrsets[0] is not got[1].rrsets[0]
    assert got[0].proof.zones[1] is got[2].proof.zones[1]
    assert got[0].proof.notes[0] is got[1].proof.notes[0]


def test_different_proofs_stay_apart_and_the_table_is_bounded() -> None:
    cache = Cache(max_entries=2)
    answers = []
    for i, nxt in enumerate(("b.example.", "c.example.", "d.example.")):
        answer = wildcard_answer(i)
        answer.authority = [dns.rrset.from_text("a.example.", 300, "IN", "NSEC",
                                                f"{nxt} A RRSIG NSEC")]
        answers.append(answer)
        cache.put(dns.name.from_text(f"q{i}.wild.example."), 1, answer)
    assert len({id(a.authority[0]) for a in answers}) == 3
    assert len(cache._proofs) == 2
