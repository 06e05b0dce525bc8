# cython: language_level=3
"""Declarations of :class:`Admission` (``admission.pyx``): the limits on client queries
waiting for resolutions (issue #14 §5), for the compiled listener (resolver.frontend._fastpath),
which sheds a flood's excess before it reaches Python."""

cdef class Admission:
    cdef readonly int total, per_client, answers_per_second, misses_per_second, in_progress
    cdef readonly bint drop
    cdef readonly dict _clients
    cdef dict _answered  # over-limit queries let through this second, per client
    cdef long _second
    cdef dict _misses  # misses admitted this second (_miss_second), per client
    cdef long _miss_second, _logged
    cdef public dict shed  # queries dropped by the listener, per limit, until metrics take them

    cpdef object admit(self, str client)
    cpdef void release(self, str client)
    cpdef object over(self, str client, int pending=*, int pending_client=*)
    cdef bint sheds(self, str client, int pending, int pending_client, long second)
    cdef int _misses_this_second(self, str client)
    cdef void _log_over(self, str client)
