# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled cache-hit path of the server (issue #5): a repeated question of a service answered
from the bytes sent before (resolver.resolve._fastcache), its forensic record sealed into the log's
chain (resolver.forensic._fastlog), counted and tapped (:class:`Report`), with no Python frame
between a datagram and its reply; UDP datagrams are read and answered in batches
(:class:`UdpListener`, RFC 1035 §4.2.1; a reply larger than resolver.wire allows the client
is truncated by the cache, RFC 6891 §6.2.5, RFC 2181 §9). Anything it cannot answer exactly
goes to the full path (resolver.frontend.pipeline.Frontend.handle).

Everything here is given what it uses when it is built: the WireCache, the log's chain, the
:class:`Report` and the policy (swapped with :meth:`HitPath.use_policy`), and the callbacks of
its owner (resolver.frontend.listeners) for the datagrams it does not answer. It never reaches
back into the Python frontend.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, strerror

cimport cython

import logging

from resolver.clock cimport realtime, realtime_ns
from resolver.forensic._fastlog cimport Chain
from resolver.frontend.admission cimport Admission
from resolver.resolve._fastcache cimport WireCache
from resolver.sockets cimport (AF_INET, AF_INET6, MSG_DONTWAIT, MSG_TRUNC, iovec, mmsghdr,
                              inet_ntop, ntohl, ntohs, recvmmsg, sendmmsg, sockaddr_in,
                              sockaddr_in6, sockaddr_storage, socklen_t)
from resolver.wire import MAX_MESSAGE

cdef Py_ssize_t _MAX_MESSAGE = MAX_MESSAGE  # a reply over TCP is at most this (resolver.wire)

log = logging.getLogger(__name__)

cdef enum:
    MAX_SCOPES = 4096  # (listener, client address) pairs remembered per policy
    MAX_BOUNDS = 32  # latency histogram buckets
    BATCH = 64  # datagrams per recvmmsg
    FLUSH = 16  # replies per sendmmsg at most
    DGRAM = 4096  # octets read of a datagram
    ROUNDS = 64  # batches per readiness callback: a few ms in C, as much as a flood sends
    # while one event loop iteration does its Python work (bench/flood.py)


cdef class Tally:
    """What the replies to clients count, on both paths (through :class:`Report`), kept here
    for resolver.ops.metrics.HitTally to add to Prometheus in bulk at a scrape: replies per
    tuple of metric children (``counts``), and per transport the cells of a latency histogram
    (``latency``: one per bucket bound, one for +Inf, then the sum of seconds)."""

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


@cython.final
cdef class Report:
    """How a reply to a client is counted and tapped, the same on both paths (the hit path
    here, the full path in resolver.frontend.pipeline): the metric children its answer counts
    in (``counters``: the full path takes them from the record, the hit path keeps them with
    the answer's bytes) and the time it took go into ``tally`` (None: no metrics), and the
    dnstap client pair (``tap``, resolver.ops.dnstap.Dnstap, None: no client messages):
    CLIENT_QUERY stamped when the query arrived, CLIENT_RESPONSE as the reply leaves."""

    cdef readonly Tally tally
    cdef readonly object tap

    def __init__(self, Tally tally=None, tap=None):
        self.tally = tally
        self.tap = tap

    cpdef void received(self, bytes wire, tuple client, tuple listener, str transport,
                        long long t):
        """A client's query, received at ``t`` (nanoseconds since the epoch)."""
        if self.tap is not None:
            self.tap.client_query(wire, client[:2], listener, transport, t)

    cpdef void answered(self, bytes wire, bytes reply, tuple client, tuple listener,
                        str transport, long long t_query, tuple counters, double seconds):
        """The reply to ``wire``, received at ``t_query``, about to leave ``seconds`` after
        the query was taken up: a count for each of ``counters`` (None: none) and the
        latency, then the tap's CLIENT_RESPONSE."""
        if self.tally is not None and counters is not None:
            self.tally.count(counters, transport, seconds)
        if self.tap is not None:
            self.tap.client_response(wire, reply, client[:2], listener, transport, t_query,
                                     realtime_ns())


cdef class HitPath:
    """The hit path of one frontend: its ``wirecache``, its log's ``chain`` (None without a
    log: then no record is written) and its ``report``. ``service_scope(policy, listener,
    address)`` gives the cache scope of a client's service (its name), or None when its
    queries must take the full path (a service with budgets to count); ``listener_json(
    listener)`` the listener's JSON text for the record. Both are remembered: they are the same
    for every query of a client under one policy."""

    cdef WireCache wirecache
    cdef Chain chain
    cdef Report report
    cdef object policy, service_scope, listener_json
    cdef dict _scopes, _listeners

    def __init__(self, WireCache wirecache not None, Chain chain, Report report not None, policy,
                 service_scope, listener_json):
        self.wirecache = wirecache
        self.chain = chain
        self.report = report
        self.service_scope = service_scope
        self.listener_json = listener_json
        self._listeners = {}
        self.use_policy(policy)

    def use_policy(self, policy):
        """Judge clients by ``policy`` (None: no services, one scope) from the next query on,
        forgetting the scopes the previous one gave."""
        self.policy = policy
        self._scopes = {}

    cpdef bytes answer(self, bytes wire, bint tcp, tuple listener, tuple client):
        """The reply to a query answered from the cache, or None for the full path (a miss, a
        service with budgets, a log that cannot take the record now). It raises only before
        the hit's record is sealed: once it is, the reply is returned."""
        scope = self._scope(listener, client[0])
        if scope is None:
            return None
        cdef Chain chain = self.chain
        if chain is not None and not chain.healthy:
            return None
        cdef double now = realtime()
        reply = self.wirecache.answer(wire, scope, now, _MAX_MESSAGE if tcp else 0)
        if reply is None:
            return None
        if chain is not None:
            listener_json = self._listeners.get(listener)
            if listener_json is None:
                listener_json = self._listeners[listener] = self.listener_json(listener)
            if not chain.append_hit(self.wirecache.last_extra, client, wire, listener_json, now,
                                    tcp):
                return None
        # The record is sealed: this reply leaves whatever happens now (issue #14 §4), or the
        # full path would answer, and log, the query a second time.
        cdef long long sent
        try:
            transport = "tcp" if tcp else "udp"
            sent = realtime_ns()
            self.report.received(wire, client, listener, transport, sent)
            self.report.answered(wire, reply, client, listener, transport, sent,
                                 self.wirecache.last_tally, realtime() - now)
        except Exception:
            log.exception("after a cache hit's reply: counting or dnstap failed")
        return reply

    cdef object _scope(self, tuple listener, str address):
        if self.policy is None:
            return ""
        key = (listener, address)
        scope = self._scopes.get(key, False)
        if scope is False:
            if len(self._scopes) >= MAX_SCOPES:
                self._scopes = {}
            scope = self._scopes[key] = self.service_scope(self.policy, listener, address)
        return scope


cdef class UdpListener:
    """A UDP listener's socket, read and answered in batches: up to 64 datagrams per
    ``recvmmsg`` and their hits' replies by 16 per ``sendmmsg``, so the per-datagram system calls
    and Python objects of an event loop's datagram transport are paid once per batch. Hits are
    answered here from the client's own address bytes; every other datagram goes to ``miss``
    (its owner's callback) with the client's address as the socket module gives it, and its
    reply, if any, comes back through :meth:`sendto`, unless ``admission`` sheds it (its client
    or the process is over a limit on resolutions, resolver.frontend.admission): then it is dropped
    here, so a flood of misses costs no Python and the socket keeps being read for the hits.
    Datagrams longer than 4096 octets (no query needs that many) arrive cut (MSG_TRUNC) and go
    to ``miss`` as read, where they fail to parse."""

    cdef readonly object sock
    cdef readonly tuple listener
    cdef HitPath hits
    cdef Admission admission
    cdef object miss, send_failed  # the owner's callbacks: (data, addr), (reason)
    cdef int fd
    cdef mmsghdr *rmsg
    cdef mmsghdr *smsg
    cdef iovec *riov
    cdef iovec *siov
    cdef sockaddr_storage *names
    cdef char *bufs
    cdef int last_family  # the last client address seen, and its text
    cdef unsigned char last_addr[16]
    cdef str last_host

    def __cinit__(self):
        self.rmsg = self.smsg = NULL
        self.riov = self.siov = NULL
        self.names = NULL
        self.bufs = NULL

    def __init__(self, HitPath hits not None, sock, tuple listener, Admission admission not None,
                 miss, send_failed):
        cdef int i
        self.hits = hits
        self.admission = admission
        self.miss = miss
        self.send_failed = send_failed
        self.sock = sock
        self.listener = listener
        self.fd = sock.fileno()
        self.last_family = -1
        self.rmsg = <mmsghdr *>calloc(BATCH, sizeof(mmsghdr))
        self.smsg = <mmsghdr *>calloc(BATCH, sizeof(mmsghdr))
        self.riov = <iovec *>calloc(BATCH, sizeof(iovec))
        self.siov = <iovec *>calloc(BATCH, sizeof(iovec))
        self.names = <sockaddr_storage *>calloc(BATCH, sizeof(sockaddr_storage))
        self.bufs = <char *>malloc(BATCH * DGRAM)
        if not (self.rmsg and self.smsg and self.riov and self.siov and self.names and self.bufs):
            raise MemoryError()
        for i in range(BATCH):
            self.riov[i].iov_base = self.bufs + i * DGRAM
            self.riov[i].iov_len = DGRAM
            self.rmsg[i].msg_hdr.msg_iov = &self.riov[i]
            self.rmsg[i].msg_hdr.msg_iovlen = 1
            self.rmsg[i].msg_hdr.msg_name = &self.names[i]
            self.smsg[i].msg_hdr.msg_iov = &self.siov[i]
            self.smsg[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        free(self.rmsg)
        free(self.smsg)
        free(self.riov)
        free(self.siov)
        free(self.names)
        free(self.bufs)

    def readable(self):
        """The socket has datagrams: answer up to ``ROUNDS`` batches of them, then give the
        event loop back (it calls again while more wait). The misses handed on are counted
        per client (``pending``): their tasks reach resolver.frontend.admission only once this
        returns, and until then they count toward its limits here."""
        cdef int n, i, rounds, nsend, pending = 0
        cdef long second
        cdef dict pending_client = {}
        cdef list keep = []
        for rounds in range(ROUNDS):
            for i in range(BATCH):
                self.rmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            n = recvmmsg(self.fd, self.rmsg, BATCH, MSG_DONTWAIT, NULL)
            if n < 0:
                if errno == EINTR:
                    continue
                if errno != EAGAIN:  # EWOULDBLOCK on Linux
                    log.warning("UDP %s: receiving: %s", self.listener, strerror(errno).decode())
                return
            nsend = 0
            second = <long>realtime()
            for i in range(n):
                data = PyBytes_FromStringAndSize(self.bufs + i * DGRAM, self.rmsg[i].msg_len)
                addr = self._address(&self.names[i])
                if addr is None:  # not IPv4 or IPv6: nobody to answer
                    continue
                reply = None
                if not self.rmsg[i].msg_hdr.msg_flags & MSG_TRUNC:
                    try:
                        reply = self.hits.answer(data, False, self.listener, addr)
                    except Exception:  # the full path answers, and logs, what this cannot
                        log.exception("hit path failed for a query from %s", addr)
                if reply is None:
                    host = addr[0]
                    held = pending_client.get(host, 0)
                    if not self.admission.sheds(host, pending, held, second):
                        pending += 1
                        pending_client[host] = held + 1
                        self.miss(data, addr)
                    continue
                keep.append(reply)
                self.siov[nsend].iov_base = PyBytes_AS_STRING(reply)
                self.siov[nsend].iov_len = PyBytes_GET_SIZE(reply)
                self.smsg[nsend].msg_hdr.msg_name = &self.names[i]
                self.smsg[nsend].msg_hdr.msg_namelen = self.rmsg[i].msg_hdr.msg_namelen
                nsend += 1
                if nsend == FLUSH:  # the first replies of a batch need not wait for its last
                    self._send(nsend)
                    del keep[:]
                    nsend = 0
            self._send(nsend)
            del keep[:]
            if n < BATCH:
                return

    cdef void _send(self, int count):
        """``sendmmsg`` the first ``count`` replies; one the kernel refuses is dropped, as a
        UDP server drops what it cannot send, and counted."""
        cdef int done = 0, sent
        while done < count:
            sent = sendmmsg(self.fd, self.smsg + done, count - done, MSG_DONTWAIT)
            if sent < 0:
                if errno == EINTR:
                    continue
                self.send_failed(strerror(errno).decode())
                sent = 1
            done += sent

    def sendto(self, bytes reply, tuple addr):
        """Send a reply of the full path (dropped, and counted, if the socket cannot take it)."""
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:
            self.send_failed(exc.strerror or str(exc))

    cdef object _address(self, sockaddr_storage *name):
        """The client's address as the socket module gives it: (host, port) for IPv4, (host,
        port, flowinfo, scope_id) for IPv6; the host text of the last client is reused."""
        cdef sockaddr_in *v4 = <sockaddr_in *>name
        cdef sockaddr_in6 *v6 = <sockaddr_in6 *>name
        cdef const void *raw
        cdef int size
        cdef char text[64]
        if name.ss_family == AF_INET:
            raw, size = &v4.sin_addr, 4
        elif name.ss_family == AF_INET6:
            raw, size = &v6.sin6_addr, 16
        else:
            return None
        if name.ss_family != self.last_family or memcmp(raw, self.last_addr, size) != 0:
            if inet_ntop(name.ss_family, raw, text, sizeof(text)) == NULL:
                return None
            self.last_host = text.decode("ascii")
            self.last_family = name.ss_family
            memcpy(self.last_addr, raw, size)
        if name.ss_family == AF_INET:
            return (self.last_host, ntohs(v4.sin_port))
        return (self.last_host, ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)
