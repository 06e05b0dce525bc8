"""C declarations of resolver/dnssec/crypto.pyx that verify.pyx uses: parsed DNSKEYs, the
verified-signature cache, one signature check, the algorithm policy."""

# DNSKEY flags (RFC 4034 §2.1.1 Zone Key, RFC 5011 §3 REVOKE) and protocol (RFC 4034 §2.1.2).
cdef enum:
    ZONE_KEY = 0x0100
    REVOKED_KEY = 0x0080
    PROTOCOL_DNSSEC = 3


cdef class Key:
    cdef readonly bytes wire
    cdef readonly int flags, protocol, algorithm, tag
    cdef public object info  # the validator's description of the key, kept for reuse
    cdef object _public
    cdef str _error
    cdef bint _loaded
    cdef Py_ssize_t _modulus_octets  # of an RSA key, which is a signature's length

    cdef void _load(self)


cdef class KeyCache:
    cdef object _keys  # OrderedDict: popitem(last=False) evicts in O(1); a plain dict's
    cdef dict _by_material  # next(iter(d)) walks the deleted slots left at its front
    cdef Py_ssize_t _capacity
    cdef tuple _last  # (rdatas, their Keys) of the last of_rrset(), replaced as one

    cpdef Key get(self, bytes wire)
    cpdef Key of_rdata(self, object rdata)
    cpdef list of_rrset(self, object dnskeys)


cdef class VerifiedSignatures:
    cdef object _seen  # OrderedDict digest -> None
    cdef Py_ssize_t _capacity
    cdef readonly unsigned long long hits, misses

    cpdef bytes digest(self, Key key, bytes signature, bytes data)
    cpdef bint known(self, bytes digest)
    cpdef void add(self, bytes digest)


cdef bint signature_valid(Key key, bytes signature, bytes data)
cpdef bint algorithm_usable(int algorithm, bint allow_sha1) noexcept
