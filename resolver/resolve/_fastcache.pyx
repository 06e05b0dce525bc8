# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled cache hit path: answer repeated questions from stored response bytes.

A client query is read straight from its wire form (RFC 1035 §4.1, the OPT pseudo-RR of RFC 6891
§6.1) into a cache key; a hit copies the stored response and patches, in C, the ID, the RD and CD
bits, the question name's case (so a client's 0x20 randomisation comes back intact) and every RR
TTL, decremented by the whole seconds the entry has been held (RFC 1035 §4.1.3, RFC 2181 §8).
No dnspython object is built on this path; anything it cannot answer exactly is a miss, and the
full resolver answers it.

With a doorkeeper (issue #20, memory), a response is stored only for a question seen before: the
first sight of each (scope, question) sets two bits of a fixed bit array, and only a second
sight stores. Names asked once, most of what an agent asks, then cost the full path's cache
alone, not a second copy of their answer here.

Nothing here knows about validation or policy: the caller decides what may be stored and for how
long, and scopes entries (per service) so that different policies never share an answer. For
prefetch (resolver.resolve.prefetch), the owner may pass a callback that a hit calls once per
entry, when the entry is in the last part of its TTL the owner names: no other hit leaves C.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError
from cpython.ref cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport uint16_t, uint32_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memchr, memcpy, memset

from resolver.dnssec.canonical cimport MAX_NAME, lower
from resolver.resolve._lru cimport LruDict

from resolver import wire

# --- wire constants ------------------------------------------------------------------------------

cdef enum:
    HEADER = 12          # RFC 1035 §4.1.1
    CLASS_IN = 1
    T_OPT = 41           # RFC 6891 §6.1.1
    # header flags, second 16-bit word (RFC 1035 §4.1.1, RFC 4035 §3.2)
    F_QR = 0x8000
    F_OPCODE = 0x7800
    F_TC = 0x0200
    F_RD = 0x0100
    F_AD = 0x0020
    F_CD = 0x0010
    EDNS_DO = 0x8000     # RFC 3225 §3, in the OPT TTL's flags half

# Bits of the key's last octet.
cdef enum:
    K_DO = 0x01
    K_CD = 0x02
    K_AD_OR_DO = 0x04  # the response carries AD only when the client set DO or AD (RFC 6840 §5.8)
    K_EDNS = 0x08

KEY_DO = K_DO
KEY_CD = K_CD
KEY_AD_OR_DO = K_AD_OR_DO
KEY_EDNS = K_EDNS

# resolver.wire's sizes, read once here: the full path's rule is the hit path's. A message is
# at most MAX_MESSAGE (65535) octets, so an entry keeps its sizes and TTL offsets in 16 bits.
cdef int MIN_UDP = wire.MIN_UDP
cdef int MAX_UDP = wire.EDNS_PAYLOAD
cdef Py_ssize_t MAX_MESSAGE = wire.MAX_MESSAGE

# One bit per QTYPE: the types resolver.wire.NOT_SERVED names are never stored nor answered.
cdef unsigned char _NOT_SERVED[8192]
memset(_NOT_SERVED, 0, sizeof(_NOT_SERVED))
for _qtype in wire.NOT_SERVED:
    _NOT_SERVED[<unsigned int>_qtype >> 3] |= 1 << (<unsigned int>_qtype & 7)
del _qtype

cdef struct QInfo:
    int id
    int flags
    int qtype
    int payload              # the OPT CLASS field, 0 without EDNS
    Py_ssize_t qname_len     # octets of the question name, root label included
    bint do, edns
    Py_ssize_t key_len
    unsigned char key[MAX_NAME + 3]


cdef inline unsigned int _get16(const unsigned char *p) noexcept nogil:
    return (p[0] << 8) | p[1]


cdef bint _parse_query(const unsigned char *p, Py_ssize_t n, QInfo *q) noexcept nogil:
    """Fill ``q`` from a plain query we may answer from cache; false for anything else: a
    response, an opcode other than QUERY, TC, not exactly one question, answer or authority
    records, more than one additional record or one that is not OPT, an OPT of a version other
    than 0 or with malformed options, a compressed or extended label in the question, a class
    other than IN, a meta-type question, or octets missing or left over."""
    cdef Py_ssize_t pos = HEADER, end, l, i
    cdef unsigned int arcount, qclass, rdlen
    cdef int flags
    if n < HEADER + 5:
        return False
    flags = _get16(p + 2)
    if flags & (F_QR | F_OPCODE | F_TC):
        return False
    if _get16(p + 4) != 1 or _get16(p + 6) != 0 or _get16(p + 8) != 0:
        return False
    arcount = _get16(p + 10)
    if arcount > 1:
        return False
    # The question name, uncompressed: a query has nothing before it to point at.
    while True:
        if pos >= n:
            return False
        l = p[pos]
        if l & 0xC0:
            return False
        if l == 0:
            pos += 1
            break
        if pos + 1 + l > n or pos - HEADER + 1 + l >= MAX_NAME:
            return False
        q.key[pos - HEADER] = <unsigned char>l
        for i in range(pos + 1, pos + 1 + l):
            q.key[i - HEADER] = lower(p[i])
        pos += 1 + l
    q.qname_len = pos - HEADER
    q.key[q.qname_len - 1] = 0
    if pos + 4 > n:
        return False
    q.qtype = _get16(p + pos)
    qclass = _get16(p + pos + 2)
    if qclass != CLASS_IN or _NOT_SERVED[q.qtype >> 3] & (1 << (q.qtype & 7)):
        return False
    pos += 4
    q.edns = False
    q.do = False
    q.payload = 0
    if arcount:
        # RFC 6891 §6.1.2: root owner, TYPE 41, CLASS = payload, TTL = ext-rcode, version, flags.
        if pos + 11 > n or p[pos] != 0 or _get16(p + pos + 1) != T_OPT:
            return False
        if p[pos + 6] != 0:  # version: anything else gets BADVERS from the slow path (§6.1.3)
            return False
        q.payload = _get16(p + pos + 3)
        q.do = (_get16(p + pos + 7) & EDNS_DO) != 0
        rdlen = _get16(p + pos + 9)
        pos += 11
        end = pos + rdlen
        if end != n:
            return False
        while pos < end:  # options: code, length, data (§6.1.2)
            if pos + 4 > end:
                return False
            pos += 4 + _get16(p + pos + 2)
        if pos != end:
            return False
        q.edns = True
    elif pos != n:
        return False
    q.id = _get16(p)
    q.flags = flags
    l = q.qname_len
    q.key[l] = (q.qtype >> 8) & 0xFF
    q.key[l + 1] = q.qtype & 0xFF
    q.key[l + 2] = ((K_DO if q.do else 0) | (K_CD if flags & F_CD else 0)
                    | (K_AD_OR_DO if q.do or flags & F_AD else 0) | (K_EDNS if q.edns else 0))
    q.key_len = l + 3
    return True


@cython.final
cdef class Query:
    """What the cache path reads from a client query (RFC 1035 §4.1, RFC 6891 §6.1).

    ``key`` is the lowercased question name in wire form, the QTYPE (2 octets) and one octet of
    DO, CD, AD-or-DO and EDNS-present bits; ``qname_end`` the offset just past the question name;
    ``payload`` the EDNS UDP payload size as sent (0 without EDNS). Unpacks as the tuple
    ``(id, flags, key, qname_end, do, cd, ad, rd, edns, payload, qtype)``."""
    cdef readonly int id, flags, qtype, payload
    cdef readonly bytes key
    cdef readonly Py_ssize_t qname_end
    cdef readonly bint do, cd, ad, rd, edns

    def __iter__(self):
        return iter((self.id, self.flags, self.key, self.qname_end, self.do, self.cd, self.ad,
                     self.rd, self.edns, self.payload, self.qtype))

    def __repr__(self):
        return (f"Query(id={self.id}, flags={self.flags:#06x}, key={self.key!r}, "
                f"qname_end={self.qname_end}, do={self.do}, cd={self.cd}, ad={self.ad}, "
                f"rd={self.rd}, edns={self.edns}, payload={self.payload}, qtype={self.qtype})")


cdef inline const unsigned char *_wire(bytes data, Py_ssize_t *n) except NULL:
    if data is None:
        raise TypeError("expected bytes, got None")
    n[0] = PyBytes_GET_SIZE(data)
    return <const unsigned char *>PyBytes_AS_STRING(data)


cpdef object parse_query(bytes wire):
    """A :class:`Query` for a plain query the cache may answer (RFC 1035 §4.1, RFC 6891 §6.1),
    else None: QR or TC set, an opcode other than QUERY, QDCOUNT other than 1, any answer or
    authority record, more than one additional record or one that is not an OPT of version 0 with
    well-formed options, a compressed question name, a class other than IN, a question type
    resolver.wire.NOT_SERVED names (ANY, AXFR, RRSIG, ...), octets missing or left over.
    TypeError for anything but bytes."""
    cdef QInfo q
    cdef Py_ssize_t n = 0
    cdef const unsigned char *p = _wire(wire, &n)
    cdef Query out
    if not _parse_query(p, n, &q):
        return None
    out = Query.__new__(Query)
    out.id = q.id
    out.flags = q.flags
    out.key = PyBytes_FromStringAndSize(<char *>q.key, q.key_len)
    out.qname_end = HEADER + q.qname_len
    out.do = q.do
    out.cd = (q.flags & F_CD) != 0
    out.ad = (q.flags & F_AD) != 0
    out.rd = (q.flags & F_RD) != 0
    out.edns = q.edns
    out.payload = q.payload
    out.qtype = q.qtype
    return out


# --- responses -----------------------------------------------------------------------------------

cdef Py_ssize_t _skip_name(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos,
                           const unsigned char *ttls) noexcept nogil:
    """Offset just past the name at ``pos``, or -1 when it is malformed. Compression pointers
    (RFC 1035 §4.1.4) are followed to check the whole name: each must point strictly backwards
    and past the header, which also rules out loops; the expanded name stays within 255 octets.
    What a pointer leads to must not touch an earlier RR's TTL (``ttls`` marks those octets): a
    name made of TTL octets would change when the TTLs are counted down."""
    cdef Py_ssize_t after = -1, total = 0, target
    cdef unsigned int l
    while True:
        if pos >= n:
            return -1
        l = p[pos]
        if after >= 0 and memchr(ttls + pos, 1, min(n - pos, 2 if l & 0xC0 else 1 + l)):
            return -1
        if (l & 0xC0) == 0xC0:
            if pos + 1 >= n:
                return -1
            target = ((l & 0x3F) << 8) | p[pos + 1]
            if target >= pos or target < HEADER:
                return -1
            if after < 0:
                after = pos + 2
            pos = target
        elif l & 0xC0:  # 0x40 and 0x80: extended label types (RFC 6891 §5)
            return -1
        elif l == 0:
            if total + 1 > MAX_NAME:
                return -1
            return after if after >= 0 else pos + 1
        else:
            total += 1 + l
            if total + 1 > MAX_NAME:
                return -1
            pos += 1 + l


@cython.final
@cython.no_gc
cdef class _Entry:
    """One stored response: its wire form followed by the offsets of its RR TTLs (2 octets each,
    big-endian), in memory of its own (no object header beside it: issue #20, memory), the
    owner's two values, and when it was stored and expires. Sizes and offsets fit 16 bits: a
    message is at most 65535 octets."""
    cdef unsigned char *data
    cdef object extra, tally
    cdef double stored_at, expires
    cdef bint prefetched  # the owner's callback was called for it
    cdef unsigned long long moved  # the cache's store count when it last became the newest
    cdef uint16_t size, n_ttl
    cdef uint16_t opt_at, opt_len  # the OPT RR, if any (a truncated reply carries it)

    def __dealloc__(self):
        free(self.data)


cdef _Entry _make_entry(const unsigned char *p, Py_ssize_t n, const unsigned char *query,
                        QInfo *q):
    """Check a response to the query described by ``q``, and find its TTLs; None when it is
    malformed, truncated (TC), not a response to a standard query, for another question, or
    carries an OPT the query did not invite (RFC 6891 §7)."""
    cdef Py_ssize_t pos, i, count, ancount_nscount
    cdef unsigned int flags
    cdef unsigned char *ttls
    if n < HEADER + q.qname_len + 4 or n > MAX_MESSAGE:
        return None
    flags = _get16(p + 2)
    if not flags & F_QR or flags & (F_OPCODE | F_TC) or _get16(p + 4) != 1:
        return None
    # The question: the query's name octets but for case (equal octets parse alike), its type
    # and class exactly.
    pos = HEADER + q.qname_len
    for i in range(HEADER, pos):
        if lower(p[i]) != lower(query[i]):
            return None
    if p[pos] != query[pos] or p[pos + 1] != query[pos + 1] or p[pos + 2] != query[pos + 2] \
            or p[pos + 3] != query[pos + 3]:
        return None
    ancount_nscount = _get16(p + 6) + _get16(p + 8)
    count = ancount_nscount + _get16(p + 10)
    if count * 11 > n:  # every RR takes at least 11 octets
        return None
    ttls = <unsigned char *>calloc(n, 1)
    if ttls == NULL:
        raise MemoryError()
    try:
        return _fill_entry(p, n, q, count, ancount_nscount, ttls)
    finally:
        free(ttls)


cdef _Entry _fill_entry(const unsigned char *p, Py_ssize_t n, QInfo *q, Py_ssize_t count,
                        Py_ssize_t ancount_nscount, unsigned char *ttls):
    """The entry for a response whose header and question :func:`_make_entry` checked: every RR
    framed, its TTL offset noted (and marked in ``ttls``, ``n`` zeroed octets)."""
    cdef Py_ssize_t pos, rr, i
    cdef unsigned int rdlen, rtype
    cdef bint seen_opt = False
    cdef _Entry entry = _Entry.__new__(_Entry)
    cdef unsigned char *off
    entry.data = <unsigned char *>malloc(n + 2 * count)
    if entry.data == NULL:
        raise MemoryError()
    off = entry.data
    memcpy(off, p, n)
    off += n
    entry.size = n
    entry.n_ttl = 0
    pos = HEADER + q.qname_len + 4
    for rr in range(count):
        i = pos
        pos = _skip_name(p, n, pos, ttls)
        if pos < 0 or pos + 10 > n:
            return None
        rtype = _get16(p + pos)
        rdlen = _get16(p + pos + 8)
        if pos + 10 + rdlen > n:
            return None
        if rtype == T_OPT:
            # Its TTL field is the extended RCODE and flags (RFC 6891 §6.1.3): never decremented.
            if rr < ancount_nscount or seen_opt or p[i] != 0 or not q.edns:
                return None
            seen_opt = True
            entry.opt_at, entry.opt_len = i, pos + 10 + rdlen - i
        else:
            off[2 * entry.n_ttl] = ((pos + 4) >> 8) & 0xFF
            off[2 * entry.n_ttl + 1] = (pos + 4) & 0xFF
            entry.n_ttl += 1
            memset(ttls + pos + 4, 1, 4)
        pos += 10 + rdlen
    if pos != n:
        return None
    return entry


cdef bytes _truncated(const unsigned char *s, _Entry entry, const unsigned char *p, QInfo *q):
    """The stored response cut to its header, the query's question and its OPT record, with TC
    set and the query's ID, RD and CD."""
    cdef Py_ssize_t qend = HEADER + q.qname_len + 4
    cdef bytes out = PyBytes_FromStringAndSize(NULL, qend + entry.opt_len)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    memcpy(o, s, HEADER)
    o[0] = p[0]
    o[1] = p[1]
    o[2] = (s[2] & ~(F_RD >> 8)) | (p[2] & (F_RD >> 8)) | (F_TC >> 8)
    o[3] = (s[3] & ~F_CD) | (p[3] & F_CD)
    memset(o + 6, 0, 6)  # no answer, authority or additional records
    o[11] = 1 if entry.opt_len else 0
    memcpy(o + HEADER, p + HEADER, q.qname_len)
    memcpy(o + HEADER + q.qname_len, s + HEADER + q.qname_len, 4)
    memcpy(o + qend, s + entry.opt_at, entry.opt_len)
    return out


# --- the cache -----------------------------------------------------------------------------------

@cython.final
cdef class WireCache:
    """Stored responses by scope and query key, bounded: when full, the entry stored longest ago
    goes, unless a hit moved it back to the newest (a hit does once the entry is more than
    half way to eviction): an entry answered at least once per ``max_entries / 2`` stores stays.

    ``answer`` serves a hit in well under a microsecond; ``store`` parses a response once.
    Counters: ``hits``; ``misses`` (every ``answer`` that returned None: a query the cache does
    not answer, no entry, expired, too large), of which ``expired`` found their entry expired and
    removed it and ``oversize`` found it larger than the client may receive; ``evictions``.
    Arguments that are not bytes, and unhashable scopes, raise TypeError; wire contents never
    raise."""
    # Its attributes are declared in _fastcache.pxd.

    def __cinit__(self):
        self._seen = NULL

    def __dealloc__(self):
        free(self._seen)

    def __init__(self, Py_ssize_t max_entries=100000, on_expiring=None, double fraction=0.1,
                 bint doorkeeper=False):
        """``on_expiring(query, scope, seconds_left)``, when given, is called by the first hit
        of an entry in the last ``fraction`` of its TTL (a prefetch), before the reply returns.
        With ``doorkeeper``, :meth:`admits` a response only for a question it saw before
        (:meth:`_first_sight`)."""
        cdef Py_ssize_t bits = 1 << 13
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries = LruDict()
        self._scopes = {}
        self.on_expiring = on_expiring
        self.fraction = fraction
        if doorkeeper:
            while bits < 8 * max_entries:  # 8 bits a question: about 5% false repeats
                bits <<= 1
            free(self._seen)
            self._seen = <unsigned char *>calloc(bits >> 3, 1)
            if self._seen == NULL:
                raise MemoryError()
            self._seen_mask = bits - 1
            self._seen_count = 0

    cdef bytes _lookup(self, object scope, const unsigned char *key, Py_ssize_t n, bint new):
        """The key of a question (``key``, ``n`` octets: :class:`Query`'s) in ``scope``: the
        scope's number (2 octets, given at its first store or sight) before the query key, one
        bytes object rather than a tuple (issue #20, memory). None for a scope with no number
        yet unless ``new``. Numbers outlive :meth:`clear`, as the doorkeeper's marks do; past
        65536 scopes, the entries, the numbers and the marks are all dropped and numbering
        starts again."""
        cdef object number = self._scopes.get(scope)
        cdef bytes out
        cdef unsigned char *o
        cdef Py_ssize_t i
        if number is None:
            if not new:
                return None
            if len(self._scopes) > 0xFFFF:
                self._entries.clear()
                self._scopes.clear()
                if self._seen != NULL:
                    self._forget_sights()
            number = self._scopes[scope] = len(self._scopes)
        i = <Py_ssize_t>number
        out = PyBytes_FromStringAndSize(NULL, 2 + n)
        o = <unsigned char *>PyBytes_AS_STRING(out)
        o[0] = (i >> 8) & 0xFF
        o[1] = i & 0xFF
        memcpy(o + 2, key, n)
        return out

    cdef void _forget_sights(self) noexcept:
        """Clear the doorkeeper's marks: every question is new again."""
        memset(self._seen, 0, (self._seen_mask + 1) >> 3)
        self._seen_count = 0

    cdef bint _first_sight(self, bytes lookup) except -1:
        """Mark ``lookup`` seen; whether it was not (a Bloom filter of two bits a question:
        a question not seen before may pass for seen, never the other way). After
        ``max_entries`` new questions the bits start again, so the array stays as sparse."""
        cdef unsigned long long h = <unsigned long long>hash(lookup)
        cdef Py_ssize_t i = <Py_ssize_t>(h & <unsigned long long>self._seen_mask)
        cdef Py_ssize_t j = <Py_ssize_t>(((h >> 32) ^ (h * 0x9E3779B97F4A7C15ULL))
                                         & <unsigned long long>self._seen_mask)
        cdef bint seen = (self._seen[i >> 3] >> (i & 7)) & (self._seen[j >> 3] >> (j & 7)) & 1
        if seen:
            return False
        if self._seen_count >= self.max_entries:
            self._forget_sights()
        self._seen[i >> 3] |= 1 << (i & 7)
        self._seen[j >> 3] |= 1 << (j & 7)
        self._seen_count += 1
        return True

    cpdef bytes answer(self, bytes query, object scope, double now, Py_ssize_t max_size=0):
        """The stored response for ``query`` in ``scope`` at time ``now``, patched: the query's ID,
        RD and CD bits, and question name octets; every RR TTL (not the OPT's, RFC 6891 §6.1.3)
        less the whole seconds since it was stored, floored at 0.

        None on a miss, on expiry (the entry is removed), and when the response is larger than
        ``max_size`` (65535 over TCP). Over UDP (``max_size`` 0) the limit is
        resolver.wire.udp_limit's (512 without EDNS, the EDNS payload size within 512..1232 with
        it); a larger response is answered truncated, from the stored header: TC set, the
        question and the OPT record only, so that the client asks again over TCP (RFC 2181 §9,
        RFC 7766 §5). Rendering a large answer again only to truncate it would cost the slow
        path milliseconds."""
        cdef QInfo q
        cdef Py_ssize_t n = 0, limit, i, k
        cdef const unsigned char *p = _wire(query, &n)
        cdef const unsigned char *s
        cdef const unsigned char *offsets
        cdef unsigned char *o
        cdef PyObject *found
        cdef _Entry entry
        cdef bytes out
        cdef bytes lookup
        cdef double elapsed
        cdef uint32_t dec, ttl
        if not _parse_query(p, n, &q):
            self.misses += 1
            return None
        lookup = self._lookup(scope, q.key, q.key_len, False)
        found = NULL if lookup is None else PyDict_GetItemWithError(self._entries, lookup)
        if found == NULL:
            self.misses += 1
            return None
        entry = <_Entry>found
        if not now < entry.expires:
            del self._entries[lookup]
            self.expired += 1
            self.misses += 1
            return None
        if max_size > 0:
            limit = max_size
        elif q.edns:
            limit = MIN_UDP if q.payload < MIN_UDP else (MAX_UDP if q.payload > MAX_UDP
                                                         else q.payload)
        else:
            limit = MIN_UDP
        if entry.size > limit:
            self.oversize += 1
            if max_size > 0:
                self.misses += 1
                return None
            self.hits += 1
            self.last_extra, self.last_tally = entry.extra, entry.tally
            return _truncated(entry.data, entry, p, &q)
        if self._stores - entry.moved > <unsigned long long>(self.max_entries >> 1):
            # A name in use outlives a flood of new ones. Moved only once past half its way
            # to eviction: most hits pay one comparison, not a move.
            self._entries.move_to_end(lookup)
            entry.moved = self._stores
        s = entry.data
        out = PyBytes_FromStringAndSize(<const char *>s, entry.size)
        o = <unsigned char *>PyBytes_AS_STRING(out)
        o[0] = p[0]
        o[1] = p[1]
        o[2] = (s[2] & ~(F_RD >> 8)) | (p[2] & (F_RD >> 8))
        o[3] = (s[3] & ~F_CD) | (p[3] & F_CD)
        memcpy(o + HEADER, p + HEADER, q.qname_len)
        elapsed = now - entry.stored_at
        if elapsed >= 1.0:  # false for NaN too
            dec = 0xFFFFFFFF if elapsed >= 4294967295.0 else <uint32_t>elapsed
            offsets = s + entry.size
            for i in range(entry.n_ttl):
                k = (offsets[2 * i] << 8) | offsets[2 * i + 1]
                ttl = ((<uint32_t>s[k] << 24) | (<uint32_t>s[k + 1] << 16)
                       | (<uint32_t>s[k + 2] << 8) | s[k + 3])
                ttl = ttl - dec if ttl > dec else 0
                o[k] = (ttl >> 24) & 0xFF
                o[k + 1] = (ttl >> 16) & 0xFF
                o[k + 2] = (ttl >> 8) & 0xFF
                o[k + 3] = ttl & 0xFF
        self.hits += 1
        self.last_extra, self.last_tally = entry.extra, entry.tally
        if self.on_expiring is not None and not entry.prefetched \
                and entry.expires - now <= (entry.expires - entry.stored_at) * self.fraction:
            entry.prefetched = True
            self.on_expiring(query, scope, entry.expires - now)
        return out

    cpdef bint admits(self, bytes query, object scope) except -1:
        """Whether a response to ``query`` in ``scope`` is to be offered to :meth:`store` now
        (so that the owner builds its ``extra`` and ``tally`` only then): always without a
        doorkeeper; with one, not at the question's first sight, which is marked and counted in
        ``first_seen``. False for a query ``answer`` never serves."""
        cdef QInfo q
        cdef Py_ssize_t n = 0
        cdef const unsigned char *p = _wire(query, &n)
        cdef bytes lookup
        if not _parse_query(p, n, &q):
            return False
        if self._seen == NULL:
            return True
        lookup = self._lookup(scope, q.key, q.key_len, True)
        if PyDict_GetItemWithError(self._entries, lookup) == NULL and self._first_sight(lookup):
            self.first_seen += 1
            return False
        return True

    cpdef bint store(self, bytes query, object scope, bytes response, double now, int ttl,
                     object extra=None, object tally=None):
        """Remember ``response``, the full wire sent for ``query``, in ``scope`` for ``ttl``
        seconds from ``now``, replacing any entry for the same key. Returns whether it was stored:
        not when ``ttl`` <= 0 or ``now`` is not finite, nor when the query is one ``answer`` never
        serves, nor when the response is malformed (names, compression pointers, RDATA lengths,
        octets left over: RFC 1035 §4.1), TC, not for this question, or carries an OPT outside the
        additional section, more than one, or one the query did not have (RFC 6891 §6.1.1, §7).
        ``extra`` and ``tally``, the owner's (the hit path's record template and metric
        children), are kept with the entry and handed back as ``last_extra`` and ``last_tally``
        on a hit. With the doorkeeper, the owner asks :meth:`admits` first."""
        cdef QInfo q
        cdef Py_ssize_t n = 0, rn = 0
        cdef const unsigned char *p = _wire(query, &n)
        cdef const unsigned char *r = _wire(response, &rn)
        cdef _Entry entry
        cdef bytes lookup
        cdef bint present
        if ttl <= 0 or not isfinite(now) or not _parse_query(p, n, &q):
            return False
        lookup = self._lookup(scope, q.key, q.key_len, True)
        present = PyDict_GetItemWithError(self._entries, lookup) != NULL
        entry = _make_entry(r, rn, p, &q)
        if entry is None:
            return False
        entry.stored_at = now
        entry.expires = now + ttl
        entry.extra, entry.tally = extra, tally
        entry.moved = self._stores
        self._stores += 1
        if present:
            del self._entries[lookup]  # re-inserted below as the newest
        elif len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1
        self._entries[lookup] = entry
        return True

    def clear(self):
        """Drop every entry; the counters keep counting."""
        self._entries.clear()

    def __len__(self):
        return len(self._entries)
