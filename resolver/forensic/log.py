"""The forensic lookup log (issue #4): exactly one JSON Lines record per reply to a client,
hash-chained so that a changed, removed or reordered record is detected
(``resolver.forensic.verify``), written off the event loop, never dropped.

The record's fields are those of the table in ``resolver.forensic.record``; the log keeps them as
given and adds the chain fields as it accepts a record, on the event loop's thread
(``resolver.forensic.seal``). This module is the writer: the bounded queue with back-pressure,
the thread that writes batches and fsyncs them, gzip compression (``log.compress``; the stream
flushed per batch, closed when the file is rotated or the log closed, a crashed run's closed at
the next start: ``resolver.forensic.files``), rotation by size and age, and the chain's head
(:meth:`ForensicLog.head`) for checkpoints.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import math
import os
import threading
import time
from collections.abc import Callable

from resolver.config import LogConfig
from resolver.errors import ResolverError
from resolver.forensic._fastlog import Chain, Codebook
from resolver.forensic._queue import DRAIN_ERROR, DRAIN_ROOM
from resolver.forensic.files import (close_stream, compressed, continuation, first_time,
                                     rotation)
from resolver.forensic.seal import ForensicLogError, load_hmac_key, seal

__all__ = ["ForensicLog"]

_write = os.write    # the writer's system calls, by name so that tests can make them fail
_fsync = os.fsync


class _Abort(ResolverError):
    """close() gave up waiting for a failing write."""


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future, exc: BaseException | None = None,
          ) -> None:
    def done() -> None:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
    try:
        loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


_LINGER = 0.004    # seconds the writer waits for a smaller batch to grow (the reply never waits)
#: log.compress: gzip's zlib levels for a small batch (under 64 KiB: a quiet log, whose CPU is
#: cheap and whose batches of a few records deflate poorly) and a large one (a busy log: level 1
#: deflates 3x as fast as 6 for 10-30 % more octets). bench/forensic.py --compress.
GZIP_LEVELS = (6, 1)


class ForensicLog:
    """The writer: records are sealed (encoded, hashed, chained) as the event loop appends them
    and queued (bounded, with back-pressure); one thread writes them, one ``write`` per batch,
    fsynced on the interval, rotated by size and age. Write errors are retried with the lines
    kept; ``healthy`` is False until a write succeeds again. Append from one thread.

    While the log keeps up, the writer thread neither holds the GIL nor takes a lock the event
    loop waits on for longer than a batch hand-over (``Chain.drain``): on a busy server a
    writer preempted while holding the GIL stalls every reply behind it. It comes back to
    Python to fsync (once per interval), rotate, report errors, and to let in appends that
    waited for room."""

    def __init__(self, config: LogConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._file = config.path != "-"
        # Guards what the event loop and the writer thread share in Python: the appends waiting
        # for room, the flushes waiting, the counters below, stopping.
        self._cond = threading.Lock()
        self._waiters: collections.deque[tuple] = collections.deque()  # (record, loop, future)
        # The chain, and the queue of sealed lines with its counts (outstanding: accepted, not
        # yet written, bounded by queue_size) and whether the writes succeed (healthy).
        self.codebook = Codebook()  # for the hit path's record templates (hit_template)
        self.chain = Chain(self._waiters, config.queue_size, codebook=self.codebook)
        self._flushers: list[tuple] = []  # (records accepted at the call, loop, future)
        self._synced = 0        # records written and fsynced (a file's)
        self._dirty = False     # the writer's: written, not yet fsynced
        self._stopping = False
        self._abort = threading.Event()
        self._started = self._closed = False
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._dead: BaseException | None = None
        self._last_error: str | None = None
        self._stats = {"rotations": 0, "write_errors": 0, "blocked_waits": 0, "fsyncs": 0,
                       "writer_passes": 0}
        self._key: bytes | None = None
        self._size = 0
        self._opened_at = 0.0
        self._last_sync = time.monotonic()
        self._renames: list[tuple[str, str]] | None = None  # a rotation under way
        self._zipped = self._file and config.compress == "gzip"
        self.notes: list[str] = []  # what starting did to the files, for the process log

    # -- the event loop's side

    async def start(self) -> None:
        """Load the key, open or continue the file (its last record gives seq and prev; a
        corrupt last record stops the start), start the writer thread."""
        if self._started:
            raise RuntimeError("ForensicLog already started")
        self._started = True
        if not self.config.enabled:
            return
        if self.config.hmac_key_file:
            try:
                self._key = load_hmac_key(self.config.hmac_key_file)
            except ForensicLogError as exc:
                raise type(exc)(f"log.hmac_key_file: {exc}") from exc
        self.chain.use_key(self._key)
        if self._zipped:
            self.chain.compress(*GZIP_LEVELS)
        if self._file:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._open_existing)
            except OSError as exc:
                raise ForensicLogError(
                    f"cannot open forensic log {self.config.path}: {exc}") from exc
        else:
            self._fd = 1
        self._thread = threading.Thread(target=self._run, name="forensic-log", daemon=True)
        self._thread.start()
        self.chain.open = True

    def append_nowait(self, record: dict) -> bool:
        """Queue a record without waiting: False when the queue is full (then await
        :meth:`append`). The record belongs to the log from here on: do not change it."""
        if not self.config.enabled:
            return True
        if not isinstance(record, dict):
            raise TypeError("a forensic record is a dict")
        self._check_open()
        # Only this thread adds waiters or outstanding records: a full queue stays full.
        if not self.chain.has_room():
            return False
        self.chain.offer(self._seal_next(record))
        return True

    async def append(self, record: dict) -> None:
        """Queue a record; when the queue is full, wait (in turn) until the writer has made
        room. Never drops: a record whose caller is cancelled while waiting is still logged.
        While writes fail (``healthy`` False) a full queue raises :class:`ForensicLogError`
        at once instead: room may not come for hours, and the caller must not answer."""
        if self.append_nowait(record):
            return
        if not self.healthy:
            raise ForensicLogError(f"forensic log unavailable ({self._last_error}) and its "
                                   f"queue full ({self.config.queue_size} records)")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        line = self._seal_next(record)
        with self._cond:
            if self.chain.has_room():
                self.chain.offer(line)
                return
            self._waiters.append((line, loop, fut))
            self._stats["blocked_waits"] += 1
            self.chain.attend(True)
        await fut

    def _seal_next(self, record: dict) -> bytes:
        """The record's line, next in the chain. Sealing on the event loop's thread, as records
        are accepted, costs less than handing them to the writer thread to seal: the writer only
        writes bytes and the two threads hardly contend for the GIL."""
        chain = self.chain
        line, digest = seal(record, chain.seq, chain.prev, self._key, chain.digest)
        chain.advance(digest)
        return line

    async def flush(self) -> None:
        """Return when every record accepted so far is written, and fsynced for a file."""
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            if self._dead is not None:
                raise ForensicLogError(f"forensic log writer failed: {self._last_error}")
            if self._durable() >= self.chain.accepted:
                return
            self._flushers.append((self.chain.accepted, loop, fut))
            self.chain.attend(True)
        await fut

    async def close(self, timeout: float | None = None) -> None:
        """Write and fsync everything accepted, stop the thread, close the file (on SIGTERM).
        With ``timeout`` (seconds) and writes still failing then, give up and raise
        :class:`ForensicLogError` with the number of records not written."""
        if not self._started or self._closed:
            self._closed = True
            return
        self._closed = True
        self.chain.open = False
        if self._thread is None:
            return
        with self._cond:
            self._stopping = True
            self.chain.attend(True)
        joined = asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        try:
            await asyncio.wait_for(asyncio.shield(joined), timeout)
        except TimeoutError:
            self._abort.set()
            await joined
            raise ForensicLogError(
                f"forensic log: {self.chain.outstanding + len(self._waiters)} records not written at "
                f"close: {self._last_error}") from None
        if self._dead is not None:
            raise ForensicLogError(f"forensic log writer failed: {self._last_error}")

    async def head(self) -> tuple[int, str] | None:
        """The chain's head once written (and fsynced for a file): the seq and hash of the
        last record accepted when called, None before the first. What a checkpoint emits."""
        chain = self.chain
        if chain.seq == 0:
            return None
        head = (chain.seq - 1, chain.prev)
        await self.flush()
        return head

    @property
    def healthy(self) -> bool:
        """False while writes fail (e.g. disk full) or after the writer died: stop answering."""
        return self.chain.healthy and self._dead is None

    @property
    def stats(self) -> dict:
        """Counters: records, bytes (written to the file: compressed, when it is),
        record_bytes (of the records, uncompressed), batches, queue_depth (accepted, not written), waiting
        (appends blocked), rotations, write_errors, blocked_waits, fsyncs, writer_passes (times
        the writer thread came back to Python from draining the queue), last_error, seq."""
        chain = self.chain
        with self._cond:
            stats = dict(self._stats)
            stats.update(records=chain.written, bytes=chain.written_bytes,
                         record_bytes=chain.raw_bytes, batches=chain.batches,
                         queue_depth=chain.outstanding, waiting=len(self._waiters),
                         last_error=self._last_error, healthy=self.healthy, seq=chain.seq)
        return stats

    def _check_open(self) -> None:
        if not self._started:
            raise RuntimeError("ForensicLog.start() has not been called")
        if self._closed:
            raise RuntimeError("ForensicLog is closed")
        if self._dead is not None:
            raise ForensicLogError(f"forensic log writer failed: {self._last_error}")

    # -- opening and continuing

    def _open_existing(self) -> None:
        path = self.config.path
        if os.path.exists(path) and os.path.getsize(path) > 0 \
                and compressed(path) != self._zipped:  # log.compress changed: a new file
            if not self.config.keep:
                raise ForensicLogError(
                    f"forensic log {path} is {'' if compressed(path) else 'not '}compressed and "
                    f"log.compress is {self.config.compress}; with log.keep 0 it would be "
                    f"removed: move it aside first")
            for src, dst in rotation(path, self.config.keep):
                os.rename(src, dst) if dst else os.unlink(src)
            self.notes.append(f"{path} rotated to {path}.1: log.compress is now "
                              f"{self.config.compress}")
        last = continuation(self.config, self._key)
        if last is not None:
            self.chain.restart(*last)
        if self._zipped and os.path.exists(path) and os.path.getsize(path) > 0:
            note = close_stream(path)
            if note:
                self.notes.append(note)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise ForensicLogError(f"cannot open forensic log {path}: {exc.strerror}") from exc
        self._size = os.fstat(self._fd).st_size
        started = first_time(path) if self._size else None
        self._opened_at = started if started is not None else self._clock()

    # -- the writer thread

    def _run(self) -> None:
        try:
            self._serve()
        except _Abort:
            pass
        except BaseException as exc:  # a bug: fail loudly rather than hang the server
            self._dead = exc
            self._last_error = f"writer thread: {exc!r}"
            self.chain.healthy = False
        finally:
            if self._file and self._fd is not None:
                try:
                    if self._dead is None and not self._abort.is_set():
                        self._close_member()
                except OSError:  # left unfinished: the next start closes it (files.close_stream)
                    pass
                try:
                    os.close(self._fd)
                except OSError:
                    pass
                self._fd = None
            with self._cond:
                err = ForensicLogError(f"forensic log stopped: {self._last_error}")
                for _, loop, fut in self._waiters:
                    _wake(loop, fut, err)
                for _, loop, fut in self._flushers:
                    _wake(loop, fut, err)
                self._waiters.clear()
                self._flushers.clear()

    def _serve(self) -> None:
        interval = self.config.fsync_interval_ms / 1000
        failures = 0
        while True:
            room, wait_until, write_until, age_at, planned = self._plan(interval)
            write = None if _write is os.write else _write  # a test's failing write: called
            why, value, written = self.chain.drain(self._fd, room, self._size == 0, _LINGER,
                                                   wait_until, write_until, age_at, planned,
                                                   write)
            self._stats["writer_passes"] += 1
            if written:
                self._size += written
                self._dirty = self._file
                failures = 0
            if why == DRAIN_ERROR:
                failures = self._failed(OSError(value, os.strerror(value)), failures)
            elif why == DRAIN_ROOM:
                self._retry(lambda: self._maybe_rotate(value))
            with self._cond:
                stopping, flushing = self._stopping, bool(self._flushers)
            if self._dirty and (interval == 0 or flushing or stopping
                                or time.monotonic() - self._last_sync >= interval):
                self._retry(self._fsync)
            with self._cond:
                while self._waiters and self.chain.outstanding < self.config.queue_size:
                    line, loop, fut = self._waiters.popleft()
                    self.chain.offer(line)
                    _wake(loop, fut)
                if self._flushers:
                    durable, keep = self._durable(), []
                    for item in self._flushers:
                        if item[0] <= durable:
                            _wake(item[1], item[2])
                        else:
                            keep.append(item)
                    self._flushers = keep
                self.chain.attend(bool(self._waiters or self._flushers or self._stopping))
                if self._stopping and not self.chain.outstanding and not self._waiters:
                    return

    def _plan(self, interval: float) -> tuple[int, float, float, float, int]:
        """What the next :meth:`Chain.drain` may do: the octets the file may still take before
        it rotates (-1: no limit), until when to wait for lines, after when to stop writing
        batches (to fsync), the time (time.time) from which the file is too old, and -1 or,
        with a clock of our own (tests, replays), the lines accepted when it was read: the
        file's age is then checked here, against that clock, before every batch."""
        if not self._file:
            return -1, math.inf, math.inf, math.inf, -1
        cfg = self.config
        room = max(0, cfg.max_bytes - self._size) if cfg.max_bytes else -1
        if self._zipped and room > 0:  # compressed sizes are known once written: a file
            room = -1                  # rotates once it has reached max_bytes
        due = self._last_sync + interval
        wait_until = due if self._dirty and interval > 0 else math.inf
        write_until = due if interval > 0 else 0.0  # 0: fsync after every batch
        age_at, planned = math.inf, -1
        if cfg.max_age_s and self._size:
            age_at = self._opened_at + cfg.max_age_s
            if self._clock is not time.time:
                planned = self.chain.accepted
                if self._clock() >= age_at:
                    room = 0
                age_at = math.inf
        return room, wait_until, write_until, age_at, planned

    def _retry(self, step: Callable[[], None]) -> None:
        failures = 0
        while True:
            try:
                step()
                self.chain.healthy = True
                return
            except OSError as exc:
                failures = self._failed(exc, failures)

    def _failed(self, exc: OSError, failures: int) -> int:
        """Count and report a failed write, fsync or rotation step, then back off."""
        with self._cond:
            self._stats["write_errors"] += 1
            name = errno.errorcode.get(exc.errno or 0, "error")
            self._last_error = f"{name}: {exc.strerror or exc}"
            self.chain.healthy = False
        if self._abort.wait(min(0.01 * (2 ** failures), 1.0)):
            raise _Abort
        return failures + 1

    def _fsync(self) -> None:
        written = self.chain.written  # all of it, on this thread
        _fsync(self._fd)
        try:  # what is on disk is never read back by us: leave the page cache to the workload
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:  # advice only
            pass
        self._dirty = False
        with self._cond:
            self._synced = written
            self._stats["fsyncs"] += 1
        self._last_sync = time.monotonic()

    def _close_member(self) -> None:
        """Close the file's gzip member (trailer) and fsync it, before it is rotated or closed."""
        if self._zipped:
            write = None if _write is os.write else _write
            self._size += self.chain.finish(self._fd, write)
            self._dirty = True
        if self._dirty:
            self._fsync()

    def _durable(self) -> int:
        """Records written, and for a file fsynced too (under ``_cond``)."""
        return self._synced if self._file else self.chain.written

    def _maybe_rotate(self, next_line: int) -> None:
        """Rotate before writing ``next_line`` bytes if the file would grow past max_bytes or is
        older than max_age_s; resumable step by step after an error."""
        cfg = self.config
        if self._renames is None:
            full = self._size >= cfg.max_bytes if self._zipped \
                else self._size + next_line > cfg.max_bytes
            if self._size == 0 or not (
                    (cfg.max_bytes and full)
                    or (cfg.max_age_s and self._clock() - self._opened_at >= cfg.max_age_s)):
                return
            self._close_member()
            self._renames = rotation(cfg.path, cfg.keep)
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:  # the descriptor is released all the same; the data was fsynced
                pass
        while self._renames:
            src, dst = self._renames[0]
            if dst:
                os.rename(src, dst)
            else:
                os.unlink(src)
            self._renames.pop(0)
        if self._fd is None:
            self._fd = os.open(cfg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                               0o640)
            self._size = 0
            self._opened_at = self._clock()
            self._stats["rotations"] += 1
            self._sync_dir()
        self._renames = None

    def _sync_dir(self) -> None:
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.config.path)), os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
