"""The client listeners on every configured endpoint: UDP (RFC 1035 §4.2.1), its hits answered
in batches by the compiled listener (resolver.frontend._fastpath.UdpListener), and TCP (RFC 1035
§4.2.2, RFC 7766): two-octet length prefixes, pipelined queries answered as they complete
(RFC 7766 §6.2.1.1), bounded connections, queries per connection and idle time (RFC 7766
§6.2.3, §10). Each message is answered by the frontend (resolver.frontend.pipeline): the hit
path first, the full path for the rest.

Every listener is bound with SO_REUSEPORT, so that worker processes share the addresses and a
successor takes them over from a running process (:meth:`Server.hand_over`,
resolver.frontend.handover).
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import socket
import struct
import termios
import time
from dataclasses import dataclass

from resolver.frontend import handover
from resolver.frontend._fastpath import UdpListener
from resolver.frontend.pipeline import Frontend, endpoint_text
from resolver.wire import MIN_UDP

log = logging.getLogger(__name__)

#: Octets asked for a UDP listener's receive buffer (the kernel caps it at net.core.rmem_max):
#: datagrams that arrive while the event loop is busy wait there, where the listener sheds a
#: flood's excess and answers hits in C, instead of being dropped by the kernel with the flood.
UDP_RECEIVE_BUFFER = 4 << 20
#: Seconds a handed-over UDP socket's receive queue must stay empty before it is closed, and
#: the longest it is read after the hand-over (no datagram joins it then, so it only shrinks:
#: a bound for a process starved of CPU, within a Kubernetes grace period).
QUEUE_QUIET, QUEUE_DRAIN = 0.05, 10.0


class UdpServer:
    """A UDP listener: hits are answered in batches by the compiled ``UdpListener`` (``io``),
    which also sheds the misses of clients over a resolution limit and hands the rest to
    :meth:`miss`, each answered here in a task of its own."""

    def __init__(self, frontend: Frontend, sock: socket.socket, listener: tuple[str, int]) -> None:
        self.frontend = frontend
        self.sock = sock
        self.listener = listener
        self.io = UdpListener(frontend.hits, sock, listener, frontend.resolver.admission,
                              self.miss, self.send_failed)
        self.tasks: set[asyncio.Task] = set()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()

    def queued(self) -> int:
        """Octets of the next datagram waiting in the receive queue (0: none; udp(7) FIONREAD)."""
        return struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.FIONREAD,
                                              b"\0\0\0\0"))[0]

    async def hand_over(self) -> None:
        """Leave the SO_REUSEPORT group to the successor bound beside us, losing nothing: the
        socket is connected to its own address, and the kernel's reuseport selection skips a
        connected socket (Linux 5.3+), so new datagrams go to the successor only; those
        already queued here are still read and answered (replies go out with ``sendto``,
        which a connected UDP socket allows). Returns once the queue has stayed empty for
        QUEUE_QUIET seconds (at most QUEUE_DRAIN)."""
        family = self.sock.family
        host, port = self.sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):  # a wildcard socket: connected to loopback instead
            host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.sock.connect((host, port))
        loop = asyncio.get_running_loop()
        until, quiet_since = loop.time() + QUEUE_DRAIN, None
        while loop.time() < until:
            if self.queued():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= QUEUE_QUIET:
                return
            await asyncio.sleep(QUEUE_QUIET / 5)  # the reader answers meanwhile

    def send_failed(self, reason: str) -> None:
        """A reply the socket did not take: dropped, as a UDP server drops it, and counted."""
        metrics = self.frontend.metrics
        if metrics is not None:
            metrics.child(metrics.dropped, "send_failed").inc()
        log.debug("UDP %s: a reply not sent: %s", endpoint_text(self.listener), reason)

    def miss(self, data: bytes, addr) -> None:
        """A datagram the hit path did not answer: the full path answers it in a task."""
        task = asyncio.get_running_loop().create_task(self._handle(data, addr))  # no ABC checks
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, data: bytes, addr) -> None:
        """The full path's answer to one datagram, sent as soon as its record is sealed."""
        def send(reply: bytes) -> None:
            if not self.closed:
                try:
                    self.io.sendto(reply, addr)  # counts a reply the socket refuses (OSError)
                except Exception as exc:  # noqa: BLE001 - and one that fails in any other way
                    self.send_failed(str(exc))
        await self.frontend.respond(data, "udp", self.listener, addr[:2], MIN_UDP, send)


def _bound_to(server: asyncio.base_events.Server, host: str, port: int) -> bool:
    """Whether a TCP server listens on ``host``:``port``."""
    want = ipaddress.ip_address(host)
    return any(ipaddress.ip_address(sock.getsockname()[0]) == want
               and sock.getsockname()[1] == port for sock in server.sockets)


@dataclass(slots=True, eq=False)
class _TcpClient:
    """One client TCP connection: when a message was last read from it or a reply taken, and
    its queries in progress."""

    writer: asyncio.StreamWriter
    active: float
    task: asyncio.Task | None
    busy: int = 0


class Server:
    """UDP and TCP listeners on every configured endpoint.

    Client TCP connections are bounded (RFC 7766 §6.2.3, §10): at most ``tcp_clients`` open
    (a new one closes the connection idle longest, or is closed itself when every one has
    queries in progress), at most ``tcp_pipeline`` queries in progress on each (reading pauses
    at the limit, RFC 7766 §6.2.1.1), and ``tcp_idle`` seconds both for a whole message to
    arrive and for the client to take a reply (a client that never reads is closed). UDP is
    not affected by any of this."""

    def __init__(self, frontend: Frontend, endpoints: list[tuple[str, int]],
                 tcp_idle: float = 10.0, tcp_clients: int = 100,
                 tcp_pipeline: int = 16) -> None:
        self.frontend = frontend
        self.endpoints = endpoints
        self.tcp_idle = tcp_idle
        self.tcp_clients = tcp_clients
        self.tcp_pipeline = tcp_pipeline
        self._udp: list[UdpServer] = []
        self._tcp: list[asyncio.base_events.Server] = []
        self.connections: dict[asyncio.StreamWriter, _TcpClient] = {}
        self._stopping = False
        self.binding: tuple[str, int] | None = None

    async def start(self) -> None:
        for host, port in self.endpoints:
            await self._bind(host, port)

    async def _bind(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.binding = (host, port)  # the endpoint an OSError is about
        udp = UdpServer(self.frontend, await self._udp_socket(host, port), (host, port))
        try:
            tcp = await asyncio.start_server(
                lambda r, w, listener=(host, port): self._tcp_client(r, w, listener), host, port,
                reuse_port=True)
        except OSError:
            udp.sock.close()
            raise
        loop.add_reader(udp.sock.fileno(), udp.io.readable)
        self._udp.append(udp)
        self._tcp.append(tcp)

    async def bind(self, host: str, port: int) -> None:
        """Listen on one more endpoint while serving (a service added at run time, resolver.ops
        .api); OSError when it cannot be bound, and then nothing is."""
        await self._bind(host, port)
        self.endpoints.append((host, port))

    async def unbind(self, host: str, port: int) -> None:
        """Stop listening on an endpoint :meth:`bind` added; its queries in flight finish."""
        self.endpoints.remove((host, port))
        for udp in [u for u in self._udp if u.listener == (host, port)]:
            self._udp.remove(udp)
            udp.close()
        for server in [t for t in self._tcp if _bound_to(t, host, port)]:
            self._tcp.remove(server)
            server.close()

    async def _udp_socket(self, host: str, port: int) -> socket.socket:
        """A non-blocking UDP socket bound to ``host``:``port`` with SO_REUSEPORT."""
        family, kind, proto, _, address = (await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE))[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            sock.setblocking(False)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _closing(self, conn: _TcpClient, reason: str | None, abort: bool = False) -> None:
        """Close a client connection and count why the server did ("idle", "limit",
        "write_timeout"; None when the client closed it or the server stops)."""
        self.connections.pop(conn.writer, None)
        if abort:  # discard unsent replies: the client is not taking them
            conn.writer.transport.abort()
        else:
            conn.writer.close()
        metrics = self.frontend.metrics
        if metrics is not None and reason is not None:
            metrics.child(metrics.tcp_closed, reason).inc()

    def _admit(self, conn: _TcpClient) -> bool:
        """Make room for a new connection at the limit by closing the one idle longest; False
        (the new one is closed) when every open connection has queries in progress."""
        if len(self.connections) >= self.tcp_clients:
            idle = [c for c in self.connections.values() if c.busy == 0]
            if not idle:
                self._closing(conn, "limit")
                return False
            self._closing(min(idle, key=lambda c: c.active), "limit")
        self.connections[conn.writer] = conn
        return True

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          listener: tuple[str, int]) -> None:
        conn = _TcpClient(writer, time.monotonic(), asyncio.current_task())
        if not self._admit(conn):
            return
        lock = asyncio.Lock()
        pending: set[asyncio.Task] = set()
        client = writer.get_extra_info("peername")[:2]

        async def handle(wire: bytes) -> None:
            try:
                reply = self.frontend.fast(wire, "tcp", listener, client)
            except Exception:  # the full path answers, and logs, whatever the hit path cannot
                log.exception("hit path failed for a TCP query from %s", client)
                reply = None
            try:
                if reply is None:
                    reply = await self.frontend.respond(wire, "tcp", listener, client, None)
                async with lock:
                    if reply is None or writer.is_closing():
                        return
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    async with asyncio.timeout(self.tcp_idle):
                        await writer.drain()
                    conn.active = time.monotonic()
            except TimeoutError:  # the client does not take its replies
                self._closing(conn, "write_timeout", abort=True)
            except ConnectionError:
                pass
            finally:
                conn.busy -= 1
                if self._stopping and conn.busy == 0 and writer in self.connections:
                    self._closing(conn, None)  # answered what was in flight; stop reading

        reason = None
        try:
            while not writer.is_closing() and not self._stopping:
                if len(pending) >= self.tcp_pipeline:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    continue
                async with asyncio.timeout(self.tcp_idle):  # RFC 7766 §6.2.3
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                    wire = await reader.readexactly(length)
                conn.active = time.monotonic()
                conn.busy += 1
                task = asyncio.get_running_loop().create_task(handle(wire))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except TimeoutError:
            reason = "idle"
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if pending:  # answered before the connection closes
                await asyncio.gather(*pending, return_exceptions=True)
            if writer in self.connections:
                self._closing(conn, reason)

    def udp_keys(self) -> list[tuple[int, bytes, int]]:
        """Where the UDP listeners are bound, as resolver.frontend.handover names sockets."""
        return [handover.key(udp.sock.getsockname(), udp.sock.family) for udp in self._udp]

    async def hand_over(self) -> None:
        """A successor answers on every address: stop accepting TCP connections (those open
        are finished by :meth:`stop`; connections the kernel completed but we had not accepted
        move to the successor with net.ipv4.tcp_migrate_req=1, Linux 5.14+) and leave each UDP
        group without losing a queued datagram (:meth:`UdpServer.hand_over`)."""
        for server in self._tcp:
            server.close()
        await asyncio.gather(*(udp.hand_over() for udp in self._udp))

    async def stop(self, deadline: float = 5.0) -> None:
        """Stop accepting, then let queries in flight finish (within ``deadline`` seconds) so
        each is answered and logged."""
        self._stopping = True
        for server in self._tcp:
            server.close()
        for conn in [c for c in self.connections.values() if c.busy == 0]:
            self._closing(conn, None)
        pending = [task for udp in self._udp for task in udp.tasks]
        pending += [c.task for c in self.connections.values() if c.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=deadline)
        for udp in self._udp:
            udp.close()
        for server in self._tcp:
            await server.wait_closed()