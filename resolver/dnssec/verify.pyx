# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""RRSIG checks, compiled: the octets an RRSIG signs and the loop that finds one RRSIG proving
an RRset, within its work budget. Like Unbound's ``val_sigcrypt``.

* the signed data: RRSIG RDATA up to the signer, then the RRset in canonical form and order
  with the original TTL (RFC 4034 §3.1.8.1), the owner rebuilt for a wildcard expansion
  (RFC 4035 §5.3.2);
* the validity window in serial-number arithmetic (RFC 4034 §3.1.5, RFC 1982 §3.2);
* the RRSIG loop of RFC 4035 §5.3.1-§5.3.3: any single valid signature proves the RRset
  (RFC 6840 §5.11); the most telling failure is reported with its RFC 8914 code (read from
  resolver.ede); the budgets (resolver.dnssec.config.Limits) are passed in by sigcrypt.py.

Nothing here knows about trust or zones: sigcrypt.py frames the outcome for the validator.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t
from libc.string cimport memcpy

from resolver.dnssec.canonical cimport (MAX_NAME, RRSIG_SIGNER, canonical_order, given,
                                        is_subdomain, label_count, members, name_length,
                                        name_text, put_name, rdata_wire, same_name)
from resolver.dnssec.crypto cimport (PROTOCOL_DNSSEC, REVOKED_KEY, ZONE_KEY, Key,
                                     VerifiedSignatures, algorithm_usable, signature_valid)
from resolver.dnssec.canonical import MalformedData
from resolver.ede import EDE

# Status codes of check_window().
WINDOW_OK = 0
WINDOW_EXPIRED = 1
WINDOW_NOT_YET_VALID = 2
WINDOW_INVERTED = 3

# Outcomes of check_rrset().
SECURE = 0
BOGUS = 1
NO_SUPPORTED_KEY = 2  # nothing to check with: RFC 4035 §5.2 makes the zone insecure
RRSET_BUDGET = 3      # max_sig_checks_per_rrset reached


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
    at ``p``, which has room for RRSIG_SIGNER + MAX_NAME octets; return its length."""
    name_length(signer, 0)
    p[0] = (f.type_covered >> 8) & 0xFF
    p[1] = f.type_covered & 0xFF
    p[2] = <unsigned char>f.algorithm
    p[3] = <unsigned char>f.labels
    _put32(p + 4, f.original_ttl)
    _put32(p + 8, f.expiration)
    _put32(p + 12, f.inception)
    p[16] = (f.key_tag >> 8) & 0xFF
    p[17] = f.key_tag & 0xFF
    return RRSIG_SIGNER + put_name(p + RRSIG_SIGNER, signer, 0, True)


cpdef bytes rrsig_header(object rrsig):
    """RRSIG RDATA up to and including the canonical signer name (RFC 4034 §3.1.8.1)."""
    cdef unsigned char buf[RRSIG_SIGNER + MAX_NAME]
    cdef RrsigFields f
    _read_rrsig(rrsig, &f)
    return PyBytes_FromStringAndSize(<char *>buf, _put_header(buf, &f, rrsig.signer.labels))


cdef Py_ssize_t _put_owner(unsigned char *p, tuple owner_labels, int rrsig_labels) except -1:
    """Write the canonical owner name as signed at ``p`` (room for MAX_NAME octets): the owner
    itself, or the wildcard ``*.<rightmost labels>`` it was expanded from when the RRSIG labels
    field is smaller (RFC 4035 §5.3.2); return its length. MalformedData when the labels field
    exceeds the owner's label count."""
    cdef int have = label_count(given(owner_labels))
    cdef Py_ssize_t start = len(owner_labels) - 1 - rrsig_labels
    if rrsig_labels > have:
        raise MalformedData("RRSIG labels field exceeds the owner's label count")
    if rrsig_labels == have:
        name_length(owner_labels, 0)
        return put_name(p, owner_labels, 0, True)
    if rrsig_labels < 0:
        raise MalformedData("negative RRSIG labels field")
    name_length(owner_labels, start)
    p[0] = 1
    p[1] = 42  # '*'
    return 2 + put_name(p + 2, owner_labels, start, True)


cpdef bytes signed_owner(tuple owner_labels, int rrsig_labels):
    """Canonical owner name as signed: the owner itself, or the wildcard ``*.<rightmost labels>``
    it was expanded from when the RRSIG labels field is smaller (RFC 4035 §5.3.2).
    Raises MalformedData when the labels field exceeds the owner's label count."""
    cdef unsigned char buf[MAX_NAME]
    return PyBytes_FromStringAndSize(<char *>buf, _put_owner(buf, owner_labels, rrsig_labels))


cdef bytes _build(const unsigned char *header, Py_ssize_t hn, const unsigned char *owner,
                  Py_ssize_t on, int rdtype, int rdclass, uint32_t original_ttl, list ordered):
    """The header followed by one RR of owner, type, class and original TTL per RDATA of
    ``ordered`` (RFC 4034 §3.1.8.1)."""
    cdef Py_ssize_t total = hn, pos, rn
    cdef bytes rd, out
    cdef unsigned char *p
    for rd in ordered:
        rn = PyBytes_GET_SIZE(given(rd))
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
    return _build(<const unsigned char *>PyBytes_AS_STRING(given(header)),
                  PyBytes_GET_SIZE(header),
                  <const unsigned char *>PyBytes_AS_STRING(given(owner)),
                  PyBytes_GET_SIZE(owner), rdtype, rdclass, original_ttl,
                  canonical_order(list(given(rdatas))))


cdef bytes _rrsig_signed_data(const RrsigFields *f, tuple signer, tuple owner_labels, int rdclass,
                              list ordered):
    """:func:`signed_data` for an RRSIG over an RRset of its covered type owned by
    ``owner_labels`` whose canonical RDATA are ``ordered``, built without intermediate objects."""
    cdef unsigned char header[RRSIG_SIGNER + MAX_NAME]
    cdef unsigned char owner[MAX_NAME]
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


# --- the RRSIG loop (RFC 4035 §5.3) -------------------------------------------------------------

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
        if key.flags & ZONE_KEY and algorithm_usable(key.algorithm, allow_sha1):
            usable_zone_key = True
            break
    if rrsigs is None or not same_name(rrsigs.name.labels, owner_labels) \
            or rrsigs.rdclass != rrset.rdclass:
        rrsigs = ()
    for rrsig in members(rrsigs):
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
                    ordered = canonical_order([rdata_wire(rd) for rd in members(rrset)])
                try:
                    data = _rrsig_signed_data(&f, signer, owner_labels, rrset.rdclass, ordered)
                except MalformedData as exc:
                    failure.note(E_BOGUS, str(exc), rrsig)
                    break
                signature = rrsig.signature
            if not key.flags & ZONE_KEY or key.flags & REVOKED_KEY:
                failure.note(E_NO_ZONE_KEY_BIT, f"DNSKEY {key.tag} is not a usable zone key "
                                 "(zone bit clear or revoked)", rrsig, key)
                continue
            if key.protocol != PROTOCOL_DNSSEC or key.public is None:
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
            if signature_valid(key, given(signature), data):
                if digest is not None:
                    verified.add(digest)
                return _secure(rrset, rrsig, &f, key, now)
            failure.note(E_BOGUS, f"signature by key {key.tag} algorithm {alg} does not verify",
                         rrsig, key)
        if tried == 0:
            failure.note(E_DNSKEY_MISSING,
                         f"no DNSKEY with tag {tag} algorithm {alg} at {name_text(rrsig.signer)}",
                         rrsig)
    if (not saw_usable_sig and not usable_zone_key and keys
            and (failure.ede == E_UNSUPPORTED_ALG or failure.ede == E_RRSIGS_MISSING)):
        return (NO_SUPPORTED_KEY, E_UNSUPPORTED_ALG, "no supported algorithm among the zone's keys",
                None, None, 0)
    if failure.ede == E_UNSUPPORTED_ALG:
        # The zone has keys we support, yet nothing is signed with them (RFC 4035 §2.2).
        return (BOGUS, E_RRSIGS_MISSING, "no RRSIG by a supported algorithm of the zone's keys",
                None, failure.rrsig, 0)
    return (BOGUS, failure.ede, failure.reason, failure.key, failure.rrsig, 0)
