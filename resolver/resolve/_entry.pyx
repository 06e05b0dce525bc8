# cython: boundscheck=False, wraparound=False
"""The answer cache's entry (resolver.resolve.cache), compiled for memory (issue #20): its
numbers held as C fields, not as a float and an int object beside a Python object of slots,
and outside the garbage collector's lists (an entry refers to nothing that refers back to it),
so 100,000 entries take about 8 MiB less and a full collection does not walk them."""

cimport cython


@cython.final
@cython.no_gc
cdef class Entry:
    """A stored answer. ``own`` holds its own RRsets packed one after the other, and
    ``shared``, when some are shared, their layout among them held in the cache's table (the
    answer section's ``answers`` first); ``own`` is None while the parsed RRsets are kept hot.
    ``proof`` is the proof held in the table; ``owner`` the question's
    name in the case it was stored with, the owner of the RRsets packed without one, or None
    when that is the key's own (lower case) name. ``expires`` is on the cache's clock; ``ttl``
    the TTL as stored (prefetch refreshes an entry in its last tenth); ``epoch`` the cache's
    epoch when stored (only the current one's are served stale)."""

    cdef public object owner, own, shared, verdict, ede, reason, proof
    cdef public double expires
    cdef public int answers, rcode
    cdef public int ttl, epoch  # a TTL is at most 2**31 - 1 (RFC 2181 §8)

    def __init__(self, owner, own, shared, int answers, int rcode, verdict, ede, reason, proof,
                 double expires, int ttl, int epoch):
        self.owner, self.own, self.shared = owner, own, shared
        self.answers, self.rcode = answers, rcode
        self.verdict, self.ede, self.reason, self.proof = verdict, ede, reason, proof
        self.expires, self.ttl, self.epoch = expires, ttl, epoch
