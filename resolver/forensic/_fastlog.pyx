# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled end of the forensic log (issues #4 and #5): the hash chain and the queue of sealed
lines, and the cache-hit path's record filled and sealed in C.

Each record carries ``seq``, ``prev`` (the previous record's hash) and ``hash``: the hex SHA-256,
or HMAC-SHA-256 under a key (RFC 2104), of the record's canonical encoding without ``hash``.
A cache hit's record differs from the one logged when its answer was resolved only in a few
per-query fields (``HOLES``), so forensic.split_template encodes the rest once per cached answer
(a :class:`HitTemplate`) and :meth:`Chain.append_hit` writes the line in C: the same bytes
forensic.seal() makes of the record as a dict (property-tested), without a Python frame.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.stdio cimport snprintf
from libc.errno cimport EAGAIN, EINTR, EIO, errno
from libc.stdlib cimport free, realloc
from libc.stdint cimport uint32_t
from libc.math cimport INFINITY
from libc.string cimport memcpy, memmove, memset

import hashlib
import select
import zlib

import orjson

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct tm:
        pass
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    tm *gmtime_r(const time_t *timer, tm *result)
    size_t strftime(char *s, size_t maxsize, const char *fmt, const tm *t)
    int clock_gettime(int clk_id, timespec *tp)
    int nanosleep(const timespec *req, timespec *rem)
    enum: CLOCK_REALTIME, CLOCK_MONOTONIC

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
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
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    enum: PyBUF_READ

GENESIS = "0" * 64  # the prev of a chain's first record
MAC_SHA256 = "sha256"
MAC_HMAC = "hmac-sha256"

# The per-query fields of a cache hit's record, then the chain's; a template's slots name them.
HOLES = ("client", "duration_ms", "flags", "id", "listener", "time", "transport")
SLOTS = HOLES + ("mac", "prev", "seq", "hash")
cdef enum:
    S_CLIENT, S_DURATION, S_FLAGS, S_ID, S_LISTENER, S_TIME, S_TRANSPORT, S_MAC, S_PREV, S_SEQ
    S_HASH
    MAX_SLOTS = 16
    HEX = 64  # a SHA-256 in hex
    HASH_PAIR = 9 + HEX + 1  # ,"hash":"<hex>"


cdef class HitTemplate:
    """A cached answer's record as text around its slots (``texts[i]``, slot ``slots[i]``,
    ..., ``texts[-1]``): the answer's own fields encoded once; ``hash`` marks where the line
    carries the hash and the hashed body nothing. ``flags`` is the query flags' JSON with RD
    clear and set (the only query flag a hit may differ in). With a :class:`Codebook` the
    text is kept compressed while the template is not in use."""

    cdef bytes text  # None while packed
    cdef bytes packed
    cdef Codebook codebook
    cdef int n
    cdef unsigned char kinds[MAX_SLOTS]
    cdef uint32_t ends[MAX_SLOTS + 1]
    cdef readonly tuple flags

    def __init__(self, texts, slots, flags, Codebook codebook=None):
        cdef Py_ssize_t at = 0
        if len(texts) != len(slots) + 1 or len(slots) > MAX_SLOTS:
            raise ValueError("a template has one text more than slots, and at most 16 slots")
        if list(slots).count("hash") != 1 or any(s not in SLOTS for s in slots):
            raise ValueError(f"template slots must be among {SLOTS}, with one 'hash'")
        self.n = len(slots)
        for i, slot in enumerate(slots):
            self.kinds[i] = SLOTS.index(slot)
        for i, text in enumerate(texts):
            at += len(<bytes?>text)
            if at > 0xFFFFFFFF:
                raise ValueError("a template's text is at most 4 GiB")
            self.ends[i] = at
        self.text = b"".join(texts)
        if type(flags) is tuple and len(flags) == 2 and type(flags[0]) is bytes \
                and type(flags[1]) is bytes:
            self.flags = flags  # the caller's pair, which many templates share
        else:
            self.flags = (bytes(flags[0]), bytes(flags[1]))
        self.codebook = codebook
        if codebook is not None:
            self.packed = codebook.pack(self.text)
            if self.packed is not None:
                self.text = None

    cdef bytes _text(self):
        """The text, unpacked (and held among the codebook's templates in use) if packed."""
        if self.text is None:
            self.text = self.codebook.unpack(self.packed)
            self.codebook.hold(self)
        return self.text

    def __sizeof__(self):
        return object.__sizeof__(self) + len(self.packed if self.text is None else self.text)


@cython.final
cdef class Codebook:
    """Compression for the texts of hit templates (issue #5, memory): zlib (RFC 1950, 1951)
    with a preset dictionary (RFC 1950 §2.2, FDICT) made of the first templates' texts. Later
    records share most of their text with those (the keys, the policy, the zones' proofs), so
    a template keeps about a seventh of its size. The ``hot`` templates used last keep their
    text unpacked; one that drops out of them is packed again (its packed text was kept)."""

    cdef readonly bytes zdict  # None while learning
    cdef list samples
    cdef Py_ssize_t learned, want
    cdef list ring
    cdef Py_ssize_t at
    cdef object _compressobj, _decompressobj

    def __init__(self, Py_ssize_t learn=16384, Py_ssize_t hot=4096):
        self.zdict = None
        self.samples = []
        self.learned = 0
        self.want = learn
        self.ring = [None] * max(1, hot)
        self.at = 0
        self._compressobj = zlib.compressobj
        self._decompressobj = zlib.decompressobj

    cdef bytes pack(self, bytes text):
        """``text`` compressed, or None while the dictionary is still being learned."""
        if self.zdict is None:
            self.samples.append(text)
            self.learned += PyBytes_GET_SIZE(text)
            if self.learned >= self.want:
                learned = b"".join(self.samples)
                self.zdict = learned[max(0, len(learned) - 32768):]  # RFC 1951: 32 KiB window
                self.samples = None
            return None
        packer = self._compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, self.zdict)
        return packer.compress(text) + packer.flush()

    cdef bytes unpack(self, bytes packed):
        unpacker = self._decompressobj(15, self.zdict)
        return unpacker.decompress(packed) + unpacker.flush()

    cdef void hold(self, HitTemplate template):
        """``template`` is in use: keep its text; the one it replaces among the hot is packed."""
        cdef HitTemplate old = self.ring[self.at]
        if old is not None and old is not template and old.packed is not None:
            old.text = None
        self.ring[self.at] = template
        self.at = (self.at + 1) % len(self.ring)


@cython.final
cdef class Digest:
    """A record's hash: hex SHA-256 of the body, or HMAC-SHA-256 under ``key`` (RFC 2104), the
    padded-key states of RFC 2104 §2 hashed once and copied per record."""

    cdef readonly object key
    cdef readonly bytes mac_json  # the record's ``mac`` field, as JSON text
    cdef object _inner, _outer, _sha256

    def __init__(self, key=None):
        self.key = key
        self._sha256 = hashlib.sha256
        self.mac_json = b'"%s"' % (MAC_SHA256 if key is None else MAC_HMAC).encode()
        if key is None:
            self._inner = self._outer = None
            return
        block = (hashlib.sha256(key).digest() if len(key) > 64 else bytes(key)).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, body):
        return self.hex(body)

    cpdef str hex(self, body):
        """The hex hash of ``body`` (bytes-like)."""
        if self._inner is None:
            return self._sha256(body).hexdigest()
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


cdef struct Lines:  # sealed lines back to back (size of cap octets) and where each ends
    char *buf
    Py_ssize_t size, cap
    Py_ssize_t *ends
    Py_ssize_t count, slots


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


cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline void _pause(double seconds) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = <time_t>seconds
    ts.tv_nsec = <long>((seconds - ts.tv_sec) * 1e9)
    nanosleep(&ts, NULL)


# What Chain.drain returned for: the deadline passed; the log has something for Python to do
# (waiters, flushers, stopping: see Chain.attend); lines arrived while the writer waited; the
# next line does not fit the room left (rotate first); a write failed.
cdef enum:
    D_DEADLINE, D_ATTEND, D_WOKE, D_ROOM, D_ERROR
DRAIN_DEADLINE, DRAIN_ATTEND, DRAIN_WOKE, DRAIN_ROOM, DRAIN_ERROR = (
    D_DEADLINE, D_ATTEND, D_WOKE, D_ROOM, D_ERROR)
cdef enum:
    BATCH = 256  # lines: a batch this large is written without lingering
    KEEP_BYTES = 1 << 20  # a written buffer larger than this is freed, not kept for reuse
    WRITEBACK_BYTES = 1 << 20  # written octets after which their writeback is started


@cython.final
cdef class Chain:
    """The log's end: the next ``seq``, ``prev`` and the digest (the event loop's alone), and
    the queue of sealed lines the writer thread drains (:meth:`drain`) without the GIL. The
    event loop appends (:meth:`offer`) under a mutex of the queue's own, held only to copy a
    line in or hand a batch over, so neither thread waits on the other, nor on the GIL, while
    the log keeps up. ``outstanding`` (accepted, not yet written, bounded by ``limit``),
    ``accepted``, ``written``, ``written_bytes`` and ``batches`` count the queue; ``waiters``
    is the log's deque of appends waiting for room."""

    cdef readonly long long seq
    cdef readonly str prev
    cdef readonly Digest digest
    cdef readonly long long outstanding, accepted, written, written_bytes, batches
    cdef public bint open  # records may be appended (the log is started and not closed)
    cdef public bint healthy  # the writer's last write succeeded
    cdef Py_ssize_t limit
    cdef object waiters
    cdef char *buf  # where a hit's record is put together
    cdef Py_ssize_t cap
    cdef pthread_mutex_t mu
    cdef pthread_cond_t cv
    cdef Lines pending  # offered, not yet taken by the writer (under mu)
    cdef Lines taken  # the writer's batch (the writer's alone)
    cdef Py_ssize_t taken_at, taken_done  # octets of it written, and lines
    cdef Py_ssize_t unstarted  # octets written since writeback was last started
    cdef bint idle  # the writer waits on cv (under mu)
    cdef bint attending  # the writer returns to Python after each batch (under mu)

    def __cinit__(self):
        cdef pthread_condattr_t attr
        self.buf = NULL
        self.cap = 0
        memset(&self.pending, 0, sizeof(Lines))
        memset(&self.taken, 0, sizeof(Lines))
        pthread_mutex_init(&self.mu, NULL)
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.cv, &attr)
        pthread_condattr_destroy(&attr)

    def __init__(self, waiters, Py_ssize_t limit, key=None):
        self.waiters = waiters
        self.limit = limit
        self.seq, self.prev = 0, GENESIS
        self.digest = Digest(key)
        self.healthy = True

    def __dealloc__(self):
        free(self.buf)
        _release(&self.pending)
        _release(&self.taken)
        pthread_cond_destroy(&self.cv)
        pthread_mutex_destroy(&self.mu)

    def use_key(self, key):
        """Hash from now on under ``key`` (None: plain SHA-256)."""
        self.digest = Digest(key)

    def restart(self, long long seq, str prev):
        """Continue a chain whose last record had ``seq - 1`` and hash ``prev``."""
        self.seq, self.prev = seq, prev

    def advance(self, str digest):
        """The record at ``seq`` was sealed with hash ``digest``."""
        self.seq += 1
        self.prev = digest

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
            if self.attending or _monotonic() >= write_until:
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
            now = _monotonic()
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
        if _now() >= age_at:
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
        """Write the rest of the batch; 0, or the errno of a failed write."""
        cdef ssize_t n
        cdef pollfd wait
        cdef int failed = 0
        while self.taken_at < self.taken.size:
            n = write(fd, self.taken.buf + self.taken_at, self.taken.size - self.taken_at)
            if n >= 0:
                self._wrote(n)
                continue
            if errno == EINTR:
                continue
            if errno == EAGAIN:  # a non-blocking standard output: wait until it drains
                wait.fd, wait.events = fd, POLLOUT
                poll(&wait, 1, 1000)
                continue
            failed = errno
            break
        if failed == 0:
            self.unstarted += self.taken.size
            if self.unstarted >= WRITEBACK_BYTES:
                # Start writing the last megabyte to disk now (asynchronously; a pipe's ESPIPE
                # is of no matter): the fsync then finds little left, and the device gets an
                # even stream of large writes: not a second's worth of pages at once, nor a
                # request per batch (4x the requests at 40k records/s).
                sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
                self.unstarted = 0
        return failed

    cdef int _write_python(self, int fd, write) except? -1:
        """:meth:`_write_native` through ``write``, with the GIL."""
        while self.taken_at < self.taken.size:
            try:
                n = write(fd, PyMemoryView_FromMemory(self.taken.buf + self.taken_at,
                                                      self.taken.size - self.taken_at,
                                                      PyBUF_READ))
            except BlockingIOError:
                select.select([], [fd], [], 1.0)
                continue
            except OSError as exc:
                return exc.errno or EIO
            self._wrote(n)
        return 0

    cdef void _wrote(self, Py_ssize_t n) noexcept nogil:
        """``n`` more octets of the batch are written: count the lines completed."""
        cdef Py_ssize_t done = 0
        self.taken_at += n
        while self.taken_done < self.taken.count and \
                self.taken.ends[self.taken_done] <= self.taken_at:
            self.taken_done += 1
            done += 1
        pthread_mutex_lock(&self.mu)
        self.outstanding -= done
        self.written += done
        self.written_bytes += n
        pthread_mutex_unlock(&self.mu)

    cpdef bint append_hit(self, HitTemplate template, tuple client, bytes query,
                          bytes listener, double started, bint tcp):
        """Seal and queue a cache hit's record: ``client`` (address, port), the ``query``
        message (its ID and RD bit), the ``listener``'s JSON text, the time the hit began and
        the transport; False, with nothing sealed, when the queue has no room or the log is
        not open or cannot write (the full path then waits or refuses)."""
        if not (self.open and self.healthy and self.has_room()):
            return False
        self.offer(self._seal_hit(template, client, query, listener, started, tcp))
        return True

    cdef bytes _seal_hit(self, HitTemplate t, tuple client, bytes query, bytes listener,
                         double started, bint tcp):
        cdef Py_ssize_t alen = 0, at = 0, start = 0, hash_at = -1, i, need
        cdef int kind
        cdef const char *address = PyUnicode_AsUTF8AndSize(<str?>client[0], &alen)
        cdef long port = client[1]
        cdef const unsigned char *q = <const unsigned char *>PyBytes_AS_STRING(query)
        cdef bytes flags = t.flags[(q[2] & 1) if PyBytes_GET_SIZE(query) > 2 else 0]
        cdef bytes escaped = None
        cdef bytes raw = t._text()
        cdef const char *text = PyBytes_AS_STRING(raw)
        cdef char *o
        cdef double now = _now()
        cdef str digest
        cdef bytes line
        cdef char *out
        if not _plain(address, alen):
            escaped = orjson.dumps(client[0])
        need = (PyBytes_GET_SIZE(raw) + alen * 6 + 64 + PyBytes_GET_SIZE(flags)
                + PyBytes_GET_SIZE(listener) + 220)
        if need > self.cap:
            o = <char *>realloc(self.buf, need)
            if o == NULL:
                raise MemoryError()
            self.buf, self.cap = o, need
        o = self.buf
        for i in range(t.n + 1):
            memcpy(o + at, text + start, t.ends[i] - start)
            at += t.ends[i] - start
            start = t.ends[i]
            if i == t.n:
                break
            kind = t.kinds[i]
            if kind == S_CLIENT:
                at += _put(o + at, b'{"address":', 11)
                if escaped is None:
                    o[at] = b'"'
                    at += 1 + _put(o + at + 1, address, alen)
                    o[at] = b'"'
                    at += 1
                else:
                    at += _put(o + at, PyBytes_AS_STRING(escaped), PyBytes_GET_SIZE(escaped))
                at += _put(o + at, b',"port":', 8)
                at += _digits(o + at, port)
                o[at] = b"}"
                at += 1
            elif kind == S_DURATION:
                at += _millis(o + at, (now - started) * 1000)
            elif kind == S_FLAGS:
                at += _put(o + at, PyBytes_AS_STRING(flags), PyBytes_GET_SIZE(flags))
            elif kind == S_ID:
                at += _digits(o + at, (q[0] << 8 | q[1]) if PyBytes_GET_SIZE(query) > 1 else 0)
            elif kind == S_LISTENER:
                at += _put(o + at, PyBytes_AS_STRING(listener), PyBytes_GET_SIZE(listener))
            elif kind == S_TIME:
                o[at] = b'"'
                at += 1 + _rfc3339(o + at + 1, started)
                o[at] = b'"'
                at += 1
            elif kind == S_TRANSPORT:
                at += _put(o + at, b'"tcp"' if tcp else b'"udp"', 5)
            elif kind == S_MAC:
                at += _put(o + at, PyBytes_AS_STRING(self.digest.mac_json),
                           PyBytes_GET_SIZE(self.digest.mac_json))
            elif kind == S_PREV:
                o[at] = b'"'
                at += 1 + _put(o + at + 1, PyUnicode_AsUTF8AndSize(self.prev, &alen), alen)
                o[at] = b'"'
                at += 1
            elif kind == S_SEQ:
                at += _digits(o + at, self.seq)
            else:
                hash_at = at
        digest = self.digest.hex(PyMemoryView_FromMemory(o, at, PyBUF_READ))
        line = PyBytes_FromStringAndSize(NULL, at + HASH_PAIR + 1)
        out = PyBytes_AS_STRING(line)
        memcpy(out, o, hash_at)
        memcpy(out + hash_at, b',"hash":"', 9)
        memcpy(out + hash_at + 9, PyUnicode_AsUTF8AndSize(digest, &alen), HEX)
        out[hash_at + 9 + HEX] = b'"'
        memcpy(out + hash_at + HASH_PAIR, o + hash_at, at - hash_at)
        out[at + HASH_PAIR] = b"\n"
        self.seq += 1
        self.prev = digest
        return line


cdef long long _second = -1  # the whole second _stamp holds, formatted
cdef char _stamp[24]


cdef Py_ssize_t _rfc3339(char *o, double seconds) noexcept:
    """RFC 3339 UTC with microseconds; the date and time of day formatted once a second."""
    global _second
    cdef long long whole = <long long>seconds
    cdef time_t t = whole
    cdef tm parts
    if whole != _second:
        gmtime_r(&t, &parts)
        strftime(_stamp, sizeof(_stamp), "%Y-%m-%dT%H:%M:%S", &parts)
        _second = whole
    cdef long micro = <long>((seconds - whole) * 1e6)
    cdef int i
    memcpy(o, _stamp, 19)
    o[19] = b"."
    for i in range(25, 19, -1):
        o[i] = 48 + micro % 10  # "0"
        micro //= 10
    o[26] = b"Z"
    return 27


def rfc3339(double seconds):
    """A record's time: ``2026-11-23T18:40:54.074390Z`` (RFC 3339, UTC, microseconds)."""
    cdef char out[40]
    cdef Py_ssize_t n = _rfc3339(out, seconds)
    return out[:n].decode("ascii")


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline Py_ssize_t _put(char *o, const char *s, Py_ssize_t n) noexcept nogil:
    memcpy(o, s, n)
    return n


cdef inline bint _plain(const char *s, Py_ssize_t n) noexcept nogil:
    """Printable ASCII with no quote or backslash: a JSON string as it is (RFC 8259 §7)."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] < 0x20 or s[i] > 0x7E or s[i] == b'"' or s[i] == b"\\":
            return False
    return True


cdef Py_ssize_t _digits(char *o, long long value) noexcept nogil:
    """``value`` in decimal, as JSON writes an integer."""
    cdef char tmp[24]
    cdef int n = 0, i
    cdef unsigned long long v = <unsigned long long>(-value if value < 0 else value)
    while True:
        tmp[n] = 48 + v % 10  # "0"
        n += 1
        v //= 10
        if v == 0:
            break
    if value < 0:
        tmp[n] = b"-"
        n += 1
    for i in range(n):
        o[i] = tmp[n - 1 - i]
    return n


cdef Py_ssize_t _millis(char *o, double ms) noexcept nogil:
    """``ms`` rounded to 3 decimals as Python prints the rounded float (``0.002``, ``1.0``),
    which is how the full path records ``duration_ms``."""
    cdef Py_ssize_t n = snprintf(o, 32, "%.3f", ms)
    while n > 2 and o[n - 1] == b"0" and o[n - 2] != b".":
        n -= 1
    return n
