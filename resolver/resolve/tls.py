"""DNS over TLS to forwarders (RFC 7858) in the strict privacy profile (RFC 8310 §5).

Each forwarder address of a ``forward[].tls`` entry has one persistent connection
(:class:`TlsUpstream`), opened when a query needs it and shared by every query to that address.
Queries are pipelined on it, each framed with its two-octet length as over TCP (RFC 7858 §3.3,
RFC 1035 §4.2.2), and their replies taken in whatever order they come, matched by ID and
question (RFC 7766 §6.2.1.1, §7); IDs are unique among the queries outstanding on it, and at
most ``outstanding`` (:data:`MAX_OUTSTANDING`) are at once, the rest waiting for a slot. A
connection idle for ``idle`` seconds (:data:`IDLE_TIMEOUT`) is closed (RFC 7766 §6.2.3); one
the server closes is opened again by the next query, and a query that a reused connection
loses unanswered is sent once more on a new one (servers close idle connections too). An
iterator replaced on reload leaves its connections to close when idle.

Authentication comes before any query (RFC 8310 §5, RFC 7858 §4.2). With ``name``, the
certificate must chain to ``ca_file``'s authorities (else the system's) and carry that name
(RFC 6125). With ``spki_pins``, the SHA-256 digest of the server certificate's
SubjectPublicKeyInfo must be one of them (RFC 7469 §2.4): the certificate whose key the
handshake proves, so that pins alone authenticate too. Both given, both must hold. A
connection that fails is closed before a query is written; the query fails like an
unreachable server (:class:`~resolver.resolve.transport.UpstreamError` ``tls``), counted in
:data:`CONNECTIONS` and logged when the reason changes. Nothing falls back to clear text or to
an unauthenticated connection: the iterator asks such an address only through here.

Queries are padded to a multiple of :data:`PADDING_BLOCK` octets (RFC 7830, RFC 8467 §4.1), so
their sizes tell an observer less about the names asked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
import struct
import time
from collections import Counter

import dns.message
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from resolver.config.schema import Forward, ForwardTls
from resolver.errors import ResolverError
from resolver.resolve.transport import (IGNORED, Query, Reply, UpstreamError, _check, fresh_id,
                                        stream_failure)

log = logging.getLogger(__name__)

#: Queries outstanding on one connection at once (RFC 7766 §6.2.1.1 lets a client pipeline).
MAX_OUTSTANDING = 32
#: Seconds a connection with no query outstanding stays open (RFC 7766 §6.2.3).
IDLE_TIMEOUT = 10.0
#: Queries are padded to a multiple of this many octets (RFC 8467 §4.1, the Block-Length
#: Padding strategy's recommended block for queries).
PADDING_BLOCK = 468
_PADDING_OPTION = 12  # EDNS(0) Padding option code (RFC 7830 §3)
_EMPTY_OPT = b"\x00\x00\x29"  # an OPT record's owner (the root) and type (RFC 6891 §6.1.2)

#: TLS connections to forwarders by outcome, read by the metrics endpoint: ``ok``
#: (authenticated and in use), and the failures ``certificate`` (chain or name refused),
#: ``pin`` (no ``spki_pins`` match), ``tls`` (another handshake failure), ``network``,
#: ``timeout``, ``ca_file`` (its authorities could not be loaded).
CONNECTIONS: Counter[str] = Counter()


def client_context(tls: ForwardTls) -> ssl.SSLContext:
    """The TLS client context of a ``forward[].tls`` entry: TLS 1.2 or newer (RFC 9325 §3.1.1);
    with ``name`` the certificate checked against it and ``ca_file``'s authorities (else the
    system's); with pins alone no chain is checked here, the pin is (:meth:`TlsUpstream._open`).
    Raises OSError or ssl.SSLError when ``ca_file`` cannot be read or holds no certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, names checked
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.name is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
    else:
        context.load_default_certs()
    return context


def spki_sha256(certificate: bytes) -> bytes:
    """The SHA-256 digest of a DER certificate's SubjectPublicKeyInfo (RFC 7469 §2.4)."""
    key = x509.load_der_x509_certificate(certificate).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def padded(wire: bytes) -> bytes:
    """``wire`` with a Padding option that makes it a multiple of :data:`PADDING_BLOCK` octets
    (RFC 7830 §3, RFC 8467 §4.1), added to its OPT record when that is the last record and
    empty, as in every query :func:`~resolver.resolve.transport.make_query` builds; any other
    message is returned as it is."""
    if len(wire) < 23 or wire[-11:-8] != _EMPTY_OPT or wire[-2:] != b"\x00\x00" \
            or wire[10:12] == b"\x00\x00":  # no additional record: the tail is not an OPT
        return wire
    pad = -(len(wire) + 4) % PADDING_BLOCK
    return wire[:-2] + struct.pack("!HHH", 4 + pad, _PADDING_OPTION, pad) + bytes(pad)


class _Lost(ResolverError):
    """The connection closed before the query's reply came."""


class _Connection:
    """One authenticated TLS connection and the queries outstanding on it."""

    def __init__(self, upstream: TlsUpstream, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.upstream = upstream
        self.reader, self.writer = reader, writer
        self.pending: dict[int, tuple[Query, asyncio.Future]] = {}
        self.slots = asyncio.Semaphore(upstream.outstanding)
        self.answered = 0
        self.closed = False
        self._idle: asyncio.TimerHandle | None = None
        self._arm_idle()
        self._reading = asyncio.ensure_future(self._read())

    async def ask(self, query: Query) -> tuple[dns.message.Message, bytes]:
        async with self.slots:
            if self.closed:
                raise _Lost("closed")
            while query.id in self.pending:  # RFC 7766 §7: unique among those outstanding
                query.id = fresh_id()
            wire = padded(query.to_wire())
            future = asyncio.get_running_loop().create_future()
            self.pending[query.id] = (query, future)
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            try:
                self.writer.write(struct.pack("!H", len(wire)) + wire)
                await self.writer.drain()
                return await future
            except (OSError, ssl.SSLError) as exc:
                self.close(str(exc))
                raise _Lost(str(exc)) from None
            finally:
                self.pending.pop(query.id, None)
                if not self.pending and not self.closed:
                    self._arm_idle()

    def _arm_idle(self) -> None:
        self._idle = asyncio.get_running_loop().call_later(self.upstream.idle, self.close,
                                                           "idle")

    async def _read(self) -> None:
        why = "closed by the server"
        try:
            while True:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
                self._deliver(await self.reader.readexactly(length))
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ssl.SSLError) as exc:
            why = str(exc) or type(exc).__name__
        finally:
            self.close(why)

    def _deliver(self, data: bytes) -> None:
        """Hand a reply to the query it answers, by ID and question (RFC 7766 §7)."""
        entry = self.pending.get(struct.unpack_from("!H", data)[0]) if len(data) >= 2 else None
        if entry is None:
            IGNORED["id"] += 1
            return
        query, future = entry
        if future.done():
            return
        reply, reason = _check(query, data)
        if reply is not None:
            self.answered += 1
            future.set_result((reply, data))
            return
        IGNORED[reason] += 1
        broken = stream_failure(reason, self.upstream.host, "TLS")
        if broken is not None:
            future.set_exception(broken)

    def close(self, why: str) -> None:
        """Close the connection; the queries outstanding on it are lost with ``why``."""
        if self.closed:
            return
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.writer.close()
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(_Lost(why))


class TlsUpstream:
    """One forwarder address asked over TLS: its connection, opened and authenticated on
    demand, shared by every query to it. :meth:`exchange` has the signature of
    :func:`resolver.resolve.transport.exchange`."""

    def __init__(self, host: str, port: int, tls: ForwardTls, *, idle: float = IDLE_TIMEOUT,
                 outstanding: int = MAX_OUTSTANDING) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.idle, self.outstanding = idle, outstanding
        self.pins = frozenset(tls.spki_pins)
        self.connection: _Connection | None = None
        self._context: ssl.SSLContext | None = None
        self._opening: asyncio.Future | None = None
        self._failing: str | None = None  # the failure last logged

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def exchange(self, query: Query, host: str = "", port: int = 0, *,
                       timeout: float = 1.2, tcp: bool = False) -> Reply:
        """Send ``query`` over the connection (opened first if need be) and wait for its reply
        within ``timeout`` seconds, the handshake included."""
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    connection = await self._connection(timeout)
                    try:
                        reply, data = await connection.ask(query)
                        break
                    except _Lost as lost:  # a reused connection lost: once more on a new one
                        if attempt == 2 or not connection.answered:
                            raise UpstreamError("network", f"{self} over TLS: {lost}") from None
        except TimeoutError:
            raise UpstreamError("timeout", f"no answer from {self} over TLS") from None
        return Reply(reply, True, time.monotonic() - start, len(data), data, tls=True)

    async def _connection(self, timeout: float) -> _Connection:
        """The open connection, or the one being opened (one handshake for every query
        waiting), or a new one."""
        connection = self.connection
        if connection is not None and not connection.closed:
            return connection
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open(timeout))
            self._opening.add_done_callback(_settled)
        return await asyncio.shield(self._opening)

    async def _open(self, timeout: float) -> _Connection:
        """Connect, complete the handshake, authenticate (RFC 8310 §5); nothing is written
        before the server is authenticated."""
        try:
            reader, writer = await self._handshake(timeout)
        finally:
            self._opening = None
        if self.pins:
            certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            digest = spki_sha256(certificate)
            if digest not in self.pins:
                writer.transport.abort()
                raise self._failed("pin", "certificate key sha256 "
                                   f"{base64.b64encode(digest).decode()} is not in spki_pins")
        CONNECTIONS["ok"] += 1
        if self._failing is not None:
            log.warning("%s: %s: authenticated over TLS again", self.tls.where, self)
            self._failing = None
        self.connection = _Connection(self, reader, writer)
        return self.connection

    async def _handshake(self, timeout: float,
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The TCP connection and TLS handshake, the name checked when there is one; each
        failure an UpstreamError (:meth:`_failed`)."""
        try:
            if self._context is None:
                self._context = client_context(self.tls)
        except (OSError, ssl.SSLError) as exc:
            raise self._failed("ca_file", f"{self.tls.where}.ca_file: {self.tls.ca_file}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_connection(
                    self.host, self.port, ssl=self._context, server_hostname=self.tls.name or "")
        except ssl.SSLCertVerificationError as exc:
            raise self._failed("certificate", f"certificate refused: {exc.verify_message}",
                               ) from None
        except ssl.SSLError as exc:
            raise self._failed("tls", f"TLS handshake failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise self._failed("timeout", "no TLS connection within the upstream timeout",
                               "timeout") from None
        except OSError as exc:
            raise self._failed("network", exc.strerror or str(exc), "network") from None

    def _failed(self, reason: str, text: str, kind: str = "tls") -> UpstreamError:
        """Count a connection that failed, log it when the reason changes, and the error the
        query gets: a failed upstream, never a query sent another way."""
        CONNECTIONS[reason] += 1
        if text != self._failing:
            log.warning("%s: %s: %s; not asked (no clear text, no unauthenticated TLS: "
                        "RFC 8310)", self.tls.where, self, text)
            self._failing = text
        return UpstreamError(kind, f"{self} over TLS: {text}")


def _settled(task: asyncio.Future) -> None:
    """Done callback of a connection being opened: its failure is retrieved even when every
    query that waited for it has given up (no "never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


def upstreams(forwards: tuple[Forward, ...]) -> dict[tuple[str, int], TlsUpstream]:
    """A :class:`TlsUpstream` for each address of the ``forward`` entries with ``tls`` (the
    configuration gives an address one ``tls`` at most: resolver.config.parse)."""
    return {(server.host, server.port): TlsUpstream(server.host, server.port, forward.tls)
            for forward in forwards if forward.tls is not None for server in forward.servers}
