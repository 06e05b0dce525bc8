"""Built-in root hints and trust anchors, and trust-anchor parsing (resolver.dnssec.anchors)."""

from __future__ import annotations

import ipaddress
import string

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdatatype
import pytest

from resolver.dnssec.anchors import (DEFAULT_ANCHOR_TTL, ROOT_HINTS, ROOT_TRUST_ANCHORS, TrustAnchorError,
                              builtin_trust_anchors, load_trust_anchor_file, parse_trust_anchors)
from resolver.dnssec import Verdict, authenticate_dnskeys
from tests.testtree import NOW, ZONES_DIR, zonedata

DS = dns.rdatatype.DS
DNSKEY = dns.rdatatype.DNSKEY

# The root KSKs as IANA publishes them (root-anchors.xml) and the root zone serves them.
KSK_2017 = (
    "257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5e"
    "mLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8"
    "efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/i"
    "lBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU=")
KSK_2024 = (
    "257 3 8 AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyGwCJNnOAlFNKF2jBosZBU"
    "5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAx"
    "m9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEpUge71M3ej2/7CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQ"
    "NatX2XBuzZNQ1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc=")

HEX32 = "AB" * 32
HEX32_B = "CD" * 32


# --- built-in data ----------------------------------------------------------------------------

@pytest.mark.parametrize("key_text, tag", [(KSK_2017, 20326), (KSK_2024, 38696)])
def test_builtin_ds_matches_the_published_root_ksk(key_text, tag):
    key = dns.rdata.from_text("IN", "DNSKEY", key_text)
    assert dns.dnssec.key_id(key) == tag
    assert key.flags == 257 and key.algorithm == 8
    expected = dns.dnssec.make_ds(dns.name.root, key, "SHA256")
    (anchors,) = builtin_trust_anchors()
    assert expected in anchors
    assert any(f" DS {tag} 8 2 {expected.digest.hex().upper()}" in text
               for text in ROOT_TRUST_ANCHORS)


def test_builtin_anchors_are_one_root_ds_rrset():
    (rrset,) = builtin_trust_anchors()
    assert rrset.name == dns.name.root and rrset.rdtype == DS
    assert sorted(ds.key_tag for ds in rrset) == [20326, 38696]
    assert all(ds.algorithm == 8 and ds.digest_type == 2 for ds in rrset)


def test_builtin_anchors_are_fresh_copies():
    first = builtin_trust_anchors()
    first[0].clear()
    assert len(builtin_trust_anchors()[0]) == 2


def test_thirteen_root_servers_with_both_families():
    assert [str(hint.name) for hint in ROOT_HINTS] == [
        f"{letter}.root-servers.net." for letter in string.ascii_lowercase[:13]]
    every = []
    for hint in ROOT_HINTS:
        assert hint.name.is_absolute()
        versions = sorted(ipaddress.ip_address(a).version for a in hint.addresses)
        assert versions == [4, 6], hint
        assert all(ipaddress.ip_address(a).is_global for a in hint.addresses), hint
        every += hint.addresses
    assert len(set(every)) == 26


def test_root_hints_spot_check():
    hints = {str(hint.name): hint.addresses for hint in ROOT_HINTS}
    assert hints["a.root-servers.net."] == ("198.41.0.4", "2001:503:ba3e::2:30")
    # B's renumbered addresses, not the old 199.9.14.201 / 2001:500:200::b.
    assert hints["b.root-servers.net."] == ("170.247.170.2", "2801:1b8:10::b")
    assert hints["m.root-servers.net."] == ("202.12.27.33", "2001:dc3::35")


# --- parse_trust_anchors ----------------------------------------------------------------------

def test_parse_groups_by_owner_and_type():
    rrsets = parse_trust_anchors([
        f"example. IN DS 1 8 2 {HEX32}",
        f"example. 60 DS 2 8 2 {HEX32_B}",
        f". DNSKEY {KSK_2017}",
        f"Example. IN DNSKEY {KSK_2024}",
    ])
    assert [(str(r.name), r.rdtype, len(r)) for r in rrsets] == [
        ("example.", DS, 2), (".", DNSKEY, 1), ("Example.", DNSKEY, 1)]
    assert rrsets[0].ttl == 60  # the smallest TTL of the group


def test_parse_ttl_and_class_are_optional():
    (rrset,) = parse_trust_anchors([f". DS 20326 8 2 {HEX32}"])
    assert rrset.ttl == DEFAULT_ANCHOR_TTL
    (rrset,) = parse_trust_anchors([f". 3600 IN DS 20326 8 2 {HEX32}"])
    assert rrset.ttl == 3600


def test_parse_digest_may_have_spaces_and_a_comment():
    (rrset,) = parse_trust_anchors([f". IN DS 1 8 2 {HEX32[:20]} {HEX32[20:]} ; KSK"])
    assert next(iter(rrset)).digest == bytes.fromhex(HEX32)


def test_parse_accepts_the_builtin_strings_and_unknown_digest_types():
    assert parse_trust_anchors(ROOT_TRUST_ANCHORS) == builtin_trust_anchors()
    (rrset,) = parse_trust_anchors([". IN DS 1 8 99 ABCD"])  # unsupported: the zone is insecure
    assert next(iter(rrset)).digest_type == 99


@pytest.mark.parametrize("line, message", [
    (f"example IN DS 1 8 2 {HEX32}", "owner 'example' must be absolute"),
    (f"@ IN DS 1 8 2 {HEX32}", "owner '@' must be absolute"),
    (f" IN DS 1 8 2 {HEX32}", "owner 'IN' must be absolute"),
    (f"a..b. IN DS 1 8 2 {HEX32}", "label is empty"),
    (". IN DS 1 8 2 ABCD", "digest length inconsistent with digest type"),
    (". IN DS 1 8 2 " + "ZZ" * 32, "Non-hexadecimal digit"),
    (". IN DS 70000 8 2 " + HEX32, "not an unsigned 16-bit integer"),
    (". IN DS 1 8", "expecting"),
    (f". CH DS 1 8 2 {HEX32}", "class must be IN"),
    (". IN A 192.0.2.1", "type A is not DS or DNSKEY"),
    (". IN FOO 1", "unknown rdatatype 'FOO'"),
    (". IN DNSKEY 256 3 8 AwEAAaz/tAm8", None),  # a zone key without SEP is acceptable
    (". IN DNSKEY 1 3 8 AwEAAaz/tAm8", "not a zone key"),
    (". IN DNSKEY 385 3 8 AwEAAaz/tAm8", "key is revoked (RFC 5011)"),
    (". IN DNSKEY 257 4 8 AwEAAaz/tAm8", "protocol 4 is not 3"),
    (". IN DNSKEY 257 3 8 !!!", "base64"),
    ("$TTL 60", "directive $TTL is only allowed in a file"),
    ("", "empty"),
    ("; just a comment", "empty"),
    (f". IN DS 1 8 2 {HEX32}\n. IN DS 2 8 2 {HEX32}", "expected exactly one record"),
    (42, "expected a string, got int"),
])
def test_parse_errors_are_clear(line, message):
    lines = [ROOT_TRUST_ANCHORS[0], line]
    if message is None:
        assert len(parse_trust_anchors(lines)) == 2
        return
    with pytest.raises(TrustAnchorError) as info:
        parse_trust_anchors(lines)
    assert info.value.index == 1
    assert message in info.value.reason
    assert str(info.value).startswith("trust anchor 1: ")


# --- load_trust_anchor_file -------------------------------------------------------------------

def test_load_file_with_directives_relative_names_and_parentheses(tmp_path):
    path = tmp_path / "anchors.zone"
    path.write_text(f"""; trust anchors
$TTL 3600
$ORIGIN example.
@        IN DS 1 8 2 {HEX32}
sub      DNSKEY ( 257 3 8
                  {KSK_2017.split()[3][:60]}
                  {KSK_2017.split()[3][60:]} ) ; KSK-2017's key, for the shape
.        172800 IN DS 20326 8 2 {HEX32_B}
example. DS 2 8 2 {HEX32_B}
""")
    rrsets = load_trust_anchor_file(str(path))
    assert [(str(r.name), r.rdtype, len(r), r.ttl) for r in rrsets] == [
        ("example.", DS, 2, 3600), ("sub.example.", DNSKEY, 1, 3600), (".", DS, 1, 172800)]
    assert dns.dnssec.key_id(next(iter(rrsets[1]))) == 20326


def test_load_file_without_ttl_or_origin(tmp_path):
    path = tmp_path / "root.ds"
    path.write_text("\n".join(ROOT_TRUST_ANCHORS) + "\n")
    assert load_trust_anchor_file(str(path)) == builtin_trust_anchors()


@pytest.mark.parametrize("text, message", [
    (f"; comment\n. IN DS 1 8 2 {HEX32}\n. IN DS 1 8 2 ABCD\n",
     ":3: digest length inconsistent with digest type"),
    (f". IN DS 1 8 2 {HEX32}\n\n$INCLUDE /etc/passwd\n", ":3: zone file directive '$INCLUDE'"),
    (f"$GENERATE 1-2 a$ DS 1 8 2 {HEX32}\n", ":1: zone file directive '$GENERATE'"),
    (". IN DS 1 8 2 (\n" + HEX32 + "\n", "unbalanced parentheses"),
    (". IN A 192.0.2.1\n", ": .: type A is not DS or DNSKEY"),
    (". IN DNSKEY 385 3 8 AwEAAaz/tAm8\n", "key is revoked"),
    ("; nothing here\n", ": no DS or DNSKEY records"),
])
def test_load_file_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "anchors.zone"
    path.write_text(text)
    with pytest.raises(TrustAnchorError) as info:
        load_trust_anchor_file(str(path))
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert info.value.index is None


def test_load_missing_file(tmp_path):
    with pytest.raises(TrustAnchorError, match="No such file or directory"):
        load_trust_anchor_file(str(tmp_path / "missing.zone"))


def test_anchor_file_feeds_the_validator():
    """The test tree's root DS, loaded as an anchor file, authenticates its root DNSKEYs."""
    (anchor,) = load_trust_anchor_file(str(ZONES_DIR / "root" / "ds"))
    root = zonedata.load(".")
    result = authenticate_dnskeys(root.dnskeys(), root.rrsigs(".", DNSKEY), anchor, now=NOW)
    assert result.verdict is Verdict.SECURE, result.reason
