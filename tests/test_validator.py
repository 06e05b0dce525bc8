"""validate_rrset and authenticate_dnskeys: every verdict and every reason they can name."""

from __future__ import annotations

import datetime

import dns.dnssec
import dns.name
import dns.rdata
import dns.rrset
import pytest

from resolver.dnssec import crypto
from resolver.dnssec import (EDE, Budget, BudgetName, Limits, ValidatorConfig, Verdict,
                             authenticate_dnskeys, validate_rrset)
from resolver.dnssec import sigcrypt
from tests.conftest import NOW, ZONE, Signer, rrset

ALGORITHMS = [8, 10, 13, 14, 15, 16]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_secure_with_every_algorithm(signer, algorithm):
    s = signer(algorithm)
    data = rrset("www.example.test.", "A", "192.0.2.1", "192.0.2.2")
    result = validate_rrset(data, s.sign(data), s.keys, now=NOW)
    assert result.verdict is Verdict.SECURE and result.ede is None
    assert result.key.tag == dns.dnssec.key_id(s.dnskey) and result.key.algorithm == algorithm
    assert result.key.owner == ZONE and result.rrsig.key_tag == result.key.tag


def test_owner_case_and_rdata_order_do_not_matter(signer):
    s = signer(13)
    data = rrset("www.example.test.", "MX", "10 Mail.Example.test.", "20 b.example.test.")
    sigs = s.sign(data)
    shuffled = rrset("WWW.Example.TEST.", "MX", "20 b.example.test.", "10 mail.example.test.")
    sigs = dns.rrset.from_rdata(shuffled.name, 300, *sigs)
    assert validate_rrset(shuffled, sigs, s.keys, now=NOW).secure


def test_time_may_be_a_datetime(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    when = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
    assert validate_rrset(data, s.sign(data), s.keys, now=when).secure


def test_ttl_capped_by_original_ttl_and_expiry(signer):
    s = signer(13)
    data = rrset("www.example.test.", ttl=7200)
    sigs = s.sign(data, expiration=NOW + 600)
    assert validate_rrset(data, sigs, s.keys, now=NOW).ttl == 600
    assert validate_rrset(data, s.sign(data), s.keys, now=NOW).ttl == 7200


def test_wildcard_expansion_validates(signer):
    s = signer(13)
    source = rrset("*.wild.example.test.")
    sigs = s.sign(source)
    expanded = rrset("a.b.wild.example.test.")
    expanded_sigs = dns.rrset.from_rdata(expanded.name, 300, *sigs)
    result = validate_rrset(expanded, expanded_sigs, s.keys, now=NOW)
    assert result.secure and result.rrsig.labels == 3


def _bogus(result, ede, text=""):
    assert result.verdict is Verdict.BOGUS, result
    assert result.ede is ede, result
    assert text in result.reason, result.reason
    return result


def test_expired(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, inception=NOW - 100, expiration=NOW - 1)
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.SIGNATURE_EXPIRED, "expired")


def test_not_yet_valid(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, inception=NOW + 1, expiration=NOW + 100)
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.SIGNATURE_NOT_YET_VALID,
           "not yet valid")


def test_expiration_before_inception(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, inception=NOW + 100, expiration=NOW - 100)
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.SIGNATURE_EXPIRED_BEFORE_VALID)


def test_wrong_key(signer):
    s, other = signer(13), Signer(13)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, other.sign(data), s.keys, now=NOW), EDE.DNSKEY_MISSING,
           "no DNSKEY with tag")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_corrupted_signature(signer, algorithm):
    s = signer(algorithm)
    data = rrset("www.example.test.")
    rrsig = s.sign(data)[0]
    broken = bytearray(rrsig.signature)
    broken[len(broken) // 2] ^= 0x01
    sigs = dns.rrset.from_rdata(data.name, 300, rrsig.replace(signature=bytes(broken)))
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.DNSSEC_BOGUS, "does not verify")


def test_changed_data(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data)
    _bogus(validate_rrset(rrset("www.example.test.", "A", "192.0.2.99"), sigs, s.keys, now=NOW),
           EDE.DNSSEC_BOGUS)


def test_labels_field_larger_than_owner(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, labels=4)
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.DNSSEC_BOGUS, "labels")


def test_labels_field_smaller_without_wildcard_fails(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, labels=2)  # claims expansion from *.example.test.
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.DNSSEC_BOGUS, "does not verify")


def test_signer_is_not_the_key_owner(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data, signer=dns.name.from_text("other.test."))
    _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.DNSKEY_MISSING, "signer")


def test_signer_not_an_ancestor_of_owner():
    s = Signer(13, dns.name.from_text("sub.example.test."))
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, s.sign(data), s.keys, now=NOW), EDE.DNSSEC_BOGUS,
           "not an ancestor")


def test_missing_rrsigs(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, None, s.keys, now=NOW), EDE.RRSIGS_MISSING)
    other_type = s.sign(rrset("www.example.test.", "TXT", '"x"'))
    _bogus(validate_rrset(data, other_type, s.keys, now=NOW), EDE.RRSIGS_MISSING)
    elsewhere = s.sign(rrset("ftp.example.test."))
    _bogus(validate_rrset(data, elsewhere, s.keys, now=NOW), EDE.RRSIGS_MISSING)


def test_missing_keys(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, s.sign(data), None, now=NOW), EDE.DNSKEY_MISSING)


def test_zone_bit_clear():
    s = Signer(13, flags=0)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, s.sign(data), s.keys, now=NOW), EDE.NO_ZONE_KEY_BIT_SET)


def test_revoked_key_is_not_used():
    s = Signer(13, flags=257 | 0x0080)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, s.sign(data), s.keys, now=NOW), EDE.NO_ZONE_KEY_BIT_SET)


def test_sha1_is_unsupported_by_default_and_insecure():
    s = Signer(5)
    data = rrset("www.example.test.")
    result = validate_rrset(data, s.sign(data), s.keys, now=NOW)
    assert result.verdict is Verdict.INSECURE
    assert result.ede is EDE.UNSUPPORTED_DNSKEY_ALGORITHM
    assert validate_rrset(data, s.sign(data), s.keys, now=NOW,
                          config=ValidatorConfig(allow_sha1=True)).secure


def test_unsupported_signature_beside_a_supported_key_is_bogus(signer):
    # The zone has an ECDSA key but the RRset carries only an RSASHA1 signature (RFC 4035 §2.2).
    sha1, ecdsa = Signer(5), signer(13)
    keys = dns.rrset.from_rdata(ZONE, 3600, sha1.dnskey, ecdsa.dnskey)
    data = rrset("www.example.test.")
    _bogus(validate_rrset(data, sha1.sign(data), keys, now=NOW), EDE.RRSIGS_MISSING)


def test_one_good_signature_is_enough(signer):
    good, other = signer(13), Signer(13)
    data = rrset("www.example.test.")
    sigs = dns.rrset.from_rdata(data.name, 300, *other.sign(data), *good.sign(data))
    assert validate_rrset(data, sigs, good.keys, now=NOW).secure


def _many_signatures(s: Signer, data, count: int):
    rrsig = s.sign(data)[0]
    fakes = []
    for i in range(count):
        forged = bytearray(rrsig.signature)
        forged[i % len(forged)] ^= 0xFF
        fakes.append(rrsig.replace(signature=bytes(forged), inception=rrsig.inception - i))
    return dns.rrset.from_rdata(data.name, 300, *fakes, rrsig)


def test_signature_flood_hits_the_rrset_budget(signer):
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = _many_signatures(s, data, 20)
    result = _bogus(validate_rrset(data, sigs, s.keys, now=NOW), EDE.DNSSEC_BOGUS, "budget")
    assert "8 signature checks per RRset" in result.reason
    assert result.budget is BudgetName.SIG_CHECKS_PER_RRSET  # the metric's label, typed


def test_query_budget_spans_calls(signer):
    s = signer(13)
    budget = Budget(Limits(max_sig_checks_per_query=3))
    for i in range(3):
        data = rrset(f"h{i}.example.test.")
        assert validate_rrset(data, s.sign(data), s.keys, now=NOW, budget=budget).secure
    data = rrset("h4.example.test.")
    result = _bogus(validate_rrset(data, s.sign(data), s.keys, now=NOW, budget=budget),
                    EDE.DNSSEC_BOGUS, "3 signature checks per query")
    assert result.budget is BudgetName.SIG_CHECKS_PER_QUERY


def _same_tag_impostors(dnskey, count: int):
    """RSA keys with the key tag of ``dnskey`` that did not sign anything: moving one unit
    between two high-order octets of the modulus keeps the RFC 4034 App. B checksum."""
    wire = bytearray(dnskey.to_wire())
    impostors = []
    for i in range(count):
        forged = bytearray(wire)
        a, b = 20 + 2 * i, 120 + 2 * i  # even offsets inside the modulus
        if forged[a] == 0xFF or forged[b] == 0:
            continue
        forged[a] += 1
        forged[b] -= 1
        impostors.append(dns.rdata.from_wire("IN", "DNSKEY", bytes(forged), 0, len(forged)))
    return impostors


def test_key_tag_collisions_are_capped(signer):
    # KeyTrap (CVE-2023-50387): many keys share the tag and algorithm of the signature.
    s = signer(8)
    data = rrset("www.example.test.")
    impostors = _same_tag_impostors(s.dnskey, 6)
    assert {dns.dnssec.key_id(k) for k in impostors} == {dns.dnssec.key_id(s.dnskey)}
    keys = dns.rrset.from_rdata(ZONE, 3600, *impostors, s.dnskey)
    budget = Budget()
    result = _bogus(validate_rrset(data, s.sign(data), keys, now=NOW, budget=budget),
                    EDE.DNSSEC_BOGUS, "does not verify")
    assert budget.sig_checks == 2  # max_keys_per_tag
    roomy = ValidatorConfig(limits=Limits(max_keys_per_tag=10))
    assert validate_rrset(data, s.sign(data), keys, now=NOW, config=roomy).secure
    assert result.key.tag == dns.dnssec.key_id(s.dnskey)


def _ds(signer_: Signer, digest: int = 2):
    return dns.rrset.from_rdata(signer_.zone, 3600, dns.dnssec.make_ds(
        signer_.zone, signer_.dnskey, digest, policy=dns.dnssec.allow_all_policy))


@pytest.mark.parametrize("digest", [1, 2, 4])
def test_dnskey_set_from_ds(signer, digest):
    s = signer(13)
    ds = _ds(s, digest)
    result = authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW)
    assert result.secure and result.ds == ds[0] and result.key.tag == ds[0].key_tag


def test_dnskey_set_from_dnskey_anchor(signer):
    s = signer(15)
    assert authenticate_dnskeys(s.keys, s.sign(s.keys), s.keys, now=NOW).secure
    other = Signer(15)
    _bogus(authenticate_dnskeys(s.keys, s.sign(s.keys), other.keys, now=NOW), EDE.DNSKEY_MISSING)


def test_wrong_ds(signer):
    s = signer(13)
    _bogus(authenticate_dnskeys(s.keys, s.sign(s.keys), _ds(Signer(13)), now=NOW),
           EDE.DNSKEY_MISSING, "no DNSKEY matches the DS set")


def test_ds_for_another_zone(signer):
    s = signer(13)
    elsewhere = Signer(13, dns.name.from_text("other.test."))
    _bogus(authenticate_dnskeys(s.keys, s.sign(s.keys), _ds(elsewhere), now=NOW),
           EDE.DNSKEY_MISSING)


def test_dnskey_set_signed_only_by_a_key_the_ds_does_not_name(signer):
    ksk, zsk = signer(13), Signer(13)
    keys = dns.rrset.from_rdata(ZONE, 3600, ksk.dnskey, zsk.dnskey)
    _bogus(authenticate_dnskeys(keys, zsk.sign(keys), _ds(ksk), now=NOW), EDE.DNSKEY_MISSING)


def test_sha1_ds_ignored_beside_sha256(signer):
    # RFC 4509 §3: with a SHA-256 DS present, a matching SHA-1 DS is not enough.
    s = signer(13)
    wrong_sha256 = _ds(Signer(13), 2)[0].replace(key_tag=dns.dnssec.key_id(s.dnskey))
    ds = dns.rrset.from_rdata(ZONE, 3600, _ds(s, 1)[0], wrong_sha256)
    _bogus(authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW), EDE.DNSKEY_MISSING)


def test_unknown_digest_type_makes_zone_insecure(signer):
    s = signer(13)
    ds = dns.rrset.from_text(ZONE, 3600, "IN", "DS", f"{dns.dnssec.key_id(s.dnskey)} 13 3 "
                             + "ab" * 32)
    result = authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW)
    assert result.verdict is Verdict.INSECURE and result.ede is EDE.UNSUPPORTED_DS_DIGEST_TYPE


def test_unknown_algorithm_makes_zone_insecure(signer):
    s = signer(13)
    ds = dns.rrset.from_text(ZONE, 3600, "IN", "DS", "12345 253 2 " + "ab" * 32)
    result = authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW)
    assert result.verdict is Verdict.INSECURE
    assert result.ede is EDE.UNSUPPORTED_DNSKEY_ALGORITHM


def test_sha1_ds_algorithm_makes_zone_insecure_by_default():
    s = Signer(7)
    result = authenticate_dnskeys(s.keys, s.sign(s.keys), _ds(s), now=NOW)
    assert result.verdict is Verdict.INSECURE
    assert authenticate_dnskeys(s.keys, s.sign(s.keys), _ds(s), now=NOW,
                                config=ValidatorConfig(allow_sha1=True)).secure


def test_ds_matching_a_non_zone_key_is_bogus():
    s = Signer(13, flags=1)  # SEP bit only
    result = authenticate_dnskeys(s.keys, None, _ds(s), now=NOW)
    _bogus(result, EDE.NO_ZONE_KEY_BIT_SET)


def test_expired_dnskey_signature(signer):
    s = signer(13)
    sigs = s.sign(s.keys, inception=NOW - 100, expiration=NOW - 10)
    _bogus(authenticate_dnskeys(s.keys, sigs, _ds(s), now=NOW), EDE.SIGNATURE_EXPIRED)


def test_ds_flood_is_capped(signer):
    s = signer(13)
    fakes = [dns.rdata.from_text("IN", "DS", f"{i} 13 2 " + "cd" * 32) for i in range(20)]
    ds = dns.rrset.from_rdata(ZONE, 3600, *fakes, _ds(s)[0])
    _bogus(authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW), EDE.DNSKEY_MISSING)
    limits = Limits(max_ds_per_zone=30)
    assert authenticate_dnskeys(s.keys, s.sign(s.keys), ds, now=NOW,
                                config=ValidatorConfig(limits=limits)).secure


def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="limits.max_keys_per_tag"):
        Limits(max_keys_per_tag=-1)


# --- verified-signature cache (issue #5) ----------------------------------------------------------

def test_a_proven_signature_is_not_verified_again(signer, monkeypatch) -> None:
    """The second validation of the same RRSIG over the same data with the same key costs no
    public-key operation and no budget; the verdict and the proving key are the same."""
    monkeypatch.setattr(sigcrypt, "VERIFIED", crypto.VerifiedSignatures(100))
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data)
    first, again = Budget(), Budget()
    a = validate_rrset(data, sigs, s.keys, now=NOW, budget=first)
    b = validate_rrset(data, sigs, s.keys, now=NOW, budget=again)
    assert a.verdict == b.verdict == Verdict.SECURE
    assert (a.key, a.rrsig, a.ttl) == (b.key, b.rrsig, b.ttl)
    assert (first.sig_checks, again.sig_checks) == (1, 0)
    assert (sigcrypt.VERIFIED.hits, sigcrypt.VERIFIED.misses) == (1, 1)


def test_the_cache_never_vouches_for_other_data_keys_or_times(signer, monkeypatch) -> None:
    """Only the exact (key, signature, signed data) is remembered: changed data, another key of
    the same tag or an expired window are checked as if the cache were empty."""
    monkeypatch.setattr(sigcrypt, "VERIFIED", crypto.VerifiedSignatures(100))
    s = signer(13)
    data = rrset("www.example.test.")
    sigs = s.sign(data)
    assert validate_rrset(data, sigs, s.keys, now=NOW).verdict == Verdict.SECURE
    changed = rrset("www.example.test.", "A", "192.0.2.99")
    result = validate_rrset(changed, sigs, s.keys, now=NOW)
    assert result.verdict == Verdict.BOGUS and result.ede == EDE.DNSSEC_BOGUS
    other = crypto.Key(Signer(13).dnskey.to_wire())
    key = crypto.Key(s.dnskey.to_wire())
    signature = sigs[0].signature
    assert sigcrypt.VERIFIED.digest(key, signature, b"data") != \
        sigcrypt.VERIFIED.digest(other, signature, b"data")
    assert not sigcrypt.VERIFIED.known(sigcrypt.VERIFIED.digest(other, signature, b"data"))
    late = NOW + 86400 * 60  # after the RRSIG's expiration
    result = validate_rrset(data, sigs, s.keys, now=late)
    assert result.verdict == Verdict.BOGUS and result.ede == EDE.SIGNATURE_EXPIRED
    assert sigcrypt.VERIFIED.hits == 0


def test_verified_signatures_are_bounded_lru() -> None:
    cache = crypto.VerifiedSignatures(2)
    for digest in (b"a", b"b", b"c"):
        cache.add(digest)
    assert len(cache) == 2 and not cache.known(b"a") and cache.known(b"b")
    cache.add(b"d")  # b was used last: c goes
    assert cache.known(b"b") and not cache.known(b"c")
    with pytest.raises(ValueError):
        crypto.VerifiedSignatures(0)
