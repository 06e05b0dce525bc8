"""``canonical.rdata_wire`` builds the canonical RDATA of the common types from dnspython's fields
(issue #20): the same bytes as dnspython's ``to_wire`` then ``canonical_rdata`` (RFC 4034 §6.2,
RFC 6840 §5.1), on every record of the signed test tree and on hand-built edge cases, and the
same exceptions when a field is not what dnspython builds."""

import struct

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from resolver.dnssec import canonical
from tests.testtree import zonedata

# The types rdata_wire writes from their fields (A and AAAA too, tested in test_verify_core.py).
BUILT = {"NS", "CNAME", "DNAME", "PTR", "MX", "SRV", "SOA", "TXT", "SPF", "DS", "CDS", "DNSKEY",
         "CDNSKEY", "NSEC", "NSEC3", "NSEC3PARAM"}


def old_path(rd) -> bytes:
    return canonical.canonical_rdata(rd.rdtype, rd.to_wire())


def _all_zones():
    manifest = zonedata.manifest()
    return [*manifest["zones"], *manifest.get("scenario_zones", {})]


@pytest.mark.parametrize("zone", _all_zones())
def test_every_record_of_the_test_tree(zone):
    for node in zonedata.load(zone).zone.nodes.values():
        for rdataset in node.rdatasets:
            for rd in rdataset:
                assert canonical.rdata_wire(rd) == old_path(rd), rd.to_text()


def test_the_tree_holds_the_built_types():
    # so that test_every_record_of_the_test_tree exercises the compiled path of most of them
    seen = {dns.rdatatype.to_text(rdataset.rdtype) for zone in _all_zones()
            for node in zonedata.load(zone).zone.nodes.values() for rdataset in node.rdatasets}
    assert BUILT - seen == {"PTR", "SRV", "SPF", "CDS", "CDNSKEY"}  # those are in HAND_BUILT


# Names with upper case, escaped dots, zero octets, "A".."Z" written as \065..\090 and octets
# above 0x7F (0xC1..0xDA are "A".."Z" plus 0x80: never lowered).
NAMES = ["Mixed.Case.EXAMPLE.", "a\\.B.Example.", "\\000\\000.X.", "\\065\\090\\091\\064.test.",
         "\\193\\218\\200\\255\\128.Example.", "."]
NAME_TYPES = ["NS", "CNAME", "DNAME", "PTR"]

HAND_BUILT = [
    *[(rdtype, name) for rdtype in NAME_TYPES for name in NAMES],
    *[("MX", f"65535 {name}") for name in NAMES],
    *[("SRV", f"0 65535 443 {name}") for name in NAMES],
    ("SOA", "NS.Example. Host\\.Master.Example. 4294967295 0 1 2 3"),
    ("SOA", ". . 1 2 3 4 5"),
    ("TXT", '""'), ("TXT", '"" "" ""'), ("TXT", '"Mixed Case" "\\000\\255"'),
    ("TXT", '"' + "x" * 255 + '"'), ("TXT", '"' + "y" * 255 + '" ""'),
    ("TXT", " ".join(f'"s{i}"' for i in range(200))),
    ("SPF", '"v=spf1 -all"'), ("SPF", '""'),
    ("DS", "12345 13 2 " + "AB" * 32), ("DS", "0 255 255 00"), ("DS", "65535 8 1 " + "ff" * 20),
    ("CDS", "12345 13 2 " + "ab" * 32), ("CDS", "0 0 0 00"),
    ("DNSKEY", "257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="),
    ("DNSKEY", "65535 255 255 AA=="), ("CDNSKEY", "0 3 0 AA=="),
    ("NSEC", "Next.EXAMPLE. A RRSIG NSEC"),
    ("NSEC", "a.Example. A TYPE1234 TYPE65535 RRSIG NSEC"),
    ("NSEC", "\\193Z.Example. TYPE65535"), ("NSEC", ". NS SOA"), ("NSEC", "a.example."),
    ("NSEC", "b.example. " + " ".join(f"TYPE{t}" for t in range(1, 65536, 257))),
    ("NSEC3", "1 1 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A RRSIG"),
    ("NSEC3", "1 0 65535 " + "ab" * 255 + " 2vptu5timamqttgl4luu9kg21e0aor3s"),
    ("NSEC3", "1 1 12 aabbccdd 2vptu5timamqttgl4luu9kg21e0aor3s A TYPE300 TYPE65535"),
    ("NSEC3PARAM", "1 0 0 -"), ("NSEC3PARAM", "1 255 65535 " + "cd" * 255),
]


@pytest.mark.parametrize("rdtype,text", HAND_BUILT)
def test_hand_built(rdtype, text, monkeypatch):
    rd = dns.rdata.from_text("IN", rdtype, text)
    expected = old_path(rd)
    # dnspython's canonical form lowers the same names (RFC 4034 §6.2, RFC 6840 §5.1)
    assert expected == rd.to_digestable()
    # built from the fields: dnspython's to_wire is not called
    monkeypatch.setattr(type(rd), "to_wire", None)
    assert canonical.rdata_wire(rd) == expected


def test_only_ascii_letters_are_lowered():
    rd = dns.rdata.from_text("IN", "NS", "\\065\\090\\091\\064\\193\\218.Example.")
    assert canonical.rdata_wire(rd) == b"\x06az[@\xc1\xda\x07example\x00"
    nsec = dns.rdata.from_text("IN", "NSEC", "\\065B.Example. A")
    assert canonical.rdata_wire(nsec) == b"\x02AB\x07Example\x00\x00\x01\x40"  # RFC 6840 §5.1


def test_soa_and_nsec3_layouts():
    soa = dns.rdata.from_text("IN", "SOA", "A. B. 16909060 1 2 3 4294967295")
    assert canonical.rdata_wire(soa) == (b"\x01a\x00\x01b\x00\x01\x02\x03\x04" +
                                         struct.pack("!IIII", 1, 2, 3, 4294967295))
    nsec3 = dns.rdata.from_text("IN", "NSEC3", "1 1 258 - 00000000 TYPE65535")
    assert canonical.rdata_wire(nsec3) == (b"\x01\x01\x01\x02\x00\x05" + bytes(5) +
                                           b"\xff\x20" + bytes(31) + b"\x01")


IN, NS, MX = dns.rdataclass.IN, dns.rdatatype.NS, dns.rdatatype.MX


def test_generic_rdata_takes_dnspython_path():
    assert canonical.rdata_wire(dns.rdata.GenericRdata(IN, NS, b"\x01A\x00")) == b"\x01a\x00"
    with pytest.raises(canonical.MalformedData):
        canonical.rdata_wire(dns.rdata.GenericRdata(IN, NS, b"\x05ab"))
    key = dns.rdata.GenericRdata(IN, dns.rdatatype.DNSKEY, b"\x01\x01\x03\x0f\xaa")
    assert canonical.rdata_wire(key) == b"\x01\x01\x03\x0f\xaa"
    # SRV outside class IN is dnspython's generic RDATA, not lowered (RFC 4034 §6.2 by type)
    chaos = dns.rdata.from_text("CH", "SRV", "\\# 9 000000010002 01 41 00")
    assert canonical.rdata_wire(chaos) == old_path(chaos)


def test_relative_name_raises_as_dnspython():
    rd = dns.rdata.from_text("IN", "NS", "host", origin=None)
    with pytest.raises(dns.name.NeedAbsoluteNameOrOrigin):
        rd.to_wire()
    with pytest.raises(dns.name.NeedAbsoluteNameOrOrigin):
        canonical.rdata_wire(rd)


@pytest.mark.parametrize("rdtype,text,field,value", [
    ("MX", "10 a.example.", "preference", 70000),
    ("MX", "10 a.example.", "preference", -1),
    ("SOA", "a. b. 1 2 3 4 5", "minimum", 1 << 32),
    ("SRV", "0 5 443 a.example.", "port", 1 << 70),
    ("DS", "1 13 255 00", "algorithm", 256),
    ("NSEC3PARAM", "1 0 0 -", "iterations", 65536),
    ("DNSKEY", "257 3 15 AA==", "flags", 65536),
    ("DNSKEY", "257 3 15 AA==", "protocol", -1),
])
def test_out_of_range_field_raises_as_dnspython(rdtype, text, field, value):
    rd = dns.rdata.from_text("IN", rdtype, text)
    object.__setattr__(rd, field, value)  # what dnspython's constructor would refuse
    with pytest.raises(struct.error):
        rd.to_wire()
    with pytest.raises(struct.error):
        canonical.rdata_wire(rd)


@pytest.mark.parametrize("rdtype,text,field,value", [
    ("TXT", '"a"', "strings", [b"a", b"b"]),             # a list, not a tuple
    ("MX", "10 a.example.", "preference", 10.0),          # a float
    ("NSEC", "a.example. A", "windows", ((0, bytearray(b"\x40")),)),
    ("DNSKEY", "257 3 15 AA==", "key", None),
    ("DNSKEY", "257 3 15 AA==", "flags", 257.0),
])
def test_unexpected_field_type_takes_dnspython_path(rdtype, text, field, value):
    rd = dns.rdata.from_text("IN", rdtype, text)
    object.__setattr__(rd, field, value)
    try:
        expected = old_path(rd)
    except Exception as error:  # noqa: BLE001 - whatever dnspython raises, rdata_wire raises
        with pytest.raises(type(error)):
            canonical.rdata_wire(rd)
    else:
        assert canonical.rdata_wire(rd) == expected
