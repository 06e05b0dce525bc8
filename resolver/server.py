"""The client side: UDP and TCP listeners (RFC 1035 §4.2, RFC 7766), request checks, and answers
built from validated results (RFC 4035 §3.2, RFC 6840 §5.7-§5.8, RFC 8914).

Bogus or indeterminate data never reaches a client: it becomes SERVFAIL with an Extended DNS
Error naming the zone and the reason. A client's CD bit does not bypass validation.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from resolver.cache import Answer, Cache
from resolver.dnssec import Verdict
from resolver.ede import EDE
from resolver.iterator import Iterator, ResolutionFailed, Settings

log = logging.getLogger(__name__)

OUR_PAYLOAD = 1232
DNSSEC_TYPES = frozenset((dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3))
META_TYPES = frozenset((dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR,
                        dns.rdatatype.MAILA, dns.rdatatype.MAILB, dns.rdatatype.OPT,
                        dns.rdatatype.TSIG, dns.rdatatype.TKEY))


@dataclass(slots=True)
class Outcome:
    """What one client query came to: an answer or a failure."""

    answer: Answer | None
    failure: ResolutionFailed | None = None
    cache_hit: bool = False


class Resolver:
    """Resolution for clients: identical concurrent queries share one resolution, each is
    bounded in time, and failures are caught as SERVFAIL outcomes."""

    def __init__(self, settings: Settings, cache: Cache, *, exchange=None) -> None:
        kwargs = {} if exchange is None else {"exchange": exchange}
        self.iterator = Iterator(settings, cache, **kwargs)
        self.cache = cache
        self.settings = settings
        self._inflight: dict[tuple[dns.name.Name, int], asyncio.Future] = {}

    async def resolve(self, qname: dns.name.Name, qtype: int) -> Outcome:
        cached = self.cache.get(qname, qtype)
        if cached is not None:
            return Outcome(cached, cache_hit=True)
        key = (qname, qtype)
        shared = self._inflight.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._resolve(qname, qtype))
            self._inflight[key] = shared
            shared.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(shared)

    async def _resolve(self, qname: dns.name.Name, qtype: int) -> Outcome:
        ctx = self.iterator.new_context()
        try:
            async with asyncio.timeout(self.settings.query_timeout):
                return Outcome(await self.iterator.chase(qname, qtype, ctx))
        except ResolutionFailed as failure:
            log.info("SERVFAIL %s/%s: %s", qname, dns.rdatatype.to_text(qtype), failure.reason)
            return Outcome(None, failure)
        except TimeoutError:
            return Outcome(None, ResolutionFailed(
                EDE.NO_REACHABLE_AUTHORITY,
                f"resolution of {qname} did not finish within {self.settings.query_timeout}s"))


def formerr_for(wire: bytes) -> bytes | None:
    """A header-only FORMERR for an unparseable query, or None if not even the header is
    there (RFC 1035 §4.1.1)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | (wire[2] & 0x01) << 8 | dns.rcode.FORMERR
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def _response(query: dns.message.Message, rcode: int) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
    response.flags |= dns.flags.RA | (query.flags & dns.flags.CD)
    response.set_rcode(rcode)
    if query.edns >= 0:
        response.use_edns(0, query.ednsflags & dns.flags.DO, OUR_PAYLOAD)
    return response


def _with_ede(response: dns.message.Message, ede: EDE, text: str) -> None:
    if response.edns >= 0:
        options = list(response.options) + [dns.edns.EDEOption(int(ede), text[:400])]
        response.use_edns(0, response.ednsflags, OUR_PAYLOAD, options=options)


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
    response = _response(query, rcode)
    _with_ede(response, ede, text)
    return response


async def answer_wire(resolver: Resolver, wire: bytes, max_size: int | None) -> bytes | None:
    """Handle one query message; ``max_size`` None for TCP. Returns the response bytes or
    None to drop (a response, or a packet too short to answer)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return formerr_for(wire)
    if query.flags & dns.flags.QR:
        return None
    if query.opcode() != dns.opcode.QUERY:
        response = refuse(query, dns.rcode.NOTIMP, EDE.NOT_SUPPORTED, "only QUERY is supported")
    elif len(query.question) != 1:
        response = refuse(query, dns.rcode.FORMERR, EDE.INVALID_DATA, "one question expected")
    else:
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response = refuse(query, dns.rcode.REFUSED, EDE.NOT_SUPPORTED, "class IN only")
        elif question.rdtype in META_TYPES:
            response = refuse(query, dns.rcode.NOTIMP, EDE.NOT_SUPPORTED,
                              f"{dns.rdatatype.to_text(question.rdtype)} is not served")
        else:
            response = build_answer(query, await resolver.resolve(question.name,
                                                                  question.rdtype))
    return _to_wire(query, response, max_size)


def _to_wire(query: dns.message.Message, response: dns.message.Message,
             max_size: int | None) -> bytes:
    if max_size is None:
        return response.to_wire(max_size=65535)
    limit = max(512, min(query.payload, OUR_PAYLOAD)) if query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # RFC 2181 §9: a truncated reply sets TC and the client retries over TCP.
        truncated = _response(query, response.rcode())
        truncated.flags |= dns.flags.TC | (response.flags & dns.flags.AD)
        return truncated.to_wire(max_size=limit)


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport = None
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        task = asyncio.ensure_future(self._handle(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, data: bytes, addr) -> None:
        try:
            reply = await answer_wire(self.resolver, data, 512)
        except Exception:  # a worker never dies on one query
            log.exception("query from %s failed", addr)
            reply = formerr_for(data)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class Server:
    """UDP and TCP listeners on every configured endpoint."""

    def __init__(self, resolver: Resolver, endpoints: list[tuple[str, int]],
                 tcp_idle: float = 10.0) -> None:
        self.resolver = resolver
        self.endpoints = endpoints
        self.tcp_idle = tcp_idle
        self._udp: list = []
        self._tcp: list[asyncio.base_events.Server] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.endpoints:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpServer(self.resolver), local_addr=(host, port), reuse_port=False)
            self._udp.append(transport)
            self._tcp.append(await asyncio.start_server(self._tcp_client, host, port))
        log.info("listening on %s (UDP and TCP)",
                 ", ".join(f"{h}:{p}" if ":" not in h else f"[{h}]:{p}"
                           for h, p in self.endpoints))

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()
        pending: set[asyncio.Task] = set()

        async def handle(wire: bytes) -> None:
            try:
                reply = await answer_wire(self.resolver, wire, None)
            except Exception:
                log.exception("TCP query failed")
                reply = formerr_for(wire)
            if reply is not None:
                async with lock:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()

        try:
            while True:
                async with asyncio.timeout(self.tcp_idle):  # RFC 7766 §6.2.3
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                    wire = await reader.readexactly(length)
                task = asyncio.ensure_future(handle(wire))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
            await server.wait_closed()
