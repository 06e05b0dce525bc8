# cython: language_level=3
"""Bounded resolution work (issue #14 §5): how many client queries may wait for a resolution
at once, in the whole process and per client address, and what happens to the excess.

Every client query that misses the cache waits for a resolution, alone or joined with an
identical question already in progress (resolver.frontend.resolution.Resolver), and holds its
memory, and a resolution an upstream socket, for up to ``timeouts.query_ms``. A flood of unique names would
otherwise grow that without bound. A query over either limit is not resolved: it is answered
at once with SERVFAIL and EDE 0 naming the limit, or dropped (``limits.over_limit``), so a
stub moves on to its next server instead of waiting (RFC 8914 §4.1, RFC 1035 §7.2).

Answering the excess costs as much Python as any miss, too much for a flood of tens of
thousands of names a second: the listener's socket would back up and healthy clients' cached
answers be lost with the flood. So the UDP listener (resolver.frontend._fastpath.UdpListener) asks
:meth:`Admission.sheds` for each datagram the hit path cannot answer: while its client (or the
process) is over a limit, only ``limits.over_limit_answers_per_second`` of that client's
queries a second go on to be answered SERVFAIL (none with ``over_limit: drop``); the rest are
dropped there, without a reply or a record, and counted (``shed``). Like response rate
limiting's slip (Unbound's ip-ratelimit), a real client over its limit still hears why.

A client answered fast (a failure cached by RFC 9520, a name error) waits for nothing, yet each
of its misses still costs the full path's Python. So misses are limited in rate too, like
Unbound's ``ip-ratelimit``: at most ``limits.max_misses_per_client_per_second`` cache misses of
one client address are resolved in a second (0: no limit); the excess is over a limit like the
others, shed by the listener beyond the allowance."""

import logging

from libc.time cimport time as c_time

PROCESS = "max_resolutions"
CLIENT = "max_resolutions_per_client"
MISSES = "max_misses_per_client_per_second"
MAX_RATED = 10000  # clients whose misses are counted in one second; more pass uncounted
LOG_EVERY = 10  # seconds between process log lines about clients over the miss rate

log = logging.getLogger(__name__)


cdef class Admission:
    """The count of client queries waiting for a resolution, in total and per client. A
    client's entry exists only while it has one waiting, so there are never more entries than
    ``total`` queries; the over-limit queries let through are kept per client for the current
    second only, for at most ``total`` clients."""

    def __init__(self, int total, int per_client, bint drop, int answers_per_second,
                 int misses_per_second=0):
        self.configure(total, per_client, drop, answers_per_second, misses_per_second)
        self.in_progress = 0
        self._clients = {}
        self._answered = {}
        self._second = 0
        self._misses = {}
        self._miss_second = 0
        self._logged = 0
        self.shed = {}

    def configure(self, int total, int per_client, bint drop, int answers_per_second,
                  int misses_per_second=0):
        """New limits (a reload); queries already admitted keep their place. The defaults
        are resolver.config's (``limits``)."""
        self.total, self.per_client, self.drop = total, per_client, drop
        self.answers_per_second = answers_per_second
        self.misses_per_second = misses_per_second

    cpdef object admit(self, str client):
        """Count a query of ``client``: None when admitted (then :meth:`release` it once it is
        answered), else the name of the limit it is over."""
        limit = self.over(client)
        if limit is not None:
            if limit == MISSES:
                self._log_over(client)
            return limit
        if self.misses_per_second and (client in self._misses
                                       or len(self._misses) < MAX_RATED):
            self._misses[client] = self._misses.get(client, 0) + 1
        self.in_progress += 1
        self._clients[client] = self._clients.get(client, 0) + 1
        return None

    cpdef void release(self, str client):
        self.in_progress -= 1
        cdef int held = self._clients[client] - 1
        if held:
            self._clients[client] = held
        else:
            del self._clients[client]

    cpdef object over(self, str client, int pending=0, int pending_client=0):
        """The name of the limit a new query of ``client`` is over, or None; ``pending``
        queries (``pending_client`` of them the client's) are on their way to :meth:`admit`."""
        if self.in_progress + pending >= self.total:
            return PROCESS
        if self._clients.get(client, 0) + pending_client >= self.per_client:
            return CLIENT
        if self.misses_per_second and \
                self._misses_this_second(client) + pending_client >= self.misses_per_second:
            return MISSES
        return None

    cdef int _misses_this_second(self, str client):
        """The misses of ``client`` admitted in the current second (of the clock the listener
        reads, CLOCK_REALTIME); the table starts afresh each second."""
        cdef long second = c_time(NULL)
        if second != self._miss_second:
            self._miss_second = second
            self._misses.clear()
        return self._misses.get(client, 0)

    cdef void _log_over(self, str client):
        """A process log line for a client over the miss rate, at most every LOG_EVERY s."""
        cdef long now = c_time(NULL)
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            log.warning("client %s is over limits.max_misses_per_client_per_second (%d): "
                        "its further misses this second are not resolved (%s)", client,
                        self.misses_per_second,
                        "dropped" if self.drop else "answered SERVFAIL, the rest dropped")

    cdef bint sheds(self, str client, int pending, int pending_client, long second):
        """Whether the listener drops a query of ``client`` that the hit path cannot answer,
        in ``second`` (whole seconds of a clock), ``pending`` queries (``pending_client`` of
        them the client's) handed on but not yet admitted: over a limit, beyond the client's
        ``answers_per_second`` of that second (always, with ``drop``). A drop is counted."""
        limit = self.over(client, pending, pending_client)
        if limit is None:
            return False
        if limit is MISSES:
            self._log_over(client)
        cdef int answered
        if not self.drop:
            if second != self._second:
                self._second = second
                self._answered.clear()
            answered = self._answered.get(client, 0)
            if answered < self.answers_per_second and (answered or
                                                       len(self._answered) < self.total):
                self._answered[client] = answered + 1
                return False
        self.shed[limit] = self.shed.get(limit, 0) + 1
        return True

    def reason(self, limit: str) -> str:
        """The EDE text of a query over ``limit``."""
        if limit == PROCESS:
            return (f"resolver busy: {self.total} queries waiting for resolutions "
                    "(limits.max_resolutions)")
        if limit == MISSES:
            return (f"rate limited: this client sent more than {self.misses_per_second} "
                    "queries to resolve this second (limits.max_misses_per_client_per_second)")
        return (f"resolver busy: this client has {self.per_client} queries waiting for "
                "resolutions (limits.max_resolutions_per_client)")
