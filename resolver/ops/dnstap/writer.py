"""The tap (:class:`Dnstap`): the server and the iterator hand it copies of DNS messages, a
writer thread encodes them (resolver.ops.dnstap.message) and writes them as Frame Streams data
frames (resolver.ops.dnstap.framestream) to a file or a collector's unix socket, reconnecting
with exponential backoff. Best effort: a full queue drops and counts, never slows the resolver.
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
import threading
import time

import dns.name

from resolver.config import DNSTAP_FILE, DnstapConfig
from resolver.errors import ResolverError
from resolver.ops.dnstap.framestream import (CONTROL_ACCEPT, CONTROL_READY, CONTROL_START,
                                             CONTROL_STOP, ProtocolError, control_frame,
                                             data_frame, read_control)
from resolver.ops.dnstap.message import (CLIENT_QUERY, CLIENT_RESPONSE, CONTENT_TYPE,
                                         FORWARDER_QUERY, FORWARDER_RESPONSE, PROTOCOLS,
                                         RESOLVER_QUERY, RESOLVER_RESPONSE, UDP,
                                         encode_header, encode_message, wrap)

log = logging.getLogger(__name__)

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
        self._header = encode_header(config.identity.encode("utf-8", "surrogatepass"),
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
        self._put((CLIENT_QUERY, PROTOCOLS.get(transport, UDP), client, listener, t, wire,
                   None, None, None))

    def client_response(self, query_wire: bytes, reply_wire: bytes, client: tuple[str, int],
                        listener: tuple[str, int], transport: str, t_query: int,
                        t_response: int) -> None:
        """Our reply to a client, about to be sent. The query is in the CLIENT_QUERY message,
        so it is not repeated here (dnstap.proto's recommended CLIENT_RESPONSE fields)."""
        self._put((CLIENT_RESPONSE, PROTOCOLS.get(transport, UDP), client, listener, t_query,
                   None, t_response, reply_wire, None))

    def resolver_query(self, wire: bytes, server: tuple[str, int], zone: dns.name.Name | None,
                       t: int, *, forwarder: bool = False, transport: str = "udp") -> None:
        """A query about to go to an upstream server over ``transport`` (``udp``: first over
        UDP; ``dot``: a forwarder's TLS connection), as a server of ``zone``; a forwarder's
        query with ``forwarder``."""
        self._put((FORWARDER_QUERY if forwarder else RESOLVER_QUERY, PROTOCOLS[transport], None,
                   server, t, wire, None, None, zone))

    def resolver_response(self, query_wire: bytes, reply_wire: bytes, server: tuple[str, int],
                          zone: dns.name.Name | None, transport: str, t_query: int,
                          t_response: int, *, forwarder: bool = False) -> None:
        """An upstream server's reply as received over ``transport`` (``udp``, ``tcp`` or
        ``dot``)."""
        self._put((FORWARDER_RESPONSE if forwarder else RESOLVER_RESPONSE, PROTOCOLS[transport],
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
                    except (OSError, ProtocolError) as exc:
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
            frame = data_frame(wrap(header, message))
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
            ctype, types = read_control(sock)
            if ctype != CONTROL_ACCEPT:
                raise ProtocolError(f"expected ACCEPT, got control frame type {ctype}")
            if types and CONTENT_TYPE not in types:
                raise ProtocolError("the collector does not accept "
                                    f"{CONTENT_TYPE.decode()}: it offers "
                                    + ", ".join(t.decode("ascii", "replace") for t in types))
            sock.sendall(control_frame(CONTROL_START, [CONTENT_TYPE]))
            sock.settimeout(_SLICE)
        except BaseException:
            sock.close()
            raise
        self._out = sock

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
                    read_control(out)  # FINISH; anything else ends the stream anyway
                except (OSError, ProtocolError):
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
