# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The forensic log's queue of sealed lines (issue #5): the event loop offers each line under a
mutex of the queue's own, held only to copy a line in or hand a batch over; the writer thread
takes batches and writes them (one ``write`` per batch, writeback started each MiB with
``sync_file_range``) without the GIL, coming back to Python only when there is something for it
to do (:meth:`Queue.drain`). With ``log.compress: gzip`` (:meth:`Queue.compress`) each batch is
deflated into one gzip member per file (RFC 1952, RFC 1951) and ends with a sync flush, so the
file decompresses up to its last batch whatever happens next; :meth:`Queue.finish` closes the
member when the file is rotated or closed. ``resolver.forensic.log`` runs the writer; ``_fastlog.Chain``
extends the queue with the hash chain.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.errno cimport EAGAIN, EINTR, EIO, ENOMEM, errno
from libc.stdlib cimport free, realloc
from libc.math cimport INFINITY
from libc.string cimport memcpy, memmove, memset
from posix.time cimport CLOCK_MONOTONIC, nanosleep, timespec
from posix.types cimport time_t

from resolver.clock cimport monotonic, realtime

import os
import select

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *mutex, const void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *mutex)
    int pthread_mutex_lock(pthread_mutex_t *mutex)
    int pthread_mutex_unlock(pthread_mutex_t *mutex)
    int pthread_condattr_init(pthread_condattr_t *attr)
    int pthread_condattr_setclock(pthread_condattr_t *attr, int clock)
    int pthread_condattr_destroy(pthread_condattr_t *attr)
    int pthread_cond_init(pthread_cond_t *cond, const pthread_condattr_t *attr)
    int pthread_cond_destroy(pthread_cond_t *cond)
    int pthread_cond_signal(pthread_cond_t *cond)
    int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const timespec *t)

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void *buf, size_t count)

cdef extern from "<fcntl.h>" nogil:
    int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags)
    enum: SYNC_FILE_RANGE_WRITE

cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum: POLLOUT

cdef extern from "Python.h":
    enum: PyBUF_READ

cdef extern from "<zlib.h>" nogil:
    int deflateInit2(z_stream *strm, int level, int method, int windowBits, int memLevel,
                     int strategy)
    int deflate(z_stream *strm, int flush)
    int deflateReset(z_stream *strm)
    int deflateParams(z_stream *strm, int level, int strategy)
    int deflateEnd(z_stream *strm)
    unsigned long deflateBound(z_stream *strm, unsigned long source_len)
    enum: Z_OK, Z_BUF_ERROR, Z_STREAM_END, Z_SYNC_FLUSH, Z_FINISH, Z_DEFLATED
    enum: Z_DEFAULT_STRATEGY


cdef int _reserve(Lines *q, Py_ssize_t octets, Py_ssize_t lines) noexcept nogil:
    """Room in ``q`` for ``lines`` more lines of ``octets`` in all; -1 when out of memory."""
    cdef Py_ssize_t cap
    cdef char *buf
    cdef Py_ssize_t *ends
    if q.size + octets > q.cap:
        cap = max(q.cap * 2, q.size + octets, 65536)
        buf = <char *>realloc(q.buf, cap)
        if buf == NULL:
            return -1
        q.buf, q.cap = buf, cap
    if q.count + lines > q.slots:
        cap = max(q.slots * 2, q.count + lines, 256)
        ends = <Py_ssize_t *>realloc(q.ends, cap * sizeof(Py_ssize_t))
        if ends == NULL:
            return -1
        q.ends, q.slots = ends, cap
    return 0


cdef int _push(Lines *q, const char *line, Py_ssize_t n) except -1 nogil:
    if _reserve(q, n, 1) < 0:
        with gil:
            raise MemoryError()
    memcpy(q.buf + q.size, line, n)
    q.size += n
    q.ends[q.count] = q.size
    q.count += 1
    return 0


cdef void _release(Lines *q) noexcept nogil:
    free(q.buf)
    free(q.ends)
    memset(q, 0, sizeof(Lines))


cdef inline void _pause(double seconds) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = <time_t>seconds
    ts.tv_nsec = <long>((seconds - ts.tv_sec) * 1e9)
    nanosleep(&ts, NULL)


# What Queue.drain returned for: the deadline passed; the log has something for Python to do
# (waiters, flushers, stopping: see Queue.attend); lines arrived while the writer waited; the
# next line does not fit the room left (rotate first); a write failed.
cdef enum:
    D_DEADLINE, D_ATTEND, D_WOKE, D_ROOM, D_ERROR
DRAIN_DEADLINE, DRAIN_ATTEND, DRAIN_WOKE, DRAIN_ROOM, DRAIN_ERROR = (
    D_DEADLINE, D_ATTEND, D_WOKE, D_ROOM, D_ERROR)
cdef enum:
    BATCH = 256  # lines: a batch this large is written without lingering
    KEEP_BYTES = 1 << 20  # a written buffer larger than this is freed, not kept for reuse
    WRITEBACK_BYTES = 1 << 20  # written octets after which their writeback is started
    GZIP_WINDOW = 15 + 16  # zlib's windowBits: a 32 KiB window, a gzip wrapper (RFC 1952)
    DEFLATE_STEP = 1 << 30  # input octets handed to deflate at once (its counts are 32-bit)
    QUIET_BATCH = 1 << 16  # octets: a smaller batch is deflated at the quiet level


cdef class Queue:
    """The queue of sealed lines the writer thread drains (:meth:`drain`) without the GIL, the
    event loop offering them (:meth:`offer`). ``outstanding`` (accepted, not yet written,
    bounded by ``limit``), ``accepted``, ``written``, ``written_bytes`` and ``batches`` count
    it; ``waiters`` is the log's deque of appends waiting for room."""

    def __cinit__(self):
        cdef pthread_condattr_t attr
        memset(&self.pending, 0, sizeof(Lines))
        memset(&self.taken, 0, sizeof(Lines))
        memset(&self.out, 0, sizeof(Lines))
        memset(&self.zs, 0, sizeof(z_stream))
        pthread_mutex_init(&self.mu, NULL)
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.cv, &attr)
        pthread_condattr_destroy(&attr)

    def __init__(self, waiters, Py_ssize_t limit):
        self.waiters = waiters
        self.limit = limit
        self.healthy = True

    def __dealloc__(self):
        _release(&self.pending)
        _release(&self.taken)
        _release(&self.out)
        if self.zipped:
            deflateEnd(&self.zs)
        pthread_cond_destroy(&self.cv)
        pthread_mutex_destroy(&self.mu)

    @property
    def lines(self):
        """The lines accepted and not yet written, oldest first (a copy)."""
        cdef Py_ssize_t i, start
        out = []
        pthread_mutex_lock(&self.mu)
        try:
            start = self.taken.ends[self.taken_done - 1] if self.taken_done else 0
            for i in range(self.taken_done, self.taken.count):
                out.append(self.taken.buf[start:self.taken.ends[i]])
                start = self.taken.ends[i]
            start = 0
            for i in range(self.pending.count):
                out.append(self.pending.buf[start:self.pending.ends[i]])
                start = self.pending.ends[i]
        finally:
            pthread_mutex_unlock(&self.mu)
        return out

    def compress(self, int quiet_level, int busy_level):
        """Write the batches gzip-compressed (before the writer starts): a batch under 64 KiB
        at zlib level ``quiet_level``, a larger one (a busy log) at ``busy_level`` (1-9)."""
        if self.zipped:
            raise RuntimeError("the queue compresses already")
        if deflateInit2(&self.zs, busy_level, Z_DEFLATED, GZIP_WINDOW, 8,
                        Z_DEFAULT_STRATEGY) != Z_OK:
            raise MemoryError("zlib: cannot start a gzip stream")
        self.quiet_level, self.busy_level, self.level = quiet_level, busy_level, busy_level
        self.zipped = True

    def finish(self, int fd, write=None):
        """Close the file's gzip member (its last block and trailer, RFC 1952 §2.2; nothing
        when no batch was written since the last) once every batch is written, before the file
        is rotated or closed; the next batch opens a new member. Returns the octets written;
        raises OSError when the write fails (the next call writes the rest)."""
        cdef long long before = self.written_bytes
        cdef int value = 0
        if not self.zipped or not (self.member or self.out.size):
            return 0
        if self.out.size == 0:
            value = self._deflate(Z_FINISH)
        if value == 0:
            value = self._write_native(fd) if write is None else self._write_python(fd, write)
        if value:
            raise OSError(value, os.strerror(value))
        return self.written_bytes - before

    cpdef bint has_room(self):
        """A record may be queued without waiting: none waits and the queue is not full."""
        return self.outstanding < self.limit and not self.waiters

    cpdef void offer(self, bytes line) except *:
        """Queue a sealed line (room checked by the caller) and wake an idle writer."""
        pthread_mutex_lock(&self.mu)
        try:
            _push(&self.pending, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line))
            self.outstanding += 1
            self.accepted += 1
            if self.idle:
                pthread_cond_signal(&self.cv)
        finally:
            pthread_mutex_unlock(&self.mu)

    def attend(self, bint wanted):
        """While ``wanted``, the writer comes back to Python after every batch, and at once
        when idle: the log has appends waiting for room, flushes or a stop to see to."""
        pthread_mutex_lock(&self.mu)
        self.attending = wanted
        if wanted and self.idle:
            pthread_cond_signal(&self.cv)
        pthread_mutex_unlock(&self.mu)

    def drain(self, int fd, long long room, bint empty, double linger, double wait_until,
              double write_until, double age_at=INFINITY, long long planned=-1, write=None):
        """Write queued lines to ``fd`` in batches, on the writer thread, until there is
        something for Python to do; returns ``(why, value, octets written)``, ``why`` one of
        the DRAIN_* codes. A batch is what is queued once the writer has lingered ``linger``
        seconds for more (unless ``BATCH`` lines are there), cut to the lines that fit
        ``room`` octets (all when negative; none once the real time, as time.time, has
        reached ``age_at``; the first always when ``empty``): a line that does not fit returns
        DRAIN_ROOM with its length, to rotate first. Idle, the writer waits for lines until
        ``wait_until`` (CLOCK_MONOTONIC seconds, as time.monotonic); after a batch it returns
        once ``write_until`` has passed. With ``planned`` (the count of lines ``accepted``
        when the caller decided ``room``, for a clock of its own) lines accepted since return
        DRAIN_WOKE first. A failed write returns DRAIN_ERROR with the errno; what was not
        written stays first in line. Without ``write`` the system call is made with the GIL
        released; with it (``write(fd, data) -> octets``, as os.write) that is called."""
        cdef long long before = self.written_bytes
        cdef int why, value = 0
        while True:
            if self.taken_at == self.taken.size:
                with nogil:
                    why = self._take(room, empty, linger, wait_until, age_at, planned, &value)
                if why >= 0:
                    return why, value, self.written_bytes - before
            if write is None:
                with nogil:
                    value = self._write_native(fd)
            else:
                value = self._write_python(fd, write)
            if value:
                return D_ERROR, value, self.written_bytes - before
            self.healthy = True
            if room >= 0:
                room = max(0, room - (self.written_bytes - before))
            empty = empty and self.written_bytes == before
            if self.attending or monotonic() >= write_until:
                return (D_ATTEND if self.attending else D_DEADLINE), 0, \
                    self.written_bytes - before

    cdef int _take(self, long long room, bint empty, double linger, double wait_until,
                   double age_at, long long planned, int *value) except -2 nogil:
        """Hand the writer its next batch (-1), or say why not (a D_* code)."""
        cdef double now
        cdef timespec until
        cdef Py_ssize_t k, i, cut
        cdef Lines swap
        pthread_mutex_lock(&self.mu)
        while self.pending.count == 0:
            if self.attending:
                pthread_mutex_unlock(&self.mu)
                return D_ATTEND
            now = monotonic()
            if now >= wait_until:
                pthread_mutex_unlock(&self.mu)
                return D_DEADLINE
            now = min(wait_until, now + 3600.0)
            until.tv_sec = <time_t>now
            until.tv_nsec = <long>((now - until.tv_sec) * 1e9)
            self.idle = True
            pthread_cond_timedwait(&self.cv, &self.mu, &until)
            self.idle = False
        if planned >= 0 and self.accepted != planned:
            pthread_mutex_unlock(&self.mu)
            return D_WOKE
        if self.pending.count < BATCH and not self.attending and linger > 0 and planned < 0:
            pthread_mutex_unlock(&self.mu)
            _pause(linger)
            pthread_mutex_lock(&self.mu)
        k = self.pending.count
        if realtime() >= age_at:
            room = 0
        if room >= 0:
            k = 0
            while k < self.pending.count and self.pending.ends[k] <= room:
                k += 1
            if k == 0 and not empty:
                value[0] = <int>min(self.pending.ends[0], 0x7FFFFFFF)
                pthread_mutex_unlock(&self.mu)
                return D_ROOM
            k = max(k, 1)
        if self.taken.cap > KEEP_BYTES:
            _release(&self.taken)
        if k == self.pending.count:
            swap = self.taken
            self.taken = self.pending
            self.pending = swap
            self.pending.size = self.pending.count = 0
        else:  # a batch cut short by the room left: the rest stays pending
            self.taken.size = self.taken.count = 0
            cut = self.pending.ends[k - 1]
            if _reserve(&self.taken, cut, k) < 0:
                pthread_mutex_unlock(&self.mu)
                with gil:
                    raise MemoryError()
            memcpy(self.taken.buf, self.pending.buf, cut)
            memcpy(self.taken.ends, self.pending.ends, k * sizeof(Py_ssize_t))
            self.taken.size, self.taken.count = cut, k
            memmove(self.pending.buf, self.pending.buf + cut, self.pending.size - cut)
            for i in range(k, self.pending.count):
                self.pending.ends[i - k] = self.pending.ends[i] - cut
            self.pending.size -= cut
            self.pending.count -= k
        self.taken_at = self.taken_done = 0
        self.batches += 1
        pthread_mutex_unlock(&self.mu)
        return -1

    cdef int _write_native(self, int fd) noexcept nogil:
        """Write the rest of the batch (compressed first, when zipped); 0, or the errno of a
        failed write."""
        cdef ssize_t n
        cdef pollfd wait
        cdef int failed = 0
        if self.zipped and self.out.size == 0 and self.taken_at < self.taken.size:
            failed = self._deflate(Z_SYNC_FLUSH)
        while failed == 0:
            if self.zipped:
                if self.out_at == self.out.size:
                    break
                n = write(fd, self.out.buf + self.out_at, self.out.size - self.out_at)
            else:
                if self.taken_at == self.taken.size:
                    break
                n = write(fd, self.taken.buf + self.taken_at, self.taken.size - self.taken_at)
            if n >= 0:
                self._wrote(n)
                self.unstarted += n
                continue
            if errno == EINTR:
                continue
            if errno == EAGAIN:  # a non-blocking standard output: wait until it drains
                wait.fd, wait.events = fd, POLLOUT
                poll(&wait, 1, 1000)
                continue
            failed = errno
        if failed == 0 and self.unstarted >= WRITEBACK_BYTES:
            # Start writing the last megabyte to disk now (asynchronously; a pipe's ESPIPE
            # is of no matter): the fsync then finds little left, and the device gets an
            # even stream of large writes: not a second's worth of pages at once, nor a
            # request per batch (4x the requests at 40k records/s).
            sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
            self.unstarted = 0
        return failed

    cdef int _write_python(self, int fd, write) except? -1:
        """:meth:`_write_native` through ``write``, with the GIL."""
        cdef int failed = 0
        if self.zipped and self.out.size == 0 and self.taken_at < self.taken.size:
            failed = self._deflate(Z_SYNC_FLUSH)
            if failed:
                return failed
        while True:
            if self.zipped:
                if self.out_at == self.out.size:
                    return 0
                view = PyMemoryView_FromMemory(self.out.buf + self.out_at,
                                               self.out.size - self.out_at, PyBUF_READ)
            else:
                if self.taken_at == self.taken.size:
                    return 0
                view = PyMemoryView_FromMemory(self.taken.buf + self.taken_at,
                                               self.taken.size - self.taken_at, PyBUF_READ)
            try:
                n = write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [], 1.0)
                continue
            except OSError as exc:
                return exc.errno or EIO
            self._wrote(n)

    cdef int _deflate(self, int flush) noexcept nogil:
        """Compress the rest of the batch into ``out`` and end it with a sync flush (an empty
        stored block, RFC 1951 §3.2.4: the file decompresses up to here), or with
        ``Z_FINISH`` (no input) close the member (RFC 1952 §2.2) and reset the stream for the
        next; 0, or an errno."""
        cdef int rc, now
        cdef Py_ssize_t rest = 0 if flush == Z_FINISH else self.taken.size - self.taken_at
        cdef Py_ssize_t step
        cdef int level = self.quiet_level if rest < QUIET_BATCH else self.busy_level
        if self.out.cap > KEEP_BYTES:
            _release(&self.out)
        self.out.size = self.out_at = 0
        if level != self.level and flush == Z_SYNC_FLUSH:
            # Between batches: the last one ended with a sync flush, nothing is pending, so
            # the new level takes effect without output (zlib's deflateParams).
            if _reserve(&self.out, 64, 0) < 0:
                return ENOMEM
            self.zs.next_out = <unsigned char *>self.out.buf
            self.zs.avail_out = <unsigned int>self.out.cap
            self.zs.avail_in = 0
            if deflateParams(&self.zs, level, Z_DEFAULT_STRATEGY) != Z_OK:
                return EIO
            self.out.size = self.out.cap - self.zs.avail_out
            self.level = level
        self.zs.next_in = <const unsigned char *>self.taken.buf + self.taken_at
        while True:
            step = min(rest, DEFLATE_STEP)
            rest -= step
            self.zs.avail_in = <unsigned int>step
            if _reserve(&self.out, <Py_ssize_t>deflateBound(&self.zs, step) + 64, 0) < 0:
                return ENOMEM
            self.zs.next_out = <unsigned char *>self.out.buf + self.out.size
            self.zs.avail_out = <unsigned int>min(self.out.cap - self.out.size, DEFLATE_STEP)
            step = self.zs.avail_out
            now = flush if rest == 0 else 0  # Z_NO_FLUSH until the last of the input
            rc = deflate(&self.zs, now)
            self.out.size += step - self.zs.avail_out
            rest += self.zs.avail_in
            if rc == Z_STREAM_END:
                deflateReset(&self.zs)
                self.member = False
                return 0
            if rc != Z_OK and rc != Z_BUF_ERROR:
                return EIO
            if now == Z_SYNC_FLUSH and rest == 0 and self.zs.avail_out > 0:
                self.member = True
                return 0

    cdef void _wrote(self, Py_ssize_t n) noexcept nogil:
        """``n`` more octets are written: of the batch, or of its compressed form (whose
        lines are all done with its last octet); count the lines completed."""
        cdef Py_ssize_t done = 0, raw = n
        if self.zipped:
            self.out_at += n
            raw = 0
            if self.out_at == self.out.size:
                raw = self.taken.size - self.taken_at
                self.out.size = self.out_at = 0
        self.taken_at += raw
        while self.taken_done < self.taken.count and \
                self.taken.ends[self.taken_done] <= self.taken_at:
            self.taken_done += 1
            done += 1
        pthread_mutex_lock(&self.mu)
        self.outstanding -= done
        self.written += done
        self.written_bytes += n
        self.raw_bytes += raw
        pthread_mutex_unlock(&self.mu)
