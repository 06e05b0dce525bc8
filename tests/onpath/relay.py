"""An on-path attacker: a relay between a resolver and the test tree that rewrites replies.

The tree's servers run on their own addresses at another port (``start_tree(port=...)``); the
relay listens on every one of those addresses at port 53, where the tree's glue and the root
hints send the resolver, and forwards each query to the real server. The reply passes through
``relay.rewrite(server, query, reply)`` (dnspython messages), which returns the reply to send, or
None to send nothing. The attacker holds no private key: a rewrite may drop, add, change or
replay records (from the tree's files, which an observer of the zone's traffic sees), never
sign. At ``ATTACKER`` the relay answers everything itself, as the server forged glue points at.

    with start_tree(port=UPSTREAM_PORT) as tree, Relay(addresses, UPSTREAM_PORT) as relay:
        relay.rewrite = my_rewrite
        ...
        relay.rewrite = None     # honest again
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable, Iterable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from tests.testtree.authority import LoopThread

ATTACKER = "127.0.0.199"  # the attacker's own name server: forged glue points here
FORGED_A = "198.51.100.66"  # every forged address record carries this
FORGED_AAAA = "2001:db8:bad::66"
Rewrite = Callable[[str, dns.message.Message, dns.message.Message], dns.message.Message | None]


def attacker_reply(query: dns.message.Message) -> dns.message.Message:
    """The attacker's server: authoritative for every name, an address for every A/AAAA, an
    unsigned NODATA for the rest."""
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    q = query.question[0]
    data = {dns.rdatatype.A: FORGED_A, dns.rdatatype.AAAA: FORGED_AAAA}.get(q.rdtype)
    if data is not None:
        reply.answer.append(dns.rrset.from_text(q.name, 300, "IN", q.rdtype, data))
    return reply


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, relay: "Relay", address: str) -> None:
        self.relay, self.address, self.transport = relay, address, None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.relay._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr) -> None:
        wire = await self.relay._handle(self.address, data, "udp")
        if wire is not None and not self.transport.is_closing():
            self.transport.sendto(wire, addr)

    def error_received(self, exc) -> None:
        pass


class Relay:
    """The relay on ``addresses`` (port 53), forwarding to the same addresses at
    ``upstream_port``; also the attacker's server at ``ATTACKER``."""

    def __init__(self, addresses: Iterable[str], upstream_port: int) -> None:
        self.addresses = list(addresses)
        self.upstream_port = upstream_port
        self.rewrite: Rewrite | None = None
        self.errors: list[str] = []
        self.rewritten = 0  # replies a rewrite changed or dropped
        self._thread = LoopThread("onpath-relay", self._listen, self._close)
        self._closers: list = []
        self._tasks: set = set()

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> "Relay":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.stop()

    async def _close(self) -> None:
        for close in self._closers:
            close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self.addresses + [ATTACKER]:
            transport, _ = await loop.create_datagram_endpoint(
                lambda a=address: _Udp(self, a), local_addr=(address, 53))
            self._closers.append(transport.close)
            server = await asyncio.start_server(
                lambda r, w, a=address: self._tcp(a, r, w), address, 53, reuse_address=True)
            self._closers.append(server.close)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ relaying

    async def _tcp(self, address: str, reader, writer) -> None:
        try:
            while True:
                length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 10), "big")
                data = await asyncio.wait_for(reader.readexactly(length), 10)
                wire = await self._handle(address, data, "tcp")
                if wire is not None:
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, address: str, data: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        try:
            if address == ATTACKER:
                reply = attacker_reply(query)
            else:
                reply = await self._forward(address, query, transport)
                if reply is None:
                    return None
                rewrite = self.rewrite
                if rewrite is not None:
                    before = reply.to_wire()
                    reply = rewrite(address, query, reply)
                    if reply is None or reply.to_wire() != before:
                        self.rewritten += 1
                    if reply is None:
                        return None
            return _render(query, reply, transport)
        except Exception:  # noqa: BLE001 - reported by the tests, never a crash
            self.errors.append(f"{address} {query.question}\n{traceback.format_exc()}")
            return None

    async def _forward(self, address: str, query: dns.message.Message, transport: str):
        try:
            if transport == "udp":
                return await dns.asyncquery.udp(query, address, timeout=2,
                                                port=self.upstream_port)
            return await dns.asyncquery.tcp(query, address, timeout=2, port=self.upstream_port)
        except (dns.exception.DNSException, OSError):
            return None  # an unanswered query stays unanswered


def _render(query: dns.message.Message, reply: dns.message.Message, transport: str) -> bytes:
    """Wire form; over UDP within the client's EDNS size, else TC without records."""
    wire = reply.to_wire(max_size=65535)
    limit = 512 if query.edns < 0 else max(512, query.payload)
    if transport == "udp" and len(wire) > limit:
        reply.answer, reply.authority, reply.additional = [], [], []
        reply.flags |= dns.flags.TC
        wire = reply.to_wire()
    return wire
