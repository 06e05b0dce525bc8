"""Authenticated denial of existence with NSEC (RFC 4035 §3.1.3, §5.4; RFC 6840 §4.1, §4.3,
§4.4). The records passed in must already have been validated."""

from __future__ import annotations

from collections.abc import Iterable

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

from resolver.dnssec.result import DenialResult, Verdict
from resolver.dnssec.typemap import (DS, NS, SOA, blocks_below, has_type, nodata_problem,
                                     wildcard_of, wildcard_parent)
from resolver.ede import EDE

KIND = "nsec"
Record = tuple[dns.name.Name, dns.rdata.Rdata]


def records(rrsets: Iterable[dns.rrset.RRset]) -> list[Record]:
    """The NSEC records among ``rrsets`` as (owner, rdata) pairs."""
    return [(rrset.name, rd) for rrset in rrsets if rrset.rdtype == dns.rdatatype.NSEC
            for rd in rrset]


def covers(owner: dns.name.Name, next_name: dns.name.Name, name: dns.name.Name) -> bool:
    """Whether the NSEC span owner..next holds ``name`` strictly inside it, in canonical order
    (RFC 4034 §6.1). The zone's last NSEC points back to the apex and covers every name of the
    zone after its owner."""
    if owner < next_name:
        return owner < name < next_name
    return owner < name and name.is_subdomain(next_name)


def _bogus(reason: str, ede: EDE = EDE.NSEC_MISSING) -> DenialResult:
    return DenialResult(Verdict.BOGUS, KIND, ede, reason)


def find_cover(name: dns.name.Name, recs: list[Record]) -> Record | None:
    """The record that proves ``name`` does not exist, unless an ancestor delegation or DNAME
    record is all there is (RFC 6840 §4.1)."""
    for owner, rd in recs:
        if covers(owner, rd.next, name) and not (
                name.is_subdomain(owner) and blocks_below(rd)):
            return owner, rd
    return None


def _match(name: dns.name.Name, recs: list[Record]) -> dns.rdata.Rdata | None:
    for owner, rd in recs:
        if owner == name:
            return rd
    return None


def closest_encloser(name: dns.name.Name, cover: Record) -> dns.name.Name:
    """The deepest ancestor of ``name`` that exists, read off the NSEC covering it: the longer
    of the names it shares with the NSEC owner and with its next name."""
    owner, rd = cover
    common = max(name.fullcompare(owner)[2], name.fullcompare(rd.next)[2])
    return dns.name.Name(name.labels[-common:])


def _no_wildcard(ce: dns.name.Name, recs: list[Record]) -> str | None:
    wildcard = wildcard_of(ce)
    if _match(wildcard, recs) is not None:
        return f"the wildcard {wildcard} exists"
    if find_cover(wildcard, recs) is None:
        return f"no NSEC proves that {wildcard} does not exist"
    return None


def prove_nxdomain(qname: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> DenialResult:
    """Name error: an NSEC covers ``qname`` and one covers the wildcard at its closest
    encloser (RFC 4035 §3.1.3.2, §5.4)."""
    recs = records(rrsets)
    if _match(qname, recs) is not None:
        return _bogus(f"an NSEC shows that {qname} exists", EDE.DNSSEC_BOGUS)
    cover = find_cover(qname, recs)
    if cover is None:
        return _bogus(f"no NSEC proves that {qname} does not exist")
    ce = closest_encloser(qname, cover)
    if ce == qname:
        return _bogus(f"{qname} is an empty non-terminal: it exists", EDE.DNSSEC_BOGUS)
    problem = _no_wildcard(ce, recs)
    if problem:
        return _bogus(problem)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)


def prove_nodata(qname: dns.name.Name, qtype: int,
                 rrsets: Iterable[dns.rrset.RRset]) -> DenialResult:
    """No data: the NSEC at ``qname`` lists neither ``qtype`` nor CNAME (RFC 4035 §3.1.3.1,
    RFC 6840 §4.3), ``qname`` is an empty non-terminal (an NSEC covers it and its next name
    lies below it), or the answer would come from a wildcard that lacks the type
    (RFC 4035 §3.1.3.4)."""
    recs = records(rrsets)
    rd = _match(qname, recs)
    if rd is not None:
        problem = nodata_problem(rd, qtype)
        if problem:
            return _bogus(f"NSEC at {qname}: {problem}", EDE.DNSSEC_BOGUS)
        return DenialResult(Verdict.SECURE, KIND, closest_encloser=qname)
    cover = find_cover(qname, recs)
    if cover is not None and cover[1].next.is_subdomain(qname):
        return DenialResult(Verdict.SECURE, KIND, closest_encloser=qname)
    return _wildcard_nodata(qname, qtype, recs)


def prove_wildcard_nodata(qname: dns.name.Name, qtype: int,
                          rrsets: Iterable[dns.rrset.RRset]) -> DenialResult:
    """Wildcard no data: an NSEC covers ``qname`` and the NSEC of the wildcard at its closest
    encloser lists neither ``qtype`` nor CNAME (RFC 4035 §3.1.3.4)."""
    return _wildcard_nodata(qname, qtype, records(rrsets))


def _wildcard_nodata(qname: dns.name.Name, qtype: int, recs: list[Record]) -> DenialResult:
    cover = find_cover(qname, recs)
    if cover is None:
        return _bogus(f"no NSEC proves that {qname} has no {dns.rdatatype.to_text(qtype)}")
    ce = closest_encloser(qname, cover)
    wildcard = wildcard_of(ce)
    rd = _match(wildcard, recs)
    if rd is None:
        return _bogus(f"no NSEC at {wildcard} or at {qname}")
    problem = nodata_problem(rd, qtype)
    if problem:
        return _bogus(f"NSEC at {wildcard}: {problem}", EDE.DNSSEC_BOGUS)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)


def prove_wildcard_answer(qname: dns.name.Name, wildcard: dns.name.Name,
                          rrsets: Iterable[dns.rrset.RRset]) -> DenialResult:
    """A positive answer synthesised from ``wildcard``: an NSEC proves that ``qname`` does not
    exist and that no name closer to it than the wildcard's parent does (RFC 4035 §5.3.4)."""
    recs = records(rrsets)
    try:
        ce = wildcard_parent(wildcard)
    except ValueError as exc:
        return _bogus(str(exc), EDE.DNSSEC_BOGUS)
    cover = find_cover(qname, recs)
    if cover is None:
        return _bogus(f"no NSEC proves that {qname} does not exist")
    found = closest_encloser(qname, cover)
    if found != ce:
        return _bogus(f"the closest encloser of {qname} is {found}, not {ce}",
                      EDE.DNSSEC_BOGUS)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)


def prove_no_ds(name: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> DenialResult:
    """Insecure delegation: the parent's NSEC at ``name`` has NS and lacks DS and SOA
    (RFC 4035 §5.2, RFC 6840 §4.4)."""
    rd = _match(name, records(rrsets))
    if rd is None:
        return _bogus(f"no NSEC at the delegation {name}")
    if not has_type(rd, NS) or has_type(rd, SOA):
        return _bogus(f"the NSEC at {name} is not from the parent side of a delegation",
                      EDE.DNSSEC_BOGUS)
    if has_type(rd, DS):
        return _bogus(f"the NSEC at {name} lists DS", EDE.DNSSEC_BOGUS)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=name)
