# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""DNSSEC algorithms, compiled: DNSKEYs parsed into public keys, and the cryptography each
algorithm number names. Like Unbound's ``val_secalgo``.

* key tags (RFC 4034 App. B) and DNSKEY parsing, cached by the key's wire bytes: RSA (RFC 3110
  §2), ECDSA (RFC 6605 §4), Ed25519 and Ed448 (RFC 8080 §3);
* signature verification for algorithms 5, 7, 8, 10, 13, 14, 15, 16 (RFC 3110 §3, RFC 5702 §3,
  RFC 6605 §4, RFC 8080 §4), and which of them are validated (RFC 8624 §3.1, RFC 9905 §2);
* the signatures already proven, verified once (issue #5);
* DS digests (RFC 4034 §5.1.4, RFC 4509 §2.1, RFC 6605 §2) and NSEC3 owner hashes (RFC 5155 §5).

It answers "is this signature over these bytes made by this key"; which bytes an RRSIG signs and
when it is valid is verify.pyx's. The declarations verify.pyx uses are in ``crypto.pxd``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t
from libc.string cimport memcmp, memcpy

import hashlib
from collections import OrderedDict

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from resolver.dnssec.canonical cimport given, members, rdata_wire
from resolver.dnssec.canonical import MalformedData

# Algorithm numbers (IANA "DNS Security Algorithm Numbers").
cdef enum:
    RSASHA1 = 5
    RSASHA1_NSEC3_SHA1 = 7
    RSASHA256 = 8
    RSASHA512 = 10
    ECDSAP256SHA256 = 13
    ECDSAP384SHA384 = 14
    ED25519 = 15
    ED448 = 16

#: DNSKEY flags and protocol, for Python callers (the values are crypto.pxd's).
ZONE_FLAG = ZONE_KEY
REVOKE_FLAG = REVOKED_KEY
DNSKEY_PROTOCOL = PROTOCOL_DNSSEC

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


# --- keys ---------------------------------------------------------------------------------------

cpdef int key_tag(bytes dnskey_wire):
    """Key tag of a DNSKEY RDATA (RFC 4034 App. B; App. B.1 for algorithm 1)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(dnskey_wire)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(dnskey_wire), i
    cdef uint32_t ac = 0
    given(dnskey_wire)
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
    if (algorithm == RSASHA1 or algorithm == RSASHA1_NSEC3_SHA1 or algorithm == RSASHA256
            or algorithm == RSASHA512):  # RFC 3110 §2
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
    if algorithm == ECDSAP256SHA256 or algorithm == ECDSAP384SHA384:  # RFC 6605 §4
        if n != (64 if algorithm == ECDSAP256SHA256 else 96):
            raise MalformedData("ECDSA key has the wrong length")
        return ec.EllipticCurvePublicKey.from_encoded_point(
            _P256 if algorithm == ECDSAP256SHA256 else _P384, b"\x04" + material)
    if algorithm == ED25519:  # RFC 8080 §3
        return ed25519.Ed25519PublicKey.from_public_bytes(material)
    if algorithm == ED448:
        return ed448.Ed448PublicKey.from_public_bytes(material)
    return None


cdef class KeyCache:
    """Parsed keys by DNSKEY wire bytes, bounded; the oldest entry goes first when full.

    dnspython DNSKEY rdatas are also looked up by their key material, then checked against the
    flags, protocol and algorithm: the same identity as the wire form, without rebuilding and
    rehashing the wire each time. The Keys of the last RRset asked for are remembered with its
    rdatas: dnspython rdatas are immutable, so the same rdata objects have the same Keys."""
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
        cdef tuple rdatas = tuple(members(dnskeys)), last = self._last
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
    if (half != 32 and half != 48) or PyBytes_GET_SIZE(given(signature)) != 2 * half:
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
    return signature_valid(given(key), given(signature), given(data))


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


cdef bint signature_valid(Key key, bytes signature, bytes data):
    """:func:`verify_signature` for arguments known not to be None."""
    cdef int alg = key.algorithm
    cdef Py_ssize_t half
    if not key._loaded:
        key._load()
    cdef object pub = key._public
    if pub is None:
        return False
    try:
        if alg == RSASHA256:
            return _verify_pkcs1(key, pub, signature, _DIGESTINFO_SHA256, _sha256(data).digest())
        elif alg == ECDSAP256SHA256 or alg == ECDSAP384SHA384:
            half = 32 if alg == ECDSAP256SHA256 else 48
            if PyBytes_GET_SIZE(signature) != 2 * half:
                return False
            pub.verify(ecdsa_der(signature, half),
                       (_sha256 if alg == ECDSAP256SHA256 else _sha384)(data).digest(),
                       _ECDSA256 if alg == ECDSAP256SHA256 else _ECDSA384)
        elif alg == ED25519 or alg == ED448:
            pub.verify(signature, data)
        elif alg == RSASHA512:
            return _verify_pkcs1(key, pub, signature, _DIGESTINFO_SHA512, _sha512(data).digest())
        elif alg == RSASHA1 or alg == RSASHA1_NSEC3_SHA1:
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

    def __init__(self, Py_ssize_t capacity=20000):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._seen = OrderedDict()
        self._capacity = capacity

    cpdef bytes digest(self, Key key, bytes signature, bytes data):
        """The entry of a check: SHA-256 over the length-prefixed key, signature and data."""
        cdef Py_ssize_t kn = PyBytes_GET_SIZE(given(key).wire)
        cdef Py_ssize_t sn = PyBytes_GET_SIZE(given(signature))
        return _sha256(b"".join((kn.to_bytes(4, "big"), key.wire, sn.to_bytes(4, "big"),
                                 signature, given(data)))).digest()

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
_DIGEST_NAMES = {DIGEST_SHA1: "sha1", DIGEST_SHA256: "sha256", DIGEST_SHA384: "sha384"}
IMPLEMENTED_DIGESTS = frozenset(_DIGEST_NAMES)


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



# --- algorithm policy ---------------------------------------------------------------------------

cpdef bint algorithm_usable(int algorithm, bint allow_sha1) noexcept:
    """Whether signatures of this algorithm are validated: the implemented ones, RSASHA1 (5, 7)
    only when allowed (RFC 8624 §3.1, RFC 9905 §2)."""
    if algorithm == RSASHA1 or algorithm == RSASHA1_NSEC3_SHA1:
        return allow_sha1
    return (algorithm == RSASHA256 or algorithm == RSASHA512
            or ECDSAP256SHA256 <= algorithm <= ED448)


