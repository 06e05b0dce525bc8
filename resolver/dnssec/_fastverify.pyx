# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled DNSSEC verification core.

Wire-level building blocks that the pure-Python validator (``resolver.dnssec``) composes:

* canonical names, RDATA and RRsets (RFC 4034 §6, amended by RFC 6840 §5.1);
* the data an RRSIG signs, with wildcard owner reconstruction (RFC 4034 §3.1.8.1, RFC 4035 §5.3.2);
* DNSKEY parsing into ready public-key objects, cached by the key's wire bytes, and the key tag
  (RFC 4034 App. B);
* RRSIG signature verification for algorithms 5, 7, 8, 10, 13, 14, 15, 16 (RFC 3110, RFC 5702,
  RFC 6605, RFC 8080);
* DS digests (RFC 4034 §5.1.4, RFC 4509, RFC 6605 §2), NSEC3 owner hashing (RFC 5155 §5);
* signature validity windows in serial-number arithmetic (RFC 4034 §3.1.5, RFC 1982).

Nothing here knows about zones, trust or policy: it answers "are these bytes signed by this key".
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int32_t, int64_t, uint32_t
from libc.string cimport memcmp, memcpy

import hashlib
import socket
from collections import OrderedDict

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from resolver.ede import EDE
from resolver.errors import ResolverError

# --- RR types whose embedded names are lowercased in canonical form ---------------------------
# RFC 4034 §6.2 item 3, less NSEC (RFC 6840 §5.1); layouts from the defining RFCs.
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
    T_DNSKEY = 48
    T_CDS = 59
    T_CDNSKEY = 60

# Status codes of check_window().
WINDOW_OK = 0
WINDOW_EXPIRED = 1
WINDOW_NOT_YET_VALID = 2
WINDOW_INVERTED = 3

# Algorithm numbers (IANA "DNS Security Algorithm Numbers").
RSASHA1 = 5
RSASHA1_NSEC3_SHA1 = 7
RSASHA256 = 8
RSASHA512 = 10
ECDSAP256SHA256 = 13
ECDSAP384SHA384 = 14
ED25519 = 15
ED448 = 16


# Signatures are checked over a digest made with hashlib: cryptography resolves its hash
# algorithm object on every call, a microsecond that hashlib does not spend.
cdef object _PKCS1 = padding.PKCS1v15()
cdef object _ECDSA256 = ec.ECDSA(Prehashed(hashes.SHA256()))
cdef object _ECDSA384 = ec.ECDSA(Prehashed(hashes.SHA384()))
cdef object _sha1 = hashlib.sha1
cdef object _sha256 = hashlib.sha256
cdef object _sha384 = hashlib.sha384
cdef object _sha512 = hashlib.sha512
# DER DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017 §9.2 note 1).
cdef bytes _DIGESTINFO_SHA1 = bytes.fromhex("3021300906052b0e03021a05000414")
cdef bytes _DIGESTINFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
cdef bytes _DIGESTINFO_SHA512 = bytes.fromhex("3051300d060960864801650304020305000440")
cdef object _P256 = ec.SECP256R1()
cdef object _P384 = ec.SECP384R1()
cdef object _inet_pton = socket.inet_pton
cdef int _AF_INET6 = socket.AF_INET6


class MalformedData(ResolverError, ValueError):
    """Wire data that cannot be canonicalised or parsed."""


# --- names --------------------------------------------------------------------------------------

cdef inline object _given(object value):
    """``value``, or TypeError for None: typed arguments of cpdef functions accept None, which
    the C code below must never read as bytes."""
    if value is None:
        raise TypeError("None where bytes, a tuple, a list or a Key is required")
    return value


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    if 65 <= c <= 90:
        return c + 32
    return c


cdef Py_ssize_t _name_length(tuple labels, Py_ssize_t start) except -1:
    """Wire length of the name ``labels[start:]``, which must be absolute with labels of at most
    63 octets and at most 255 octets in all (RFC 1035 §2.3.4, §3.1), else MalformedData."""
    cdef Py_ssize_t total = 0, i, n, count = len(_given(labels))
    cdef bytes label
    for i in range(start, count):
        label = labels[i]  # a checked assignment: bytes or None
        n = PyBytes_GET_SIZE(_given(label))
        if n > 63:
            raise MalformedData("label longer than 63 octets")
        total += n + 1
    if total == 0 or PyBytes_GET_SIZE(<bytes>labels[count - 1]) != 0:
        raise MalformedData("name is not absolute")
    if total > 255:
        raise MalformedData("name longer than 255 octets")
    return total


cdef Py_ssize_t _put_name(unsigned char *dst, tuple labels, Py_ssize_t start,
                          bint lowercase) noexcept:
    """Write ``labels[start:]``, checked by :func:`_name_length`, at ``dst``; return its length."""
    cdef Py_ssize_t pos = 0, i, j, n
    cdef const unsigned char *src
    for i in range(start, len(labels)):
        n = PyBytes_GET_SIZE(<bytes>labels[i])
        src = <const unsigned char *>PyBytes_AS_STRING(<bytes>labels[i])
        dst[pos] = <unsigned char>n
        pos += 1
        if lowercase:
            for j in range(n):
                dst[pos + j] = _lower(src[j])
        else:
            memcpy(dst + pos, src, n)
        pos += n
    return pos


cpdef bytes name_wire(tuple labels, bint lowercase=True):
    """Uncompressed wire form of a name given as ``dns.name.Name.labels`` (RFC 1035 §3.1),
    lowercased for canonical form (RFC 4034 §6.2) unless ``lowercase`` is false."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _name_length(labels, 0))
    _put_name(<unsigned char *>PyBytes_AS_STRING(out), labels, 0, lowercase)
    return out


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
            buf[i] = _lower(buf[i])
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
    _given(wire)
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
        _lower_name_at(buf, 18, end)
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
    cdef const unsigned char *s = <const unsigned char *>PyUnicode_AsUTF8AndSize(_given(text), &n)
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


cpdef bytes rdata_wire(object rdata):
    """Canonical RDATA wire form of a dnspython ``Rdata`` (RFC 4034 §6.2).

    The common signed types are serialised straight from their fields; the rest go through
    dnspython's uncompressed ``to_wire`` and :func:`canonical_rdata`."""
    cdef int rdtype = rdata.rdtype
    cdef bytes key, out
    cdef unsigned char *p
    cdef int flags
    if rdtype == T_A:
        return _ipv4_wire(rdata.address)
    if rdtype == T_AAAA:
        return _inet_pton(_AF_INET6, rdata.address)
    if rdtype == T_DNSKEY or rdtype == T_CDNSKEY:
        key = rdata.key
        out = PyBytes_FromStringAndSize(NULL, 4 + PyBytes_GET_SIZE(key))
        p = <unsigned char *>PyBytes_AS_STRING(out)
        flags = rdata.flags
        p[0] = (flags >> 8) & 0xFF
        p[1] = flags & 0xFF
        p[2] = <unsigned char>(<int>rdata.protocol)
        p[3] = <unsigned char>(<int>rdata.algorithm)
        memcpy(p + 4, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        return out
    return canonical_rdata(rdtype, rdata.to_wire())


# --- the data an RRSIG covers -------------------------------------------------------------------

cdef inline void _put32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef struct RrsigFields:
    # The fixed-size RRSIG RDATA fields (RFC 4034 §3.1), read once from a dnspython RRSIG.
    int type_covered, algorithm, labels, key_tag
    uint32_t original_ttl, expiration, inception


cdef int _read_rrsig(object rrsig, RrsigFields *f) except -1:
    f.type_covered = rrsig.type_covered
    f.algorithm = rrsig.algorithm
    f.labels = rrsig.labels
    f.key_tag = rrsig.key_tag
    f.original_ttl = rrsig.original_ttl
    f.expiration = rrsig.expiration
    f.inception = rrsig.inception
    return 0


cdef Py_ssize_t _put_header(unsigned char *p, const RrsigFields *f, tuple signer) except -1:
    """Write the RRSIG RDATA up to and including the canonical signer name (RFC 4034 §3.1.8.1)
    at ``p``, which has room for 18 + 255 octets; return its length."""
    _name_length(signer, 0)
    p[0] = (f.type_covered >> 8) & 0xFF
    p[1] = f.type_covered & 0xFF
    p[2] = <unsigned char>f.algorithm
    p[3] = <unsigned char>f.labels
    _put32(p + 4, f.original_ttl)
    _put32(p + 8, f.expiration)
    _put32(p + 12, f.inception)
    p[16] = (f.key_tag >> 8) & 0xFF
    p[17] = f.key_tag & 0xFF
    return 18 + _put_name(p + 18, signer, 0, True)


cpdef bytes rrsig_header(object rrsig):
    """RRSIG RDATA up to and including the canonical signer name (RFC 4034 §3.1.8.1)."""
    cdef unsigned char buf[18 + 255]
    cdef RrsigFields f
    _read_rrsig(rrsig, &f)
    return PyBytes_FromStringAndSize(<char *>buf, _put_header(buf, &f, rrsig.signer.labels))


cpdef int label_count(tuple labels):
    """The RRSIG "labels" value of an owner name: labels less the root and a leading ``*``
    (RFC 4034 §3.1.3)."""
    cdef int n = len(labels) - 1
    if n > 0 and <bytes>labels[0] == b"*":
        n -= 1
    return n


cdef Py_ssize_t _put_owner(unsigned char *p, tuple owner_labels, int rrsig_labels) except -1:
    """Write the canonical owner name as signed at ``p`` (room for 255 octets): the owner itself,
    or the wildcard ``*.<rightmost labels>`` it was expanded from when the RRSIG labels field is
    smaller (RFC 4035 §5.3.2); return its length. MalformedData when the labels field exceeds
    the owner's label count."""
    cdef int have = label_count(_given(owner_labels))
    cdef Py_ssize_t start = len(owner_labels) - 1 - rrsig_labels
    if rrsig_labels > have:
        raise MalformedData("RRSIG labels field exceeds the owner's label count")
    if rrsig_labels == have:
        _name_length(owner_labels, 0)
        return _put_name(p, owner_labels, 0, True)
    if rrsig_labels < 0:
        raise MalformedData("negative RRSIG labels field")
    _name_length(owner_labels, start)
    p[0] = 1
    p[1] = 42  # '*'
    return 2 + _put_name(p + 2, owner_labels, start, True)


cpdef bytes signed_owner(tuple owner_labels, int rrsig_labels):
    """Canonical owner name as signed: the owner itself, or the wildcard ``*.<rightmost labels>``
    it was expanded from when the RRSIG labels field is smaller (RFC 4035 §5.3.2).
    Raises MalformedData when the labels field exceeds the owner's label count."""
    cdef unsigned char buf[255]
    return PyBytes_FromStringAndSize(<char *>buf, _put_owner(buf, owner_labels, rrsig_labels))


cdef list _canonical_order(list rdatas):
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


cdef bytes _build(const unsigned char *header, Py_ssize_t hn, const unsigned char *owner,
                  Py_ssize_t on, int rdtype, int rdclass, uint32_t original_ttl, list ordered):
    """The header followed by one RR of owner, type, class and original TTL per RDATA of
    ``ordered`` (RFC 4034 §3.1.8.1)."""
    cdef Py_ssize_t total = hn, pos, rn
    cdef bytes rd, out
    cdef unsigned char *p
    for rd in ordered:
        rn = PyBytes_GET_SIZE(_given(rd))
        if rn > 0xFFFF:
            raise MalformedData("RDATA longer than 65535 octets")
        total += on + 10 + rn
    out = PyBytes_FromStringAndSize(NULL, total)
    p = <unsigned char *>PyBytes_AS_STRING(out)
    memcpy(p, header, hn)
    pos = hn
    for rd in ordered:
        rn = PyBytes_GET_SIZE(rd)
        memcpy(p + pos, owner, on)
        pos += on
        p[pos] = (rdtype >> 8) & 0xFF
        p[pos + 1] = rdtype & 0xFF
        p[pos + 2] = (rdclass >> 8) & 0xFF
        p[pos + 3] = rdclass & 0xFF
        _put32(p + pos + 4, original_ttl)
        p[pos + 8] = (rn >> 8) & 0xFF
        p[pos + 9] = rn & 0xFF
        pos += 10
        memcpy(p + pos, PyBytes_AS_STRING(rd), rn)
        pos += rn
    return out


cpdef bytes signed_data(bytes header, bytes owner, int rdtype, int rdclass, uint32_t original_ttl,
                        list rdatas):
    """The octets an RRSIG covers: its header followed by the RRset in canonical form and order,
    duplicates removed (RFC 4034 §3.1.8.1, §6.3). ``rdatas`` are canonical RDATA wire forms."""
    return _build(<const unsigned char *>PyBytes_AS_STRING(_given(header)),
                  PyBytes_GET_SIZE(header),
                  <const unsigned char *>PyBytes_AS_STRING(_given(owner)),
                  PyBytes_GET_SIZE(owner), rdtype, rdclass, original_ttl,
                  _canonical_order(list(_given(rdatas))))


cdef bytes _rrsig_signed_data(const RrsigFields *f, tuple signer, tuple owner_labels, int rdclass,
                              list ordered):
    """:func:`signed_data` for an RRSIG over an RRset of its covered type owned by
    ``owner_labels`` whose canonical RDATA are ``ordered``, built without intermediate objects."""
    cdef unsigned char header[18 + 255]
    cdef unsigned char owner[255]
    cdef Py_ssize_t on = _put_owner(owner, owner_labels, f.labels)
    cdef Py_ssize_t hn = _put_header(header, f, signer)
    return _build(header, hn, owner, on, f.type_covered, rdclass, f.original_ttl, ordered)


# --- time ---------------------------------------------------------------------------------------

cpdef int check_window(uint32_t inception, uint32_t expiration, int64_t now):
    """Where ``now`` (POSIX seconds) falls against an RRSIG validity window, comparing in 32-bit
    serial-number arithmetic (RFC 4034 §3.1.5, RFC 1982 §3.2)."""
    cdef uint32_t t = <uint32_t>(now & 0xFFFFFFFF)
    if <int32_t>(expiration - inception) < 0:
        return WINDOW_INVERTED
    if <int32_t>(t - inception) < 0:
        return WINDOW_NOT_YET_VALID
    if <int32_t>(expiration - t) < 0:
        return WINDOW_EXPIRED
    return WINDOW_OK


# --- keys ---------------------------------------------------------------------------------------

cpdef int key_tag(bytes dnskey_wire):
    """Key tag of a DNSKEY RDATA (RFC 4034 App. B; App. B.1 for algorithm 1)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(dnskey_wire)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(dnskey_wire), i
    cdef uint32_t ac = 0
    _given(dnskey_wire)
    if n < 4:
        raise MalformedData("DNSKEY RDATA shorter than 4 octets")
    if p[3] == 1:
        # The 3rd- and 2nd-to-last octets of the RDATA: of the modulus for a real key, and still
        # defined for a stub of one, which must not stop the validation of its RRset.
        return (p[n - 3] << 8) | p[n - 2]
    for i in range(n):
        ac += p[i] if i & 1 else (<uint32_t>p[i]) << 8
    ac += (ac >> 16) & 0xFFFF
    return ac & 0xFFFF


cdef class Key:
    """A DNSKEY parsed once: flags, algorithm and key tag at once, the public-key object on first
    use (so a flood of keys that no signature names costs no parsing).

    ``public`` is None when the algorithm is not implemented or the key material is malformed;
    ``error`` then says why."""
    cdef readonly bytes wire
    cdef readonly int flags, protocol, algorithm, tag
    cdef public object info  # the validator's description of the key, kept for reuse
    cdef object _public
    cdef str _error
    cdef bint _loaded
    cdef Py_ssize_t _modulus_octets  # of an RSA key, which is a signature's length

    def __init__(self, bytes wire not None):
        self.tag = key_tag(wire)
        self.wire = wire
        self.flags = (wire[0] << 8) | wire[1]
        self.protocol = wire[2]
        self.algorithm = wire[3]

    cdef void _load(self):
        self._loaded = True
        try:
            self._public = _load_public_key(self.algorithm, self.wire[4:])
        except (ValueError, UnsupportedAlgorithm, MalformedData) as exc:
            self._error = f"malformed algorithm {self.algorithm} key: {exc}"
            return
        if self._public is None:
            self._error = f"algorithm {self.algorithm} is not implemented"
        elif isinstance(self._public, rsa.RSAPublicKey):
            self._modulus_octets = (self._public.key_size + 7) // 8

    @property
    def public(self):
        if not self._loaded:
            self._load()
        return self._public

    @property
    def error(self):
        if not self._loaded:
            self._load()
        return self._error

    def __repr__(self):
        return f"<Key tag={self.tag} alg={self.algorithm} flags={self.flags}>"


cdef object _load_public_key(int algorithm, bytes material):
    cdef Py_ssize_t elen, n = len(material)
    if algorithm in (5, 7, 8, 10):  # RFC 3110 §2
        if n < 3:
            raise MalformedData("RSA key too short")
        if material[0]:
            elen, off = material[0], 1
        else:
            elen, off = (material[1] << 8) | material[2], 3
        if elen == 0 or off + elen >= n:
            raise MalformedData("RSA exponent length out of range")
        exponent = int.from_bytes(material[off:off + elen], "big")
        modulus = int.from_bytes(material[off + elen:], "big")
        if modulus.bit_length() > 4096:
            raise MalformedData("RSA modulus longer than 4096 bits")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if algorithm == 13 or algorithm == 14:  # RFC 6605 §4
        if n != (64 if algorithm == 13 else 96):
            raise MalformedData("ECDSA key has the wrong length")
        return ec.EllipticCurvePublicKey.from_encoded_point(
            _P256 if algorithm == 13 else _P384, b"\x04" + material)
    if algorithm == 15:  # RFC 8080 §3
        return ed25519.Ed25519PublicKey.from_public_bytes(material)
    if algorithm == 16:
        return ed448.Ed448PublicKey.from_public_bytes(material)
    return None


cdef object _members(object rdataset):
    """What iterating a dnspython RRset or Rdataset yields, without its Python-level
    ``__iter__``: the keys of the dict a ``dns.set.Set`` keeps them in. Other iterables are
    returned as they are."""
    cdef object items = getattr(rdataset, "items", None)
    return items if type(items) is dict else rdataset


cdef class KeyCache:
    """Parsed keys by DNSKEY wire bytes, bounded; the oldest entry goes first when full.

    dnspython DNSKEY rdatas are also looked up by their key material, then checked against the
    flags, protocol and algorithm: the same identity as the wire form, without rebuilding and
    rehashing the wire each time. The Keys of the last RRset asked for are remembered with its
    rdatas: dnspython rdatas are immutable, so the same rdata objects have the same Keys."""
    cdef object _keys  # OrderedDict: popitem(last=False) evicts in O(1); a plain dict's
    cdef dict _by_material  # next(iter(d)) walks the deleted slots left at its front
    cdef Py_ssize_t _capacity
    cdef tuple _last  # (rdatas, their Keys) of the last of_rrset(), replaced as one

    def __init__(self, Py_ssize_t capacity=10000):
        self._keys = OrderedDict()
        self._by_material = {}
        self._capacity = capacity
        self._last = ((), [])

    cpdef Key get(self, bytes wire):
        cdef Key key = self._keys.get(wire)
        if key is None:
            if len(self._keys) >= self._capacity:
                self._keys.popitem(last=False)
            key = Key(wire)
            self._keys[wire] = key
        return key

    cpdef Key of_rdata(self, object rdata):
        """The Key of a dnspython DNSKEY (or CDNSKEY) rdata."""
        cdef bytes material = rdata.key
        cdef Key key = self._by_material.get(material)
        if key is None or key.flags != <int>rdata.flags or key.protocol != <int>rdata.protocol \
                or key.algorithm != <int>rdata.algorithm:
            if len(self._by_material) >= self._capacity:
                self._by_material.clear()  # only an index over _keys: cheap to rebuild
            key = self.get(rdata_wire(rdata))
            self._by_material[material] = key
        return key

    cpdef list of_rrset(self, object dnskeys):
        """The Keys of every rdata of a dnspython DNSKEY (or CDNSKEY) RRset, in its order."""
        cdef tuple rdatas = tuple(_members(dnskeys)), last = self._last
        cdef tuple last_rdatas = last[0]
        cdef list keys
        cdef Py_ssize_t i, n = len(rdatas)
        if n == len(last_rdatas):
            for i in range(n):
                if rdatas[i] is not last_rdatas[i]:
                    break
            else:
                return list(<list>last[1])
        keys = [self.of_rdata(rd) for rd in rdatas]
        self._last = (rdatas, keys)
        return list(keys)

    def __len__(self):
        return len(self._keys)

    def clear(self):
        self._keys.clear()
        self._by_material.clear()
        self._last = ((), [])


# --- signatures ---------------------------------------------------------------------------------

cpdef bytes ecdsa_der(bytes signature, Py_ssize_t half):
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` from the r|s form of RFC 6605 §4 (X.690 §8.3;
    every length is below 128, so short-form lengths suffice). ``half`` is 32 or 48 and the
    signature twice as long, else MalformedData."""
    cdef const unsigned char *src = <const unsigned char *>PyBytes_AS_STRING(signature)
    cdef unsigned char buf[2 + 2 * (2 + 1 + 48)]
    cdef Py_ssize_t pos = 2, part, start, n
    if (half != 32 and half != 48) or PyBytes_GET_SIZE(_given(signature)) != 2 * half:
        raise MalformedData("ECDSA signature has the wrong length")
    for part in range(2):
        start = part * half
        n = half
        while n > 1 and src[start] == 0:  # minimal encoding: no leading zero octets
            start += 1
            n -= 1
        buf[pos] = 0x02
        if src[start] & 0x80:  # keep the integer positive
            buf[pos + 1] = <unsigned char>(n + 1)
            buf[pos + 2] = 0
            pos += 3
        else:
            buf[pos + 1] = <unsigned char>n
            pos += 2
        memcpy(buf + pos, src + start, n)
        pos += n
    buf[0] = 0x30
    buf[1] = <unsigned char>(pos - 2)
    return PyBytes_FromStringAndSize(<char *>buf, pos)


cpdef bint verify_signature(Key key, bytes signature, bytes data):
    """Check ``signature`` over ``data`` with ``key``; False on any mismatch or malformed
    signature (RFC 3110 §3, RFC 5702 §3, RFC 6605 §4, RFC 8080 §4)."""
    return _verify(_given(key), _given(signature), _given(data))


cdef bint _verify_pkcs1(Key key, object pub, bytes signature, bytes prefix,
                       bytes digest) except -1:
    """RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2): the signature is as long as the
    modulus, and the message it recovers, whose 00 01 FF..FF 00 padding cryptography checks, is
    exactly the DigestInfo of ``digest``. This is the comparison OpenSSL's own verify makes,
    without cryptography's per-call hash set-up. InvalidSignature or ValueError propagate."""
    cdef bytes recovered
    cdef Py_ssize_t pn = PyBytes_GET_SIZE(prefix), dn = PyBytes_GET_SIZE(digest)
    if PyBytes_GET_SIZE(signature) != key._modulus_octets:
        return False
    recovered = pub.recover_data_from_signature(signature, _PKCS1, None)
    return (PyBytes_GET_SIZE(recovered) == pn + dn
            and memcmp(PyBytes_AS_STRING(recovered), PyBytes_AS_STRING(prefix), pn) == 0
            and memcmp(PyBytes_AS_STRING(recovered) + pn, PyBytes_AS_STRING(digest), dn) == 0)


cdef bint _verify(Key key, bytes signature, bytes data):
    """:func:`verify_signature` for arguments known not to be None."""
    cdef int alg = key.algorithm
    cdef Py_ssize_t half
    if not key._loaded:
        key._load()
    cdef object pub = key._public
    if pub is None:
        return False
    try:
        if alg == 8:
            return _verify_pkcs1(key, pub, signature, _DIGESTINFO_SHA256, _sha256(data).digest())
        elif alg == 13 or alg == 14:
            half = 32 if alg == 13 else 48
            if PyBytes_GET_SIZE(signature) != 2 * half:
                return False
            pub.verify(ecdsa_der(signature, half),
                       (_sha256 if alg == 13 else _sha384)(data).digest(),
                       _ECDSA256 if alg == 13 else _ECDSA384)
        elif alg == 15 or alg == 16:
            pub.verify(signature, data)
        elif alg == 10:
            return _verify_pkcs1(key, pub, signature, _DIGESTINFO_SHA512, _sha512(data).digest())
        elif alg == 5 or alg == 7:
            return _verify_pkcs1(key, pub, signature, _DIGESTINFO_SHA1, _sha1(data).digest())
        else:
            return False
    except InvalidSignature:
        return False
    except ValueError:
        return False
    return True



cdef class VerifiedSignatures:
    """Signatures already proven, so that the same RRSIG over the same data with the same key is
    verified once (issue #5): every wildcard expansion of one RRset, the same NSEC/NSEC3 proof in
    many negative answers, a DNSKEY set fetched again. An entry is the SHA-256 of the key, the
    signature and the signed data, all length-prefixed; only successes are kept, the least
    recently used is evicted. A hit skips only the public-key operation: the validity window and
    every other check of RFC 4035 §5.3 still run each time."""

    cdef object _seen  # OrderedDict digest -> None
    cdef Py_ssize_t _capacity
    cdef readonly unsigned long long hits, misses

    def __init__(self, Py_ssize_t capacity=20000):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._seen = OrderedDict()
        self._capacity = capacity

    cpdef bytes digest(self, Key key, bytes signature, bytes data):
        """The entry of a check: SHA-256 over the length-prefixed key, signature and data."""
        cdef Py_ssize_t kn = PyBytes_GET_SIZE(_given(key).wire)
        cdef Py_ssize_t sn = PyBytes_GET_SIZE(_given(signature))
        return _sha256(b"".join((kn.to_bytes(4, "big"), key.wire, sn.to_bytes(4, "big"),
                                 signature, _given(data)))).digest()

    cpdef bint known(self, bytes digest):
        """Whether the check ``digest`` names succeeded before (and mark it recently used)."""
        if digest in self._seen:
            self._seen.move_to_end(digest)
            self.hits += 1
            return True
        self.misses += 1
        return False

    cpdef void add(self, bytes digest):
        """Remember a check that succeeded."""
        self._seen[digest] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def __len__(self):
        return len(self._seen)

    def clear(self):
        self._seen.clear()
        self.hits = self.misses = 0


# --- digests ------------------------------------------------------------------------------------

DIGEST_SHA1 = 1
DIGEST_SHA256 = 2
DIGEST_SHA384 = 4
IMPLEMENTED_DIGESTS = frozenset((1, 2, 4))
_DIGEST_NAMES = {1: "sha1", 2: "sha256", 4: "sha384"}


cpdef bytes ds_digest(int digest_type, bytes owner_wire, bytes dnskey_wire):
    """DS digest of a DNSKEY: hash(owner | RDATA) (RFC 4034 §5.1.4, RFC 4509 §2.1, RFC 6605 §2);
    None for an unimplemented digest type."""
    name = _DIGEST_NAMES.get(digest_type)
    if name is None:
        return None
    h = hashlib.new(name, owner_wire)
    h.update(dnskey_wire)
    return h.digest()


cpdef bytes nsec3_hash(bytes name_wire, bytes salt, int iterations):
    """NSEC3 owner hash with SHA-1, the only defined hash algorithm (RFC 5155 §5):
    IH(0) = H(name | salt), IH(k) = H(IH(k-1) | salt)."""
    cdef bytes digest = hashlib.sha1(name_wire + salt).digest()
    cdef int i
    for i in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return digest


# --- the RRSIG loop (RFC 4035 §5.3) ----------------------------------------------------------------

ZONE_FLAG = 0x0100  # RFC 4034 §2.1.1
REVOKE_FLAG = 0x0080  # RFC 5011 §3

# Outcomes of check_rrset().
SECURE = 0
BOGUS = 1
NO_SUPPORTED_KEY = 2  # nothing to check with: RFC 4035 §5.2 makes the zone insecure
RRSET_BUDGET = 3      # max_sig_checks_per_rrset reached


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
            if _lower(pa[j]) != _lower(pb[j]):
                return False
    return True


cpdef bint same_name(tuple a, tuple b):
    """Whether two names (``Name.labels``) are equal, ignoring ASCII case (RFC 4343)."""
    return a is b or (len(a) == len(b) and _labels_equal(a, 0, b, 0, len(a)))


cpdef bint is_subdomain(tuple name, tuple ancestor):
    """Whether ``name`` equals or lies below ``ancestor`` (both ``Name.labels``)."""
    cdef Py_ssize_t n = len(name), m = len(ancestor)
    return m <= n and _labels_equal(name, n - m, ancestor, 0, m)


# The RFC 8914 codes check_rrset reports, read from resolver.ede (their one source) at import.
cdef int E_UNSUPPORTED_ALG = EDE.UNSUPPORTED_DNSKEY_ALGORITHM
cdef int E_BOGUS = EDE.DNSSEC_BOGUS
cdef int E_EXPIRED = EDE.SIGNATURE_EXPIRED
cdef int E_NOT_YET_VALID = EDE.SIGNATURE_NOT_YET_VALID
cdef int E_DNSKEY_MISSING = EDE.DNSKEY_MISSING
cdef int E_RRSIGS_MISSING = EDE.RRSIGS_MISSING
cdef int E_NO_ZONE_KEY_BIT = EDE.NO_ZONE_KEY_BIT_SET
cdef int E_EXPIRED_BEFORE_VALID = EDE.SIGNATURE_EXPIRED_BEFORE_VALID


@cython.freelist(8)  # one per check_rrset() call: reuse the memory
cdef class _Failure:
    """The most telling reason seen so far for an RRset not (yet) proven."""
    cdef public int ede
    cdef public str reason
    cdef public object rrsig
    cdef public Key key

    def __init__(self):
        self.ede = E_RRSIGS_MISSING
        self.reason = "no RRSIG covers it"

    cdef void note(self, int ede, str reason, object rrsig, Key key=None):
        if _rank(ede) >= _rank(self.ede):
            self.ede = ede
            self.reason = reason
            self.rrsig = rrsig
            if key is not None:
                self.key = key


cdef inline int _rank(int ede) noexcept:
    # When no signature proves an RRset, report the most telling failure: a signature that
    # does not verify, then a validity window, a key that is not a zone key, a missing key.
    if ede == E_BOGUS:
        return 6
    if ede == E_EXPIRED or ede == E_NOT_YET_VALID or ede == E_EXPIRED_BEFORE_VALID:
        return 5
    if ede == E_NO_ZONE_KEY_BIT:
        return 4
    if ede == E_DNSKEY_MISSING:
        return 3
    if ede == E_UNSUPPORTED_ALG:
        return 1
    return 0


cpdef bint algorithm_usable(int algorithm, bint allow_sha1) noexcept:
    """Whether signatures of this algorithm are validated: the implemented ones, RSASHA1 (5, 7)
    only when allowed (RFC 8624 §3.1, RFC 9905 §2)."""
    if algorithm == 5 or algorithm == 7:
        return allow_sha1
    return algorithm == 8 or algorithm == 10 or 13 <= algorithm <= 16


cdef tuple _secure(object rrset, object rrsig, const RrsigFields *f, Key key, int64_t now):
    """The SECURE outcome of :func:`check_rrset`, with the TTL the RRset may be cached for: the
    smallest of its TTL, the RRSIG's original TTL and the time until the RRSIG expires (RFC 4035
    §5.3.3)."""
    cdef int64_t ttl = rrset.ttl
    cdef int64_t left = f.original_ttl
    if left < ttl:
        ttl = left
    left = <int32_t>(f.expiration - <uint32_t>(now & 0xFFFFFFFF))
    if left < ttl:
        ttl = left
    return (SECURE, 0, "", key, rrsig, ttl)


cpdef tuple check_rrset(object rrset, object rrsigs, tuple key_owner, list keys, int64_t now,
                        object spend, int max_checks, int max_keys_per_tag, bint allow_sha1,
                        VerifiedSignatures verified=None):
    """Find one RRSIG over ``rrset`` that one of ``keys`` (Keys of DNSKEYs owned by
    ``key_owner``, given as labels) proves: RFC 4035 §5.3.1-§5.3.3; any single valid signature
    suffices (RFC 6840 §5.11). ``spend()``, unless None, is called before each signature
    verification and may raise to stop the work; checks ``verified`` already holds cost none.

    Returns ``(outcome, ede, reason, key, rrsig, ttl)``: outcome SECURE with the proving key and
    RRSIG and the TTL the RRset may be cached for (RFC 4035 §5.3.3), else BOGUS with the most
    telling failure, NO_SUPPORTED_KEY, or RRSET_BUDGET."""
    cdef _Failure failure = _Failure()
    cdef bytes data, digest, signature
    cdef list ordered = None
    cdef tuple owner_labels = rrset.name.labels, signer
    cdef int rdtype = rrset.rdtype, alg, tag, window, checks = 0, tried
    cdef RrsigFields f
    cdef bint usable_zone_key = False, saw_usable_sig = False
    cdef Key key
    for key in keys:
        if key.flags & ZONE_FLAG and algorithm_usable(key.algorithm, allow_sha1):
            usable_zone_key = True
            break
    if rrsigs is None or not same_name(rrsigs.name.labels, owner_labels) \
            or rrsigs.rdclass != rrset.rdclass:
        rrsigs = ()
    for rrsig in _members(rrsigs):
        if rrsig.type_covered != rdtype:
            continue
        _read_rrsig(rrsig, &f)
        alg = f.algorithm
        if not algorithm_usable(alg, allow_sha1):
            failure.note(E_UNSUPPORTED_ALG, f"RRSIG algorithm {alg} is not supported", rrsig)
            continue
        saw_usable_sig = True
        signer = rrsig.signer.labels
        if key_owner is None or not same_name(signer, key_owner):
            failure.note(E_DNSKEY_MISSING, f"no DNSKEY set for signer {rrsig.signer}", rrsig)
            continue
        if not is_subdomain(owner_labels, signer):
            failure.note(E_BOGUS, f"signer {rrsig.signer} is not an ancestor of the owner", rrsig)
            continue
        window = check_window(f.inception, f.expiration, now)
        if window == WINDOW_EXPIRED:
            failure.note(E_EXPIRED, f"signature by key {f.key_tag} expired", rrsig)
            continue
        if window == WINDOW_NOT_YET_VALID:
            failure.note(E_NOT_YET_VALID, f"signature by key {f.key_tag} not yet valid", rrsig)
            continue
        if window == WINDOW_INVERTED:
            failure.note(E_EXPIRED_BEFORE_VALID,
                         f"signature by key {f.key_tag} expires before its inception", rrsig)
            continue
        tag = f.key_tag
        tried = 0
        data = None
        for key in keys:
            if key.tag != tag or key.algorithm != alg:
                continue
            if tried >= max_keys_per_tag:
                break
            tried += 1
            if data is None:
                if ordered is None:
                    ordered = _canonical_order([rdata_wire(rd) for rd in _members(rrset)])
                try:
                    data = _rrsig_signed_data(&f, signer, owner_labels, rrset.rdclass, ordered)
                except MalformedData as exc:
                    failure.note(E_BOGUS, str(exc), rrsig)
                    break
                signature = rrsig.signature
            if not key.flags & ZONE_FLAG or key.flags & REVOKE_FLAG:
                failure.note(E_NO_ZONE_KEY_BIT, f"DNSKEY {key.tag} is not a usable zone key "
                                 "(zone bit clear or revoked)", rrsig, key)
                continue
            if key.protocol != 3 or key.public is None:
                failure.note(E_BOGUS, f"DNSKEY {key.tag}: {key.error or 'protocol is not 3'}",
                             rrsig, key)
                continue
            if checks >= max_checks:
                return (RRSET_BUDGET, E_BOGUS, f"validation budget exhausted: {max_checks} "
                        "signature checks per RRset", failure.key, failure.rrsig, 0)
            digest = None
            if verified is not None:
                digest = verified.digest(key, signature, data)
                if verified.known(digest):
                    return _secure(rrset, rrsig, &f, key, now)
            if spend is not None:
                spend()
            checks += 1
            if _verify(key, _given(signature), data):
                if digest is not None:
                    verified.add(digest)
                return _secure(rrset, rrsig, &f, key, now)
            failure.note(E_BOGUS, f"signature by key {key.tag} algorithm {alg} does not verify",
                         rrsig, key)
        if tried == 0:
            failure.note(E_DNSKEY_MISSING,
                         f"no DNSKEY with tag {tag} algorithm {alg} at {rrsig.signer}", rrsig)
    if (not saw_usable_sig and not usable_zone_key and keys
            and (failure.ede == E_UNSUPPORTED_ALG or failure.ede == E_RRSIGS_MISSING)):
        return (NO_SUPPORTED_KEY, E_UNSUPPORTED_ALG, "no supported algorithm among the zone's keys",
                None, None, 0)
    if failure.ede == E_UNSUPPORTED_ALG:
        # The zone has keys we support, yet nothing is signed with them (RFC 4035 §2.2).
        return (BOGUS, E_RRSIGS_MISSING, "no RRSIG by a supported algorithm of the zone's keys",
                None, failure.rrsig, 0)
    return (BOGUS, failure.ede, failure.reason, failure.key, failure.rrsig, 0)
