# cython: boundscheck=False, wraparound=False
"""A reply's bytes, rendered in compiled code from the query's question and the answer's
dnspython RRsets (issue #20: dnspython's ``Message.to_wire`` was most of a cold lookup's
client side, and most of a near-64 KiB answer's CPU). The bytes are those dnspython renders:

* the header, the question, the answer and authority sections, and the OPT record given as
  bytes, in that order (RFC 1035 §4.1, RFC 6891 §6.1.1);
* names compressed as dnspython compresses them (RFC 1035 §4.1.4): each name's suffixes of
  two labels or more are looked up, case-insensitively, among those written before at offsets
  up to 0x3FFF, owners and the question's name always, inside RDATA only the names of NS,
  CNAME, PTR, MX and SOA (RFC 3597 §4); every other RDATA name is written whole;
* each RRset's records in random order, as dnspython shuffles them (``shuffle`` False keeps
  their order, to compare with dnspython's ``want_shuffle=False``).

A, AAAA, NS, CNAME, DNAME, PTR, MX, SOA, TXT, SPF, DS, DNSKEY, RRSIG, NSEC and NSEC3 RDATA are
written here from their fields; any other type's is its own ``to_wire()``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from resolver.dnssec.canonical cimport lower

import os

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    int AF_INET
    int AF_INET6

cdef enum:
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    DNAME = 39
    DS = 43
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    NSEC3 = 50
    SPF = 99
    MAX_POINTER = 0x3FFF

cdef uint64_t _state = int.from_bytes(os.urandom(8), "little") | 1


cdef inline uint64_t _random() noexcept:
    """xorshift64*: the shuffle's order (not a secret: dnspython's is Python's random)."""
    global _state
    _state ^= _state >> 12
    _state ^= _state << 25
    _state ^= _state >> 27
    return _state * <uint64_t>0x2545F4914F6CDD1D


cdef class _Out:
    """The message being written: a growing buffer, and the compression table (the lowercased
    uncompressed wire form of a name's suffix to the offset it was written at)."""
    cdef unsigned char *buf
    cdef Py_ssize_t size, cap
    cdef dict compress

    def __cinit__(self):
        self.buf = NULL
        self.size = self.cap = 0
        self.compress = {}

    def __dealloc__(self):
        free(self.buf)

    cdef unsigned char *room(self, Py_ssize_t n) except NULL:
        cdef Py_ssize_t cap
        cdef unsigned char *grown
        if self.size + n > self.cap:
            cap = max(self.cap * 2, self.size + n, 512)
            grown = <unsigned char *>realloc(self.buf, cap)
            if grown == NULL:
                raise MemoryError()
            self.buf, self.cap = grown, cap
        cdef unsigned char *at = self.buf + self.size
        self.size += n
        return at

    cdef int raw(self, const unsigned char *data, Py_ssize_t n) except -1:
        memcpy(self.room(n), data, n)
        return 0

    cdef int data(self, bytes data) except -1:
        return self.raw(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    cdef int u8(self, unsigned int v) except -1:
        self.room(1)[0] = v & 0xFF
        return 0

    cdef int u16(self, unsigned int v) except -1:
        cdef unsigned char *at = self.room(2)
        at[0], at[1] = (v >> 8) & 0xFF, v & 0xFF
        return 0

    cdef int u32(self, uint32_t v) except -1:
        cdef unsigned char *at = self.room(4)
        at[0], at[1], at[2], at[3] = v >> 24, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF
        return 0

    cdef int counted(self, bytes data) except -1:
        """A character-string (RFC 1035 §3.3): its length octet, then its octets."""
        if PyBytes_GET_SIZE(data) > 255:
            raise ValueError("a character-string is at most 255 octets")
        self.u8(PyBytes_GET_SIZE(data))
        return self.data(data)

    cdef int name(self, object name, bint compress) except -1:
        """``name`` (a dns.name.Name), compressed if ``compress`` (see the module docstring)."""
        cdef tuple labels = name.labels
        cdef Py_ssize_t n = len(labels), i, j, length, total = 0
        cdef unsigned char folded[256]
        cdef Py_ssize_t starts[128]
        cdef bytes label
        cdef const unsigned char *text
        if n == 0 or PyBytes_GET_SIZE(labels[n - 1]) != 0:
            raise ValueError(f"{name}: not an absolute name")
        if n > 128:
            raise ValueError(f"{name}: too many labels")
        for i in range(n):  # the lowercased wire form, where each suffix starts in it
            label = labels[i]
            length = PyBytes_GET_SIZE(label)
            if length > 63 or total + 1 + length > 255:
                raise ValueError(f"{name}: a label or the name too long")
            starts[i] = total
            folded[total] = length
            text = <const unsigned char *>PyBytes_AS_STRING(label)
            for j in range(length):
                folded[total + 1 + j] = lower(text[j])
            total += 1 + length
        cdef object key, at
        for i in range(n):
            if compress and i < n - 1:
                key = PyBytes_FromStringAndSize(<char *>folded + starts[i], total - starts[i])
                at = self.compress.get(key)
                if at is not None:
                    self.u16(0xC000 | <unsigned int>at)
                    return 0
                if self.size <= MAX_POINTER:
                    self.compress[key] = self.size
            label = labels[i]
            self.u8(PyBytes_GET_SIZE(label))
            self.data(label)
        return 0

    cdef int windows(self, object windows) except -1:
        """An NSEC or NSEC3 type bit map (RFC 4034 §4.1.2)."""
        cdef bytes bitmap
        for window, bitmap in windows:
            self.u8(window)
            self.u8(PyBytes_GET_SIZE(bitmap))
            self.data(bitmap)
        return 0

    cdef int address(self, str text, int family, Py_ssize_t n, rd) except -1:
        cdef unsigned char packed[16]
        if inet_pton(family, text.encode("ascii"), packed) == 1:
            return self.raw(packed, n)
        return self.data(rd.to_wire())

    cdef int rdata(self, int rdtype, rd) except -1:
        """One record's RDATA, without its length."""
        if rdtype == A:
            self.address(rd.address, AF_INET, 4, rd)
        elif rdtype == AAAA:
            self.address(rd.address, AF_INET6, 16, rd)
        elif rdtype == NS or rdtype == CNAME or rdtype == PTR:
            self.name(rd.target, True)
        elif rdtype == DNAME:
            self.name(rd.target, False)
        elif rdtype == MX:
            self.u16(rd.preference)
            self.name(rd.exchange, True)
        elif rdtype == SOA:
            self.name(rd.mname, True)
            self.name(rd.rname, True)
            for value in (rd.serial, rd.refresh, rd.retry, rd.expire, rd.minimum):
                self.u32(value)
        elif rdtype == TXT or rdtype == SPF:
            for string in rd.strings:
                self.counted(string)
        elif rdtype == RRSIG:
            self.u16(rd.type_covered)
            self.u8(rd.algorithm)
            self.u8(rd.labels)
            self.u32(rd.original_ttl)
            self.u32(rd.expiration)
            self.u32(rd.inception)
            self.u16(rd.key_tag)
            self.name(rd.signer, False)
            self.data(rd.signature)
        elif rdtype == DS:
            self.u16(rd.key_tag)
            self.u8(rd.algorithm)
            self.u8(rd.digest_type)
            self.data(rd.digest)
        elif rdtype == DNSKEY:
            self.u16(rd.flags)
            self.u8(rd.protocol)
            self.u8(rd.algorithm)
            self.data(rd.key)
        elif rdtype == NSEC:
            self.name(rd.next, False)
            self.windows(rd.windows)
        elif rdtype == NSEC3:
            self.u8(rd.algorithm)
            self.u8(rd.flags)
            self.u16(rd.iterations)
            self.counted(rd.salt)
            self.counted(rd.next)
            self.windows(rd.windows)
        else:
            self.data(rd.to_wire())
        return 0

    cdef Py_ssize_t rrset(self, rrset, bint shuffle) except -1:
        """The RRset's records (RFC 1035 §4.1.3); returns how many."""
        cdef int rdtype = rrset.rdtype, rdclass = rrset.rdclass
        cdef uint32_t ttl = rrset.ttl
        # The records in order: dns.set keeps them as its dict's keys (as _wireparse builds
        # it); list(rrset) would call its Python __len__ and __iter__.
        cdef list records = list(rrset.items)
        cdef Py_ssize_t n = len(records), i, j, at
        owner = rrset.name
        if shuffle:
            for i in range(n - 1, 0, -1):  # Fisher-Yates
                j = <Py_ssize_t>(_random() % <uint64_t>(i + 1))
                records[i], records[j] = records[j], records[i]
        if n == 0:  # as dnspython: one record with empty RDATA
            self.name(owner, True)
            self.u16(rdtype)
            self.u16(rdclass)
            self.u32(0)
            self.u16(0)
            return 1
        for rd in records:
            self.name(owner, True)
            self.u16(rdtype)
            self.u16(rdclass)
            self.u32(ttl)
            at = self.size
            self.u16(0)
            self.rdata(rdtype, rd)
            if self.size - at - 2 > 0xFFFF:
                raise ValueError(f"{owner}: RDATA over 65535 octets")
            self.buf[at] = (self.size - at - 2) >> 8
            self.buf[at + 1] = (self.size - at - 2) & 0xFF
        return n


def render(unsigned int id, unsigned int flags, questions, answer, authority, bytes opt,
           Py_ssize_t limit, bint shuffle=True):
    """The reply's bytes (``flags``: the header's second and third octets, RCODE included;
    ``questions``: dnspython question entries; ``answer``, ``authority``: RRsets; ``opt``: the
    OPT record's bytes, or None without EDNS), or None if they would exceed ``limit``
    octets."""
    cdef _Out out = _Out()
    cdef Py_ssize_t counts[3]
    cdef Py_ssize_t i
    out.room(12)
    counts[0] = counts[1] = counts[2] = 0
    for question in questions:
        out.name(question.name, True)
        out.u16(question.rdtype)
        out.u16(question.rdclass)
        counts[0] += 1
    for i, section in enumerate((answer, authority)):
        for rrset in section:
            counts[i + 1] += out.rrset(rrset, shuffle)
            if out.size > limit:
                return None
    if opt is not None:
        out.data(opt)
    if out.size > limit:
        return None
    cdef unsigned char *h = out.buf
    h[0], h[1], h[2], h[3] = (id >> 8) & 0xFF, id & 0xFF, (flags >> 8) & 0xFF, flags & 0xFF
    h[4], h[5] = counts[0] >> 8, counts[0] & 0xFF
    h[6], h[7] = counts[1] >> 8, counts[1] & 0xFF
    h[8], h[9] = counts[2] >> 8, counts[2] & 0xFF
    h[10], h[11] = 0, 1 if opt is not None else 0
    return PyBytes_FromStringAndSize(<char *>out.buf, out.size)
