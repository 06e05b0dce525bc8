"""Built-in root hints and root trust anchors, and trust-anchor parsing.

Root hints prime the resolver's view of the root zone's servers (RFC 9609 §3). Trust anchors are
the DS or DNSKEY records that chains of trust start from (RFC 4033 §2, RFC 4035 §4.4); the root's
come from IANA's root-anchors.xml (RFC 9718).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.zonefile

from resolver.dnssec.crypto import DNSKEY_PROTOCOL, REVOKE_FLAG, ZONE_FLAG
from resolver.errors import ResolverError

__all__ = [
    "DEFAULT_ANCHOR_TTL", "ROOT_HINTS", "ROOT_TRUST_ANCHORS", "RootHint", "TrustAnchorError",
    "builtin_trust_anchors", "load_trust_anchor_file", "parse_trust_anchors",
]


@dataclass(frozen=True, slots=True)
class RootHint:
    """One root server: its name and the addresses to prime from (RFC 9609 §3)."""

    name: dns.name.Name
    addresses: tuple[str, ...]


def _hint(name: str, ipv4: str, ipv6: str) -> RootHint:
    return RootHint(dns.name.from_text(name), (ipv4, ipv6))


#: IANA's root hints (https://www.internic.net/domain/named.root): the same 26 addresses in the
#: editions of 2024-04-18 (root zone 2024041801) and 2026-07-22 (2026072201).
ROOT_HINTS: tuple[RootHint, ...] = (
    _hint("a.root-servers.net.", "198.41.0.4", "2001:503:ba3e::2:30"),
    _hint("b.root-servers.net.", "170.247.170.2", "2801:1b8:10::b"),
    _hint("c.root-servers.net.", "192.33.4.12", "2001:500:2::c"),
    _hint("d.root-servers.net.", "199.7.91.13", "2001:500:2d::d"),
    _hint("e.root-servers.net.", "192.203.230.10", "2001:500:a8::e"),
    _hint("f.root-servers.net.", "192.5.5.241", "2001:500:2f::f"),
    _hint("g.root-servers.net.", "192.112.36.4", "2001:500:12::d0d"),
    _hint("h.root-servers.net.", "198.97.190.53", "2001:500:1::53"),
    _hint("i.root-servers.net.", "192.36.148.17", "2001:7fe::53"),
    _hint("j.root-servers.net.", "192.58.128.30", "2001:503:c27::2:30"),
    _hint("k.root-servers.net.", "193.0.14.129", "2001:7fd::1"),
    _hint("l.root-servers.net.", "199.7.83.42", "2001:500:9f::42"),
    _hint("m.root-servers.net.", "202.12.27.33", "2001:dc3::35"),
)

#: The root zone's DS records from IANA's root-anchors.xml (RFC 9718): KSK-2017 (valid from
#: 2017-02-02) and KSK-2024 (valid from 2024-07-18), both RSA/SHA-256 with SHA-256 digests.
ROOT_TRUST_ANCHORS: tuple[str, ...] = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
)

#: TTL given to anchors written without one. Validation never reads an anchor's TTL; this is the
#: root DNSKEY RRset's TTL.
DEFAULT_ANCHOR_TTL = 172800


class TrustAnchorError(ResolverError, ValueError):
    """A trust anchor that cannot be used. ``index`` is the position of the offending item for
    :func:`parse_trust_anchors`, else ``None``; ``reason`` is the message without position;
    ``unreadable``: the file could not be read at all (rather than read and found wrong)."""

    def __init__(self, reason: str, index: int | None = None, unreadable: bool = False) -> None:
        super().__init__(reason if index is None else f"trust anchor {index}: {reason}")
        self.reason = reason
        self.index = index
        self.unreadable = unreadable


def _describe(rrset: dns.rrset.RRset, rdata: object) -> str:
    return f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"[:80]


def _check(rrsets: Iterable[dns.rrset.RRset]) -> None:
    """Only DS and DNSKEY records of class IN are anchors; a DNSKEY anchor must be a zone key
    (RFC 4034 §2.1.1), of protocol 3 (§2.1.2), and not revoked (RFC 5011 §3)."""
    for rrset in rrsets:
        if rrset.rdclass != dns.rdataclass.IN:
            raise TrustAnchorError(f"{rrset.name}: class {dns.rdataclass.to_text(rrset.rdclass)} "
                                   "is not IN")
        if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            raise TrustAnchorError(f"{rrset.name}: type {dns.rdatatype.to_text(rrset.rdtype)}"
                                   " is not DS or DNSKEY")
        if rrset.rdtype != dns.rdatatype.DNSKEY:
            continue
        for key in rrset:
            if not key.flags & ZONE_FLAG:
                raise TrustAnchorError(f"{_describe(rrset, key)}: not a zone key (flags lack "
                                       "bit 7, RFC 4034 §2.1.1)")
            if key.flags & REVOKE_FLAG:
                raise TrustAnchorError(f"{_describe(rrset, key)}: key is revoked (RFC 5011)")
            if key.protocol != DNSKEY_PROTOCOL:
                raise TrustAnchorError(f"{_describe(rrset, key)}: protocol {key.protocol} is not "
                                       "3 (RFC 4034 §2.1.2)")


class _RecordError(ResolverError, dns.exception.DNSException):
    """A record that does not parse, with the line it starts on."""


class _Reader(dns.zonefile.Reader):
    """dnspython's master-file reader, reporting a bad record at the line where it starts
    rather than where the tokenizer stopped (often the next line)."""

    def _rr_line(self) -> None:
        filename, line = self.tok.where()
        try:
            super()._rr_line()
        except dns.exception.SyntaxError as exc:
            raise _RecordError(f"{filename}:{line}: {exc}") from None


_CLASS_MESSAGE = "RR class is not zone's class"


def _read(text: str, filename: str, directives: set[str]) -> list[dns.rrset.RRset]:
    """RRsets from master-file text (RFC 1035 §5.1), TTL and class optional, origin the root."""
    manager = dns.zonefile.RRSetsReaderManager(dns.name.root, False, dns.rdataclass.IN)
    try:
        with manager.writer(True) as txn:
            tok = dns.tokenizer.Tokenizer(text, filename)
            _Reader(tok, dns.rdataclass.IN, txn, allow_directives=directives,
                    default_ttl=DEFAULT_ANCHOR_TTL).read()
    except dns.exception.DNSException as exc:
        message = str(exc).replace(_CLASS_MESSAGE, "class must be IN")
        raise dns.exception.SyntaxError(message) from None
    return manager.rrsets


def _syntax_reason(exc: Exception, prefix: str) -> str:
    text = str(exc) or type(exc).__name__
    return text[len(prefix):] if text.startswith(prefix) else text


def _group(rrsets: Iterable[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """One RRset per owner and type, in order of first appearance."""
    grouped: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for rrset in rrsets:
        key = (rrset.name, rrset.rdtype)
        if key in grouped:
            grouped[key].update(rrset)
            grouped[key].update_ttl(rrset.ttl)
        else:
            grouped[key] = dns.rrset.from_rdata_list(rrset.name, rrset.ttl, list(rrset))
    return list(grouped.values())


def parse_trust_anchors(lines: Iterable[str]) -> list[dns.rrset.RRset]:
    """Trust anchors from presentation-format DS or DNSKEY records, one a line, e.g.
    ``". IN DS 20326 8 2 E06D..."`` (RFC 4034 §5.3, §2.2): absolute owner, optional TTL and
    class IN. Grouped into one RRset per owner and type; raises :class:`TrustAnchorError`."""
    rrsets: list[dns.rrset.RRset] = []
    for index, line in enumerate(lines):
        if not isinstance(line, str):
            raise TrustAnchorError(f"expected a string, got {type(line).__name__}", index)
        text = line.strip()
        if not text or text.startswith(";"):
            raise TrustAnchorError("empty", index)
        owner = text.split(None, 1)[0]
        if owner.startswith("$"):
            raise TrustAnchorError(f"directive {owner} is only allowed in a file", index)
        try:
            absolute = dns.name.from_text(owner, origin=None).is_absolute()
        except dns.exception.DNSException as exc:
            raise TrustAnchorError(f"{owner!r}: {exc}", index) from None
        if not absolute:
            raise TrustAnchorError(f"owner {owner!r} must be absolute (end with '.')", index)
        try:
            found = _read(text, "<anchor>", set())
        except dns.exception.DNSException as exc:
            reason = _syntax_reason(exc, "<anchor>:1: ")
            raise TrustAnchorError(f"{text[:60]!r}: {reason}", index) from None
        if sum(len(rrset) for rrset in found) != 1:
            raise TrustAnchorError("expected exactly one record", index)
        try:
            _check(found)
        except TrustAnchorError as exc:
            raise TrustAnchorError(exc.reason, index) from None
        rrsets.extend(found)
    return _group(rrsets)


def load_trust_anchor_file(path: str) -> list[dns.rrset.RRset]:
    """Trust anchors from a master file of DS or DNSKEY records (RFC 1035 §5.1; ``$ORIGIN`` and
    ``$TTL`` allowed, origin defaults to the root). Raises :class:`TrustAnchorError` with the file
    name, and the line for syntax errors."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, OSError):
            raise TrustAnchorError(f"{path}: cannot read: {exc.strerror or exc}",
                                   unreadable=True) from None
        raise TrustAnchorError(f"{path}: {exc}") from None
    try:
        found = _read(text, path, {"$ORIGIN", "$TTL"})
    except dns.exception.DNSException as exc:
        reason = str(exc) or type(exc).__name__
        raise TrustAnchorError(reason if reason.startswith(f"{path}:")
                               else f"{path}: {reason}") from None
    try:
        _check(found)
    except TrustAnchorError as exc:
        raise TrustAnchorError(f"{path}: {exc.reason}") from None
    if not found:
        raise TrustAnchorError(f"{path}: no DS or DNSKEY records")
    return _group(found)


def builtin_trust_anchors() -> list[dns.rrset.RRset]:
    """The root's DS RRset from :data:`ROOT_TRUST_ANCHORS`, freshly built (RRsets are mutable)."""
    return parse_trust_anchors(ROOT_TRUST_ANCHORS)
