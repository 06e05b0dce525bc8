"""The compiled DNSSEC core (resolver/dnssec/canonical.pyx, crypto.pyx, verify.pyx) against
dnspython's independent implementations and RFC definitions."""

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dnssec import canonical, crypto, verify

NAMES = ["example.", "WWW.Example.COM.", ".", "a\\.b.EXAMPLE.", "\\000.x.", "*.Wild.Test."]


@pytest.mark.parametrize("text", NAMES)
def test_name_wire_is_canonical(text):
    name = dns.name.from_text(text)
    assert canonical.name_wire(name.labels) == name.canonicalize().to_wire()
    assert canonical.name_wire(name.labels, False) == name.to_wire()


def test_name_wire_rejects_relative_and_long_names():
    with pytest.raises(canonical.MalformedData):
        canonical.name_wire(dns.name.from_text("www", origin=None).labels)
    with pytest.raises(canonical.MalformedData):
        canonical.name_wire((b"a" * 64, b""))
    with pytest.raises(canonical.MalformedData):
        canonical.name_wire(tuple([b"a" * 63] * 4) + (b"",))


# RFC 4034 §6.2 item 3 as amended by RFC 6840 §5.1: embedded names of these types lowercased.
LOWERED = [
    ("NS", "NS1.Example."), ("CNAME", "Target.Example."), ("PTR", "Host.Example."),
    ("DNAME", "Other.Example."), ("MX", "10 MAIL.Example."), ("AFSDB", "1 Db.Example."),
    ("RT", "5 Relay.Example."), ("KX", "5 Kx.Example."), ("SRV", "0 5 443 Svc.Example."),
    ("SOA", "NS.Example. Host.Example. 1 2 3 4 5"),
    ("RP", "Mbox.Example. Txt.Example."), ("PX", "10 Map822.Example. Mapx400.Example."),
    ("NAPTR", '100 10 "S" "SIP+D2U" "" _Sip._Udp.Example.'),
    ("RRSIG", "A 8 2 3600 20300101000000 20200101000000 12345 Signer.Example. AAAA"),
]
KEPT = [
    ("NSEC", "Next.Example. A RRSIG NSEC"),  # RFC 6840 §5.1: NSEC next name keeps its case
    ("TXT", '"Mixed Case"'),
    ("HINFO", '"CPU" "OS"'),
    ("SVCB", "1 Target.Example. alpn=h2"),
]


@pytest.mark.parametrize("rdtype,text", LOWERED)
def test_canonical_rdata_lowers_embedded_names(rdtype, text):
    rd = dns.rdata.from_text("IN", rdtype, text)
    wire = rd.to_wire()
    canon = canonical.canonical_rdata(rd.rdtype, wire)
    assert canon == wire.lower() or canon == _lower_names_only(rd)
    assert canon != wire  # every sample carries an upper-case name
    assert canonical.rdata_wire(rd) == canon


def _lower_names_only(rd):
    # Types with non-name text (NAPTR's strings) keep it as is: compare with dnspython.
    return rd.to_digestable()


@pytest.mark.parametrize("rdtype,text", KEPT)
def test_canonical_rdata_keeps_other_types(rdtype, text):
    rd = dns.rdata.from_text("IN", rdtype, text)
    assert canonical.canonical_rdata(rd.rdtype, rd.to_wire()) == rd.to_wire()


def test_minfo_both_names_lowered():
    wire = b"\x01R\x07Example\x00\x01E\x07Example\x00"
    assert canonical.canonical_rdata(14, wire) == wire.lower()


def test_naptr_strings_keep_case():
    rd = dns.rdata.from_text("IN", "NAPTR", '100 10 "S" "SIP+D2U" "" _Sip._Udp.Example.')
    canon = canonical.canonical_rdata(rd.rdtype, rd.to_wire())
    assert b"SIP+D2U" in canon and b"_sip" in canon


def test_canonical_rdata_rejects_malformed_names():
    with pytest.raises(canonical.MalformedData):
        canonical.canonical_rdata(dns.rdatatype.NS, b"\x05ab")
    with pytest.raises(canonical.MalformedData):
        canonical.canonical_rdata(dns.rdatatype.CNAME, b"\xc0\x0c")  # compression pointer
    with pytest.raises(canonical.MalformedData):
        canonical.canonical_rdata(dns.rdatatype.MX, b"\x00\x0a")


@pytest.mark.parametrize("text", ["192.0.2.1", "0.0.0.0", "255.255.255.255", "10.20.30.40"])
def test_ipv4_fast_path(text):
    rd = dns.rdata.from_text("IN", "A", text)
    assert canonical.rdata_wire(rd) == rd.to_wire()


def test_aaaa_and_dnskey_fast_paths():
    rd = dns.rdata.from_text("IN", "AAAA", "2001:db8::1")
    assert canonical.rdata_wire(rd) == rd.to_wire()
    key = dns.rdata.from_text("IN", "DNSKEY", "257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=")
    assert canonical.rdata_wire(key) == key.to_wire()


KEYS = [
    "256 3 5 AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
    "257 3 13 GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==",
    "257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=",
    "257 3 1 AQPSKmynfzW4kyBv015MUG2DeIQ3Cbl+BBZH4b/0PY1kxkmvHjcZc8nokfzj31GajIQKY+5CptLr3buXA10hWqTkF7H6RfoRqXQeogmMHfpftf6zMv1LyBUgia7za6ZEzOJBOztyvhjL742iU/TpPSEDhm2SNKLijfUppn1UaNvv4w==",
]


@pytest.mark.parametrize("text", KEYS)
def test_key_tag_matches_rfc4034_appendix_b(text):
    rd = dns.rdata.from_text("IN", "DNSKEY", text)
    assert crypto.key_tag(canonical.rdata_wire(rd)) == dns.dnssec.key_id(rd)


def test_key_tag_rejects_short_rdata():
    with pytest.raises(canonical.MalformedData):
        crypto.key_tag(b"\x01\x01")


@pytest.mark.parametrize("digest_type", [1, 2, 4])
def test_ds_digest(digest_type):
    rd = dns.rdata.from_text("IN", "DNSKEY", KEYS[1])
    owner = dns.name.from_text("Example.Test.")
    expected = dns.dnssec.make_ds(owner, rd, digest_type, policy=dns.dnssec.allow_all_policy)
    assert crypto.ds_digest(digest_type, canonical.name_wire(owner.labels),
                            canonical.rdata_wire(rd)) == expected.digest


def test_ds_digest_unknown_type_is_none():
    assert crypto.ds_digest(3, b"\x00", b"\x01\x01\x03\x08") is None  # GOST: not implemented


@pytest.mark.parametrize("name,salt,iterations", [
    ("example.", "aabbccdd", 12), ("a.example.", "aabbccdd", 12), ("*.w.example.", "", 0),
    ("EXAMPLE.", "ff", 1), (".", "", 5)])
def test_nsec3_hash(name, salt, iterations):
    owner = dns.name.from_text(name)
    expected = dns.dnssec.nsec3_hash(owner, salt, iterations, 1)
    digest = crypto.nsec3_hash(canonical.name_wire(owner.labels), bytes.fromhex(salt), iterations)
    import base64
    table = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHIJKLMNOPQRSTUV")
    assert base64.b32encode(digest).translate(table).decode() == expected


def test_rfc5155_appendix_a_hash():
    # RFC 5155 App. A: H(example) = 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom, salt aabbccdd, 12 iterations
    digest = crypto.nsec3_hash(canonical.name_wire(dns.name.from_text("example.").labels),
                               bytes.fromhex("aabbccdd"), 12)
    import base64
    table = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghijklmnopqrstuv")
    assert base64.b32encode(digest).translate(table) == b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"


NOW = 1780272000


@pytest.mark.parametrize("inception,expiration,now,status", [
    (NOW - 10, NOW + 10, NOW, verify.WINDOW_OK),
    (NOW - 10, NOW + 10, NOW + 10, verify.WINDOW_OK),  # the boundaries are inside the window
    (NOW - 10, NOW + 10, NOW - 10, verify.WINDOW_OK),
    (NOW - 10, NOW + 10, NOW + 11, verify.WINDOW_EXPIRED),
    (NOW - 10, NOW + 10, NOW - 11, verify.WINDOW_NOT_YET_VALID),
    (NOW + 10, NOW - 10, NOW, verify.WINDOW_INVERTED),
    # RFC 1982 serial arithmetic: a window across the 2106 wrap of the 32-bit field.
    (0xFFFFFF00, 0x00000100, 0x1_00000000 + 0x10, verify.WINDOW_OK),
    (0xFFFFFF00, 0x00000100, 0xFFFFFFF0, verify.WINDOW_OK),
    (0xFFFFFF00, 0x00000100, 0x1_00000000 + 0x200, verify.WINDOW_EXPIRED),
])
def test_signature_window_serial_arithmetic(inception, expiration, now, status):
    assert verify.check_window(inception & 0xFFFFFFFF, expiration & 0xFFFFFFFF, now) == status


def test_signed_owner_wildcard_reconstruction():
    owner = dns.name.from_text("a.b.Example.")
    assert verify.signed_owner(owner.labels, 3) == canonical.name_wire(owner.labels)
    assert verify.signed_owner(owner.labels, 2) == b"\x01*" + canonical.name_wire(
        dns.name.from_text("b.example.").labels)
    assert verify.signed_owner(owner.labels, 1) == b"\x01*\x07example\x00"
    with pytest.raises(canonical.MalformedData):
        verify.signed_owner(owner.labels, 4)
    assert canonical.label_count(dns.name.from_text("*.example.").labels) == 1
    assert canonical.label_count(dns.name.root.labels) == 0


def test_rsa_key_with_long_exponent_form():
    # RFC 3110 §2: a zero first octet introduces a two-octet exponent length.
    from cryptography.hazmat.primitives.asymmetric import rsa
    priv = rsa.generate_private_key(65537, 1024)
    numbers = priv.public_key().public_numbers()
    exponent = numbers.e.to_bytes(3, "big")
    material = b"\x00\x00\x03" + exponent + numbers.n.to_bytes(128, "big")
    key = crypto.Key(b"\x01\x01\x03\x08" + material)
    assert key.public.public_numbers() == numbers and key.error is None


@pytest.mark.parametrize("wire,why", [
    (b"\x01\x01\x03\x0d" + b"\x01" * 63, "wrong length"),
    (b"\x01\x01\x03\x08\x05\x01\x02\x03", "exponent length"),
    (b"\x01\x01\x03\x0f" + b"\x00" * 31, ""),
    (b"\x01\x01\x03\xfd" + b"\x00" * 40, "not implemented"),
])
def test_malformed_or_unknown_keys_have_no_public_key(wire, why):
    key = crypto.Key(wire)
    assert key.public is None and why in key.error
    assert not crypto.verify_signature(key, b"sig", b"data")


def test_key_cache_is_bounded_and_reuses_keys():
    cache = crypto.KeyCache(2)
    wires = [b"\x01\x01\x03\x0f" + bytes([i]) * 32 for i in range(3)]
    first = cache.get(wires[0])
    assert cache.get(wires[0]) is first
    cache.get(wires[1])
    cache.get(wires[2])
    assert len(cache) == 2 and cache.get(wires[0]) is not first
    rd = dns.rdata.from_wire("IN", "DNSKEY", wires[1], 0, len(wires[1]))
    assert cache.of_rdata(rd).wire == wires[1]


def test_same_name_and_subdomain_ignore_case():
    a = dns.name.from_text("WWW.Example.")
    assert canonical.same_name(a.labels, dns.name.from_text("www.example.").labels)
    assert not canonical.same_name(a.labels, dns.name.from_text("www.example.com.").labels)
    assert canonical.is_subdomain(a.labels, dns.name.from_text("EXAMPLE.").labels)
    assert canonical.is_subdomain(a.labels, dns.name.root.labels)
    assert not canonical.is_subdomain(a.labels, dns.name.from_text("ww.example.").labels)
    assert not canonical.is_subdomain(dns.name.from_text("example.").labels, a.labels)


NAMES = ["WWW.Example.", "www.example.", "www.example.com.", "example.", ".", "ww.example.",
         "a.b"]


@pytest.mark.parametrize("left", NAMES)
@pytest.mark.parametrize("right", NAMES)
def test_name_comparisons_agree_with_dnspython(left, right):
    a, b = dns.name.from_text(left, None), dns.name.from_text(right, None)
    assert canonical.same(a, b) is (a == b)
    assert canonical.within(a, b) is a.is_subdomain(b)


def test_name_text_agrees_with_dnspython():
    """Every octet of every position, the special characters and the names with no label
    or the root alone, as dnspython writes them (forensic records hold these texts)."""
    names = [dns.name.root, dns.name.empty, dns.name.from_text("www.Example.COM."),
             dns.name.from_text("a.b", None), dns.name.Name([b'"().;\\@$', b"x y", b""])]
    names += [dns.name.Name([bytes([c]) + b"a" + bytes([c]), bytes(range(c, min(c + 63, 256))),
                             b""]) for c in range(256)]
    for name in names:
        assert canonical.name_text(name) == name.to_text() == str(name)
        if name.is_absolute():  # the text of its wire form, trailing octets ignored
            assert canonical.wire_text(name.to_wire() + b"\x00\x01") == name.to_text()
    for cut in (b"", b"\x03ab", b"\xc0\x0c", b"\x41" + bytes(65)):  # short, pointer, extended
        with pytest.raises(ValueError, match="uncompressed wire-form"):
            canonical.wire_text(cut)


@pytest.mark.parametrize("half", [32, 48])
@pytest.mark.parametrize("r,s", [(1, 1), (0, 5), (0x80, 0x7F), (2**255, 2**254 + 3),
                                 (2**200, 0x80 << 100), (12345, 2**255 - 1)])
def test_ecdsa_der_matches_cryptography(half, r, s):
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    raw = r.to_bytes(half, "big") + s.to_bytes(half, "big")
    assert crypto.ecdsa_der(raw, half) == encode_dss_signature(r, s)


@pytest.mark.parametrize("algorithm", [13, 14])
def test_ecdsa_verify_through_raw_signatures(algorithm):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    curve, digest, half = ((ec.SECP256R1(), hashes.SHA256(), 32) if algorithm == 13
                           else (ec.SECP384R1(), hashes.SHA384(), 48))
    priv = ec.generate_private_key(curve)
    point = priv.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    key = crypto.Key(b"\x01\x01\x03" + bytes([algorithm]) + point[1:])
    for i in range(20):
        data = b"message %d" % i
        r, s = decode_dss_signature(priv.sign(data, ec.ECDSA(digest)))
        raw = r.to_bytes(half, "big") + s.to_bytes(half, "big")
        assert crypto.verify_signature(key, raw, data)
        assert not crypto.verify_signature(key, raw, data + b"x")
        assert not crypto.verify_signature(key, raw[:-1], data)


def _rsa_key(algorithm: int, bits: int = 1024):
    from cryptography.hazmat.primitives.asymmetric import rsa
    priv = rsa.generate_private_key(65537, bits)
    numbers = priv.public_key().public_numbers()
    material = b"\x03" + numbers.e.to_bytes(3, "big") + numbers.n.to_bytes(bits // 8, "big")
    return priv, crypto.Key(b"\x01\x01\x03" + bytes([algorithm]) + material)


@pytest.mark.parametrize("algorithm,digest", [(5, "SHA1"), (8, "SHA256"), (10, "SHA512")])
def test_rsa_verify_agrees_with_cryptography(algorithm, digest):
    # verify_signature compares the recovered EMSA-PKCS1-v1_5 message itself (RFC 8017 §8.2.2):
    # it must accept and refuse exactly what cryptography's verify does.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    priv, key = _rsa_key(algorithm)
    pad, algo = padding.PKCS1v15(), getattr(hashes, digest)()
    other = hashes.SHA384() if digest != "SHA384" else hashes.SHA256()
    data = b"signed data"
    good = priv.sign(data, pad, algo)
    n = key.public.public_numbers().n
    candidates = [
        good, good[:-1], good + b"\x00", b"\x00" + good[1:], bytes(len(good)),
        b"\xff" * len(good), priv.sign(data, pad, other), priv.sign(data + b"x", pad, algo),
        n.to_bytes(len(good), "big"), (n - 1).to_bytes(len(good), "big"),
        bytes([good[0] ^ 1]) + good[1:], good[:-1] + bytes([good[-1] ^ 0x80]), b"",
    ]
    for signature in candidates:
        try:
            key.public.verify(signature, data, pad, algo)
            expected = True
        except (InvalidSignature, ValueError):
            expected = False
        assert crypto.verify_signature(key, signature, data) is expected
    assert crypto.verify_signature(key, good, data)


def test_rsa_signature_shorter_than_the_modulus_is_refused():
    # A signature with a leading zero octet stripped still recovers the same message; the
    # length check keeps the RFC 8017 §8.2.2 step 1 rule that cryptography's verify applies.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    priv, key = _rsa_key(8)
    for i in range(4000):
        data = b"message %d" % i
        signature = priv.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if signature[0] == 0:
            assert crypto.verify_signature(key, signature, data)
            assert not crypto.verify_signature(key, signature[1:], data)
            return
    pytest.skip("no signature with a leading zero octet in 4000 tries")


def test_key_cache_of_rrset_follows_the_rdatas():
    cache = crypto.KeyCache(10)
    wires = [b"\x01\x01\x03\x0f" + bytes([i]) * 32 for i in range(3)]
    rds = [dns.rdata.from_wire("IN", "DNSKEY", w, 0, len(w)) for w in wires]
    keyset = dns.rrset.from_rdata("example.", 300, rds[0], rds[1])
    assert [k.wire for k in cache.of_rrset(keyset)] == wires[:2]
    assert [k.wire for k in cache.of_rrset(keyset)] == wires[:2]
    keyset.add(rds[2])
    assert [k.wire for k in cache.of_rrset(keyset)] == wires
    keyset.discard(rds[0])
    assert [k.wire for k in cache.of_rrset(keyset)] == wires[1:]
    # Same key material with other flags is another key.
    revoked = dns.rdata.from_wire("IN", "DNSKEY", b"\x01\x81" + wires[1][2:], 0, len(wires[1]))
    assert cache.of_rdata(revoked).flags == 0x0181 and cache.of_rdata(rds[1]).flags == 0x0101
