"""The answer cache on its own: TTL countdown, negative entries, LRU bound, and entries kept as
message bytes (issue #5 memory)."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rrset

from resolver.resolve import cache as cache_module
from resolver.dnssec.canonical import name_wire
from resolver.resolve.cache import Answer, Cache, Proof
from resolver.dnssec import Verdict

NSEC = ("*.wild.example.", 300, "IN", "NSEC", "zz.example. A RRSIG NSEC")


def key(name: dns.name.Name, rdtype: int) -> bytes:
    """The cache's key for ``name``/``rdtype``."""
    return cache_module._key(name_wire(name.labels), rdtype)


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


def test_an_answer_too_big_for_one_message_packs_all_the_same(monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    cache = Cache()
    name = dns.name.from_text("big.example.")
    txt = [" ".join(['"' + "x" * 250 + '"'] * 8)] * 40  # 40 RRs of 2 KB: over 64 KiB
    big = dns.rrset.from_text_list(name, 300, "IN", "TXT", [f"{t} {i}" for i, t in
                                                          enumerate(txt)])
    cache.put(name, 16, Answer(dns.rcode.NOERROR, Verdict.SECURE, rrsets=[big], ttl=300))
    cache.put(dns.name.from_text("q1.wild.example."), 1, wildcard_answer(1))  # big is packed
    assert isinstance(cache._entries[key(name, 16)].own, bytes)
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
    cache._keep_hot(key(names[3], 1), object(), [], [])  # a parsed copy of another entry
    assert cache.get(names[3], 1).rrsets == replaced.rrsets


def test_answers_are_packed_when_they_leave_the_parsed_copies(monkeypatch) -> None:
    """Storing an answer does not render it (the miss path); leaving the parsed copies does,
    and it reads back the same."""
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    cache = Cache()
    names = [dns.name.from_text(f"q{i}.wild.example.") for i in range(2)]
    cache.put(names[0], 1, wildcard_answer(0))
    entry = cache._entries[key(names[0], 1)]
    assert entry.own is None
    cache.put(names[1], 1, wildcard_answer(1))
    assert isinstance(entry.own, bytes)
    again = cache.get(names[0], 1)
    assert again.rrsets == wildcard_answer(0).rrsets
    assert again.authority == wildcard_answer(0).authority


RSA_SIG = ("AwEAAcMnWBKLuvG/LwnPVykcmpvnntwxfshHlHRhlY0F3oz8AMcuF8gw9McCw+BoC2YxWaaTpHMe4Z3"
           "iMB3Zaq9AFBjg0CBiTFb4zYWFxRXaqsx+A3KMSjoy0wDrwOnXswtOZbYYQlBBHB1Uti8VdYR6NLFPgn"
           "tsUCjNOyd/EnlMVHuxk8AOk5ybGR5Zl0CugPOMtTtg8SxGTPiv7ZNO9tcMb0Hrs2vgkbeaBvjdF9O0V"
           "h3fTSwRvhRF9AoLYQSfAJafnJYwXeWaVLPdSbcaHEXpunz2wkfBH8Uj+XoCStd+mhPk4+ZsNsvTyOm5"
           "V3UHkZfV68hP5NQn8fYUBvJmK7DmBl3tIsU=")
SHAPES = [  # (owner, type, RDATA texts): every kind of RDATA field dnspython parses
    ("q1.wild.example.", "A", ["192.0.2.1", "192.0.2.2"]),
    ("q1.wild.example.", "AAAA", ["2001:db8::1"]),
    ("Q1.Wild.EXAMPLE.", "CNAME", ["Target.Example."]),
    ("example.", "NS", ["ns1.example.", "NS2.example."]),
    ("example.", "SOA", ["ns1.example. hostmaster.example. 2026010101 7200 3600 1209600 300"]),
    ("example.", "MX", ["10 mail.example.", "20 mail2.example."]),
    ("example.", "TXT", ['"v=spf1 -all"', '"two" "strings"', '""']),
    ("example.", "CAA", ['0 issue "ca.example"']),
    ("_443._tcp.example.", "TLSA", ["3 1 1 " + "ab" * 32]),
    ("_sip._udp.example.", "SRV", ["10 60 5060 sip.example."]),
    ("example.", "NAPTR", ['100 10 "S" "SIP+D2U" "" _sip._udp.example.']),
    ("example.", "HTTPS", ['1 . alpn="h2,h3" port=8443 ipv4hint=192.0.2.7']),
    ("sub.example.", "DNAME", ["other.example."]),
    ("example.", "DS", ["4711 13 2 " + "cd" * 32]),
    ("example.", "DNSKEY", ["257 3 8 " + RSA_SIG]),
    ("q1.wild.example.", "RRSIG",
     ["A 8 3 300 20360101000000 20260101000000 4711 example. " + RSA_SIG,
      "A 13 3 300 20360101000000 20260101000000 4712 Example. " + RSA_SIG[:88]]),
    ("*.wild.example.", "NSEC", ["zz.example. A RRSIG NSEC TYPE65280"]),
    ("2vptu5timamqttgl4luu9kg21e0aor3s.example.", "NSEC3",
     ["1 1 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3T A RRSIG"]),
    ("example.", "NSEC3PARAM", ["1 0 0 cafe"]),
    ("x.example.", "TYPE65280", [r"\# 3 010203", r"\# 0"]),
    (".", "NSEC", ["aaa. NS SOA RRSIG NSEC DNSKEY"]),
    ("a\\.b\\032c.example.", "A", ["192.0.2.9"]),
]


def test_every_rrset_shape_packs_and_comes_back_the_same() -> None:
    """Packing keeps type, covered type, class, TTL, RDATA and the owner's case; an RRset at
    the entry's own name is packed without its owner."""
    entry_name = dns.name.from_text("q1.wild.example.")
    for owner, rdtype, texts in SHAPES:
        rrset = dns.rrset.from_text_list(owner, 3600, "IN", rdtype, texts)
        packed = cache_module.pack_rrset(rrset, entry_name)
        assert packed.startswith(cache_module.OWN_NAME) == (owner == "q1.wild.example.")
        back = cache_module.unpack_rrset(packed, entry_name)
        assert back == rrset and back.covers == rrset.covers and back.ttl == 3600, owner
        assert back.name.labels == rrset.name.labels  # case as served
        assert sorted(r.to_wire() for r in back) == sorted(r.to_wire() for r in rrset)
    empty = dns.rrset.RRset(entry_name, 1, 46, 1)  # no RDATA: the covered type is kept
    back = cache_module.unpack_rrset(cache_module.pack_rrset(empty, entry_name), entry_name)
    assert back == empty and back.covers == 1 and len(back) == 0


def signed_wildcard_answer(name: str, zone: str = "example.") -> Answer:
    """A wildcard expansion as the iterator stores it: the A RRset, the wildcard's RRSIG (its
    labels field counts the wildcard's labels), the covering NSEC and its RRSIG."""
    labels = zone.count(".") + 1
    answer = Answer(dns.rcode.NOERROR, Verdict.SECURE, ttl=300, proof=Proof(
        zone=dns.name.from_text(zone), zones=[".", zone], denial="nsec",
        signatures=[(name, "A", zone, 4711, 8, 1767225600, 2082758400)],
        notes=[f"dnskey {zone} 4711/8 (DS from .)"]))
    answer.rrsets = [
        dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"),
        dns.rrset.from_text(name, 300, "IN", "RRSIG", f"A 8 {labels} 300 20360101000000 "
                            f"20260101000000 4711 {zone} {RSA_SIG}")]
    answer.authority = [
        dns.rrset.from_text(f"*.wild.{zone}", 300, "IN", "NSEC", f"zz.{zone} A RRSIG NSEC"),
        dns.rrset.from_text(f"*.wild.{zone}", 300, "IN", "RRSIG", f"NSEC 8 {labels + 1} 300 "
                            f"20360101000000 20260101000000 4711 {zone} {RSA_SIG}")]
    return answer


def test_what_many_entries_share_is_held_once_and_released_with_the_last(monkeypatch) -> None:
    """The wildcard's signature, the NSEC with its RRSIG and the proof are held once for all
    of a zone's expansions; the expansion's own A RRset is the entry's. When the last entry
    holding them is evicted or expires, the table lets them go."""
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    clock = Clock()
    cache = Cache(max_entries=50, clock=clock)
    for i in range(40):
        cache.put(dns.name.from_text(f"q{i}.wild.example."), 1,
                  signed_wildcard_answer(f"q{i}.wild.example."))
    # RRSIG of the A, NSEC, RRSIG of the NSEC, their layout among an entry's RRsets, the proof
    assert len(cache._shared) == 5
    entry = cache._entries[key(dns.name.from_text("q0.wild.example."), 1)]
    assert [held is None for held in entry.shared.value] == [True, False, False, False]
    assert cache_module.unpack_rrset(entry.own, dns.name.from_text("q0.wild.example.")) == \
        signed_wildcard_answer("q0.wild.example.").rrsets[0]
    for i in range(40):
        name = dns.name.from_text(f"q{i}.wild.example.")
        got = cache.get(name, 1)
        assert got.rrsets == signed_wildcard_answer(f"q{i}.wild.example.").rrsets
        assert got.authority == signed_wildcard_answer(f"q{i}.wild.example.").authority
        assert got.proof == signed_wildcard_answer(f"q{i}.wild.example.").proof
    for i in range(50):  # another zone's names push every example. entry out
        cache.put(dns.name.from_text(f"q{i}.wild.other."), 1,
                  signed_wildcard_answer(f"q{i}.wild.other.", "other."))
    assert cache.evictions == 40 and len(cache._shared) == 5
    assert all(held.value[0] == dns.name.from_text("other.")
               for held in cache._shared._held.values()
               if type(held.value) is tuple and isinstance(held.value[0], dns.name.Name))
    clock.now += 301
    for i in range(50):
        assert cache.get(dns.name.from_text(f"q{i}.wild.other."), 1) is None
    assert len(cache) == 0 and len(cache._shared) == 0


def test_layouts_share_their_rrsets_and_let_them_go_with_the_last(monkeypatch) -> None:
    """Two layouts (the same wildcard signature, another NSEC) hold the signature once; each
    layout goes with its last entry, and the signature with the last layout."""
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    clock = Clock()
    cache = Cache(clock=clock)
    for i in range(6):
        answer = signed_wildcard_answer(f"q{i}.wild.example.")
        if i % 2:
            answer.authority = answer.authority[1:]  # the NSEC's RRSIG alone: another layout
        cache.put(dns.name.from_text(f"q{i}.wild.example."), 1, answer)
    cache.put(dns.name.from_text("nx.other."), 1, Answer(dns.rcode.NXDOMAIN, Verdict.INSECURE,
                                                         ttl=600))  # all six are packed now
    layouts = {id(cache._entries[key(dns.name.from_text(f"q{i}.wild.example."), 1)].shared)
               for i in range(6)}
    wires = [h for h in cache._shared._held.values() if type(h.value) is bytes]
    assert len(layouts) == 2 and len(wires) == 3  # the A's RRSIG, the NSEC, its RRSIG
    rrsig = next(h for h in wires if h.value.startswith(cache_module.OWN_NAME))
    assert rrsig.holders == 2  # once per layout
    for i in range(6):
        got = cache.get(dns.name.from_text(f"q{i}.wild.example."), 1)
        assert got.rrsets == signed_wildcard_answer(f"q{i}.wild.example.").rrsets
    clock.now += 301
    for i in range(6):
        assert cache.get(dns.name.from_text(f"q{i}.wild.example."), 1) is None
    assert len(cache._shared) == 1  # nx.other.'s proof alone


def test_a_replaced_entry_gives_back_what_it_held(monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "HOT_ENTRIES", 1)
    cache = Cache()
    name = dns.name.from_text("q1.wild.example.")
    cache.put(name, 1, signed_wildcard_answer("q1.wild.example."))
    cache.put(dns.name.from_text("nx.example."), 1, Answer(dns.rcode.NXDOMAIN, Verdict.SECURE,
                                                           ttl=60))  # q1 is packed
    before = len(cache._shared)
    cache.put(name, 1, wildcard_answer(1))  # an unsigned answer for the same question
    # the two RRSIGs, the NSEC and their layout; the proof replaced
    assert len(cache._shared) == before - 4
    cache.clear()
    assert len(cache._shared) == 0


def test_names_are_found_in_any_case_and_served_in_theirs(monkeypatch) -> None:
    """RFC 4343: the key ignores ASCII case; the RRsets and the proof keep the case they were
    stored with, packed or not."""
    for hot in (4, 1):  # kept parsed, and packed
        monkeypatch.setattr(cache_module, "HOT_ENTRIES", hot)
        cache = Cache()
        served = "Q1.Wild.EXAMPLE."
        cache.put(dns.name.from_text(served), 1, signed_wildcard_answer(served))
        cache.put(dns.name.from_text("other.example."), 1, wildcard_answer(2))
        got = cache.get(dns.name.from_text("q1.wild.example."), 1)
        assert got is not None and got.rrsets[0].name.to_text() == served
        assert got.rrsets[1].name.to_text() == served
        assert got.proof.signatures[0][0] == served


def test_a_lower_case_name_is_kept_as_its_key_alone(monkeypatch) -> None:
    """An entry holds no text of its name when the key's (lower case) name is it, escapes
    included (RFC 1035 §5.1); what comes back is the same, packed or not."""
    for hot in (4, 1):
        monkeypatch.setattr(cache_module, "HOT_ENTRIES", hot)
        cache = Cache()
        for served in ("q1.wild.example.", "q\\.2\\000\\@.wild.example.", "Q3.wild.example."):
            name = dns.name.from_text(served)
            cache.put(name, 1, signed_wildcard_answer(served))
            cache.put(dns.name.from_text("other.example."), 1, wildcard_answer(2))
            key = cache_module._key(name_wire(name.labels), 1)
            assert cache._entries[key].owner == (served if served[0] == "Q" else None)
            got = cache.get(name, 1)
            assert got.rrsets[0].name == name and got.rrsets[0].name.to_text() == served
            assert got.proof.signatures[0][0] == served


def test_a_proof_read_from_the_cache_is_the_callers_own() -> None:
    cache = Cache()
    name = dns.name.from_text("q1.wild.example.")
    cache.put(name, 1, signed_wildcard_answer("q1.wild.example."))
    first = cache.get(name, 1)
    first.proof.notes.append("changed")
    first.proof.signatures.clear()
    again = cache.get(name, 1)
    assert again.proof == signed_wildcard_answer("q1.wild.example.").proof
