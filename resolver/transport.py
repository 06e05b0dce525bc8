"""Queries to upstream servers over UDP and TCP (RFC 1035 §4.2, RFC 7766).

Every query gets a fresh random ID (dnspython's secure entropy) and a fresh socket, so a fresh
ephemeral source port (RFC 5452 §9.2). UDP sockets are connected, so the kernel drops datagrams
from any other address or port; an answer is taken only if its ID and question match the query
(RFC 5452 §9.1). Anything else is ignored while waiting, so a forged packet cannot end the wait.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name

EDNS_PAYLOAD = 1232  # DNS Flag Day 2020: no IP fragmentation


class UpstreamError(Exception):
    """A query that got no usable answer: ``kind`` is timeout, network or formerr."""

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


def make_query(qname: dns.name.Name, qtype: int, *, recursion: bool = False) -> dns.message.Message:
    """A query with EDNS0 and DO (RFC 6891, RFC 3225). Recursive queries, sent to forwarders, also
    set CD so the forwarder hands over data it would reject and we validate it ourselves
    (RFC 6840 §5.9)."""
    query = dns.message.make_query(qname, qtype, use_edns=0, want_dnssec=True,
                                   payload=EDNS_PAYLOAD)
    query.flags = dns.flags.RD | dns.flags.CD if recursion else 0
    return query


def _matches(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The parsed reply if it answers ``query`` (RFC 5452 §9.1), else None."""
    if len(wire) < 12 or struct.unpack_from("!H", wire)[0] != query.id:
        return None
    try:
        reply = dns.message.from_wire(wire, question_only=False)
    except dns.exception.DNSException:
        raise UpstreamError("formerr", "unparseable reply") from None
    if not reply.flags & dns.flags.QR or len(reply.question) != 1:
        return None
    asked, got = query.question[0], reply.question[0]
    if got.name != asked.name or got.rdtype != asked.rdtype or got.rdclass != asked.rdclass:
        return None
    return reply


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, query: dns.message.Message) -> None:
        self.query = query
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if self.done.done():
            return
        try:
            reply = _matches(self.query, data)
        except UpstreamError as exc:
            self.done.set_exception(exc)
            return
        if reply is not None:
            self.done.set_result((reply, data))

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(UpstreamError("network", str(exc)))


async def _udp(query: dns.message.Message, wire: bytes, host: str, port: int,
               timeout: float) -> tuple[dns.message.Message, bytes]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(query), remote_addr=(host, port), family=family)
    except OSError as exc:
        raise UpstreamError("network", str(exc)) from None
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(protocol.done, timeout)
    except asyncio.TimeoutError:
        raise UpstreamError("timeout", f"no answer from {host} over UDP") from None
    finally:
        transport.close()


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
                reply = _matches(query, data)
                if reply is not None:
                    return reply, data
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
    wire = query.to_wire()
    start = time.monotonic()
    if not tcp:
        reply, data = await _udp(query, wire, host, port, timeout)
        if not reply.flags & dns.flags.TC:
            return Reply(reply, False, time.monotonic() - start, len(data), data)
    reply, data = await _tcp(query, wire, host, port, timeout)
    return Reply(reply, True, time.monotonic() - start, len(data), data)
