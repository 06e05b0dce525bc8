"""RRset signature checks (RFC 4035 §5.3) and DNSKEY set authentication (RFC 4035 §5.2).

Like Unbound's ``val_sigcrypt``: given an RRset, its RRSIGs and candidate keys, find one
signature that a usable key proves, spending no more work than the budget allows. The loop
itself is compiled (``verify.check_rrset``); this module frames its outcome.
"""

from __future__ import annotations

import time
from datetime import datetime

import dns.name
import dns.rdatatype
import dns.rrset

from resolver.dnssec import canonical, crypto, verify
from resolver.dnssec.config import (DEFAULT_CONFIG, Budget, BudgetExhausted, BudgetName,
                                    ValidatorConfig)
from resolver.dnssec.result import KeyInfo, ValidationResult, Verdict
from resolver.ede import EDE

#: Parsed DNSKEYs shared by every validation in the process, keyed by DNSKEY RDATA.
KEY_CACHE = crypto.KeyCache(10000)
#: Signature checks that succeeded, shared likewise (None: verify every time, as benchmarks of
#: the cryptography itself do).
VERIFIED: crypto.VerifiedSignatures | None = crypto.VerifiedSignatures(20000)

# Bound once for the hot path: reading an Enum member costs ~0.1 µs on Python 3.11.
_check_rrset, _SECURE, _VERDICT_SECURE = verify.check_rrset, verify.SECURE, Verdict.SECURE

# RFC 4509 §3: ignore SHA-1 DS records when a stronger digest is present.
_STRONGER_THAN_SHA1 = frozenset((crypto.DIGEST_SHA256, crypto.DIGEST_SHA384))


def posix_time(now: float | int | datetime | None) -> int:
    """The validation time in POSIX seconds: ``now`` when given (an injected clock), else the
    system clock."""
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        return int(now.timestamp())
    return int(now)


def dnskey_tag(dnskey) -> int:
    """The key tag of one DNSKEY rdata (RFC 4034 Appendix B)."""
    return crypto.key_tag(canonical.rdata_wire(dnskey))


def key_tags(dnskeys: dns.rrset.RRset) -> frozenset[int]:
    """The key tags of a DNSKEY RRset, read off its keys as :data:`KEY_CACHE` parsed them
    (each key's RDATA rendered and its tag computed once, however often it is asked)."""
    return frozenset(key.tag for key in KEY_CACHE.of_rrset(dnskeys))


def describe(name: dns.name.Name, rdtype: int) -> str:
    """``owner/TYPE``, the way reasons name an RRset."""
    return f"{name}/{dns.rdatatype.to_text(rdtype)}"


def check_rrset(rrset: dns.rrset.RRset, rrsigs: dns.rrset.RRset | None,
                key_owner: dns.name.Name | None, keys: list[crypto.Key], now: int,
                budget: Budget | None, config: ValidatorConfig) -> tuple[ValidationResult,
                                                                        crypto.Key | None]:
    """:func:`validate_rrset` with the keys already parsed and the time resolved; also returns
    the key that proved the RRset, if any. Without a budget the call is bounded by the smaller
    of the per-RRset and per-query limits, which is what a fresh budget would allow."""
    limits = config.limits
    max_checks = limits.max_sig_checks_per_rrset
    if budget is None:
        spend = None
        if limits.max_sig_checks_per_query < max_checks:
            max_checks = limits.max_sig_checks_per_query
    else:
        spend = budget.spend_sig_check
    try:
        outcome, ede, reason, key, rrsig, ttl = _check_rrset(
            rrset, rrsigs, None if key_owner is None else key_owner.labels, keys, now, spend,
            max_checks, limits.max_keys_per_tag, config.allow_sha1, VERIFIED)
    except (BudgetExhausted, canonical.MalformedData) as exc:
        return ValidationResult(Verdict.BOGUS, EDE.DNSSEC_BOGUS,
                                f"{describe(rrset.name, rrset.rdtype)}: {exc}",
                                budget=getattr(exc, "budget", None)), None
    info = None if key is None else key.info
    if key is not None and (info is None or info.owner is not key_owner):
        # Results share the key's KeyInfo for as long as its owner is the same Name object.
        info = key.info = KeyInfo(key_owner, key.tag, key.algorithm, key.flags)
    if outcome == _SECURE:
        return ValidationResult(_VERDICT_SECURE, None, "", info, rrsig, ttl), key
    verdict = Verdict.INSECURE if outcome == verify.NO_SUPPORTED_KEY else Verdict.BOGUS
    return ValidationResult(verdict, EDE(ede), f"{describe(rrset.name, rrset.rdtype)}: {reason}",
                            info, rrsig, budget=BudgetName.SIG_CHECKS_PER_RRSET
                            if outcome == verify.RRSET_BUDGET else None), None


def validate_rrset(rrset: dns.rrset.RRset, rrsigs: dns.rrset.RRset | None,
                   dnskeys: dns.rrset.RRset | None, *, now: float | datetime | None = None,
                   budget: Budget | None = None,
                   config: ValidatorConfig | None = None) -> ValidationResult:
    """Check that ``rrset`` is signed by one of ``dnskeys`` through one of ``rrsigs``
    (RFC 4035 §5.3).

    ``dnskeys`` must already be authenticated (see :func:`authenticate_dnskeys`): this checks
    signatures, not trust. The verdict is SECURE or BOGUS, or INSECURE when the keys hold no zone
    key of a supported algorithm and nothing is signed with one (RFC 4035 §5.2). ``now`` injects
    the validation time; ``budget`` carries the work spent on the current client query across
    calls."""
    if dnskeys is None:
        key_owner, keys = None, []
    else:
        key_owner, keys = dnskeys.name, KEY_CACHE.of_rrset(dnskeys)
    return check_rrset(rrset, rrsigs, key_owner, keys,
                       now if type(now) is int else posix_time(now), budget,
                       config or DEFAULT_CONFIG)[0]


def _not_authenticated(dnskeys: dns.rrset.RRset, why: str) -> str:
    """Why a DNSKEY set is not authenticated, after its owner and type: rendered only for a
    failure, not on the path every new zone takes."""
    return f"{describe(dnskeys.name, dns.rdatatype.DNSKEY)}: {why}"


def authenticate_dnskeys(dnskeys: dns.rrset.RRset, rrsigs: dns.rrset.RRset | None,
                         trust: dns.rrset.RRset, *, now: float | datetime | None = None,
                         budget: Budget | None = None,
                         config: ValidatorConfig | None = None) -> ValidationResult:
    """Authenticate a zone's DNSKEY RRset from its parent's DS RRset or from trust anchors
    (RFC 4035 §5.2; RFC 4033 §3.1 for anchors).

    ``trust`` is a DS RRset (from the parent, already validated, or a DS trust anchor) or a
    DNSKEY RRset of trust-anchor keys. SECURE: a key that ``trust`` vouches for signs the DNSKEY
    RRset, so the whole set may be used. INSECURE: no DS of a supported algorithm and digest
    type, which makes the zone insecure (RFC 4035 §5.2, RFC 6840 §5.2, RFC 9905 §2). BOGUS:
    otherwise."""
    config = config or DEFAULT_CONFIG
    owner_wire = canonical.name_wire(dnskeys.name.labels)
    keys = KEY_CACHE.of_rrset(dnskeys)  # each key's RDATA and tag computed once
    wires = [key.wire for key in keys]
    if not canonical.same_name(trust.name.labels, dnskeys.name.labels):
        return ValidationResult(Verdict.BOGUS, EDE.DNSKEY_MISSING, _not_authenticated(
            dnskeys, f"trust is for {trust.name}, not this zone"))
    matched: dict[bytes, object] = {}  # DNSKEY RDATA -> the DS or anchor that vouches for it
    if trust.rdtype == dns.rdatatype.DNSKEY:
        anchors = {canonical.rdata_wire(rd): rd for rd in trust}
        matched = {w: anchors[w] for w in wires if w in anchors}
        if not matched:
            return ValidationResult(Verdict.BOGUS, EDE.DNSKEY_MISSING, _not_authenticated(
                dnskeys, "no DNSKEY matches a trust anchor"))
    else:
        usable = [ds for ds in trust if crypto.algorithm_usable(ds.algorithm, config.allow_sha1)
                  and ds.digest_type in crypto.IMPLEMENTED_DIGESTS]
        if not usable:
            unsupported_alg = all(not crypto.algorithm_usable(ds.algorithm, config.allow_sha1) for ds in trust)
            ede = (EDE.UNSUPPORTED_DNSKEY_ALGORITHM if unsupported_alg
                   else EDE.UNSUPPORTED_DS_DIGEST_TYPE)
            return ValidationResult(Verdict.INSECURE, ede, _not_authenticated(
                dnskeys, "no DS of a supported algorithm and digest type: the zone is insecure"))
        if any(ds.digest_type in _STRONGER_THAN_SHA1 for ds in usable):
            usable = [ds for ds in usable if ds.digest_type != crypto.DIGEST_SHA1]
        by_tag: dict[tuple[int, int], list[bytes]] = {}
        for key in keys:
            by_tag.setdefault((key.tag, key.algorithm), []).append(key.wire)
        # Digests are cheap hashes, so every key sharing a DS's tag is compared: a zone may
        # legitimately have colliding tags. The per-tag cap bounds signature checks instead.
        for ds in usable[:config.limits.max_ds_per_zone]:
            for wire in by_tag.get((ds.key_tag, ds.algorithm), ()):
                if crypto.ds_digest(ds.digest_type, owner_wire, wire) == ds.digest:
                    matched.setdefault(wire, ds)
        if not matched:
            return ValidationResult(Verdict.BOGUS, EDE.DNSKEY_MISSING, _not_authenticated(
                dnskeys, "no DNSKEY matches the DS set"))
    result, proving_key = check_rrset(dnskeys, rrsigs, dnskeys.name,
                                      [KEY_CACHE.get(wire) for wire in matched],
                                      posix_time(now), budget, config)
    if proving_key is not None:
        result.ds = matched[proving_key.wire]
    elif result.verdict is Verdict.INSECURE:
        # Every vouched-for key has a supported algorithm, so it can only be unusable as a zone
        # key: the DS says the zone is signed, and nothing here can prove it.
        result.verdict, result.ede = Verdict.BOGUS, EDE.NO_ZONE_KEY_BIT_SET
        result.reason = _not_authenticated(
            dnskeys, "no key vouched for by the DS set is a usable zone key")
    return result
