"""The DNSSEC RFCs' own examples as test vectors (files and provenance: tests/vectors/README.md).

Two layers:

* ``test_reference_*`` check the vectors themselves with dnspython and cryptography alone, so a
  transcription error can never pass as a validator bug: signatures, key tags, DS digests, NSEC3
  hashes, private keys, and the RFC 8080 erratum.
* the rest run ``resolver.dnssec`` over the same data: every signed RRset is Secure at the
  vector's fixed time, DNSKEY sets authenticate from DS, each RFC 4035 / RFC 5155 Appendix B
  response's denial proof holds (with the verdict RFC 5155 §9.2 gives opt-out proofs), and
  tampered or misapplied data is Bogus.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from resolver.dnssec import (EDE, ValidatorConfig, Verdict, authenticate_dnskeys, denial,
                             validate_rrset)

VECTORS = Path(__file__).parent / "vectors"
RRSIG = dns.rdatatype.RRSIG
DNSKEY = dns.rdatatype.DNSKEY
SHA1_OK = ValidatorConfig(allow_sha1=True)


def N(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


# --------------------------------------------------------------------------------------------
# The vector sets


@dataclass(frozen=True)
class ZoneVector:
    """One master-format file of signed example data, with the time to validate it at."""

    id: str
    file: str
    origin: str
    now: int  # POSIX time inside every signature window of the file (see README.md)
    private: tuple[str, ...] = ()  # BIND private-key files of the keys in this file

    def __str__(self) -> str:
        return self.id


T_4035 = 1082419200  # 2004-04-20T00:00:00Z
T_2010 = 1262304000  # 2010-01-01T00:00:00Z
T_6605 = 1282262400  # 2010-08-20T00:00:00Z
T_8080 = 1439000000  # 2015-08-08T02:13:20Z

ZONES = {z.id: z for z in [
    ZoneVector("rfc4035", "rfc4035_zone.txt", "example.", T_4035),
    ZoneVector("rfc5155", "rfc5155_zone.txt", "example.", T_2010),
    ZoneVector("rfc5702-rsasha256", "rfc5702_rsasha256.txt", "example.net.", T_2010,
               ("rfc5702_rsasha256.private",)),
    ZoneVector("rfc5702-rsasha512", "rfc5702_rsasha512.txt", "example.net.", T_2010,
               ("rfc5702_rsasha512.private",)),
    ZoneVector("rfc6605-p256", "rfc6605_p256.txt", "example.net.", T_6605,
               ("rfc6605_p256.private",)),
    ZoneVector("rfc6605-p384", "rfc6605_p384.txt", "example.net.", T_6605,
               ("rfc6605_p384.private",)),
    ZoneVector("rfc8080-ed25519-1", "rfc8080_ed25519_1.txt", "example.com.", T_8080,
               ("rfc8080_ed25519_1.private",)),
    ZoneVector("rfc8080-ed25519-2", "rfc8080_ed25519_2.txt", "example.com.", T_8080,
               ("rfc8080_ed25519_2.private",)),
    ZoneVector("rfc8080-ed448-1", "rfc8080_ed448_1.txt", "example.com.", T_8080,
               ("rfc8080_ed448_1.private",)),
    ZoneVector("rfc8080-ed448-2", "rfc8080_ed448_2.txt", "example.com.", T_8080,
               ("rfc8080_ed448_2.private",)),
]}

#: The zones whose DNSKEY RRset is itself signed (by the SEP key): RFC 4035 and RFC 5155.
#: The algorithm examples sign only one RRset, not their DNSKEY set.
SELF_SIGNED_KEYSETS = ("rfc4035", "rfc5155")

#: The RFC 8080 signatures as published (computed with Labels=3; Errata ID 4935 replaced them).
PUBLISHED_SIGNATURES = {
    "rfc8080-ed25519-1": "Edk+IB9KNNWg0HAjm7FazXyrd5m3Rk8zNZbvNpAcM+eysqcUOMIjWoevFkj"
                         "H5GaMWeG96GUVZu6ECKOQmemHDg==",
    "rfc8080-ed25519-2": "5LL2obmzdqjWI+Xto5eP5adXt/T5tMhasWvwcyW4L3SzfcRawOle9bodhC+"
                         "oip9ayUGjY9T/rL4rN3bOuESGDA==",
    "rfc8080-ed448-1": "Nmc0rgGKpr3GKYXcB1JmqqS4NYwhmechvJTqVzt3jR+Qy/lSLFoIk1L+9e3"
                       "9GPL+5tVzDPN3f9kAwiu8KCuPPjtl227ayaCZtRKZuJax7n9NuYlZJIusX0"
                       "SOIOKBGzG+yWYtz1/jjbzl5GGkWvREUCUA",
    "rfc8080-ed448-2": "+JjANio/LIzp7osmMYE5XD3H/YES8kXs5Vb9H8MjPS8OAGZMD37+LsCIcjg"
                       "5ivt0d4Om/UaqETEAsJjaYe56CEQP5lhRWuD2ivBqE0zfwJTyp4WqvpULbp"
                       "vaukswvv/WNEFxzEYQEIm9+xDlXj4pMAMA",
}


@dataclass(frozen=True)
class ResponseVector:
    """An Appendix B response and what its authority section must prove.

    ``check`` names the denial function (None: a positive answer or a signed referral, where
    only the signatures are checked); ``verdict``/``kind``/``encloser`` are its expected
    result."""

    file: str
    zone: str
    check: str | None = None
    verdict: Verdict | None = None
    kind: str | None = None
    encloser: str | None = None
    wildcard: str | None = None  # the generating wildcard, for "wildcard_answer"
    delegation: str | None = None  # the delegation name, for "no_ds"

    def __str__(self) -> str:
        return self.file.removesuffix(".txt")


SECURE, INSECURE, BOGUS = Verdict.SECURE, Verdict.INSECURE, Verdict.BOGUS

RESPONSES = [
    # RFC 4035 Appendix B (NSEC).
    ResponseVector("rfc4035_b1_answer.txt", "rfc4035"),
    ResponseVector("rfc4035_b2_name_error.txt", "rfc4035", "nxdomain", SECURE, "nsec"),
    ResponseVector("rfc4035_b3_no_data.txt", "rfc4035", "nodata", SECURE, "nsec"),
    # B.4: the signed DS RRset is the whole point; its signature is checked like any other.
    ResponseVector("rfc4035_b4_referral_signed.txt", "rfc4035"),
    ResponseVector("rfc4035_b5_referral_unsigned.txt", "rfc4035", "no_ds", SECURE, "nsec",
                   delegation="b.example."),
    ResponseVector("rfc4035_b6_wildcard_expansion.txt", "rfc4035", "wildcard_answer", SECURE,
                   "nsec", wildcard="*.w.example."),
    ResponseVector("rfc4035_b7_wildcard_no_data.txt", "rfc4035", "wildcard_nodata", SECURE,
                   "nsec"),
    # B.8: the NSEC comes from the child apex (SOA bit set): it must not pass as proof that
    # the parent holds no DS for example. (RFC 4035 C.8, RFC 6840 §4.4).
    ResponseVector("rfc4035_b8_ds_child_no_data.txt", "rfc4035", "no_ds", BOGUS,
                   delegation="example."),
    # RFC 5155 Appendix B (NSEC3). Every NSEC3 of the example zone has Opt-Out set, so a proof
    # that rests on an NSEC3 covering the next closer name is INSECURE (RFC 5155 §9.2: no AD
    # bit); wildcard answers and wildcard no-data included, as in Unbound's NSEC3 proofs.
    ResponseVector("rfc5155_b1_name_error.txt", "rfc5155", "nxdomain", INSECURE, "nsec3-optout",
                   encloser="x.w.example."),
    ResponseVector("rfc5155_b2_no_data.txt", "rfc5155", "nodata", SECURE, "nsec3"),
    ResponseVector("rfc5155_b2_1_no_data_ent.txt", "rfc5155", "nodata", SECURE, "nsec3"),
    ResponseVector("rfc5155_b3_referral_optout.txt", "rfc5155", "no_ds", INSECURE,
                   "nsec3-optout", encloser="example.", delegation="c.example."),
    ResponseVector("rfc5155_b4_wildcard_expansion.txt", "rfc5155", "wildcard_answer", INSECURE,
                   "nsec3-optout", wildcard="*.w.example."),
    ResponseVector("rfc5155_b5_wildcard_no_data.txt", "rfc5155", "wildcard_nodata", INSECURE,
                   "nsec3-optout", encloser="w.example."),
    # B.6: the matching NSEC3 is the child apex's (SOA bit set): no proof of an insecure
    # delegation (RFC 5155 §8.9).
    ResponseVector("rfc5155_b6_ds_child_no_data.txt", "rfc5155", "no_ds", BOGUS,
                   delegation="example."),
]


# --------------------------------------------------------------------------------------------
# Loaders


@cache
def load_zone(vec_id: str) -> dns.zone.Zone:
    vec = ZONES[vec_id]
    return dns.zone.from_text((VECTORS / vec.file).read_text(), origin=vec.origin,
                              relativize=False, check_origin=False)


def dnskeys(vec_id: str) -> dns.rrset.RRset:
    return load_zone(vec_id).find_rrset(ZONES[vec_id].origin, DNSKEY)


def signed_rrsets(vec_id: str) -> list[tuple[dns.rrset.RRset, dns.rrset.RRset]]:
    """Every (RRset, its RRSIGs) pair of a vector file."""
    zone = load_zone(vec_id)
    pairs = []
    for name, node in sorted(zone.nodes.items()):
        for rds in node.rdatasets:
            if rds.rdtype == RRSIG:
                pairs.append((zone.find_rrset(name, rds.covers),
                              zone.find_rrset(name, RRSIG, rds.covers)))
    return pairs


@cache
def load_response(file: str) -> dns.message.Message:
    return dns.message.from_text((VECTORS / file).read_text())


def response_signed_rrsets(msg: dns.message.Message):
    """(section, RRset, RRSIGs) for every signed RRset of a response."""
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            if rrset.rdtype == RRSIG:
                continue
            sigs = [s for s in section
                    if s.rdtype == RRSIG and s.covers == rrset.rdtype and s.name == rrset.name]
            if sigs:
                yield section, rrset, sigs[0]


def denial_rrsets(msg: dns.message.Message) -> list[dns.rrset.RRset]:
    return [r for r in msg.authority if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)]


def read_private(file: str) -> dict[str, str]:
    fields = {}
    for line in (VECTORS / file).read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def private_key(file: str):
    """The cryptography private key of a BIND v1.2 private-key file."""
    f = read_private(file)
    alg = int(f["Algorithm"].split()[0])

    def b64(field: str) -> bytes:
        return base64.b64decode(f[field])

    def num(field: str) -> int:
        return int.from_bytes(b64(field), "big")

    if alg in (8, 10):
        public = rsa.RSAPublicNumbers(num("PublicExponent"), num("Modulus"))
        return rsa.RSAPrivateNumbers(num("Prime1"), num("Prime2"), num("PrivateExponent"),
                                     num("Exponent1"), num("Exponent2"), num("Coefficient"),
                                     public).private_key()
    if alg in (13, 14):
        curve = ec.SECP256R1() if alg == 13 else ec.SECP384R1()
        return ec.derive_private_key(num("PrivateKey"), curve)
    if alg == 15:
        return ed25519.Ed25519PrivateKey.from_private_bytes(b64("PrivateKey"))
    if alg == 16:
        return ed448.Ed448PrivateKey.from_private_bytes(b64("PrivateKey"))
    raise AssertionError(f"{file}: unexpected algorithm {alg}")


def dnskey_public_bytes(key) -> bytes:
    """The DNSKEY public-key field for a cryptography private key (RFC 3110, 6605, 8080)."""
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        exp = n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")
        return bytes([len(exp)]) + exp + n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return pub.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)[1:]
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def with_signature(rrsigs: dns.rrset.RRset, signature: bytes | None = None, **changes):
    """A copy of a one-RRSIG RRset with a new signature and/or other fields replaced."""
    (sig,) = rrsigs
    if signature is not None:
        changes["signature"] = signature
    return dns.rrset.from_rdata(rrsigs.name, rrsigs.ttl, sig.replace(**changes))


def flip_byte(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


ALL_SIGNED = [(vec_id, rrset, sigs) for vec_id in ZONES for rrset, sigs in signed_rrsets(vec_id)]
ALL_SIGNED_IDS = [f"{v}:{r.name}/{dns.rdatatype.to_text(r.rdtype)}" for v, r, _ in ALL_SIGNED]
ALGORITHM_VECTORS = [v for v in ZONES if v not in SELF_SIGNED_KEYSETS]
WITH_DS = [v for v in ZONES if load_zone(v).get_rrset(ZONES[v].origin, dns.rdatatype.DS)]


# --------------------------------------------------------------------------------------------
# Reference checks of the vectors (dnspython / cryptography only)


@pytest.mark.parametrize(("vec_id", "rrset", "sigs"), ALL_SIGNED, ids=ALL_SIGNED_IDS)
def test_reference_every_rrsig_verifies(vec_id, rrset, sigs):
    keys = {dns.name.from_text(ZONES[vec_id].origin): dnskeys(vec_id)}
    for sig in sigs:  # one by one: the DNSKEY set of RFC 4035 and RFC 5155 carries two
        one = dns.rrset.from_rdata(sigs.name, sigs.ttl, sig)
        dns.dnssec.validate(rrset, one, keys, now=ZONES[vec_id].now,
                            policy=dns.dnssec.allow_all_policy)


@pytest.mark.parametrize("vec_id", WITH_DS)
def test_reference_ds_digest_matches_dnskey(vec_id):
    zone, origin = load_zone(vec_id), ZONES[vec_id].origin
    (ds,) = zone.find_rrset(origin, dns.rdatatype.DS)
    keys = [k for k in dnskeys(vec_id) if dns.dnssec.key_id(k) == ds.key_tag]
    assert keys, f"no DNSKEY with key tag {ds.key_tag}"
    made = dns.dnssec.make_ds(origin, keys[0], ds.digest_type, policy=dns.dnssec.allow_all_policy)
    assert made == ds


def test_reference_nsec3_hashes_in_rfc5155():
    """Every ``H(name) = hash`` the RFC 5155 appendices state is the NSEC3 hash with the zone's
    parameters (salt aabbccdd, 12 iterations), and every NSEC3 owner is one of them."""
    text = "".join((VECTORS / f).read_text() for f in
                   ["rfc5155_zone.txt"] + [r.file for r in RESPONSES if r.zone == "rfc5155"])
    stated = dict(re.findall(r"H\(([^)]+)\)[\s;]*=\s*([0-9a-v]{32})", text))
    assert len(stated) >= 16
    for name, digest in stated.items():
        assert dns.dnssec.nsec3_hash(name + ".", "aabbccdd", 12, 1).lower() == digest, name
    zone = load_zone("rfc5155")
    owners = {str(n).split(".")[0] for n, node in zone.nodes.items()
              if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NSEC3)}
    assert owners <= set(stated.values())
    assert len(owners) == 12


@pytest.mark.parametrize("vec_id", [v for v in ZONES if ZONES[v].private])
def test_reference_private_key_matches_and_signs(vec_id):
    """The RFC's private key derives the published DNSKEY and, for the deterministic schemes
    (RSASSA-PKCS1-v1_5, EdDSA), reproduces the published signature byte for byte."""
    vec = ZONES[vec_id]
    key = private_key(vec.private[0])
    (dnskey,) = dnskeys(vec_id)
    assert dnskey_public_bytes(key) == dnskey.key
    (rrset, sigs), = [p for p in signed_rrsets(vec_id) if p[0].rdtype != DNSKEY]
    (published,) = sigs
    ours = dns.dnssec.sign(rrset, key, N(vec.origin), dnskey, inception=published.inception,
                           expiration=published.expiration, policy=dns.dnssec.allow_all_policy)
    assert ours.replace(signature=b"") == published.replace(signature=b"")
    if isinstance(key, ec.EllipticCurvePrivateKey):  # randomised: only check ours verifies
        dns.dnssec.validate(rrset, dns.rrset.from_rdata(rrset.name, rrset.ttl, ours),
                            {N(vec.origin): dnskeys(vec_id)}, now=vec.now)
    else:
        assert ours.signature == published.signature


def _signed_data_with_labels(rrset: dns.rrset.RRset, sig, labels: int) -> bytes:
    """RFC 4034 §3.1.8.1 signed data for a one-RR RRset, with any Labels value (dnspython
    refuses Labels greater than the owner's, which is exactly the RFC 8080 mistake)."""
    head = struct.pack("!HBBIIIH", sig.type_covered, sig.algorithm, labels, sig.original_ttl,
                       sig.expiration, sig.inception, sig.key_tag)
    (rd,) = rrset
    body = rd.to_digestable()
    return (head + sig.signer.to_digestable() + rrset.name.to_digestable()
            + struct.pack("!HHIH", rrset.rdtype, rrset.rdclass, sig.original_ttl, len(body))
            + body)


@pytest.mark.parametrize("vec_id", sorted(PUBLISHED_SIGNATURES))
def test_reference_rfc8080_published_signature_is_over_labels_3(vec_id):
    """Errata ID 4935: the published RFC 8080 signatures are valid only over signed data with
    Labels=3; the vector files' RRSIGs are the erratum's, over Labels=2."""
    (mx, sigs), = [p for p in signed_rrsets(vec_id) if p[0].rdtype == dns.rdatatype.MX]
    (sig,) = sigs
    assert sig.labels == 2
    public = private_key(ZONES[vec_id].private[0]).public_key()
    published = base64.b64decode(PUBLISHED_SIGNATURES[vec_id])
    public.verify(published, _signed_data_with_labels(mx, sig, 3))
    public.verify(sig.signature, _signed_data_with_labels(mx, sig, 2))
    with pytest.raises(InvalidSignature):
        public.verify(published, _signed_data_with_labels(mx, sig, 2))


@pytest.mark.parametrize("case", RESPONSES, ids=str)
def test_reference_response_matches_appendix_a(case):
    """Each response carries Appendix A's records and signatures, which verify."""
    msg, zone = load_response(case.file), load_zone(case.zone)
    keys = {N("example."): dnskeys(case.zone)}
    for _, rrset, sigs in response_signed_rrsets(msg):
        dns.dnssec.validate(rrset, sigs, keys, now=ZONES[case.zone].now,
                            policy=dns.dnssec.allow_all_policy)
        in_zone = zone.get_rrset(rrset.name, rrset.rdtype)
        if in_zone is not None:  # None: a wildcard expansion (B.6 / B.4)
            assert set(in_zone) == set(rrset)
            assert set(zone.find_rrset(rrset.name, RRSIG, rrset.rdtype)) == set(sigs)


# --------------------------------------------------------------------------------------------
# resolver.dnssec: signatures


@pytest.mark.parametrize(("vec_id", "rrset", "sigs"), ALL_SIGNED, ids=ALL_SIGNED_IDS)
def test_every_rrset_validates_secure(vec_id, rrset, sigs):
    r = validate_rrset(rrset, sigs, dnskeys(vec_id), now=ZONES[vec_id].now, config=SHA1_OK)
    assert r.verdict is SECURE, r.reason
    assert r.ede is None
    assert r.rrsig in sigs
    assert r.key is not None
    assert (r.key.owner, r.key.tag, r.key.algorithm) == (N(ZONES[vec_id].origin),
                                                        r.rrsig.key_tag, r.rrsig.algorithm)


@pytest.mark.parametrize("vec_id", ZONES)
def test_tampered_signature_is_bogus(vec_id):
    for rrset, sigs in signed_rrsets(vec_id):
        if rrset.rdtype == DNSKEY:
            continue
        (sig,) = sigs
        bad = with_signature(sigs, flip_byte(sig.signature))
        r = validate_rrset(rrset, bad, dnskeys(vec_id), now=ZONES[vec_id].now, config=SHA1_OK)
        assert r.verdict is BOGUS, f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)}"
        assert r.ede is EDE.DNSSEC_BOGUS


@pytest.mark.parametrize("vec_id", ZONES)
def test_changed_data_is_bogus(vec_id):
    """The published signature over different data: one more A/MX/... record."""
    rrset, sigs = next(p for p in signed_rrsets(vec_id) if p[0].rdtype in
                       (dns.rdatatype.A, dns.rdatatype.MX))
    extra = "192.0.2.254" if rrset.rdtype == dns.rdatatype.A else "99 other.example."
    changed = dns.rrset.from_rdata_list(rrset.name, rrset.ttl, list(rrset) + [
        dns.rdata.from_text(rrset.rdclass, rrset.rdtype, extra)])
    r = validate_rrset(changed, sigs, dnskeys(vec_id), now=ZONES[vec_id].now, config=SHA1_OK)
    assert r.verdict is BOGUS
    assert r.ede is EDE.DNSSEC_BOGUS


@pytest.mark.parametrize("vec_id", ZONES)
def test_outside_the_signature_window_is_bogus(vec_id):
    rrset, sigs = next(p for p in signed_rrsets(vec_id) if p[0].rdtype != DNSKEY)
    (sig,) = sigs
    keys = dnskeys(vec_id)
    late = validate_rrset(rrset, sigs, keys, now=sig.expiration + 1, config=SHA1_OK)
    assert (late.verdict, late.ede) == (BOGUS, EDE.SIGNATURE_EXPIRED)
    early = validate_rrset(rrset, sigs, keys, now=sig.inception - 1, config=SHA1_OK)
    assert (early.verdict, early.ede) == (BOGUS, EDE.SIGNATURE_NOT_YET_VALID)


def test_another_vectors_key_is_bogus():
    """Same owner, same algorithm, different key: the RFC 8080 Ed25519 pair swapped."""
    rrset, sigs = next(p for p in signed_rrsets("rfc8080-ed25519-1")
                       if p[0].rdtype == dns.rdatatype.MX)
    r = validate_rrset(rrset, sigs, dnskeys("rfc8080-ed25519-2"), now=T_8080)
    assert r.verdict is BOGUS


@pytest.mark.parametrize("vec_id", sorted(PUBLISHED_SIGNATURES))
def test_rfc8080_rrsig_as_published_is_bogus(vec_id):
    """The RFC's own RRSIG (Labels=3 on a 2-label owner, Errata ID 4935) must not validate."""
    rrset, sigs = next(p for p in signed_rrsets(vec_id) if p[0].rdtype == dns.rdatatype.MX)
    published = with_signature(sigs, base64.b64decode(PUBLISHED_SIGNATURES[vec_id]), labels=3)
    r = validate_rrset(rrset, published, dnskeys(vec_id), now=T_8080)
    assert r.verdict is BOGUS


@pytest.mark.parametrize("vec_id", SELF_SIGNED_KEYSETS)
def test_sha1_zones_are_insecure_by_default(vec_id):
    """Algorithms 5 and 7 are off unless allowed (RFC 9905 §2): with only such keys the data is
    Insecure, not Bogus."""
    rrset, sigs = next(p for p in signed_rrsets(vec_id) if p[0].rdtype == dns.rdatatype.MX)
    r = validate_rrset(rrset, sigs, dnskeys(vec_id), now=ZONES[vec_id].now)
    assert r.verdict is INSECURE
    assert r.ede is EDE.UNSUPPORTED_DNSKEY_ALGORITHM


# --------------------------------------------------------------------------------------------
# resolver.dnssec: DNSKEY sets and DS


def sep_key(vec_id: str):
    return next(k for k in dnskeys(vec_id) if k.flags & 0x0001)


@pytest.mark.parametrize("digest", ["SHA256", "SHA1"])
@pytest.mark.parametrize("vec_id", SELF_SIGNED_KEYSETS)
def test_dnskey_set_authenticates_from_ds(vec_id, digest):
    """The RFCs publish no DS for ``example.`` itself; it is made from the SEP key (RFC 4035
    key tag 9465, RFC 5155 key tag 12708), which signs the DNSKEY RRset."""
    origin, keys = N("example."), dnskeys(vec_id)
    zone = load_zone(vec_id)
    ds = dns.rrset.from_rdata(origin, 3600, dns.dnssec.make_ds(
        origin, sep_key(vec_id), digest, policy=dns.dnssec.allow_all_policy))
    r = authenticate_dnskeys(keys, zone.find_rrset(origin, RRSIG, DNSKEY), ds,
                             now=ZONES[vec_id].now, config=SHA1_OK)
    assert r.verdict is SECURE, r.reason
    assert r.key.tag == dns.dnssec.key_id(sep_key(vec_id))
    assert r.ds == ds[0]


@pytest.mark.parametrize("vec_id", SELF_SIGNED_KEYSETS)
def test_dnskey_set_authenticates_from_anchor(vec_id):
    origin, zone = N("example."), load_zone(vec_id)
    anchor = dns.rrset.from_rdata(origin, 3600, sep_key(vec_id))
    r = authenticate_dnskeys(dnskeys(vec_id), zone.find_rrset(origin, RRSIG, DNSKEY), anchor,
                             now=ZONES[vec_id].now, config=SHA1_OK)
    assert r.verdict is SECURE, r.reason


@pytest.mark.parametrize(("vec_id", "expected"), [("rfc4035", SECURE), ("rfc5155", BOGUS)])
def test_dnskey_set_against_a_ds_for_the_zsk(vec_id, expected):
    """A DS for the ZSK. In RFC 4035 Appendix A the ZSK (38519) signs the DNSKEY RRset too, so
    that DS suffices; in RFC 5155 Appendix A only the KSK (12708) does, so the ZSK's DS
    matches a key that signs nothing here."""
    origin, zone = N("example."), load_zone(vec_id)
    zsk = next(k for k in dnskeys(vec_id) if not k.flags & 0x0001)
    ds = dns.rrset.from_rdata(origin, 3600, dns.dnssec.make_ds(
        origin, zsk, "SHA256", policy=dns.dnssec.allow_all_policy))
    r = authenticate_dnskeys(dnskeys(vec_id), zone.find_rrset(origin, RRSIG, DNSKEY), ds,
                             now=ZONES[vec_id].now, config=SHA1_OK)
    assert r.verdict is expected, r.reason
    if expected is SECURE:
        assert r.key.tag == dns.dnssec.key_id(zsk)


@pytest.mark.parametrize("vec_id", WITH_DS)
def test_published_ds_matches_but_unsigned_dnskey_set_is_bogus(vec_id):
    """RFC 6605 and RFC 8080 publish a DS for their key but no RRSIG over the DNSKEY RRset: a
    DS match alone must not make the key set Secure."""
    origin = N(ZONES[vec_id].origin)
    ds = load_zone(vec_id).find_rrset(origin, dns.rdatatype.DS)
    r = authenticate_dnskeys(dnskeys(vec_id), None, ds, now=ZONES[vec_id].now)
    assert r.verdict is BOGUS


@pytest.mark.parametrize("vec_id", WITH_DS)
def test_published_ds_of_another_key_is_bogus(vec_id):
    other = "rfc8080-ed448-1" if vec_id != "rfc8080-ed448-1" else "rfc8080-ed448-2"
    origin = N(ZONES[vec_id].origin)
    ds = load_zone(other).find_rrset(N(ZONES[other].origin), dns.rdatatype.DS)
    ds = dns.rrset.from_rdata_list(origin, ds.ttl, list(ds))  # same owner as the keys
    r = authenticate_dnskeys(dnskeys(vec_id), None, ds, now=ZONES[vec_id].now)
    assert r.verdict is BOGUS


def test_rfc4035_b4_referral_ds_is_secure():
    """B.4: the DS for the signed child a.example is signed by the parent's ZSK."""
    msg = load_response("rfc4035_b4_referral_signed.txt")
    ds = msg.find_rrset(msg.authority, N("a.example."), dns.rdataclass.IN, dns.rdatatype.DS)
    sigs = msg.find_rrset(msg.authority, N("a.example."), dns.rdataclass.IN, RRSIG,
                          dns.rdatatype.DS)
    r = validate_rrset(ds, sigs, dnskeys("rfc4035"), now=T_4035, config=SHA1_OK)
    assert r.verdict is SECURE, r.reason
    assert [(d.key_tag, d.algorithm, d.digest_type) for d in ds] == [(57855, 5, 1)]


# --------------------------------------------------------------------------------------------
# resolver.dnssec: Appendix B responses and their denial proofs


@pytest.mark.parametrize("case", RESPONSES, ids=str)
def test_response_rrsets_validate_secure(case):
    msg = load_response(case.file)
    checked = 0
    for _, rrset, sigs in response_signed_rrsets(msg):
        r = validate_rrset(rrset, sigs, dnskeys(case.zone), now=ZONES[case.zone].now,
                           config=SHA1_OK)
        assert r.verdict is SECURE, r.reason
        checked += 1
    assert checked


def run_proof(check: str, msg: dns.message.Message, rrsets, *, qname=None, qtype=None,
              wildcard=None, delegation=None):
    q = msg.question[0]
    qname = N(qname) if qname else q.name
    qtype = qtype if qtype is not None else q.rdtype
    if check == "nxdomain":
        return denial.prove_nxdomain(qname, rrsets, config=SHA1_OK)
    if check == "nodata":
        return denial.prove_nodata(qname, qtype, rrsets, config=SHA1_OK)
    if check == "wildcard_nodata":
        return denial.prove_wildcard_nodata(qname, qtype, rrsets, config=SHA1_OK)
    if check == "wildcard_answer":
        assert wildcard, "a wildcard answer proof needs the generating wildcard"
        return denial.prove_wildcard_answer(qname, N(wildcard), rrsets, config=SHA1_OK)
    if check == "no_ds":
        assert delegation, "a no-DS proof needs the delegation name"
        return denial.prove_no_ds(N(delegation), rrsets, config=SHA1_OK)
    raise AssertionError(check)


DENIALS = [c for c in RESPONSES if c.check]


@pytest.mark.parametrize("case", DENIALS, ids=str)
def test_response_denial_proof(case):
    msg = load_response(case.file)
    rrsets = denial_rrsets(msg)
    assert rrsets
    r = run_proof(case.check, msg, rrsets, wildcard=case.wildcard, delegation=case.delegation)
    assert r.verdict is case.verdict, r
    if case.verdict is not BOGUS:
        assert r.kind == case.kind
    if case.verdict is SECURE:
        assert r.ede is None
    if case.encloser:
        assert r.closest_encloser == N(case.encloser)


@dataclass(frozen=True)
class Misuse:
    """A response's proof applied to a question it does not answer: must be BOGUS."""

    file: str
    check: str
    why: str
    qname: str | None = None
    qtype: int | None = None
    wildcard: str | None = None
    delegation: str | None = None

    def __str__(self) -> str:
        return f"{self.file.removesuffix('.txt')}:{self.why}"


A, MX = dns.rdatatype.A, dns.rdatatype.MX

MISUSES = [
    # RFC 4035 (NSEC)
    Misuse("rfc4035_b2_name_error.txt", "nxdomain", "existing-name", qname="ns1.example."),
    Misuse("rfc4035_b2_name_error.txt", "nxdomain", "uncovered-name", qname="zz.example."),
    Misuse("rfc4035_b2_name_error.txt", "nodata", "nxdomain-proof-as-nodata"),
    Misuse("rfc4035_b3_no_data.txt", "nodata", "type-present", qtype=A),
    Misuse("rfc4035_b3_no_data.txt", "nxdomain", "nodata-proof-as-nxdomain"),
    Misuse("rfc4035_b5_referral_unsigned.txt", "no_ds", "other-delegation",
           delegation="a.example."),
    Misuse("rfc4035_b6_wildcard_expansion.txt", "wildcard_answer", "wrong-wildcard",
           wildcard="*.example."),
    Misuse("rfc4035_b6_wildcard_expansion.txt", "wildcard_answer", "existing-name",
           qname="x.w.example.", wildcard="*.w.example."),
    Misuse("rfc4035_b7_wildcard_no_data.txt", "wildcard_nodata", "type-at-wildcard", qtype=MX),
    # RFC 5155 (NSEC3)
    Misuse("rfc5155_b1_name_error.txt", "nxdomain", "closest-encloser-itself",
           qname="x.w.example."),
    Misuse("rfc5155_b2_no_data.txt", "nodata", "type-present", qtype=A),
    Misuse("rfc5155_b2_no_data.txt", "nxdomain", "nodata-proof-as-nxdomain"),
    Misuse("rfc5155_b2_1_no_data_ent.txt", "nxdomain", "empty-non-terminal-exists"),
    Misuse("rfc5155_b3_referral_optout.txt", "no_ds", "delegation-with-ds",
           delegation="a.example."),
    Misuse("rfc5155_b4_wildcard_expansion.txt", "wildcard_answer", "wrong-wildcard",
           wildcard="*.example."),
    Misuse("rfc5155_b5_wildcard_no_data.txt", "wildcard_nodata", "type-at-wildcard", qtype=MX),
]


@pytest.mark.parametrize("case", MISUSES, ids=str)
def test_proof_for_another_question_is_bogus(case):
    msg = load_response(case.file)
    r = run_proof(case.check, msg, denial_rrsets(msg), qname=case.qname, qtype=case.qtype,
                  wildcard=case.wildcard, delegation=case.delegation)
    assert r.verdict is BOGUS, r.reason


def test_rfc4035_delegation_nsec_with_ds_bit_proves_no_insecure_delegation():
    """Appendix A's a.example NSEC (NS DS RRSIG NSEC) belongs to a signed delegation."""
    zone = load_zone("rfc4035")
    nsec = zone.find_rrset(N("a.example."), dns.rdatatype.NSEC)
    r = denial.prove_no_ds(N("a.example."), [nsec], config=SHA1_OK)
    assert r.verdict is BOGUS, r.reason


def test_rfc4035_b6_answer_moved_off_its_wildcard_is_bogus():
    """The expanded MX of B.6 re-owned at a name *.w.example cannot generate."""
    msg = load_response("rfc4035_b6_wildcard_expansion.txt")
    (_, mx, sigs), = [t for t in response_signed_rrsets(msg) if t[1].rdtype == MX
                      and t[0] is msg.answer]
    moved = dns.rrset.from_rdata_list(N("a.z.example."), mx.ttl, list(mx))
    moved_sigs = dns.rrset.from_rdata_list(N("a.z.example."), sigs.ttl, list(sigs))
    r = validate_rrset(moved, moved_sigs, dnskeys("rfc4035"), now=T_4035, config=SHA1_OK)
    assert r.verdict is BOGUS
