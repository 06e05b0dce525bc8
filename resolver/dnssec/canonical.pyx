# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Names and canonical form, compiled: what DNSSEC signs is the canonical form of an RRset
(RFC 4034 §6), and the resolve layer keys its cache with the same canonical names.

* names in uncompressed wire form, lowercased (RFC 1035 §3.1, RFC 4034 §6.2), their label count
  as an RRSIG states it (RFC 4034 §3.1.3), and comparisons ignoring ASCII case (RFC 4343);
* canonical RDATA: the names embedded in the RFC 4034 §6.2 types lowercased, less NSEC's
  (RFC 6840 §5.1); canonical RR order with duplicates removed (RFC 4034 §6.3).

Like Unbound's ``val_utils`` name helpers: nothing here knows about keys or signatures. The C
functions other compiled modules share are declared in ``canonical.pxd``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII
from libc.string cimport memcpy

import socket

from resolver.errors import ResolverError

# --- RR types: those whose embedded names are lowercased in canonical form (RFC 4034 §6.2 item 3,
# less NSEC: RFC 6840 §5.1) and those rdata_wire builds from their fields; layouts from the
# defining RFCs.
cdef enum:
    T_A = 1
    T_NS = 2
    T_MD = 3
    T_MF = 4
    T_CNAME = 5
    T_SOA = 6
    T_MB = 7
    T_MG = 8
    T_MR = 9
    T_PTR = 12
    T_MINFO = 14
    T_MX = 15
    T_TXT = 16
    T_RP = 17
    T_AFSDB = 18
    T_RT = 21
    T_SIG = 24
    T_PX = 26
    T_AAAA = 28
    T_NXT = 30
    T_SRV = 33
    T_NAPTR = 35
    T_KX = 36
    T_A6 = 38
    T_DNAME = 39
    T_DS = 43
    T_RRSIG = 46
    T_NSEC = 47
    T_DNSKEY = 48
    T_NSEC3 = 50
    T_NSEC3PARAM = 51
    T_CDS = 59
    T_CDNSKEY = 60
    T_SPF = 99

cdef object _inet_pton = socket.inet_pton
cdef int _AF_INET6 = socket.AF_INET6


class MalformedData(ResolverError, ValueError):
    """Wire data that cannot be canonicalised or parsed."""


# --- names --------------------------------------------------------------------------------------

cdef Py_ssize_t name_length(tuple labels, Py_ssize_t start) except -1:
    """Wire length of the name ``labels[start:]``, which must be absolute with labels of at most
    63 octets and at most 255 octets in all (RFC 1035 §2.3.4, §3.1), else MalformedData."""
    cdef Py_ssize_t total = 0, i, n, count = len(given(labels))
    cdef bytes label
    for i in range(start, count):
        label = labels[i]  # a checked assignment: bytes or None
        n = PyBytes_GET_SIZE(given(label))
        if n > MAX_LABEL:
            raise MalformedData("label longer than 63 octets")
        total += n + 1
    if total == 0 or PyBytes_GET_SIZE(<bytes>labels[count - 1]) != 0:
        raise MalformedData("name is not absolute")
    if total > MAX_NAME:
        raise MalformedData("name longer than 255 octets")
    return total


cdef Py_ssize_t put_name(unsigned char *dst, tuple labels, Py_ssize_t start,
                         bint lowercase) noexcept:
    """Write ``labels[start:]``, checked by :func:`name_length`, at ``dst``; return its length."""
    cdef Py_ssize_t pos = 0, i, j, n
    cdef const unsigned char *src
    for i in range(start, len(labels)):
        n = PyBytes_GET_SIZE(<bytes>labels[i])
        src = <const unsigned char *>PyBytes_AS_STRING(<bytes>labels[i])
        dst[pos] = <unsigned char>n
        pos += 1
        if lowercase:
            for j in range(n):
                dst[pos + j] = lower(src[j])
        else:
            memcpy(dst + pos, src, n)
        pos += n
    return pos


cpdef bytes name_wire(tuple labels, bint lowercase=True):
    """Uncompressed wire form of a name given as ``dns.name.Name.labels`` (RFC 1035 §3.1),
    lowercased for canonical form (RFC 4034 §6.2) unless ``lowercase`` is false."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, name_length(labels, 0))
    put_name(<unsigned char *>PyBytes_AS_STRING(out), labels, 0, lowercase)
    return out


cpdef int label_count(tuple labels):
    """The RRSIG "labels" value of an owner name: labels less the root and a leading ``*``
    (RFC 4034 §3.1.3)."""
    cdef int n = len(labels) - 1
    if n > 0 and <bytes>labels[0] == b"*":
        n -= 1
    return n


cdef bint _labels_equal(tuple a, Py_ssize_t a_off, tuple b, Py_ssize_t b_off, Py_ssize_t n):
    """Case-insensitive comparison of n labels of a from a_off and of b from b_off."""
    cdef Py_ssize_t i, j, ln
    cdef bytes la, lb
    cdef const unsigned char *pa
    cdef const unsigned char *pb
    for i in range(n):
        la = <bytes>a[a_off + i]
        lb = <bytes>b[b_off + i]
        if la is lb:
            continue
        ln = PyBytes_GET_SIZE(la)
        if ln != PyBytes_GET_SIZE(lb):
            return False
        pa = <const unsigned char *>PyBytes_AS_STRING(la)
        pb = <const unsigned char *>PyBytes_AS_STRING(lb)
        for j in range(ln):
            if lower(pa[j]) != lower(pb[j]):
                return False
    return True


cpdef bint same_name(tuple a, tuple b):
    """Whether two names (``Name.labels``) are equal, ignoring ASCII case (RFC 4343)."""
    return a is b or (len(a) == len(b) and _labels_equal(a, 0, b, 0, len(a)))


cpdef bint is_subdomain(tuple name, tuple ancestor):
    """Whether ``name`` equals or lies below ``ancestor`` (both ``Name.labels``)."""
    cdef Py_ssize_t n = len(name), m = len(ancestor)
    return m <= n and _labels_equal(name, n - m, ancestor, 0, m)


cpdef bint same(object a, object b):
    """``a == b`` for two ``dns.name.Name``: the same name, ignoring ASCII case (RFC 4343), at a
    fifteenth of the cost of dnspython's comparison."""
    return a is b or same_name(a.labels, b.labels)


cpdef bint within(object name, object ancestor):
    """``name.is_subdomain(ancestor)`` for two ``dns.name.Name``: ``name`` equals or lies below
    ``ancestor`` (RFC 4343 case rules), compiled."""
    return is_subdomain(name.labels, ancestor.labels)


cdef inline bint _special(unsigned char c) noexcept nogil:
    """A character a master file gives a meaning to (RFC 1035 §5.1: ``"().;\\@$``)."""
    return c == 34 or c == 40 or c == 41 or c == 46 or c == 59 or c == 92 or c == 64 or c == 36


cdef Py_ssize_t _label_text_size(const unsigned char *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j, size = 0
    for j in range(n):
        size += 2 if _special(src[j]) else 1 if 0x20 < src[j] < 0x7F else 4
    return size


cdef Py_ssize_t _label_text(unsigned char *dst, const unsigned char *src,
                            Py_ssize_t n) noexcept nogil:
    """A label's octets in presentation form at ``dst``: each special character escaped as
    ``\\X``, each octet outside printable ASCII as ``\\DDD`` (RFC 1035 §5.1), as dnspython
    writes them; the octets written."""
    cdef Py_ssize_t j, pos = 0
    cdef unsigned char c
    for j in range(n):
        c = src[j]
        if _special(c):
            dst[pos] = 92
            dst[pos + 1] = c
            pos += 2
        elif 0x20 < c < 0x7F:
            dst[pos] = c
            pos += 1
        else:
            dst[pos] = 92
            dst[pos + 1] = 48 + c // 100
            dst[pos + 2] = 48 + c // 10 % 10
            dst[pos + 3] = 48 + c % 10
            pos += 4
    return pos


cpdef str name_text(object name):
    """``str(name)`` of a ``dns.name.Name``, compiled: the presentation form of RFC 1035 §5.1
    (labels joined by dots, an absolute name ending in one, the root ``.``, an empty relative
    name ``@``), escaped as :func:`_label_text` says, as dnspython writes them (forensic
    records compare as text)."""
    cdef tuple labels = name.labels
    cdef Py_ssize_t count = len(labels), i, size = 0, pos = 0
    cdef unsigned char *dst
    cdef bytes out
    if count == 0:
        return "@"
    if count == 1 and PyBytes_GET_SIZE(<bytes>labels[0]) == 0:
        return "."
    for i in range(count):
        size += (1 if i else 0) + _label_text_size(
            <const unsigned char *>PyBytes_AS_STRING(<bytes>given(labels[i])),
            PyBytes_GET_SIZE(<bytes>labels[i]))
    out = PyBytes_FromStringAndSize(NULL, size)
    dst = <unsigned char *>PyBytes_AS_STRING(out)
    for i in range(count):
        if i:
            dst[pos] = 46
            pos += 1
        pos += _label_text(dst + pos, <const unsigned char *>PyBytes_AS_STRING(<bytes>labels[i]),
                           PyBytes_GET_SIZE(<bytes>labels[i]))
    return PyUnicode_DecodeASCII(<const char *>dst, size, NULL)


cpdef str wire_text(bytes wire):
    """The presentation form (as :func:`name_text`) of the absolute name whose uncompressed
    wire form (RFC 1035 §3.1) starts ``wire``, such as :func:`name_wire` gives; ValueError
    when it is cut short or uses compression or extended labels."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(wire)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(wire), at = 0, size = 0, pos = 0, length
    cdef unsigned char *dst
    cdef bytes out
    while True:
        if at >= n or p[at] > 63 or at + 1 + p[at] > n:
            raise ValueError("not an uncompressed wire-form name")
        length = p[at]
        if length == 0:
            break
        size += _label_text_size(p + at + 1, length) + 1
        at += 1 + length
    if size == 0:
        return "."
    out = PyBytes_FromStringAndSize(NULL, size)
    dst = <unsigned char *>PyBytes_AS_STRING(out)
    at = 0
    while p[at]:
        pos += _label_text(dst + pos, p + at + 1, p[at])
        dst[pos] = 46
        pos += 1
        at += 1 + p[at]
    return PyUnicode_DecodeASCII(<const char *>dst, size, NULL)


# --- canonical RDATA (RFC 4034 §6.2, RFC 6840 §5.1) -------------------------------------------

cdef Py_ssize_t _lower_name_at(unsigned char *buf, Py_ssize_t pos, Py_ssize_t end) except -2:
    """Lowercase the uncompressed name at ``pos`` in place; return the offset just past it."""
    cdef Py_ssize_t n, i
    while True:
        if pos >= end:
            raise MalformedData("name runs past the end of RDATA")
        n = buf[pos]
        if n & 0xC0:
            raise MalformedData("compressed or extended label in RDATA")
        pos += 1
        if n == 0:
            return pos
        if pos + n > end:
            raise MalformedData("label runs past the end of RDATA")
        for i in range(pos, pos + n):
            buf[i] = lower(buf[i])
        pos += n


cdef Py_ssize_t _skip_string(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end) except -2:
    if pos >= end or pos + 1 + buf[pos] > end:
        raise MalformedData("character-string runs past the end of RDATA")
    return pos + 1 + buf[pos]


cpdef bytes canonical_rdata(int rdtype, bytes wire):
    """Canonical form of uncompressed RDATA: embedded names of the RFC 4034 §6.2 types lowercased,
    except NSEC's next name (RFC 6840 §5.1). Other types are returned unchanged."""
    cdef Py_ssize_t end = PyBytes_GET_SIZE(wire), pos
    cdef unsigned char *buf
    cdef bytes out
    cdef int prefix
    given(wire)
    if rdtype not in (T_NS, T_MD, T_MF, T_CNAME, T_SOA, T_MB, T_MG, T_MR, T_PTR, T_MINFO, T_MX,
                      T_RP, T_AFSDB, T_RT, T_SIG, T_PX, T_NXT, T_SRV, T_NAPTR, T_KX, T_A6,
                      T_DNAME, T_RRSIG):
        return wire
    out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(wire), end)
    buf = <unsigned char *>PyBytes_AS_STRING(out)
    if rdtype in (T_NS, T_MD, T_MF, T_CNAME, T_MB, T_MG, T_MR, T_PTR, T_DNAME, T_NXT):
        _lower_name_at(buf, 0, end)
    elif rdtype in (T_SOA, T_MINFO, T_RP):
        _lower_name_at(buf, _lower_name_at(buf, 0, end), end)
    elif rdtype in (T_MX, T_AFSDB, T_RT, T_KX):
        _lower_name_at(buf, 2, end)
    elif rdtype == T_PX:
        _lower_name_at(buf, _lower_name_at(buf, 2, end), end)
    elif rdtype == T_SRV:
        _lower_name_at(buf, 6, end)
    elif rdtype in (T_SIG, T_RRSIG):
        _lower_name_at(buf, RRSIG_SIGNER, end)
    elif rdtype == T_NAPTR:
        pos = _skip_string(buf, 4, end)
        pos = _skip_string(buf, pos, end)
        pos = _skip_string(buf, pos, end)
        _lower_name_at(buf, pos, end)
    elif rdtype == T_A6:
        if end < 1 or buf[0] > 128:
            raise MalformedData("bad A6 prefix length")
        prefix = buf[0]
        pos = 1 + (128 - prefix + 7) // 8
        if prefix:
            _lower_name_at(buf, pos, end)
    return out


cdef bytes _ipv4_wire(str text):
    cdef Py_ssize_t n, i
    cdef const unsigned char *s = <const unsigned char *>PyUnicode_AsUTF8AndSize(given(text), &n)
    cdef unsigned char out[4]
    cdef int part = 0, value = 0, digits = 0
    for i in range(n + 1):
        if i == n or s[i] == 46:  # '.'
            if digits == 0 or part > 3:
                raise MalformedData("bad IPv4 address")
            out[part] = <unsigned char>value
            part += 1
            value = 0
            digits = 0
        elif 48 <= s[i] <= 57 and digits < 3:
            value = value * 10 + (s[i] - 48)
            digits += 1
            if value > 255:
                raise MalformedData("bad IPv4 address")
        else:
            raise MalformedData("bad IPv4 address")
    if part != 4:
        raise MalformedData("bad IPv4 address")
    return PyBytes_FromStringAndSize(<char *>out, 4)


# --- canonical RDATA from dnspython's fields ----------------------------------------------------
# The common types are written here from the fields of dnspython's Rdata, as its ``to_wire``
# writes them, then canonicalised as canonical_rdata does. A field that is not what dnspython
# builds (a relative name, another Python type, a value out of range) returns None, a missing
# one (generic RDATA) raises AttributeError, and rdata_wire then takes dnspython's path, which
# gives the same bytes or raises what it raises.

cdef tuple _absolute(object name):
    """``name.labels`` when they are an absolute name's as dnspython builds them (bytes labels of
    at most 63 octets, 255 in all, the last one the root: RFC 1035 §2.3.4, §3.1), else None."""
    cdef object labels = name.labels
    cdef Py_ssize_t total = 0, n = -1
    if type(labels) is not tuple:
        return None
    for label in <tuple>labels:
        if type(label) is not bytes:
            return None
        n = PyBytes_GET_SIZE(label)
        if n > MAX_LABEL:
            return None
        total += n + 1
    if n != 0 or total > MAX_NAME:
        return None
    return labels


cdef inline long long _uint(object value, long long limit) except? -2:
    """An integer field in [0, limit] as dnspython holds it (an int, or an IntEnum such as DS's
    algorithm), else -1; OverflowError beyond 64 bits."""
    cdef long long v
    if not isinstance(value, int):
        return -1
    v = value
    return v if 0 <= v <= limit else -1


cdef Py_ssize_t _counted_size(object value):
    """Wire length of a <character-string> or NSEC3 salt or hash held as bytes (RFC 1035 §3.3,
    RFC 5155 §3.2): its length octet and at most 255 octets; else -1."""
    if type(value) is not bytes or PyBytes_GET_SIZE(value) > 255:
        return -1
    return 1 + PyBytes_GET_SIZE(value)


cdef Py_ssize_t _windows_size(object windows):
    """Wire length of an NSEC or NSEC3 type bit map (RFC 4034 §4.1.2) held as dnspython holds
    it: a tuple of (window, bitmap) in increasing window order, each bitmap 1 to 32 octets, the
    last one not zero; else -1."""
    cdef Py_ssize_t size = 0, n
    cdef long long window, last = -1
    cdef bytes bitmap
    if type(windows) is not tuple:
        return -1
    for item in <tuple>windows:
        if type(item) is not tuple or len(<tuple>item) != 2 or type((<tuple>item)[1]) is not bytes:
            return -1
        window = _uint((<tuple>item)[0], 255)
        bitmap = (<tuple>item)[1]
        n = PyBytes_GET_SIZE(bitmap)
        if window <= last or n == 0 or n > 32 or bitmap[n - 1] == 0:  # window -1: not a window
            return -1
        last = window
        size += 2 + n
    return size


cdef inline unsigned char *_u16(unsigned char *p, long long value) noexcept:
    p[0] = (value >> 8) & 0xFF
    p[1] = value & 0xFF
    return p + 2


cdef inline unsigned char *_u32(unsigned char *p, long long value) noexcept:
    return _u16(_u16(p, value >> 16), value & 0xFFFF)


cdef inline unsigned char *_octets(unsigned char *p, bytes value, bint counted) noexcept:
    """``value`` at ``p``, after its length octet when ``counted``."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    if counted:
        p[0] = <unsigned char>n
        p += 1
    memcpy(p, PyBytes_AS_STRING(value), n)
    return p + n


cdef unsigned char *_put_windows(unsigned char *p, tuple windows) noexcept:
    """A type bit map checked by :func:`_windows_size` at ``p``."""
    for item in windows:
        p[0] = <unsigned char>(<long long>(<tuple>item)[0])
        p = _octets(p + 1, <bytes>(<tuple>item)[1], True)
    return p


cdef inline unsigned char *_name(unsigned char *p, tuple labels, bint lowercase) noexcept:
    return p + put_name(p, labels, 0, lowercase)


cdef bytes _tagged(long long a, long long b, long long c, object blob):
    """Two octets, one, one, then ``blob``: the layout of DS (key tag, algorithm, digest type,
    digest: RFC 4034 §5.1) and of DNSKEY (flags, protocol, algorithm, public key: §2.1); None
    when a field is -1 (see :func:`_uint`) or ``blob`` is not bytes."""
    cdef bytes out
    cdef unsigned char *p
    if a < 0 or b < 0 or c < 0 or type(blob) is not bytes:
        return None
    out = PyBytes_FromStringAndSize(NULL, 4 + PyBytes_GET_SIZE(blob))
    p = _u16(<unsigned char *>PyBytes_AS_STRING(out), a)
    p[0] = <unsigned char>b
    p[1] = <unsigned char>c
    _octets(p + 2, <bytes>blob, False)
    return out


cdef bytes _fields_wire(int rdtype, object rdata):
    """Canonical RDATA of NS, CNAME, DNAME, PTR, MX, SRV and SOA (their names lowercased, RFC
    4034 §6.2), TXT and SPF, DS and CDS, NSEC (its next name as it is, RFC 6840 §5.1), NSEC3
    and NSEC3PARAM (RFC 5155 §3.2, §4.2) from dnspython's fields; None for any other type or
    when a field is not as dnspython builds it."""
    cdef tuple first = None, second = None
    cdef long long a = 0, b = 0, c = 0
    cdef long long ints[5]
    cdef Py_ssize_t size, i, extra = 0, bits
    cdef object blob = None, salt = None, windows = None
    cdef bytes out
    cdef unsigned char *p
    if rdtype == T_NS or rdtype == T_CNAME or rdtype == T_DNAME or rdtype == T_PTR:
        first = _absolute(rdata.target)
        if first is None:
            return None
        out = PyBytes_FromStringAndSize(NULL, name_length(first, 0))
        _name(<unsigned char *>PyBytes_AS_STRING(out), first, True)
    elif rdtype == T_MX:
        a = _uint(rdata.preference, 0xFFFF)
        first = _absolute(rdata.exchange)
        if a < 0 or first is None:
            return None
        out = PyBytes_FromStringAndSize(NULL, 2 + name_length(first, 0))
        _name(_u16(<unsigned char *>PyBytes_AS_STRING(out), a), first, True)
    elif rdtype == T_SRV:
        a = _uint(rdata.priority, 0xFFFF)
        b = _uint(rdata.weight, 0xFFFF)
        c = _uint(rdata.port, 0xFFFF)
        first = _absolute(rdata.target)
        if a < 0 or b < 0 or c < 0 or first is None:
            return None
        out = PyBytes_FromStringAndSize(NULL, 6 + name_length(first, 0))
        p = _u16(_u16(_u16(<unsigned char *>PyBytes_AS_STRING(out), a), b), c)
        _name(p, first, True)
    elif rdtype == T_SOA:
        first = _absolute(rdata.mname)
        second = _absolute(rdata.rname)
        for i, value in enumerate((rdata.serial, rdata.refresh, rdata.retry, rdata.expire,
                                   rdata.minimum)):
            ints[i] = _uint(value, 0xFFFFFFFF)
            if ints[i] < 0:
                return None
        if first is None or second is None:
            return None
        out = PyBytes_FromStringAndSize(NULL, name_length(first, 0) + name_length(second, 0) + 20)
        p = _name(_name(<unsigned char *>PyBytes_AS_STRING(out), first, True), second, True)
        for i in range(5):
            p = _u32(p, ints[i])
    elif rdtype == T_TXT or rdtype == T_SPF:  # RFC 1035 §3.3.14: <character-string>s
        blob = rdata.strings
        if type(blob) is not tuple:
            return None
        size = 0
        for string in <tuple>blob:
            extra = _counted_size(string)
            if extra < 0:
                return None
            size += extra
        out = PyBytes_FromStringAndSize(NULL, size)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        for string in <tuple>blob:
            p = _octets(p, <bytes>string, True)
    elif rdtype == T_DS or rdtype == T_CDS:
        return _tagged(_uint(rdata.key_tag, 0xFFFF), _uint(rdata.algorithm, 0xFF),
                       _uint(rdata.digest_type, 0xFF), rdata.digest)
    elif rdtype == T_NSEC:
        first = _absolute(rdata.next)
        windows = rdata.windows
        size = _windows_size(windows)
        if first is None or size < 0:
            return None
        out = PyBytes_FromStringAndSize(NULL, name_length(first, 0) + size)
        _put_windows(_name(<unsigned char *>PyBytes_AS_STRING(out), first, False), windows)
    elif rdtype == T_NSEC3 or rdtype == T_NSEC3PARAM:
        a = _uint(rdata.algorithm, 0xFF)
        b = _uint(rdata.flags, 0xFF)
        c = _uint(rdata.iterations, 0xFFFF)
        salt = rdata.salt
        size = _counted_size(salt)
        if rdtype == T_NSEC3:
            blob = rdata.next
            windows = rdata.windows
            extra = _counted_size(blob)
            bits = _windows_size(windows)
            if extra < 0 or bits < 0:
                return None
            extra += bits
        if a < 0 or b < 0 or c < 0 or size < 0:
            return None
        out = PyBytes_FromStringAndSize(NULL, 4 + size + extra)
        p = <unsigned char *>PyBytes_AS_STRING(out)
        p[0] = <unsigned char>a
        p[1] = <unsigned char>b
        p = _octets(_u16(p + 2, c), <bytes>salt, True)
        if rdtype == T_NSEC3:
            _put_windows(_octets(p, <bytes>blob, True), windows)
    else:
        return None
    return out


cpdef bytes rdata_wire(object rdata):
    """Canonical RDATA wire form of a dnspython ``Rdata`` (RFC 4034 §6.2).

    A, AAAA, DNSKEY, CDNSKEY and the types of :func:`_fields_wire` are serialised straight from
    their fields; the rest, and any whose fields are not as dnspython builds them, go through
    dnspython's uncompressed ``to_wire`` and :func:`canonical_rdata`."""
    cdef int rdtype = rdata.rdtype
    cdef bytes out
    if rdtype == T_A:
        return _ipv4_wire(rdata.address)
    if rdtype == T_AAAA:
        return _inet_pton(_AF_INET6, rdata.address)
    try:
        if rdtype == T_DNSKEY or rdtype == T_CDNSKEY:  # the most frequent, first
            out = _tagged(_uint(rdata.flags, 0xFFFF), _uint(rdata.protocol, 0xFF),
                          _uint(rdata.algorithm, 0xFF), rdata.key)
        else:
            out = _fields_wire(rdtype, rdata)
    except (AttributeError, OverflowError):  # generic RDATA, an integer field beyond 64 bits
        out = None
    if out is None:
        return canonical_rdata(rdtype, rdata.to_wire())
    return out


# --- canonical order (RFC 4034 §6.3) -----------------------------------------------------------

cdef list canonical_order(list rdatas):
    """Sort canonical RDATA wire forms into canonical order and drop duplicates, in place
    (RFC 4034 §6.3); return the list."""
    cdef Py_ssize_t i = 1
    if len(rdatas) < 2:
        return rdatas
    rdatas.sort()
    while i < len(rdatas):
        if rdatas[i] == rdatas[i - 1]:
            del rdatas[i]
        else:
            i += 1
    return rdatas


cdef object members(object rdataset):
    """What iterating a dnspython RRset or Rdataset yields, without its Python-level
    ``__iter__``: the keys of the dict a ``dns.set.Set`` keeps them in. Other iterables are
    returned as they are."""
    cdef object items = getattr(rdataset, "items", None)
    return items if type(items) is dict else rdataset

