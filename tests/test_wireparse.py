"""resolver.resolve._wireparse (issue #20): upstream replies parsed in compiled code must be the
very messages dnspython's from_wire builds (same classes, fields, RRset grouping, TTLs, order,
records found by hash and RRsets by find_rrset alike; without the index), take the compiled path for what a resolver meets, and refuse exactly what dnspython
refuses: every reply the signed test tree gives, the on-path harness's forgeries' shapes
(pointers, truncations, flipped bytes), and records of types built by dnspython itself."""

import random

import dns.message
import dns.name
import dns.rdatatype
import pytest

from resolver.resolve import _wireparse, transport
from tests.testtree import authority, zonedata

TYPES = ("A", "AAAA", "NS", "SOA", "DS", "DNSKEY", "MX", "TXT", "NSEC3PARAM", "CNAME", "DNAME")


def _slots(obj) -> dict:
    return {s: getattr(obj, s) for k in type(obj).__mro__ for s in getattr(k, "__slots__", ())
            if hasattr(obj, s)}


def assert_same_value(a, b, what) -> None:
    assert type(a) is type(b), (what, a, b)
    if isinstance(a, dns.name.Name):
        assert a.labels == b.labels, what
    else:
        assert a == b, (what, a, b)


def assert_same(ours: dns.message.Message, theirs: dns.message.Message) -> None:
    """Field by field, type by type: not only ``==`` (which dnspython judges on rendering)."""
    assert type(ours) is type(theirs)
    assert vars(ours).keys() == vars(theirs).keys()  # every field dnspython's message has
    for attr in ("id", "flags", "request_mac", "xfr", "origin", "tsig_ctx", "wire", "ednsflags",
                 "payload", "options", "opt", "tsig", "request_payload", "pad", "keyring",
                 "want_tsig_sign", "errors"):
        assert_same_value(getattr(ours, attr), getattr(theirs, attr), attr)
    for mine, other in zip(ours.sections, theirs.sections, strict=True):
        assert len(mine) == len(other)
        for r1, r2 in zip(mine, other):
            assert type(r1) is type(r2)
            for attr in ("name", "rdclass", "rdtype", "covers", "ttl", "deleting"):
                assert_same_value(getattr(r1, attr), getattr(r2, attr), attr)
            assert len(r1) == len(r2)
            for rd1, rd2 in zip(r1, r2):
                assert type(rd1) is type(rd2)
                s1, s2 = _slots(rd1), _slots(rd2)
                assert s1.keys() == s2.keys()
                for field in s1:
                    assert_same_value(s1[field], s2[field], (rd1.rdtype, field))
            # Each record stored under the hash its own __hash__ gives (the parser computes it
            # from the bytes): found again by dict lookups, ours and dnspython's records alike.
            assert all(rd in r1.items for rd in [*r1, *r2]), r1
    # The compiled path builds no index (find_rrset scans the sections, finding the same
    # RRsets); a message left to dnspython has its own.
    assert ours.index is None or list(ours.index) == list(theirs.index)
    for section, name, rdclass, rdtype, covers, deleting in theirs.index:
        assert ours.find_rrset(section, name, rdclass, rdtype, covers, deleting) == \
            theirs.index[section, name, rdclass, rdtype, covers, deleting]
    assert ours == theirs


def _servers() -> dict[dns.name.Name, authority.Server]:
    servers = {}
    for address, spec in zonedata.manifest()["servers"].items():
        if spec["role"] in ("authoritative", "hostile"):
            server = authority.Server(address, [zonedata.load(n) for n in spec["zones"]],
                                      **spec.get("behaviour", {}))
            for zone in spec["zones"]:
                servers[dns.name.from_text(zone)] = server
    return servers


def _replies() -> list[bytes]:
    """What every zone's server answers (over UDP, as the resolver asks: DO, EDNS) for its
    apex, its expected names and a name that does not exist, for the common types."""
    manifest = zonedata.manifest()
    replies = []
    for zone, server in _servers().items():
        names = {zone, dns.name.from_text("nonexistent", zone)}
        for text in manifest["zones"].get(zone.to_text(), {}).get("expect", {}).get("names", {}):
            names.add(dns.name.from_text(text.split()[0]))
        for name in sorted(names):
            for rdtype in TYPES:
                query = transport.make_query(name, dns.rdatatype.from_text(rdtype))
                wire = server.handle(query.to_wire(), "udp")
                if wire is not None:
                    replies.append(wire)
    return replies


@pytest.fixture(scope="module")
def replies() -> list[bytes]:
    return _replies()


def test_every_reply_of_the_tree_is_dnspythons_message_on_the_compiled_path(replies):
    assert len(replies) > 500
    for wire in replies:
        assert_same(_wireparse.parse(wire), dns.message.from_wire(wire))  # no fallback


def _outcome(parse, wire):
    try:
        return parse(wire), None
    except Exception as exc:  # noqa: BLE001
        return None, type(exc)


def test_damaged_replies_are_parsed_or_refused_as_dnspython_does(replies):
    """Truncations and flipped bytes (in names, pointers, counts, rdata lengths and fields):
    ``from_wire`` parses what dnspython parses, into the same message, and raises dnspython's
    own error for the rest."""
    rng = random.Random(20)
    tried = parsed = 0
    for wire in replies[::25]:
        variants = [wire[:cut] for cut in range(12, len(wire), 29)]
        for _ in range(20):
            damaged = bytearray(wire)
            for _ in range(rng.choice((1, 1, 2, 3))):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            variants.append(bytes(damaged))
        for variant in variants:
            tried += 1
            ours, our_error = _outcome(_wireparse.from_wire, variant)
            theirs, their_error = _outcome(dns.message.from_wire, variant)
            assert our_error is their_error, variant.hex()
            if theirs is not None:
                parsed += 1
                assert_same(ours, theirs)
    assert parsed > tried // 10  # the damage left many messages parseable: both paths tested


def test_compression_pointers_follow_dnspythons_rules():
    """RFC 1035 §4.1.4: a pointer must point backwards, not into the name it ends; a name
    holds at most 255 octets; RRSIG signers and NSEC next names are never compressed."""
    header = bytes.fromhex("1234 8400 0001 0001 0000 0000")
    question = b"\x03www\x07example\x00\x00\x01\x00\x01"
    good = header + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"
    assert_same(_wireparse.parse(good), dns.message.from_wire(good))
    forward = header + question + b"\xc0\x30" + good[len(header) + len(question) + 2:]
    loop = header + b"\xc0\x0c\x00\x01\x00\x01" + good[len(header) + len(question):]
    signer = (header + question + b"\xc0\x0c\x00\x2e\x00\x01\x00\x00\x00\x3c\x00\x14"
              + bytes.fromhex("0001 08 02 0000003c 00000000 00000000 0001") + b"\xc0\x10")
    long_name = header + b"".join([b"\x3f" + b"a" * 63] * 4) + b"\x00\x00\x01\x00\x01" + \
        good[len(header) + len(question):]
    for wire in (forward, loop, signer, long_name):
        with pytest.raises(Exception):
            _wireparse.parse(wire)
        theirs, their_error = _outcome(dns.message.from_wire, wire)
        ours, our_error = _outcome(_wireparse.from_wire, wire)
        assert their_error is not None and our_error is their_error


def test_types_not_built_here_and_duplicates_follow_dnspython():
    """An MX, a TXT and an unknown type go through dnspython's rdata parser; a repeated
    record is kept once, an RRset's TTL is its smallest, a CNAME keeps its last record
    (a singleton type, as dnspython keeps it)."""
    response = dns.message.make_response(dns.message.make_query("x.example.", "A",
                                                                want_dnssec=True))
    for text in ("x.example. 300 IN MX 10 mail.example.",
                 "x.example. 300 IN TXT \"a\" \"b\"",
                 "x.example. 300 IN TYPE65280 \\# 3 010203",
                 "x.example. 60 IN A 192.0.2.1", "X.EXAMPLE. 30 IN A 192.0.2.1",
                 "x.example. 90 IN A 192.0.2.2",
                 "c.example. 10 IN CNAME a.example.", "c.example. 5 IN CNAME b.example."):
        rrset = dns.rrset.from_text(*text.split(" ", 3)[:3], *text.split(" ", 4)[3:])
        response.answer.append(rrset)
    wire = response.to_wire(max_size=65535)
    assert_same(_wireparse.parse(wire), dns.message.from_wire(wire))
