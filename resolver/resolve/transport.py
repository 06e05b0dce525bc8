"""Queries to upstream servers over UDP and TCP (RFC 1035 §4.2, RFC 7766).

Every query gets a fresh random ID (the system's CSPRNG: ``os.urandom``, 256 IDs drawn at a
time) and a fresh socket, so a fresh ephemeral source port (RFC 5452 §9.2). UDP sockets are
connected, so the kernel drops datagrams from any other address or port; an answer is taken
only if it is a response to a query (QR, opcode QUERY) with the query's ID and exactly its
question (RFC 5452 §9.1), all checked on the raw bytes before the message is parsed, and if it
parses. Anything else that arrives over UDP is ignored and counted in :data:`IGNORED` while
waiting, so a forged packet cannot end the wait. Over TCP the peer is the server itself (no
off-path forger completes a TCP handshake): replies with another ID are skipped (RFC 7766 §7),
but a reply with our ID that does not parse or asks another question ends the exchange at once
as a broken server.
"""

from __future__ import annotations

import array
import asyncio
import os
import struct
import time
import weakref
from collections import Counter
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

from resolver.dnssec.canonical import name_wire
from resolver.errors import ResolverError
from resolver.resolve._udp import Waiting, check, fold
from resolver.wire import EDNS_PAYLOAD

_HEADER = struct.Struct("!6H")  # ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
_TYPE_CLASS = struct.Struct("!HH")  # a question's QTYPE and QCLASS
# The OPT record of every query (RFC 6891 §6.1.2): owner the root, our payload size, extended
# RCODE and version 0, the DO flag (RFC 3225 §3), no options.
_OPT = b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, EDNS_PAYLOAD, dns.flags.DO, 0)
_IN = int(dns.rdataclass.IN)

# Upstream packets that did not answer the query they arrived for, by reason: "id", "not_reply"
# (no QR, or another opcode), "unparseable", "question"; read by the metrics endpoint.
IGNORED: Counter[str] = Counter()


class UpstreamError(ResolverError):
    """A query that got no usable answer: ``kind`` is timeout, network, formerr (a TCP reply
    that does not parse), mismatch (a TCP reply to another question) or tls (a forwarder's
    TLS connection not authenticated or not established: resolver.resolve.tls)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(slots=True)
class Reply:
    message: dns.message.Message
    tcp: bool
    rtt: float  # seconds
    size: int
    wire: bytes | None = None  # the reply as received (for dnstap)
    tls: bool = False  # over a forwarder's TLS connection (resolver.resolve.tls)

    @property
    def transport(self) -> str:
        """``udp``, ``tcp`` or ``dot``: how the reply came (dnstap's SocketProtocol)."""
        return "dot" if self.tls else "tcp" if self.tcp else "udp"


_IDS = array.array("H")  # query IDs drawn ahead from the CSPRNG, each used once
_IDS_DRAWN = 256  # IDs a draw: one getrandom system call per 256 queries, not one each


def fresh_id() -> int:
    """A query ID from the system's CSPRNG (RFC 5452 §9.2), drawn :data:`_IDS_DRAWN` at a
    time. A forked child starts with none drawn: it never sends the IDs its parent will."""
    if not _IDS:
        _IDS.frombytes(os.urandom(2 * _IDS_DRAWN))
    return _IDS.pop()


os.register_at_fork(after_in_child=lambda: _IDS.__delitem__(slice(None)))


class Query:
    """One upstream query (RFC 1035 §4.1): one question, nothing else but the OPT record
    :data:`_OPT`, rendered directly from the name's wire form (a fifth of the cost of building
    a dnspython message and rendering it). ``question_wire`` is the question's wire form (name,
    QTYPE, QCLASS IN), ``match`` the same :func:`fold`ed, which a reply's question must equal
    once folded (RFC 5452 §9.1)."""

    __slots__ = ("qname", "rdtype", "flags", "id", "question_wire", "match")

    def __init__(self, qname: dns.name.Name, rdtype: int, flags: int) -> None:
        self.qname, self.rdtype, self.flags = qname, rdtype, flags
        self.id = fresh_id()
        self.question_wire = name_wire(qname.labels, False) + _TYPE_CLASS.pack(rdtype, _IN)
        self.match = fold(self.question_wire)

    def to_wire(self) -> bytes:
        return _HEADER.pack(self.id, self.flags, 1, 0, 0, 1) + self.question_wire + _OPT

    def message(self) -> dns.message.Message:
        """The query as a dnspython message (for servers in memory, in tests)."""
        return dns.message.from_wire(self.to_wire())


def make_query(qname: dns.name.Name, qtype: int, *, recursion: bool = False) -> Query:
    """A query with EDNS0 and DO (RFC 6891, RFC 3225). Recursive queries, sent to forwarders, also
    set CD so the forwarder hands over data it would reject and we validate it ourselves
    (RFC 6840 §5.9)."""
    return Query(qname, qtype, dns.flags.RD | dns.flags.CD if recursion else 0)


def _check(query: Query, wire: bytes) -> tuple[dns.message.Message | None, str]:
    """``(reply, "")`` if ``wire`` answers ``query`` (RFC 5452 §9.1), else ``(None, reason)``
    with one of the reasons of :data:`IGNORED`: resolver.resolve._udp.check."""
    return check(query.id, query.match, wire)


def stream_failure(reason: str, host: str, stream: str) -> UpstreamError | None:
    """Over a stream (TCP, TLS) the peer is the server itself: a reply with the query's ID that
    does not parse, or that answers another question, is a broken server, not a forgery, and
    ends the exchange (RFC 7766 §7); None for a reason that is only skipped."""
    if reason == "unparseable":
        return UpstreamError("formerr", f"unparseable reply from {host} over {stream}")
    if reason == "question":
        return UpstreamError("mismatch", f"{host} answered another question over {stream}")
    return None


def _expire(done: asyncio.Future) -> None:
    """The timer of an upstream UDP query: no answer in time."""
    if not done.done():
        done.set_exception(TimeoutError())


# By event loop: dropped with the loop, and the epoll set closed with it. The supervisor forks
# its workers before any loop runs; each worker's loop has its own. _LAST, the one used last,
# is found without the weak dictionary's Python-level lookup.
_WAITING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waiting] = \
    weakref.WeakKeyDictionary()
_LAST: Waiting | None = None


def _waiting_of(loop: asyncio.AbstractEventLoop) -> Waiting:
    global _LAST
    waiting = _WAITING.get(loop)
    if waiting is None:
        waiting = _WAITING[loop] = Waiting(loop, IGNORED)
    _LAST = waiting
    return waiting


async def _udp(query: Query, wire: bytes, host: str, port: int,
               timeout: float) -> tuple[dns.message.Message, bytes]:
    """Over a connected socket of our own, made, sent on, watched and read in compiled code
    (resolver.resolve._udp: no Python socket object, one epoll set per loop) until the answer
    to ``query`` arrives or the time is up; anything else is ignored and counted."""
    loop = asyncio.get_running_loop()
    waiting = timer = fd = None
    done = loop.create_future()
    try:  # fails too: EMFILE (the loop's epoll set, the socket), EAFNOSUPPORT without IPv6
        waiting = _LAST
        if waiting is None or waiting.loop() is not loop:
            waiting = _waiting_of(loop)
        fd = waiting.send(wire, host, port, query.id, query.match, done)
        timer = loop.call_later(timeout, _expire, done)
        return await done
    except TimeoutError:
        raise UpstreamError("timeout", f"no answer from {host} over UDP") from None
    except OSError as exc:
        raise UpstreamError("network", str(exc)) from None
    finally:
        if timer is not None:
            timer.cancel()
        if fd is not None:
            waiting.remove(fd)


async def _tcp(query: Query, wire: bytes, host: str, port: int,
               timeout: float) -> tuple[dns.message.Message, bytes]:
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            while True:  # RFC 7766 §7: skip replies to other queries on the connection
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                reply, reason = _check(query, data)
                if reply is not None:
                    return reply, data
                IGNORED[reason] += 1
                broken = stream_failure(reason, host, "TCP")
                if broken is not None:
                    raise broken
    except TimeoutError:
        raise UpstreamError("timeout", f"no answer from {host} over TCP") from None
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise UpstreamError("network", f"TCP to {host}: {exc}") from None
    finally:
        if writer is not None:
            writer.close()


async def exchange(query: Query, host: str, port: int = 53, *,
                   timeout: float = 1.2, tcp: bool = False) -> Reply:
    """Send ``query`` to ``host``; over TCP when asked or when the UDP reply is truncated
    (RFC 1035 §4.2.1, RFC 7766 §5)."""
    wire = query.to_wire()
    start = time.monotonic()
    if not tcp:
        reply, data = await _udp(query, wire, host, port, timeout)
        if not data[2] & 0x02:  # TC (RFC 1035 §4.1.1), read from the header's bytes
            return Reply(reply, False, time.monotonic() - start, len(data), data)
    reply, data = await _tcp(query, wire, host, port, timeout)
    return Reply(reply, True, time.monotonic() - start, len(data), data)
