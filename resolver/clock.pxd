# cython: language_level=3
"""The clocks of the compiled modules, as Python's time.time, time.time_ns and time.monotonic
without a call into Python: POSIX clock_gettime (CLOCK_REALTIME, CLOCK_MONOTONIC) through
Cython's ``posix.time``. The hit path (resolver.frontend._fastpath) and the forensic log's
queue and chain (resolver.forensic._queue, _fastlog) read the time this one way."""

from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec


cdef inline double realtime() noexcept nogil:
    """The real time, in seconds."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline long long realtime_ns() noexcept nogil:
    """The real time, in nanoseconds."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


cdef inline double monotonic() noexcept nogil:
    """The monotonic clock, in seconds."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9
