# The compiled cache of responses sent, declared for the hit path (resolver.frontend._fastpath),
# which is given its owner's WireCache and calls it without a Python frame.

cimport cython


@cython.final
cdef class WireCache:
    cdef object _entries  # an _lru.LruDict: the oldest taken in O(1), as OrderedDict does
    cdef readonly Py_ssize_t max_entries
    cdef readonly unsigned long long hits, misses, expired, oversize, evictions
    cdef readonly object last_extra, last_tally  # stored with the entry the last hit came from
    cdef dict _scopes  # scope -> its number, the first 2 octets of its entries' keys
    cdef unsigned long long _stores  # entries stored so far: the age of an entry's position
    cdef object on_expiring  # the owner's prefetch callback (query, scope, seconds left), or None
    cdef double fraction  # of an entry's TTL, the last part in which a hit calls it
    cdef unsigned char *_seen  # the doorkeeper's bits, or NULL: every response is stored
    cdef Py_ssize_t _seen_mask, _seen_count  # bits - 1; questions marked since the last reset
    cdef readonly unsigned long long first_seen  # questions not admitted: their first sight

    cdef bytes _lookup(self, object scope, const unsigned char *key, Py_ssize_t n, bint new)
    cdef void _forget_sights(self) noexcept
    cdef bint _first_sight(self, bytes lookup) except -1
    cpdef bint admits(self, bytes query, object scope) except -1
    cpdef bytes answer(self, bytes query, object scope, double now, Py_ssize_t max_size=*)
    cpdef bint store(self, bytes query, object scope, bytes response, double now, int ttl,
                     object extra=*, object tally=*)
