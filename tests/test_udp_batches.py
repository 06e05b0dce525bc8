"""The UDP listener reads and answers datagrams in batches (``_fastpath.UdpListener``, issue
#5): recvmmsg, the hit path, one sendmmsg for the hits' replies; every other datagram goes to
``miss`` with the client's address as the socket module gives it. Checked on IPv4 and IPv6
loopback with bursts larger than a batch, several clients, oversized datagrams and a client
address that changes between datagrams; the misses of a client over a resolution limit are
shed here beyond its allowance."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

from resolver.resolve._fastcache import WireCache
from resolver.frontend.admission import CLIENT, MISSES, PROCESS, Admission
from resolver.frontend._fastpath import HitPath, Report, UdpListener

BURST = 300  # datagrams per client: several batches of 64


class Listener:
    """A compiled listener whose misses are answered REFUSED through its ``sendto``, and
    remembered, as are the replies it could not send (the callbacks its owner passes in)."""

    def __init__(self, hits: HitPath, sock: socket.socket, admission: Admission) -> None:
        self.sock = sock
        self.missed: list[tuple[bytes, tuple]] = []
        self.failed: list[str] = []
        self.io = UdpListener(hits, sock, sock.getsockname()[:2], admission, self.miss,
                              self.failed.append)
        self.readable = self.io.readable

    def miss(self, data: bytes, addr: tuple) -> None:
        self.missed.append((data, addr))
        try:
            reply = dns.message.make_response(dns.message.from_wire(data))
        except Exception:
            return
        reply.set_rcode(dns.rcode.REFUSED)
        self.io.sendto(reply.to_wire(), addr)


def cached(wirecache: WireCache, name: str) -> None:
    """An answer for ``name`` A in the wire cache, as the full path would have stored it."""
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
    assert wirecache.store(query.to_wire(), "", response.to_wire(), time.time(), 300,
                           (None, None))


def serve(family: int, host: str, admission: Admission | None = None):
    """A listener on ``host`` (port chosen by the kernel) with one cached name, its misses
    counted by ``admission`` (by default, limits no test here reaches)."""
    wirecache = WireCache(1000)
    cached(wirecache, "hit.example.")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((host, 0))
    return Listener(HitPath(wirecache, None, Report(), None, None, None), sock,
                    admission or Admission(1000, 500, False, 10))


def client(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def exchange(listener: Listener, clients: list[socket.socket],
                   datagrams: dict[socket.socket, list[bytes]], expect: int) -> dict:
    """Send every client's datagrams at once, then collect ``expect`` replies per client."""
    loop = asyncio.get_running_loop()
    loop.add_reader(listener.sock.fileno(), listener.readable)
    replies: dict[socket.socket, list[bytes]] = {c: [] for c in clients}
    try:
        # In rounds of 120 datagrams at once (two batches), which the listener's socket buffer
        # holds, with the clients interleaved.
        for start in range(0, max(len(d) for d in datagrams.values()), 120 // len(clients)):
            for sock in clients:
                for data in datagrams[sock][start:start + 120 // len(clients)]:
                    sock.sendto(data, listener.sock.getsockname())
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(r) < expect for r in replies.values()):
            await asyncio.sleep(0.01)
            for sock in clients:
                while True:
                    try:
                        replies[sock].append(sock.recv(65535))
                    except BlockingIOError:
                        break
    finally:
        loop.remove_reader(listener.sock.fileno())
    return replies


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_bursts_from_several_clients_are_each_answered_once(family, host) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    listener = serve(family, host)
    clients = [client(family, host) for _ in range(3)]
    datagrams = {}
    for n, sock in enumerate(clients):
        datagrams[sock] = []
        for i in range(BURST):
            query = dns.message.make_query("hit.example." if i % 3 else f"miss{i}.example.", "A")
            query.id = n * BURST + i
            datagrams[sock].append(query.to_wire())
    replies = asyncio.run(exchange(listener, clients, datagrams, BURST))
    for n, sock in enumerate(clients):
        got = [dns.message.from_wire(r) for r in replies[sock]]
        assert sorted(m.id for m in got) == list(range(n * BURST, (n + 1) * BURST))
        for m in got:
            hit = m.id % BURST % 3 != 0
            assert m.rcode() == (dns.rcode.NOERROR if hit else dns.rcode.REFUSED), m
            assert m.question[0].name.to_text() == (
                "hit.example." if hit else f"miss{m.id % BURST}.example.")
    # Misses reach the full path with the address as the socket module gives it.
    assert len(listener.missed) == 3 * (BURST // 3)
    addresses = {addr for _, addr in listener.missed}
    assert addresses == {c.getsockname() for c in clients}
    assert not listener.failed
    listener.sock.close()


def test_oversized_datagrams_go_to_the_full_path_cut() -> None:
    """No query needs more than 4096 octets: a longer datagram is read cut (MSG_TRUNC) and
    handed on as read, even when its first octets would be a hit."""
    listener = serve(socket.AF_INET, "127.0.0.1")
    sock = client(socket.AF_INET, "127.0.0.1")
    query = dns.message.make_query("hit.example.", "A")
    query.use_edns(0, pad=0, options=[dns.edns.GenericOption(65001, b"x" * 5000)])
    wire = query.to_wire(max_size=65535)
    assert len(wire) > 4096
    sock.sendto(wire, listener.sock.getsockname())  # on loopback, queued when sendto returns
    listener.readable()
    (data, addr), = listener.missed
    assert data == wire[:4096] and addr == sock.getsockname()
    listener.sock.close()


def test_replies_follow_each_datagrams_own_address() -> None:
    """Clients on different addresses interleaved within one batch: each reply goes to the
    datagram's own source (the listener reuses the last address's text, never its port)."""
    listener = serve(socket.AF_INET, "127.0.0.1")
    clients = [client(socket.AF_INET, f"127.0.0.{2 + i % 2}") for i in range(4)]
    datagrams = {}
    for n, sock in enumerate(clients):
        datagrams[sock] = []
        for i in range(20):
            query = dns.message.make_query("hit.example.", "A")
            query.id = n * 100 + i
            datagrams[sock].append(query.to_wire())
    replies = asyncio.run(exchange(listener, clients, datagrams, 20))
    for n, sock in enumerate(clients):
        assert sorted(dns.message.from_wire(r).id for r in replies[sock]) == [
            n * 100 + i for i in range(20)]
    listener.sock.close()


def read_once(admission: Admission, counts: dict[socket.socket, int]):
    """Each client sends its count of queries, every third one a hit, and the listener reads
    them all in one ``readable()`` call: the listener, each client's replies, and each
    client's datagrams handed on to ``miss``."""
    listener = serve(socket.AF_INET, "127.0.0.1", admission)
    for sock, count in counts.items():
        for i in range(count):
            hit = i % 3 == 0
            query = dns.message.make_query("hit.example." if hit else f"m{i}.example.", "A")
            sock.sendto(query.to_wire(), listener.sock.getsockname())
    listener.readable()
    listener.sock.close()
    replies = {}
    for sock in counts:
        replies[sock] = []
        while True:  # on loopback, a reply is queued when sendto returns
            try:
                replies[sock].append(dns.message.from_wire(sock.recv(65535)))
            except BlockingIOError:
                break
    missed = {sock: [d for d, addr in listener.missed if addr == sock.getsockname()]
              for sock in counts}
    return listener, replies, missed


@pytest.mark.parametrize("limit", [CLIENT, PROCESS])
@pytest.mark.parametrize("drop", [False, True])
def test_misses_over_a_limit_are_shed_beyond_the_allowance(limit, drop) -> None:
    """While the flooder is over its limit (or the process over its total), its misses beyond
    ``answers_per_second`` (all of them with ``drop``) are dropped in the listener and counted
    in ``shed``; its hits are answered. Another client is untouched by a client limit; under
    the process limit it too gets only its own allowance."""
    allowance = 5
    admission = Admission(3 if limit == PROCESS else 1000, 30, drop, allowance)
    for _ in range(3 if limit == PROCESS else 30):
        assert admission.admit("127.0.0.2") is None
    flooder, other = client(socket.AF_INET, "127.0.0.2"), client(socket.AF_INET, "127.0.0.3")
    listener, replies, missed = read_once(admission, {flooder: 60, other: 40})
    assert sum(r.rcode() == dns.rcode.NOERROR for r in replies[flooder]) == 20
    assert sum(r.rcode() == dns.rcode.NOERROR for r in replies[other]) == 14
    # The allowance is per second: a read that straddles a second's turn gets two.
    within = (lambda n: n == 0) if drop else (lambda n: allowance <= n <= 2 * allowance)
    assert within(len(missed[flooder]))
    if limit == CLIENT:
        assert len(missed[other]) == 26
    else:
        assert within(len(missed[other]))
    assert admission.shed == {limit: 40 + 26 - len(missed[flooder]) - len(missed[other])}
    assert len(replies[flooder]) == 20 + len(missed[flooder])  # a shed query has no reply


def test_misses_handed_on_count_toward_the_limit_before_they_are_admitted() -> None:
    """The misses of one read reach resolver.frontend.admission only after it: until then the
    listener counts them, so a client with room for 10 more has 10 of a burst of 40 handed on, not all
    (no allowance here: the rest are shed)."""
    admission = Admission(1000, 10, False, 0)
    sock = client(socket.AF_INET, "127.0.0.2")
    _, replies, missed = read_once(admission, {sock: 60})
    assert len(missed[sock]) == 10 and admission.shed == {CLIENT: 30}
    assert len(replies[sock]) == 20 + 10


def test_misses_over_the_rate_limit_are_shed_per_client() -> None:
    """limits.max_misses_per_client_per_second: of one read, each client has as many misses
    handed on as its rate allows (counted per client: the flooder's do not use up another's),
    the rest are shed in the listener, and the hits are answered all the same."""
    admission = Admission(1000, 500, False, 0, 10)
    flooder, other = client(socket.AF_INET, "127.0.0.2"), client(socket.AF_INET, "127.0.0.3")
    _, replies, missed = read_once(admission, {flooder: 60, other: 30})
    assert len(missed[flooder]) == 10 and len(missed[other]) == 10
    assert admission.shed == {MISSES: 30 + 10}
    assert sum(r.rcode() == dns.rcode.NOERROR for r in replies[flooder]) == 20
    assert sum(r.rcode() == dns.rcode.NOERROR for r in replies[other]) == 10


def test_the_miss_rate_is_counted_when_admitted_per_second() -> None:
    """A client's misses beyond its rate in one second are over MISSES, another client's are
    admitted; a new second starts afresh; 0 is no limit."""
    for _ in range(5):  # bounded: the checks below must fall within one second
        second = int(time.time())
        admission = Admission(1000, 500, False, 10, 3)
        admitted = [admission.admit("a") for _ in range(4)]
        other = admission.admit("b")
        if int(time.time()) == second:
            break
    assert admitted == [None, None, None, MISSES] and other is None
    assert admission.in_progress == 4
    assert "limits.max_misses_per_client_per_second" in admission.reason(MISSES)
    unlimited = Admission(1000, 500, False, 10, 0)
    assert [unlimited.admit("a") for _ in range(100)] == [None] * 100
