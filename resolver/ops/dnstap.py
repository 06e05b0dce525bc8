"""dnstap output (issue #4): copies of the DNS messages the resolver receives and sends, for
existing DNS analysis tools (``dnstap-ldns``, the ``dnstap`` command of golang-dnstap,
DNS-collector, Unbound's and Knot's readers).

Format. Each event is a ``Dnstap`` protobuf message (dnstap.proto of the dnstap project, proto2,
encoded here by hand: a handful of varint, fixed32 and length-delimited fields, numbers cited at
the constants below) carried in a Frame Streams data frame with the content type
``protobuf:dnstap.Dnstap``:

- a **file** (``file:PATH``) is a unidirectional stream: a START control frame naming the
  content type, the data frames, a STOP control frame when the resolver stops. A non-empty file
  already at PATH is moved to ``PATH.1`` first (a stream cannot be appended to: readers stop at
  the first STOP). A FIFO works as well (``mkfifo``, then a reader on it).
- a **unix socket** (``unix:PATH`` or a bare path) is bidirectional: READY (with the content
  type) is answered by the collector's ACCEPT, then START, the data frames, and at the end STOP,
  answered by FINISH. When the collector is not there, or goes away, the writer connects again
  with exponential backoff (0.1 s doubling to 5 s).

Messages (dnstap.proto's recommended fields for each type):

==================  ===========================================================================
CLIENT_QUERY        socket family and protocol, the client's address and port (``query_*``)
                    and the listener's (``response_*``), query time, the query as received
CLIENT_RESPONSE     the same addresses, query and response times, the reply as sent
RESOLVER_QUERY      family, protocol (UDP: the first try), the server's address and port,
                    ``query_zone`` (the zone the server was asked as a server of), query time,
                    the query as sent
RESOLVER_RESPONSE   the same, and TCP if the reply came over TCP, response time, the reply as
                    received
==================  ===========================================================================

Queries sent to a configured forwarder are FORWARDER_QUERY and FORWARDER_RESPONSE. The
resolver's own address for upstream queries is not known (each goes from a fresh socket) and is
left out, as dnstap.proto allows.

Best effort. The event loop only appends a tuple to a bounded queue; the writer thread encodes and
writes. When the queue is full (the collector is slow or away), the message is dropped and
counted (``stats["dropped"]``): unlike the forensic log, dnstap never slows the resolver down.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterable

import dns.name

from resolver.config import DNSTAP_FILE, DnstapConfig
from resolver.errors import ResolverError

__all__ = ["CLIENT_QUERY", "CLIENT_RESPONSE", "CONTENT_TYPE", "FORWARDER_QUERY",
           "FORWARDER_RESPONSE", "RESOLVER_QUERY", "RESOLVER_RESPONSE", "Dnstap",
           "DnstapCollector", "control_frame", "data_frame", "encode_dnstap", "encode_message"]

log = logging.getLogger(__name__)

# --- dnstap.proto ------------------------------------------------------------------------------

#: Dnstap.Type MESSAGE = 1.
DNSTAP_MESSAGE = 1
#: Message.Type values.
RESOLVER_QUERY = 3
RESOLVER_RESPONSE = 4
CLIENT_QUERY = 5
CLIENT_RESPONSE = 6
FORWARDER_QUERY = 7
FORWARDER_RESPONSE = 8
#: SocketFamily and SocketProtocol values.
INET, INET6 = 1, 2
UDP, TCP = 1, 2
_PROTOCOLS = {"udp": UDP, "tcp": TCP}

_VARINT, _FIXED32, _LENGTH = 0, 5, 2  # protobuf wire types


def _tag(number: int, wire_type: int) -> bytes:
    return bytes([number << 3 | wire_type])  # every field number here is below 16: one byte


# Dnstap: identity = 1, version = 2 (bytes); message = 14 (Message); type = 15 (Type).
_D_IDENTITY, _D_VERSION = _tag(1, _LENGTH), _tag(2, _LENGTH)
_D_MESSAGE, _D_TYPE = _tag(14, _LENGTH), _tag(15, _VARINT)
# Message: type = 1, socket_family = 2, socket_protocol = 3 (enums); query_address = 4,
# response_address = 5 (bytes); query_port = 6, response_port = 7 (uint32); query_time_sec = 8
# (uint64), query_time_nsec = 9 (fixed32); query_message = 10, query_zone = 11 (bytes);
# response_time_sec = 12 (uint64), response_time_nsec = 13 (fixed32); response_message = 14.
_M_TYPE, _M_FAMILY, _M_PROTOCOL = _tag(1, _VARINT), _tag(2, _VARINT), _tag(3, _VARINT)
_M_QADDR, _M_RADDR = _tag(4, _LENGTH), _tag(5, _LENGTH)
_M_QPORT, _M_RPORT = _tag(6, _VARINT), _tag(7, _VARINT)
_M_QSEC, _M_QNSEC = _tag(8, _VARINT), _tag(9, _FIXED32)
_M_QMSG, _M_QZONE = _tag(10, _LENGTH), _tag(11, _LENGTH)
_M_RSEC, _M_RNSEC = _tag(12, _VARINT), _tag(13, _FIXED32)
_M_RMSG = _tag(14, _LENGTH)

_FIXED = struct.Struct("<I")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _time(parts: list, sec_tag: bytes, nsec_tag: bytes, ns: int) -> None:
    sec, nsec = divmod(ns, 1_000_000_000)
    parts += (sec_tag, _varint(sec), nsec_tag, _FIXED.pack(nsec))


def _address(host: str) -> tuple[int, bytes]:
    """The SocketFamily and the packed address (4 or 16 octets); a scope (``%eth0``) is cut."""
    if ":" in host:
        return INET6, socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    return INET, socket.inet_pton(socket.AF_INET, host)


def encode_message(mtype: int, protocol: int, *, initiator: tuple[str, int] | None = None,
                   responder: tuple[str, int] | None = None, query_time: int | None = None,
                   query_message: bytes | None = None, query_zone: bytes | None = None,
                   response_time: int | None = None, response_message: bytes | None = None,
                   ) -> bytes:
    """A dnstap ``Message``. ``initiator`` and ``responder`` are (address, port) of the query's
    sender and of its receiver; times are nanoseconds since the epoch; ``query_zone`` is a name
    in wire format. Fields are written in field-number order."""
    family = 0
    qaddr = raddr = None
    if initiator is not None:
        family, qaddr = _address(initiator[0])
    if responder is not None:
        family, raddr = _address(responder[0])
    parts = [_M_TYPE, _varint(mtype)]
    if family:
        parts += (_M_FAMILY, _varint(family))
    parts += (_M_PROTOCOL, _varint(protocol))
    if qaddr is not None:
        parts.append(_field(_M_QADDR, qaddr))
    if raddr is not None:
        parts.append(_field(_M_RADDR, raddr))
    if initiator is not None:
        parts += (_M_QPORT, _varint(initiator[1]))
    if responder is not None:
        parts += (_M_RPORT, _varint(responder[1]))
    if query_time is not None:
        _time(parts, _M_QSEC, _M_QNSEC, query_time)
    if query_message is not None:
        parts.append(_field(_M_QMSG, query_message))
    if query_zone is not None:
        parts.append(_field(_M_QZONE, query_zone))
    if response_time is not None:
        _time(parts, _M_RSEC, _M_RNSEC, response_time)
    if response_message is not None:
        parts.append(_field(_M_RMSG, response_message))
    return b"".join(parts)


def _header(identity: bytes, version: bytes) -> bytes:
    """The Dnstap fields before ``message``, the same for every message of a writer."""
    return (_field(_D_IDENTITY, identity) if identity else b"") + (
        _field(_D_VERSION, version) if version else b"")


_TRAILER = _D_TYPE + _varint(DNSTAP_MESSAGE)


def encode_dnstap(message: bytes, identity: bytes = b"", version: bytes = b"") -> bytes:
    """A ``Dnstap`` of type MESSAGE around an encoded ``Message``."""
    return _header(identity, version) + _field(_D_MESSAGE, message) + _TRAILER


# --- Frame Streams -----------------------------------------------------------------------------

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
#: Control frame types and the one control field type of the Frame Streams protocol.
CONTROL_ACCEPT, CONTROL_START, CONTROL_STOP, CONTROL_READY, CONTROL_FINISH = 1, 2, 3, 4, 5
FIELD_CONTENT_TYPE = 1
#: The longest control frame a reader accepts (libfstrm's FSTRM_CONTROL_FRAME_LENGTH_MAX).
MAX_CONTROL_FRAME = 512
_BE32 = struct.Struct(">I")


def data_frame(payload: bytes) -> bytes:
    """A data frame: the payload's length (big-endian, never 0), the payload."""
    return _BE32.pack(len(payload)) + payload


def control_frame(ctype: int, content_types: Iterable[bytes] = ()) -> bytes:
    """A control frame: the escape (a zero length), the frame's length, its type, then a
    CONTENT_TYPE field for each content type."""
    body = _BE32.pack(ctype) + b"".join(
        struct.pack(">II", FIELD_CONTENT_TYPE, len(ct)) + ct for ct in content_types)
    return b"\0\0\0\0" + _BE32.pack(len(body)) + body


class _ProtocolError(ResolverError):
    """The collector broke the Frame Streams handshake."""


def _parse_control(body: bytes) -> tuple[int, list[bytes]]:
    if len(body) < 4:
        raise _ProtocolError("control frame too short")
    ctype, = _BE32.unpack_from(body)
    fields, at = [], 4
    while at < len(body):
        if at + 8 > len(body):
            raise _ProtocolError("truncated control field")
        ftype, length = struct.unpack_from(">II", body, at)
        at += 8
        if at + length > len(body):
            raise _ProtocolError("control field longer than its frame")
        if ftype == FIELD_CONTENT_TYPE:
            fields.append(body[at:at + length])
        at += length
    return ctype, fields


# --- the writer --------------------------------------------------------------------------------

BACKOFF_MIN = 0.1     # seconds before the first reconnect; doubled after each failure
BACKOFF_MAX = 5.0
HANDSHAKE_TIMEOUT = 2.0
FINISH_TIMEOUT = 1.0  # waiting for the collector's FINISH after our STOP
_SLICE = 0.2          # a blocked write looks at the abort flag this often
_IDLE_CHECK = 1.0     # an idle writer looks this often whether the collector hung up


class _Aborted(ResolverError):
    pass


class Dnstap:
    """The tap the server and the iterator call. The calls only queue; :meth:`start` starts the
    writer thread, :meth:`close` (or :meth:`stop`) sends STOP and ends it."""

    def __init__(self, config: DnstapConfig, *, backoff: tuple[float, float] = (
            BACKOFF_MIN, BACKOFF_MAX)) -> None:
        self.config = config
        self._file = config.mode == DNSTAP_FILE
        self._limit = config.queue_size
        self._header = _header(config.identity.encode("utf-8", "surrogatepass"),
                               config.version.encode("utf-8", "surrogatepass"))
        self._backoff = backoff
        self._cond = threading.Condition(threading.Lock())
        self._q: collections.deque[tuple] = collections.deque()
        self._idle = False
        self._busy = False          # the writer holds a batch not yet written
        self._running = False
        self._stopping = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: socket.socket | int | None = None  # the socket, or the file's descriptor
        self._dropped_full = 0      # counted by the callers' side, under the lock
        self._stats = {"messages": 0, "bytes": 0, "dropped_unsent": 0, "connects": 0,
                       "connect_errors": 0, "write_errors": 0}
        self._last_error: str | None = None

    # -- the hooks (event loop side): queue and return

    def client_query(self, wire: bytes, client: tuple[str, int], listener: tuple[str, int],
                     transport: str, t: int) -> None:
        """A client's query as received: ``t`` in nanoseconds since the epoch."""
        self._put((CLIENT_QUERY, _PROTOCOLS.get(transport, UDP), client, listener, t, wire,
                   None, None, None))

    def client_response(self, query_wire: bytes, reply_wire: bytes, client: tuple[str, int],
                        listener: tuple[str, int], transport: str, t_query: int,
                        t_response: int) -> None:
        """Our reply to a client, about to be sent. The query is in the CLIENT_QUERY message,
        so it is not repeated here (dnstap.proto's recommended CLIENT_RESPONSE fields)."""
        self._put((CLIENT_RESPONSE, _PROTOCOLS.get(transport, UDP), client, listener, t_query,
                   None, t_response, reply_wire, None))

    def resolver_query(self, wire: bytes, server: tuple[str, int], zone: dns.name.Name | None,
                       t: int, *, forwarder: bool = False) -> None:
        """A query about to go to an upstream server (first over UDP), as a server of
        ``zone``; a forwarder's query with ``forwarder``."""
        self._put((FORWARDER_QUERY if forwarder else RESOLVER_QUERY, UDP, None, server, t, wire,
                   None, None, zone))

    def resolver_response(self, query_wire: bytes, reply_wire: bytes, server: tuple[str, int],
                          zone: dns.name.Name | None, tcp: bool, t_query: int, t_response: int,
                          *, forwarder: bool = False) -> None:
        """An upstream server's reply as received (over TCP if ``tcp``)."""
        self._put((FORWARDER_RESPONSE if forwarder else RESOLVER_RESPONSE, TCP if tcp else UDP,
                   None, server, t_query, None, t_response, reply_wire, zone))

    def _put(self, item: tuple) -> None:
        with self._cond:
            if not self._running or len(self._q) >= self._limit:
                self._dropped_full += 1
                return
            self._q.append(item)
            if self._idle:
                self._cond.notify()

    # -- life cycle

    def start(self) -> None:
        """Start the writer thread. It opens the output itself, retrying with backoff: a
        collector that is not up yet or a missing directory never stops the resolver."""
        if self._thread is not None:
            raise RuntimeError("Dnstap already started")
        self._running = True
        self._thread = threading.Thread(target=self._run, name="dnstap", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (while the output takes it), send STOP (and wait for FINISH on
        a socket), end the thread. After ``timeout`` seconds a blocked write is abandoned."""
        with self._cond:
            self._running = False
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # a blocked write gives up within _SLICE
            self._thread.join(timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """:meth:`stop`, off the event loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message has been written or dropped (for tests and
        benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._q and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    @property
    def connected(self) -> bool:
        return self._out is not None

    @property
    def stats(self) -> dict:
        """Counters: messages and bytes written, dropped (queue full, or lost with a broken
        connection or at stop), queue_depth, connected, connects, connect_errors, write_errors,
        last_error."""
        with self._cond:
            stats = dict(self._stats)
            stats.update(dropped=self._dropped_full + stats["dropped_unsent"],
                         dropped_queue_full=self._dropped_full, queue_depth=len(self._q),
                         connected=self._out is not None, last_error=self._last_error)
        return stats

    # -- the writer thread

    def _run(self) -> None:
        delay = self._backoff[0]
        failing = False
        try:
            while True:
                if self._out is None:
                    if self._stopping:
                        break
                    try:
                        self._open()
                    except (OSError, _ProtocolError) as exc:
                        self._note_error(f"cannot open {self._where()}: {exc}")
                        self._stats["connect_errors"] += 1
                        if not failing:
                            log.warning("dnstap: cannot open %s (%s); retrying, messages are "
                                        "dropped while the queue is full", self._where(), exc)
                            failing = True
                        self._wait(delay)
                        delay = min(delay * 2, self._backoff[1])
                        continue
                    delay, failing = self._backoff[0], False
                    self._stats["connects"] += 1
                    log.info("dnstap: writing to %s", self._where())
                batch = self._take()
                if batch:
                    self._write_batch(batch)
                elif batch is None:       # stopping, and the queue is empty
                    self._finish()
                    break
                elif not self._file:      # idle: has the collector hung up?
                    self._check_peer()
        except _Aborted:
            pass
        except Exception as exc:  # a bug: say so, and stop tapping rather than the resolver
            log.exception("dnstap writer failed")
            self._note_error(f"writer thread: {exc!r}")
        finally:
            self._close_out()
            with self._cond:
                self._running = False
                self._stats["dropped_unsent"] += len(self._q)
                self._q.clear()
                self._busy = False

    def _where(self) -> str:
        return f"{'file' if self._file else 'unix socket'} {self.config.path}"

    def _note_error(self, text: str) -> None:
        with self._cond:
            self._last_error = text

    def _wait(self, seconds: float) -> None:
        """Sleep between reconnects; a stop ends the wait."""
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)

    def _take(self) -> list | None:
        """The queued messages; [] after an idle while; None once stopping with nothing left."""
        with self._cond:
            if not self._q and not self._stopping:
                self._idle = True
                self._cond.wait(_IDLE_CHECK)
                self._idle = False
            if self._q:
                batch, self._q = self._q, collections.deque()
                self._busy = True
                return batch
            return None if self._stopping else []

    def _write_batch(self, batch: collections.deque) -> None:
        header, ends, chunks, end, unusable = self._header, [], [], 0, 0
        for item in batch:
            mtype, protocol, initiator, responder, t_query, qmsg, t_response, rmsg, zone = item
            try:
                message = encode_message(
                    mtype, protocol, initiator=initiator, responder=responder,
                    query_time=t_query, query_message=qmsg,
                    query_zone=zone.to_wire() if zone is not None else None,
                    response_time=t_response, response_message=rmsg)
            except (OSError, ValueError, TypeError) as exc:  # e.g. not an IP address
                unusable += 1
                self._note_error(f"message not encodable: {exc}")
                continue
            frame = data_frame(header + _field(_D_MESSAGE, message) + _TRAILER)
            chunks.append(frame)
            end += len(frame)
            ends.append(end)
        written, aborted = 0, False
        try:
            written = self._send(b"".join(chunks))
        except OSError as exc:
            written = getattr(exc, "written", 0)
            self._lost(f"write to {self._where()} failed: {exc}")
        except _Aborted as exc:
            written, aborted = getattr(exc, "written", 0), True
        complete = bisect.bisect_right(ends, written)  # frames wholly written
        with self._cond:
            self._stats["messages"] += complete
            self._stats["bytes"] += written
            self._stats["dropped_unsent"] += len(ends) - complete + unusable
            self._busy = False
        if aborted:
            raise _Aborted

    def _lost(self, text: str) -> None:
        """The output failed: drop it; the loop opens it again (a file: a fresh one)."""
        log.warning("dnstap: %s; reconnecting", text)
        self._note_error(text)
        self._stats["write_errors"] += 1
        self._close_out()

    def _send(self, data: bytes) -> int:
        """Write all of ``data``; an OSError carries ``written``, the bytes that went out."""
        view, sent = memoryview(data), 0
        try:
            while sent < len(view):
                if self._abort.is_set():
                    raise _Aborted
                if self._file:
                    sent += self._write_some(self._out, view[sent:])  # type: ignore[arg-type]
                    continue
                try:
                    sent += self._out.send(view[sent:])  # type: ignore[union-attr]
                except TimeoutError:
                    continue  # a slow collector: the queue fills meanwhile, and drops
        except (OSError, _Aborted) as exc:
            exc.written = sent  # type: ignore[attr-defined]
            raise
        return sent

    # -- opening and closing the output

    def _open(self) -> None:
        if self._file:
            self._open_file()
        else:
            self._connect()

    def _open_file(self) -> None:
        path = self.config.path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode) and info.st_size > 0:
            os.replace(path, path + ".1")
        # O_NONBLOCK: a FIFO without a reader fails (ENXIO, retried) instead of blocking here,
        # and a stalled reader cannot hold the writer past a stop (no effect on a file).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NONBLOCK,
                     0o640)
        try:
            self._write_fd(fd, control_frame(CONTROL_START, [CONTENT_TYPE]))
        except BaseException:
            os.close(fd)
            raise
        self._out = fd

    def _write_fd(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._abort.is_set():
                raise _Aborted
            view = view[self._write_some(fd, view):]

    @staticmethod
    def _write_some(fd: int, data: memoryview) -> int:
        try:
            return os.write(fd, data)
        except BlockingIOError:  # a FIFO whose reader is behind
            select.select([], [fd], [], _SLICE)
            return 0

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.connect(self.config.path)
            sock.sendall(control_frame(CONTROL_READY, [CONTENT_TYPE]))
            ctype, types = self._read_control(sock)
            if ctype != CONTROL_ACCEPT:
                raise _ProtocolError(f"expected ACCEPT, got control frame type {ctype}")
            if types and CONTENT_TYPE not in types:
                raise _ProtocolError("the collector does not accept "
                                     f"{CONTENT_TYPE.decode()}: it offers "
                                     + ", ".join(t.decode("ascii", "replace") for t in types))
            sock.sendall(control_frame(CONTROL_START, [CONTENT_TYPE]))
            sock.settimeout(_SLICE)
        except BaseException:
            sock.close()
            raise
        self._out = sock

    @staticmethod
    def _read_exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise _ProtocolError("the collector closed the connection")
            data += chunk
        return data

    def _read_control(self, sock: socket.socket) -> tuple[int, list[bytes]]:
        escape, length = struct.unpack(">II", self._read_exactly(sock, 8))
        if escape != 0:
            raise _ProtocolError("expected a control frame, got a data frame")
        if not 4 <= length <= MAX_CONTROL_FRAME:
            raise _ProtocolError(f"control frame of {length} bytes")
        return _parse_control(self._read_exactly(sock, length))

    def _check_peer(self) -> None:
        """A collector that closed its end (or sent anything: it has nothing to say before
        our STOP) is gone: close, and the loop reconnects."""
        sock = self._out
        if not isinstance(sock, socket.socket):
            return
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return
            peek = sock.recv(1, socket.MSG_PEEK)
            reason = "closed the connection" if not peek else "sent an unexpected frame"
        except OSError as exc:
            reason = str(exc)
        self._lost(f"the collector on {self.config.path} {reason}")

    def _finish(self) -> None:
        """STOP; on a socket, wait briefly for the collector's FINISH."""
        out = self._out
        try:
            if isinstance(out, socket.socket):
                out.settimeout(FINISH_TIMEOUT)
                out.sendall(control_frame(CONTROL_STOP))
                try:
                    self._read_control(out)  # FINISH; anything else ends the stream anyway
                except (OSError, _ProtocolError):
                    pass
            elif out is not None:
                self._write_fd(out, control_frame(CONTROL_STOP))
        except OSError as exc:
            self._note_error(f"STOP to {self._where()} failed: {exc}")

    def _close_out(self) -> None:
        out, self._out = self._out, None
        try:
            if isinstance(out, socket.socket):
                out.close()
            elif out is not None:
                os.close(out)
        except OSError:
            pass


class DnstapCollector:
    """Prometheus metrics of a tap, read at scrape time (register it on a registry)."""

    def __init__(self, tap: Dnstap, prefix: str = "dnssec_sidecar_") -> None:
        self.tap, self.prefix = tap, prefix

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        stats, p = self.tap.stats, self.prefix
        yield CounterMetricFamily(p + "dnstap_messages", "dnstap messages written",
                                  value=stats["messages"])
        yield CounterMetricFamily(p + "dnstap_dropped", "dnstap messages dropped (queue full, "
                                  "or lost with the connection)", value=stats["dropped"])
        yield CounterMetricFamily(p + "dnstap_connects", "dnstap outputs opened or connected",
                                  value=stats["connects"])
        yield GaugeMetricFamily(p + "dnstap_connected", "1 while the dnstap output is open",
                                value=1 if stats["connected"] else 0)
        yield GaugeMetricFamily(p + "dnstap_queue_depth", "dnstap messages waiting",
                                value=stats["queue_depth"])
