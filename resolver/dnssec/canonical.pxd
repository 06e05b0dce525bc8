"""C declarations of resolver/dnssec/canonical.pyx shared with the other compiled modules of the
DNSSEC core (crypto.pyx, verify.pyx) and with the cache hit path (resolver/resolve/_fastcache.pyx):
the sizes of a name, names and canonical form (RFC 4034 §6)."""

cdef enum:
    MAX_LABEL = 63     # RFC 1035 §2.3.4, octets of a label
    MAX_NAME = 255     # RFC 1035 §2.3.4, octets of a name in wire form
    RRSIG_SIGNER = 18  # RFC 4034 §3.1: where the signer's name starts in (SIG and) RRSIG RDATA


cdef inline object given(object value):
    """``value``, or TypeError for None: typed arguments of cpdef functions accept None, which
    the C code must never read as bytes."""
    if value is None:
        raise TypeError("None where bytes, a tuple, a list or a Key is required")
    return value


cdef inline unsigned char lower(unsigned char c) noexcept nogil:
    """ASCII lowercase of one octet (RFC 4034 §6.2: only US-ASCII letters are folded)."""
    if 65 <= c <= 90:
        return c + 32
    return c


cdef Py_ssize_t name_length(tuple labels, Py_ssize_t start) except -1
cdef Py_ssize_t put_name(unsigned char *dst, tuple labels, Py_ssize_t start,
                         bint lowercase) noexcept
cpdef bytes name_wire(tuple labels, bint lowercase=*)
cpdef int label_count(tuple labels)
cpdef bint same_name(tuple a, tuple b)
cpdef bint is_subdomain(tuple name, tuple ancestor)
cpdef bint same(object a, object b)
cpdef bint within(object name, object ancestor)
cpdef str name_text(object name)
cpdef str wire_text(bytes wire)
cpdef bytes canonical_rdata(int rdtype, bytes wire)
cpdef bytes rdata_wire(object rdata)
cdef list canonical_order(list rdatas)
cdef object members(object rdataset)
