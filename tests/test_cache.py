"""The answer cache on its own: TTL countdown, negative entries, LRU bound, and entries kept as
message bytes (issue #5 memory)."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rrset

from resolver import cache as cache_module
from resolver.cache import Answer, Cache, Proof
from resolver.dnssec import Verdict

NSEC = ("*.wild.example.", 300, "IN", "NSEC", "zz.example. A RRSIG NSEC")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wildcard_answer(i: int) -> Answer:
    """What the iterator stores for one wildcard expansion: its A RRset and the NSEC proof."""
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


def test_answers_come_back_as_stored() -> None:
    """Entries are kept as message bytes: what comes back equals what went in, RRSIGs (a type
    that covers another) and proof texts included, and texts shared by many entries are held
    once."""
    cache = Cache()
    stored = []
    for i in range(3):
        answer = wildcard_answer(i)
        answer.rrsets.append(dns.rrset.from_text(
            f"q{i}.wild.example.", 300, "IN", "RRSIG",
            "A 13 3 300 20360101000000 20260101000000 4711 example. "
            "Kx3oKc2mzbfPgdn5w5gTXe5Ml2hQpTX9wpE4qtWwE0EMVPZbbdWVnm8Gcv5pRSJ6Iea0YujB4rLIgQPQWUSjgw=="))
        stored.append((answer.rrsets[:], answer.authority[:]))
        cache.put(dns.name.from_text(f"q{i}.wild.example."), 1, answer)
    got = [cache.get(dns.name.from_text(f"q{i}.wild.example."), 1) for i in range(3)]
    for answer, (rrsets, authority) in zip(got, stored):
        assert answer.rrsets == rrsets and answer.authority == authority
        assert [r.covers for r in answer.rrsets] == [r.covers for r in rrsets]
        assert answer.verdict is Verdict.SECURE and answer.proof.denial is None
    assert got[0].proof.zones[1] is got[2].proof.zones[1]
    assert got[0].proof.notes[0] is got[1].proof.notes[0]


def test_an_answer_too_big_for_a_message_is_kept_as_objects(monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    cache = Cache()
    name = dns.name.from_text("big.example.")
    txt = [" ".join(['"' + "x" * 250 + '"'] * 8)] * 40  # 40 RRs of 2 KB: over 64 KiB
    big = dns.rrset.from_text_list(name, 300, "IN", "TXT", [f"{t} {i}" for i, t in
                                                          enumerate(txt)])
    cache.put(name, 16, Answer(dns.rcode.NOERROR, Verdict.SECURE, rrsets=[big], ttl=300))
    cache.put(dns.name.from_text("q1.wild.example."), 1, wildcard_answer(1))  # big is packed
    assert cache._entries[(name, 16)].packed == ([big], [])
    assert cache.get(name, 16).rrsets == [big]


def test_parsed_copies_are_bounded_and_never_stale(monkeypatch) -> None:
    """Beyond HOT_ENTRIES the answers are parsed back from their bytes, and a replaced entry is
    never answered from an older parsed copy."""
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 2)
    cache = Cache()
    names = [dns.name.from_text(f"q{i}.wild.example.") for i in range(4)]
    for i, name in enumerate(names):
        cache.put(name, 1, wildcard_answer(i))
    assert len(cache._hot) == 2
    assert cache.get(names[0], 1).rrsets[0].name == names[0]  # parsed from bytes
    replaced = wildcard_answer(3)
    replaced.rrsets = [dns.rrset.from_text(names[3], 300, "IN", "A", "192.0.2.77")]
    cache.put(names[3], 1, replaced)
    cache.get(names[1], 1)
    cache.get(names[2], 1)  # names[3] leaves the parsed copies
    cache._keep_hot((names[3], 1), object(), [], [])  # a parsed copy of another entry
    assert cache.get(names[3], 1).rrsets == replaced.rrsets


def test_answers_are_packed_when_they_leave_the_parsed_copies(monkeypatch) -> None:
    """Storing an answer does not render it (the miss path); leaving the parsed copies does,
    and it reads back the same."""
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    cache = Cache()
    names = [dns.name.from_text(f"q{i}.wild.example.") for i in range(2)]
    cache.put(names[0], 1, wildcard_answer(0))
    entry = cache._entries[(names[0], 1)]
    assert entry.packed is None
    cache.put(names[1], 1, wildcard_answer(1))
    assert isinstance(entry.packed, bytes)
    again = cache.get(names[0], 1)
    assert again.rrsets == wildcard_answer(0).rrsets
    assert again.authority == wildcard_answer(0).authority
