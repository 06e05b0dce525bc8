"""Facts read off NSEC and NSEC3 records that both denial proofs use: the type bitmap
(RFC 4034 §4.1.2, RFC 5155 §3.2.1), what it says of a zone cut (RFC 6840 §4.1) and of a NODATA
answer (RFC 4035 §5.4, RFC 6840 §4.3, RFC 5155 §8.5-§8.6), and the names a proof is about: the
next closer name (RFC 5155 §1.3) and the wildcard at the closest encloser (RFC 4592 §2.1.1)."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdatatype

NS = dns.rdatatype.NS
SOA = dns.rdatatype.SOA
DS = dns.rdatatype.DS
CNAME = dns.rdatatype.CNAME
DNAME = dns.rdatatype.DNAME


def has_type(rdata: dns.rdata.Rdata, rdtype: int) -> bool:
    """Whether an NSEC or NSEC3 type bitmap lists ``rdtype`` (RFC 4034 §4.1.2)."""
    window, bit = divmod(int(rdtype), 256)
    for number, bitmap in rdata.windows:
        if number == window:
            octet = bit // 8
            return octet < len(bitmap) and bool(bitmap[octet] & (0x80 >> (bit % 8)))
    return False


def is_delegation(rdata: dns.rdata.Rdata) -> bool:
    """NS without SOA: the record was made at a zone cut, on the parent side (RFC 6840 §4.1)."""
    return has_type(rdata, NS) and not has_type(rdata, SOA)


def blocks_below(rdata: dns.rdata.Rdata) -> bool:
    """An ancestor record that proves nothing about names below it: a delegation point or a
    DNAME owner (RFC 6840 §4.1, RFC 5155 §8.3)."""
    return is_delegation(rdata) or has_type(rdata, DNAME)


def nodata_problem(rdata: dns.rdata.Rdata, qtype: int) -> str | None:
    """Why a record matching the query name fails to prove that ``qtype`` is absent there, or
    None when it proves it (RFC 4035 §5.4, RFC 6840 §4.3; RFC 5155 §8.5, §8.6)."""
    if has_type(rdata, qtype):
        return f"the type bitmap lists {dns.rdatatype.to_text(qtype)}"
    if has_type(rdata, CNAME):
        return "the type bitmap lists CNAME"
    if qtype == DS:
        if has_type(rdata, SOA):
            return "the record is from the child zone's apex and cannot deny the DS"
    elif is_delegation(rdata):
        return "the record is from the parent side of a delegation"
    return None


def closer_name(qname: dns.name.Name, ancestor: dns.name.Name) -> dns.name.Name:
    """The ancestor of ``qname`` one label longer than ``ancestor`` (the "next closer name",
    RFC 5155 §1.3)."""
    return dns.name.Name(qname.labels[-(len(ancestor.labels) + 1):])


def wildcard_of(name: dns.name.Name) -> dns.name.Name:
    """The wildcard ``*.<name>`` (RFC 4592 §2.1.1)."""
    return dns.name.Name((b"*",) + name.labels)


def wildcard_parent(wildcard: dns.name.Name) -> dns.name.Name:
    """The closest encloser a wildcard answer claims: the parent of ``*.<name>``. Raises
    ValueError for a name that is not a wildcard."""
    if len(wildcard.labels) < 2 or wildcard.labels[0] != b"*":
        raise ValueError(f"{wildcard} is not a wildcard name")
    return wildcard.parent()
