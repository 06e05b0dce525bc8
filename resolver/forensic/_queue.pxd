# cython: language_level=3
"""Declarations of :class:`Queue` (``_queue.pyx``): the queue of sealed lines, which the
forensic chain (``_fastlog.Chain``) extends."""

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass


cdef extern from "<zlib.h>" nogil:
    ctypedef struct z_stream:  # the members used (the rest are zlib's, zeroed before init)
        const unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out


cdef struct Lines:  # sealed lines back to back (size of cap octets) and where each ends
    char *buf
    Py_ssize_t size, cap
    Py_ssize_t *ends
    Py_ssize_t count, slots


cdef class Queue:
    cdef readonly long long outstanding, accepted, written, written_bytes, batches
    cdef public bint open  # records may be appended (the log is started and not closed)
    cdef public bint healthy  # the writer's last write succeeded
    cdef Py_ssize_t limit
    cdef object waiters
    cdef pthread_mutex_t mu
    cdef pthread_cond_t cv
    cdef Lines pending  # offered, not yet taken by the writer (under mu)
    cdef Lines taken  # the writer's batch (the writer's alone)
    cdef Py_ssize_t taken_at, taken_done  # octets of it written, and lines
    cdef Py_ssize_t unstarted  # octets written since writeback was last started
    cdef bint idle  # the writer waits on cv (under mu)
    cdef bint attending  # the writer returns to Python after each batch (under mu)
    cdef z_stream zs  # the gzip stream the batches are compressed into (when zipped)
    cdef bint zipped  # log.compress: gzip
    cdef bint member  # a gzip member is open: it has output, no trailer yet
    cdef int quiet_level, busy_level, level  # zlib levels: a small batch's, a large one's, now
    cdef readonly long long raw_bytes  # octets of the lines written (before compression)
    cdef Lines out  # the batch compressed (its ``buf`` and ``size`` only), being written
    cdef Py_ssize_t out_at  # octets of it written

    cpdef bint has_room(self)
    cpdef void offer(self, bytes line) except *
    cdef int _take(self, long long room, bint empty, double linger, double wait_until,
                   double age_at, long long planned, int *value) except -2 nogil
    cdef int _write_native(self, int fd) noexcept nogil
    cdef int _write_python(self, int fd, write) except? -1
    cdef int _deflate(self, int flush) noexcept nogil
    cdef void _wrote(self, Py_ssize_t n) noexcept nogil
