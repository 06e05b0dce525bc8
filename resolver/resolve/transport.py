"""Queries to upstream servers over UDP and TCP (RFC 1035 §4.2, RFC 7766).

Every query gets a fresh random ID (dnspython's secure entropy) and a fresh socket, so a fresh
ephemeral source port (RFC 5452 §9.2). UDP sockets are connected, so the kernel drops datagrams
from any other address or port; an answer is taken only if it is a parseable response to a query
(QR, opcode QUERY) with the query's ID and exactly its question (RFC 5452 §9.1). Anything else
that arrives over UDP is ignored and counted in :data:`IGNORED` while waiting, so a forged packet
cannot end the wait. Over TCP the peer is the server itself (no off-path forger completes a TCP
handshake): replies with another ID are skipped (RFC 7766 §7), but a reply with our ID that does
not parse or asks another question ends the exchange at once as a broken server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype

from resolver.errors import ResolverError
from resolver.resolve._wireparse import from_wire
from resolver.wire import EDNS_PAYLOAD, MAX_MESSAGE

_HEADER = struct.Struct("!6H")  # ID, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
_QUESTION_OPT = struct.Struct("!HHBHHIH")  # QTYPE, QCLASS; OPT: root, type, size, TTL, RDLEN

# Upstream packets that did not answer the query they arrived for, by reason: "id", "not_reply"
# (no QR, or another opcode), "unparseable", "question"; read by the metrics endpoint.
IGNORED: Counter[str] = Counter()


_OPT = dns.message.make_query(dns.name.root, dns.rdatatype.NS, use_edns=0, want_dnssec=True,
                              payload=EDNS_PAYLOAD).opt


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


def make_query(qname: dns.name.Name, qtype: int, *, recursion: bool = False) -> dns.message.Message:
    """A query with EDNS0 and DO (RFC 6891, RFC 3225). Recursive queries, sent to forwarders, also
    set CD so the forwarder hands over data it would reject and we validate it ourselves
    (RFC 6840 §5.9). The OPT record is shared by all queries: a third of the cost of
    dnspython's make_query."""
    query = dns.message.QueryMessage()  # a random ID from dnspython's secure entropy
    query.flags = dns.flags.RD | dns.flags.CD if recursion else 0
    query.find_rrset(query.question, qname, dns.rdataclass.IN, qtype, create=True,
                     force_unique=True)
    query.opt = _OPT
    return query


def _wire(query: dns.message.Message) -> bytes:
    """``query.to_wire()``; rendered directly, at a tenth of the cost, for the shape
    :func:`make_query` builds: one question, nothing else but an OPT record without options
    (RFC 1035 §4.1, RFC 6891 §6.1.2)."""
    opt = query.opt
    if len(query.question) != 1 or query.answer or query.authority or query.additional \
            or opt is None or query.options or query.tsig is not None:
        return query.to_wire()
    question = query.question[0]
    return (_HEADER.pack(query.id, query.flags, 1, 0, 0, 1) + question.name.to_wire()
            + _QUESTION_OPT.pack(question.rdtype, question.rdclass, 0, dns.rdatatype.OPT,
                                 opt.rdclass, opt.ttl, 0))


def _check(query: dns.message.Message, wire: bytes) -> tuple[dns.message.Message | None, str]:
    """``(reply, "")`` if ``wire`` answers ``query`` (RFC 5452 §9.1), else ``(None, reason)``
    with one of the reasons of :data:`IGNORED`."""
    if len(wire) < 12 or struct.unpack_from("!H", wire)[0] != query.id:
        return None, "id"
    if not wire[2] & 0x80 or (wire[2] >> 3) & 0x0F != dns.opcode.QUERY:
        return None, "not_reply"
    try:
        reply = from_wire(wire)  # dnspython's message, parsed in compiled code
    except Exception:  # noqa: BLE001 - hostile bytes may trip any parser error
        return None, "unparseable"
    if len(reply.question) != 1:
        return None, "question"
    asked, got = query.question[0], reply.question[0]
    if got.name != asked.name or got.rdtype != asked.rdtype or got.rdclass != asked.rdclass:
        return None, "question"
    return reply, ""


def stream_failure(reason: str, host: str, stream: str) -> UpstreamError | None:
    """Over a stream (TCP, TLS) the peer is the server itself: a reply with the query's ID that
    does not parse, or that answers another question, is a broken server, not a forgery, and
    ends the exchange (RFC 7766 §7); None for a reason that is only skipped."""
    if reason == "unparseable":
        return UpstreamError("formerr", f"unparseable reply from {host} over {stream}")
    if reason == "question":
        return UpstreamError("mismatch", f"{host} answered another question over {stream}")
    return None


def _readable(sock: socket.socket, query: dns.message.Message, done: asyncio.Future) -> None:
    """The reader callback of an upstream UDP socket: every datagram waiting is read; the
    first that answers ``query`` ends the wait, the others are ignored and counted."""
    while not done.done():
        try:
            data = sock.recv(MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError as exc:  # ICMP errors (port unreachable) arrive as the socket's error
            done.set_exception(exc)
            return
        reply, reason = _check(query, data)
        if reply is not None:
            done.set_result((reply, data))
            return
        IGNORED[reason] += 1


def _expire(done: asyncio.Future) -> None:
    """The timer of an upstream UDP query: no answer in time."""
    if not done.done():
        done.set_exception(TimeoutError())


async def _udp(query: dns.message.Message, wire: bytes, host: str, port: int,
               timeout: float) -> tuple[dns.message.Message, bytes]:
    """Over a connected socket of our own (a third of the cost of a datagram endpoint), read
    by a callback of the event loop until the answer to ``query`` arrives or the time is up
    (cheaper than ``sock_recv`` in a loop under ``asyncio.timeout``: profile_cold, issue
    #20); anything else is ignored and counted."""
    loop = asyncio.get_running_loop()
    sock = timer = None
    done = loop.create_future()
    try:  # socket() fails too: EMFILE, or EAFNOSUPPORT where IPv6 is disabled
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((host, port))
        sock.send(wire)
        loop.add_reader(sock, _readable, sock, query, done)
        timer = loop.call_later(timeout, _expire, done)
        return await done
    except TimeoutError:
        raise UpstreamError("timeout", f"no answer from {host} over UDP") from None
    except OSError as exc:
        raise UpstreamError("network", str(exc)) from None
    finally:
        if timer is not None:
            timer.cancel()
        if sock is not None:
            loop.remove_reader(sock)
            sock.close()


async def _tcp(query: dns.message.Message, wire: bytes, host: str, port: int,
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


async def exchange(query: dns.message.Message, host: str, port: int = 53, *,
                   timeout: float = 1.2, tcp: bool = False) -> Reply:
    """Send ``query`` to ``host``; over TCP when asked or when the UDP reply is truncated
    (RFC 1035 §4.2.1, RFC 7766 §5)."""
    wire = _wire(query)
    start = time.monotonic()
    if not tcp:
        reply, data = await _udp(query, wire, host, port, timeout)
        if not reply.flags & dns.flags.TC:
            return Reply(reply, False, time.monotonic() - start, len(data), data)
    reply, data = await _tcp(query, wire, host, port, timeout)
    return Reply(reply, True, time.monotonic() - start, len(data), data)
