# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled cache-hit path of the server (issue #5): a repeated question of a service answered
from the bytes sent before (resolver._fastcache), its forensic record sealed into the log's
chain (resolver._fastlog) and counted (:class:`Tally`), with no Python frame between a datagram
and its reply.
Anything it cannot answer exactly goes to the full path (resolver.server.Frontend.handle).

It reads the frontend's policy, log, metrics and tap at every query, so a reload (a new
policy) or a log that stops writing takes effect at once.
"""

import logging

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    enum: CLOCK_REALTIME

log = logging.getLogger("resolver.server")

cdef enum:
    MAX_SCOPES = 4096  # (listener, client address) pairs remembered per policy
    MAX_BOUNDS = 32  # latency histogram buckets


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class HitPath:
    """The hit path of one frontend. ``service_scope(listener, address)`` gives the cache scope
    of a client's service (its name), or None when its queries must take the full path (a
    service with budgets to count); ``listener_json(listener)`` the listener's JSON text for
    the record. Both are remembered: they are the same for every query of a client."""

    cdef object frontend, service_scope, listener_json
    cdef object _policy  # the policy the remembered scopes come from
    cdef dict _scopes, _listeners

    def __init__(self, frontend, service_scope, listener_json):
        self.frontend = frontend
        self.service_scope = service_scope
        self.listener_json = listener_json
        self._policy = None
        self._scopes = {}
        self._listeners = {}

    cpdef bytes answer(self, bytes wire, bint tcp, tuple listener, tuple client):
        """The reply to a query answered from the cache, or None for the full path (a miss, a
        service with budgets, a log that cannot take the record now)."""
        fe = self.frontend
        scope = self._scope(fe.policy, listener, client[0])
        if scope is None:
            return None
        forensic = fe.forensic
        chain = None
        if forensic is not None:
            chain = forensic.chain
            if not chain.healthy:
                return None
        cdef double now = _now()
        wirecache = fe.wirecache
        reply = wirecache.answer(wire, scope, now, 65535 if tcp else 0)
        if reply is None:
            return None
        hit = wirecache.last_extra
        if chain is not None:
            listener_json = self._listeners.get(listener)
            if listener_json is None:
                listener_json = self._listeners[listener] = self.listener_json(listener)
            if not chain.append_hit(hit[0], client, wire, listener_json, now, tcp):
                return None
        transport = "tcp" if tcp else "udp"
        metrics = fe.metrics
        if metrics is not None:
            metrics.tally.count(hit[1], transport, _now() - now)
        tap = fe.tap
        if tap is not None:
            sent = int(_now() * 1e9)
            tap.client_query(wire, client[:2], listener, transport, sent)
            tap.client_response(wire, reply, client[:2], listener, transport, sent, sent)
        return reply

    cdef object _scope(self, policy, tuple listener, str address):
        if policy is None:
            return ""
        if policy is not self._policy:
            self._policy = policy
            self._scopes = {}
        key = (listener, address)
        scope = self._scopes.get(key, False)
        if scope is False:
            if len(self._scopes) >= MAX_SCOPES:
                self._scopes = {}
            scope = self._scopes[key] = self.service_scope(policy, listener, address)
        return scope


cdef class UdpHits:
    """The datagram side of a UDP listener: hits answered here, the rest handed to ``miss``
    (a subclass's method) with the datagram and the client's address."""

    cdef public object transport
    cdef public tuple listener
    cdef HitPath hits

    def __init__(self, HitPath hits, tuple listener):
        self.hits = hits
        self.listener = listener
        self.transport = None

    def datagram_received(self, bytes data, tuple addr):
        try:
            reply = self.hits.answer(data, False, self.listener, addr)
        except Exception:  # the full path answers, and logs, whatever the hit path cannot
            log.exception("hit path failed for a query from %s", addr)
            reply = None
        if reply is not None:
            self.transport.sendto(reply, addr)
        else:
            self.miss(data, addr)


cdef class Tally:
    """What the hit path counts, kept here for metrics.HitTally to add to Prometheus in bulk:
    hits per tuple of metric children (``counts``), and per transport the cells of a latency
    histogram (``latency``: one per bucket bound, one for +Inf, then the sum of seconds)."""

    cdef public dict counts, latency
    cdef double bounds[MAX_BOUNDS]
    cdef int n

    def __init__(self, bounds):
        if len(bounds) > MAX_BOUNDS or list(bounds) != sorted(bounds):
            raise ValueError(f"at most {MAX_BOUNDS} latency bounds, in ascending order")
        self.n = len(bounds)
        for i, bound in enumerate(bounds):
            self.bounds[i] = bound
        self.counts = {}
        self.latency = {}

    cpdef void count(self, tuple children, str transport, double seconds):
        """One hit: a count for ``children``, and ``seconds`` in the first bucket whose bound
        is at least it (a bound is inclusive, as prometheus-client's ``observe``)."""
        cdef int i = 0
        self.counts[children] = self.counts.get(children, 0) + 1
        cells = self.latency.get(transport)
        if cells is None:
            cells = self.latency[transport] = [0] * (self.n + 1) + [0.0]
        while i < self.n and self.bounds[i] < seconds:
            i += 1
        cells[i] += 1
        cells[self.n + 1] += seconds
