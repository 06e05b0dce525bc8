"""Answers to client queries, built from resolution outcomes and refusals (dnspython messages):
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

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from resolver.dnssec import Verdict
from resolver.ede import EDE
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


def _response(query: dns.message.Message, rcode: int) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.flags |= dns.flags.RA | (query.flags & dns.flags.CD)
    response.set_rcode(rcode)
    if query.edns >= 0:
        response.use_edns(0, query.ednsflags & dns.flags.DO, EDNS_PAYLOAD)
    return response


def _with_ede(response: dns.message.Message, ede: EDE, text: str) -> None:
    if response.edns >= 0:
        options = list(response.options) + [dns.edns.EDEOption(int(ede), text[:400])]
        response.use_edns(0, response.ednsflags, EDNS_PAYLOAD, options=options)


def build_answer(query: dns.message.Message, outcome: Outcome) -> dns.message.Message:
    """The response to ``query`` from a resolution outcome."""
    if outcome.failure is not None:
        response = _response(query, dns.rcode.SERVFAIL)
        _with_ede(response, outcome.failure.ede, outcome.failure.reason)
        return response
    answer = outcome.answer
    response = _response(query, answer.rcode)
    dnssec_ok = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
    qtype = query.question[0].rdtype
    for rrset in answer.rrsets:
        if dnssec_ok or rrset.rdtype not in DNSSEC_TYPES or rrset.rdtype == qtype:
            response.answer.append(_with_ttl(rrset, answer.ttl))
    for rrset in answer.authority:
        if dnssec_ok or rrset.rdtype not in DNSSEC_TYPES:
            response.authority.append(_with_ttl(rrset, answer.ttl))
    if answer.verdict is Verdict.SECURE and (dnssec_ok or query.flags & dns.flags.AD):
        response.flags |= dns.flags.AD  # RFC 6840 §5.8
    if answer.ede is not None:
        _with_ede(response, answer.ede, answer.reason)
    return response


def _with_ttl(rrset, ttl: int):
    """The cached RRset with its remaining TTL (RFC 1035 §3.2.1 counts down in caches)."""
    if rrset.ttl <= ttl:
        return rrset
    copy = rrset.copy()
    copy.ttl = ttl
    return copy


def refuse(query: dns.message.Message, rcode: int, ede: EDE, text: str) -> dns.message.Message:
    """A reply with ``rcode`` and no records, its EDE saying why (a refusal, an error)."""
    response = _response(query, rcode)
    _with_ede(response, ede, text)
    return response


def to_wire(query: dns.message.Message, response: dns.message.Message,
            max_size: int | None) -> bytes:
    """The reply's bytes: over TCP (``max_size`` None) at most 65535 octets; over UDP within
    resolver.wire.udp_limit of the query's EDNS payload size, else header, question and OPT
    only with TC set, so that the client asks again over TCP (RFC 2181 §9, RFC 7766 §5)."""
    if max_size is None:
        return response.to_wire(max_size=MAX_MESSAGE)
    limit = udp_limit(query.payload if query.edns >= 0 else None)
    if _least_size(response) <= limit:
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            pass
    # RFC 2181 §9: a truncated reply sets TC and the client retries over TCP.
    truncated = _response(query, response.rcode())
    truncated.flags |= dns.flags.TC | (response.flags & dns.flags.AD)
    return truncated.to_wire(max_size=limit)


def _least_size(response: dns.message.Message) -> int:
    """Octets the reply takes at the least: the header, and 11 a record (RFC 1035 §4.1.3: a
    one-octet owner, type, class, TTL and RDLENGTH). Above the UDP limit, the reply is
    truncated without being rendered first (a near-64 KiB RRset costs milliseconds to render
    only to be cut: issue #20's hostile zone)."""
    return 12 + 11 * sum(len(rrset) for section in (response.answer, response.authority,
                                                    response.additional) for rrset in section)
