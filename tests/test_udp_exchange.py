"""Upstream UDP exchanges (resolver.resolve.transport over resolver.resolve._udp) against a
responder on loopback: the reply to the query is taken and nothing else (RFC 5452 §9.1), over
IPv4 and IPv6, an ICMP refusal ends the wait at once, a host that is not an address is never
looked up, and no socket outlives its exchange, whatever ended it."""

import asyncio
import gc
import os
import socket

import dns.message
import dns.name
import dns.rdatatype
import pytest

from resolver.resolve import transport

NAME = dns.name.from_text("www.example.")
OTHER = dns.name.from_text("www.example.net.")


class Responder(asyncio.DatagramProtocol):
    """Answers each query with ``forged`` wrong replies first (another ID, then another
    question), then its reply, unless ``silent``."""

    def __init__(self, forged: int = 0, silent: bool = False) -> None:
        self.forged, self.silent, self.transport = forged, silent, None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.silent:
            return
        query = dns.message.from_wire(data)
        for n in range(self.forged):
            if n % 2:
                forged = dns.message.make_response(query)
                forged.id ^= 1
            else:
                forged = dns.message.make_response(dns.message.make_query(OTHER, "A"))
                forged.id = query.id
            self.transport.sendto(forged.to_wire(), addr)
        self.transport.sendto(dns.message.make_response(query).to_wire(), addr)


async def _served(host: str, protocol: Responder):
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, 0))


def _descriptors() -> int:
    """This process's open descriptors, once what earlier tests left for the collector (their
    event loops, their sockets) is closed."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def _ask(host: str, port: int, timeout: float = 2.0) -> transport.Reply:
    return await transport.exchange(transport.make_query(NAME, dns.rdatatype.A), host, port,
                                    timeout=timeout)


def test_the_reply_is_taken_and_forgeries_before_it_are_counted():
    async def run():
        served, _ = await _served("127.0.0.1", Responder(forged=6))
        try:
            port = served.get_extra_info("sockname")[1]
            before = dict(transport.IGNORED)
            reply = await _ask("127.0.0.1", port)
            assert reply.message.question[0].name == NAME and not reply.tcp
            assert transport.IGNORED["id"] - before.get("id", 0) == 3
            assert transport.IGNORED["question"] - before.get("question", 0) == 3
        finally:
            served.close()
    asyncio.run(run())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
@pytest.mark.parametrize("host", ["::1", "::1%1"])  # 1: the loopback interface
def test_ipv6_servers_with_or_without_a_zone_index(host):
    async def run():
        served, _ = await _served("::1", Responder())
        try:
            reply = await _ask(host, served.get_extra_info("sockname")[1])
            assert reply.message.question[0].name == NAME
        finally:
            served.close()
    asyncio.run(run())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1.example.", "::1%no-such-interface"])
def test_a_host_that_is_not_an_address_is_never_looked_up(host):
    with pytest.raises(transport.UpstreamError) as failed:
        asyncio.run(_ask(host, 53))
    assert failed.value.kind == "network" and "not an IP address" in str(failed.value)


def test_no_socket_outlives_its_exchange():
    """A reply, a timeout, an ICMP port unreachable (ECONNREFUSED, at once: not a timeout)
    and a refused host each leave the process's descriptors as they were."""
    async def run():
        answering, _ = await _served("127.0.0.1", Responder(forged=2))
        silent, _ = await _served("127.0.0.1", Responder(silent=True))
        closed, _ = await _served("127.0.0.1", Responder())
        closed_port = closed.get_extra_info("sockname")[1]
        closed.close()
        try:
            await _ask("127.0.0.1", answering.get_extra_info("sockname")[1])  # the epoll set
            held = _descriptors()
            for _ in range(3):
                await _ask("127.0.0.1", answering.get_extra_info("sockname")[1])
                with pytest.raises(transport.UpstreamError) as failed:
                    await _ask("127.0.0.1", silent.get_extra_info("sockname")[1], timeout=0.05)
                assert failed.value.kind == "timeout"
                loop = asyncio.get_running_loop()
                start = loop.time()
                with pytest.raises(transport.UpstreamError) as failed:
                    await _ask("127.0.0.1", closed_port, timeout=5)
                assert failed.value.kind == "network" and "refused" in str(failed.value)
                assert loop.time() - start < 2
                with pytest.raises(transport.UpstreamError):
                    await _ask("localhost", 53)
                asking = asyncio.ensure_future(_ask("127.0.0.1",
                                                    silent.get_extra_info("sockname")[1]))
                await asyncio.sleep(0.01)
                asking.cancel()  # a query abandoned while it waits
                with pytest.raises(asyncio.CancelledError):
                    await asking
            assert _descriptors() == held
        finally:
            answering.close()
            silent.close()
    asyncio.run(run())
