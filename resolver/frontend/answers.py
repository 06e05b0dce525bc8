"""Answers to client queries, built from resolution outcomes and refusals, and rendered in
compiled code (resolver.frontend._render, the bytes dnspython renders):
the header (RFC 1035 §4.1.1: ID, opcode, RD copied, RA set), DNSSEC records only for a client
that set DO and AD only for a Secure answer (RFC 4035 §3.2.1, RFC 6840 §5.7-§5.8), TTLs counted
down in the cache (RFC 1035 §3.2.1), our EDNS payload size (RFC 6891 §6.2.5, resolver.wire) and
an Extended DNS Error saying why (RFC 8914 §3), and the reply's bytes within the transport's
size, truncated over UDP (RFC 2181 §9, sizes from resolver.wire).

Bogus or indeterminate data never reaches a client: a failed resolution becomes SERVFAIL with
an EDE naming the zone and the reason. A client's CD bit does not bypass validation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from resolver.dnssec import Verdict
from resolver.ede import EDE
from resolver.frontend._render import render
from resolver.frontend.resolution import Outcome
from resolver.wire import EDNS_PAYLOAD, MAX_MESSAGE, udp_limit

#: The DNSSEC record types a reply carries only for a client that set DO (RFC 4035 §3.2.1).
DNSSEC_TYPES = frozenset((dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3))


def header_only(wire: bytes, rcode: int) -> bytes | None:
    """A header-only reply with ``rcode`` to a query that cannot be parsed, or None if not even
    the header is there or it is a response (RFC 1035 §4.1.1)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | (wire[2] & 0x01) << 8 | rcode
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


@dataclass(slots=True)
class Reply:
    """A reply to a client's ``query`` before it is rendered (:func:`to_wire`): its RCODE, its
    answer and authority RRsets (TTLs counted down), AD, and its Extended DNS Error (code,
    text; only when the query had EDNS, which carries it). The header follows from the query:
    ID, opcode, RD and CD copied, QR and RA set (RFC 1035 §4.1.1, RFC 4035 §3.2.2); so does
    the OPT record, our payload size and the query's DO (RFC 6891 §6.1.1, RFC 3225 §3).
    ``edns`` is the query's OPT record read once (:func:`query_edns`)."""

    query: dns.message.Message
    rcode: int
    answer: list = field(default_factory=list)
    authority: list = field(default_factory=list)
    ad: bool = False
    ede: tuple[int, str] | None = None
    edns: tuple[int, int] | None = field(init=False)

    def __post_init__(self) -> None:
        self.edns = query_edns(self.query)


def query_edns(query: dns.message.Message) -> tuple[int, int] | None:
    """The query's EDNS (RFC 6891 §6.1.2-§6.1.3) as its UDP payload size (the OPT record's
    CLASS) and extended flags (its TTL: DO and the version), None without an OPT record: read
    off the OPT RRset, where dnspython's ``edns``, ``ednsflags`` and ``payload`` properties
    each cost a Python call and the RRset's Python ``__len__``."""
    opt = query.opt
    return None if opt is None else (opt.rdclass, opt.ttl)


def dnssec_ok(edns: tuple[int, int] | None) -> bool:
    """The query's DO bit (RFC 3225 §3), from :func:`query_edns`."""
    return edns is not None and bool(edns[1] & _DO)


def _with_ede(reply: Reply, ede: EDE, text: str) -> Reply:
    if reply.edns is not None:
        reply.ede = (int(ede), text[:400])
    return reply


def build_answer(query: dns.message.Message, outcome: Outcome) -> Reply:
    """The reply to ``query`` from a resolution outcome."""
    if outcome.failure is not None:
        return _with_ede(Reply(query, dns.rcode.SERVFAIL), outcome.failure.ede,
                         outcome.failure.reason)
    answer = outcome.answer
    reply = Reply(query, answer.rcode)
    do = dnssec_ok(reply.edns)
    qtype = query.question[0].rdtype
    for rrset in answer.rrsets:
        if do or rrset.rdtype not in DNSSEC_TYPES or rrset.rdtype == qtype:
            reply.answer.append(_with_ttl(rrset, answer.ttl))
    for rrset in answer.authority:
        if do or rrset.rdtype not in DNSSEC_TYPES:
            reply.authority.append(_with_ttl(rrset, answer.ttl))
    # RFC 6840 §5.8
    reply.ad = answer.verdict is Verdict.SECURE and bool(do or int(query.flags) & _AD)
    if answer.ede is not None:
        _with_ede(reply, answer.ede, answer.reason)
    return reply


def _with_ttl(rrset, ttl: int):
    """The cached RRset with its remaining TTL (RFC 1035 §3.2.1 counts down in caches)."""
    if rrset.ttl <= ttl:
        return rrset
    copy = rrset.copy()
    copy.ttl = ttl
    return copy


def refuse(query: dns.message.Message, rcode: int, ede: EDE, text: str) -> Reply:
    """A reply with ``rcode`` and no records, its EDE saying why (a refusal, an error)."""
    return _with_ede(Reply(query, rcode), ede, text)


def to_wire(reply: Reply, max_size: int | None) -> bytes:
    """The reply's bytes (resolver.frontend._render): over TCP (``max_size`` None) at most
    65535 octets, else dns.exception.TooBig; over UDP within resolver.wire.udp_limit of the
    query's EDNS payload size, else header, question and OPT only with TC set, so that the
    client asks again over TCP (RFC 2181 §9, RFC 7766 §5)."""
    query = reply.query
    if max_size is None:
        wire = _render(reply, MAX_MESSAGE)
        if wire is None:
            raise dns.exception.TooBig
        return wire
    limit = udp_limit(reply.edns[0] if reply.edns is not None else None)
    if _least_size(reply) <= limit:
        wire = _render(reply, limit)
        if wire is not None:
            return wire
    # RFC 2181 §9: a truncated reply sets TC and the client retries over TCP; no EDE.
    return render(query.id, _flags(reply) | _TC, query.question, (), (),
                  _opt(reply.edns, reply.rcode, None), limit)


def _render(reply: Reply, limit: int) -> bytes | None:
    return render(reply.query.id, _flags(reply), reply.query.question, reply.answer,
                  reply.authority, _opt(reply.edns, reply.rcode, reply.ede), limit)


def _flags(reply: Reply) -> int:
    """The header's flags and RCODE (RFC 1035 §4.1.1; RCODE's upper bits go in OPT)."""
    return (_QR_RA | (int(reply.query.flags) & _ECHOED) | (_AD if reply.ad else 0)
            | (reply.rcode & 0xF))


# The header's bits as plain ints (dnspython's flags are enums, slow to combine); the query's
# bits a reply repeats: opcode, RD (RFC 1035 §4.1.1), CD (RFC 4035 §3.2.2).
_QR_RA, _AD, _TC, _DO = (int(dns.flags.QR | dns.flags.RA), int(dns.flags.AD),
                         int(dns.flags.TC), int(dns.flags.DO))
_ECHOED = 0x7800 | int(dns.flags.RD | dns.flags.CD)


def _opt(edns: tuple[int, int] | None, rcode: int, ede: tuple[int, str] | None) -> bytes | None:
    """The reply's OPT record (RFC 6891 §6.1.2-§6.1.3: our payload size, version 0, the upper
    RCODE bits, the query's DO echoed, RFC 3225 §3) with its EDE option (RFC 8914 §2), or None
    for a query without EDNS."""
    if edns is None:
        return None
    ttl = (rcode >> 4) << 24 | (edns[1] & _DO)
    if ede is None:
        return _OPT.pack(0, 41, EDNS_PAYLOAD, ttl, 0)
    text = ede[1].encode()
    return (_OPT.pack(0, 41, EDNS_PAYLOAD, ttl, 6 + len(text))
            + _EDE.pack(int(dns.edns.EDE), 2 + len(text), ede[0]) + text)


_OPT = struct.Struct("!BHHIH")  # root owner, TYPE, CLASS (payload), TTL, RDLENGTH
_EDE = struct.Struct("!HHH")  # OPTION-CODE, OPTION-LENGTH, INFO-CODE


def _least_size(reply: Reply) -> int:
    """Octets the reply takes at the least: the header, and 11 a record (RFC 1035 §4.1.3: a
    one-octet owner, type, class, TTL and RDLENGTH). Above the UDP limit, the reply is
    truncated without being rendered first (a near-64 KiB RRset costs time to render only
    to be cut: issue #20's hostile zone)."""
    return 12 + 11 * sum(len(rrset) for section in (reply.answer, reply.authority)
                         for rrset in section)
