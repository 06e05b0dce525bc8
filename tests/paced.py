"""A paced UDP DNS client, as a stub resolver behaves: queries sent at a steady rate from a pool
of sockets (so the kernel's SO_REUSEPORT hashing spreads them), each matched to its reply by
socket, ID and question (RFC 5452 §9.1), asked once more after ``retry`` seconds without an
answer, and counted lost only when neither try is answered. Used by tests/test_restarts.py and
bench/restart.py to count what a restart drops."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from dataclasses import dataclass, field

import dns.message
import dns.rcode

SOCKETS = 64
RECEIVE_BUFFER = 1 << 20  # octets per socket (the kernel caps it at net.core.rmem_max)


@dataclass
class Stats:
    """What the client saw: queries ``sent``, ``answered`` (either try), answered only by the
    repeat (``retried``), ``lost`` (no answer at all), the rcodes of the answers by name, the
    slowest answer from the first try in seconds, and the rate sustained."""

    sent: int = 0
    answered: int = 0
    retried: int = 0
    lost: int = 0
    rcodes: Counter = field(default_factory=Counter)
    max_latency: float = 0.0
    rate: float = 0.0
    unexpected: Counter = field(default_factory=Counter)


class _Query:
    __slots__ = ("wire", "name", "sock", "first", "tries", "done")

    def __init__(self, wire: bytes, name: str, sock, first: float) -> None:
        self.wire, self.name, self.sock, self.first = wire, name, sock, first
        self.tries, self.done = 1, False


class _Socket:
    """One connected client socket, read until empty at each readiness (and before a query
    on it is judged unanswered), so that a client starved of CPU never counts as lost an
    answer that is waiting in its queue."""

    def __init__(self, client: "_Client", address: tuple[str, int]) -> None:
        self.client, self.waiting = client, {}
        self.sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        # Room for the replies of a few seconds when this process is starved of CPU: the
        # client's own queue must not be where answers are lost.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.setblocking(False)
        self.sock.connect(address)
        client.loop.add_reader(self.sock.fileno(), self.drain)

    def send(self, wire: bytes) -> None:
        try:
            self.sock.send(wire)
        except OSError:  # a full send buffer, or an ICMP error of an earlier datagram
            pass  # as a datagram lost on the way: the repeat, or the count, tells

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:  # ICMP port unreachable for an earlier query: read on
                continue
            except OSError:  # closed meanwhile (a timer of the run that owned it): nothing to read
                return
            self.received(data)

    def received(self, data: bytes) -> None:
        if len(data) < 12:
            return
        query = self.waiting.get(int.from_bytes(data[:2], "big"))
        if query is None or query.done:
            return
        question = query.wire[12:]
        if data[12:12 + len(question) - 11].lower() != question[:len(question) - 11].lower():
            return  # not this question (the OPT record's 11 octets are left out)
        self.client.answer(query, data[3] & 0x0F)

    def close(self) -> None:
        self.client.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Client:
    def __init__(self, expected: dict[str, int] | None) -> None:
        self.stats = Stats()
        self.expected = expected
        self.loop = asyncio.get_running_loop()
        self.pending = 0
        self.idle = asyncio.Event()

    def answer(self, query: _Query, rcode: int) -> None:
        query.done = True
        del query.sock.waiting[int.from_bytes(query.wire[:2], "big")]
        stats = self.stats
        stats.answered += 1
        stats.retried += query.tries > 1
        stats.rcodes[dns.rcode.to_text(rcode)] += 1
        if self.expected is not None and self.expected.get(query.name) != rcode:
            stats.unexpected[f"{query.name} {dns.rcode.to_text(rcode)}"] += 1
        stats.max_latency = max(stats.max_latency, self.loop.time() - query.first)
        self._finished()

    def _finished(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    def expire(self, query: _Query, retry: float) -> None:
        """No answer within ``retry``: ask once more (same ID, same socket), then give up."""
        query.sock.drain()  # an answer already here is not late
        if query.done:
            return
        if query.tries == 1:
            query.tries = 2
            query.sock.send(query.wire)
            self.loop.call_later(retry, self.expire, query, retry)
            return
        query.done = True
        query.sock.waiting.pop(int.from_bytes(query.wire[:2], "big"), None)
        self.stats.lost += 1
        self._finished()


def query_wire(name: str, rdtype: str) -> bytes:
    """A query as a stub sends it: RD, EDNS with DO (RFC 3225), ID 0 (set per send)."""
    message = dns.message.make_query(name, rdtype, want_dnssec=True)
    message.id = 0
    return message.to_wire()


async def run(address: tuple[str, int], questions: list[tuple[str, str]], rate: float,
              seconds: float, *, retry: float = 1.0, expected: dict[str, int] | None = None,
              seed: int = 0, running=None) -> Stats:
    """Send ``rate`` queries a second for ``seconds`` to ``address``, the ``questions`` in
    turn, then wait for the last answers (two ``retry`` periods at most). ``expected`` maps a
    question's name to the rcode it must get (others are counted in ``unexpected``);
    ``running``, an asyncio.Event, is set once the first second has been sent."""
    client = _Client(expected)
    loop = client.loop
    rnd = random.Random(seed)
    sockets = [_Socket(client, address) for _ in range(SOCKETS)]
    wires = [(name, query_wire(name, rdtype)) for name, rdtype in questions]
    start = loop.time()
    sent = 0
    total = int(rate * seconds)
    try:
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            while sent < due:
                name, wire = wires[sent % len(wires)]
                sock = sockets[sent % SOCKETS]
                qid = rnd.randrange(65536)
                while qid in sock.waiting:
                    qid = rnd.randrange(65536)
                query = _Query(qid.to_bytes(2, "big") + wire[2:], name, sock, loop.time())
                sock.waiting[qid] = query
                client.pending += 1
                client.idle.clear()
                sock.send(query.wire)
                loop.call_later(retry, client.expire, query, retry)
                sent += 1
            if running is not None and sent >= rate:
                running.set()
            await asyncio.sleep(0.001)
        client.stats.sent = sent
        client.stats.rate = sent / max(loop.time() - start, 1e-9)
        if client.pending:
            await asyncio.wait_for(client.idle.wait(), 2 * retry + 5)
    finally:
        for sock in sockets:
            sock.close()
    return client.stats
