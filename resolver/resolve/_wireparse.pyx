# cython: boundscheck=False, wraparound=False
"""DNS messages parsed on their raw bytes (RFC 1035 §4.1; RFC 4034 §2.2, §3.1, §4.1, §5.1;
RFC 5155 §3.2), upstream replies and clients' queries: the same ``dns.message.Message`` that
``dns.message.from_wire`` builds, at a fraction of its cost (issue #20: parsing was the
largest part of a cold lookup's CPU).

One pass over the bytes in compiled code. Names are read as dnspython reads them (compression
pointers only backwards, at most 16 hops, never into the name itself; 255 octets at most;
decompressed only where dnspython decompresses). The records a cold lookup meets most (A,
AAAA, NS, CNAME, DNAME, PTR, SOA, DS, DNSKEY, RRSIG, NSEC, NSEC3, OPT without options) are built
with the fields and checks of their dnspython classes, without dnspython's per-object
construction machinery; every other type, and an OPT record with options, is read by
dnspython's own rdata parser. RRsets are grouped, their TTLs taken and duplicates dropped as
dnspython's reader does. Each record built here enters its RRset's set under the hash its own
``__hash__`` gives (dnspython's: the hash of its canonical form, ``to_digestable``), computed
from the bytes instead of by rendering the record again; and the message has no index of its
RRsets (``index = None``, dnspython's documented way to turn indexing off: ``find_rrset`` scans
the sections). The two were two thirds of what parsing a referral cost (issue #20).

Anything this parser does not take as it comes (a malformed message, TSIG, another opcode than
QUERY, a record that fails its type's checks) is handed to ``dns.message.from_wire`` whole,
which then parses it or raises as it always did: this module never accepts what dnspython
refuses, and never refuses what it accepts.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject_GenericSetAttr

cdef extern from *:
    """
    /* key into the dict d (value None) unless an equal key is there, with the hash the key's
       own __hash__ would give: the dict's KnownHash functions where CPython has them. */
    static int wireparse_add_hashed(PyObject *d, PyObject *key, Py_hash_t hash) {
    #if PY_VERSION_HEX < 0x030D0000
        if (_PyDict_GetItem_KnownHash(d, key, hash) != NULL) return 0;
        if (PyErr_Occurred()) return -1;
        return _PyDict_SetItem_KnownHash(d, key, Py_None, hash);
    #else
        return PyDict_SetDefault(d, key, Py_None) == NULL ? -1 : 0;
    #endif
    }
    """
    int wireparse_add_hashed(object d, object key, Py_hash_t hash) except -1

import dns.dnssectypes
import dns.flags
import dns.ipv6
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire
from dns.rdtypes.dnskeybase import Flag as _KeyFlag

from resolver.errors import ResolverError

cdef object _Name = dns.name.Name
cdef object _RRset = dns.rrset.RRset
cdef object _QueryMessage = dns.message.QueryMessage
cdef object _new = object.__new__
cdef object _rdata_parser = dns.rdata.from_wire_parser
cdef object _Parser = dns.wire.Parser
cdef object _ntoa6 = dns.ipv6.inet_ntoa
cdef object _NONE = dns.rdatatype.NONE
cdef object _OPT = dns.rdata.get_rdata_class(dns.rdataclass.IN, dns.rdatatype.OPT)
cdef tuple _ROOT_LABELS = dns.name.root.labels

cdef enum:
    OPT = 41
    TSIG = 250
    MAX_HOPS = 16  # dns.name.MAX_COMPRESSION_POINTER_CHAIN

# RFC 4509, 3658, 5933, 6605: the digest lengths dnspython checks a DS against.
cdef dict _DIGEST_LENGTH = {1: 20, 2: 32, 3: 32, 4: 48}
# The record types built here, by number: their dnspython classes.
cdef dict _CLASSES = {t: dns.rdata.get_rdata_class(dns.rdataclass.IN, t) for t in (
    1, 2, 5, 6, 12, 16, 28, 39, 43, 46, 47, 48, 50, 99)}
cdef set _SINGLETONS = {int(t) for t in (dns.rdatatype.SOA, dns.rdatatype.NXT,
                                         dns.rdatatype.DNAME, dns.rdatatype.NSEC,
                                         dns.rdatatype.CNAME)}


class _Fallback(ResolverError):
    """Not taken here: dns.message.from_wire decides."""


cdef inline int _set(object obj, str field, object value) except -1:
    """``object.__setattr__``: a field of a dnspython object, past its immutability guard."""
    return PyObject_GenericSetAttr(obj, field, value)


cdef class _Memo:
    """``make(value)`` of a dnspython enumeration, remembered per value (they are constants)."""

    cdef dict values
    cdef object make

    def __init__(self, make):
        self.values = {}
        self.make = make

    cdef object get(self, object value):
        found = self.values.get(value)
        if found is None:
            found = self.make(value)
            self.values[value] = found
        return found


cdef _Memo _rdtype = _Memo(dns.rdatatype.RdataType.make)
cdef _Memo _rdclass = _Memo(dns.rdataclass.RdataClass.make)
cdef _Memo _algorithm = _Memo(dns.dnssectypes.Algorithm.make)
cdef _Memo _digest = _Memo(dns.dnssectypes.DSDigest.make)
cdef _Memo _key_flags = _Memo(_KeyFlag)
cdef _Memo _flags = _Memo(dns.flags.Flag)


cdef class _Reader:
    """One message's bytes, a position, and the names read so far (one object per spelling)."""

    cdef bytes wire
    cdef const unsigned char* buf
    cdef Py_ssize_t size
    cdef Py_ssize_t pos
    cdef dict names

    def __init__(self, bytes wire):
        self.wire = wire
        self.buf = wire
        self.size = len(wire)
        self.pos = 0
        self.names = {}

    cdef inline unsigned int u8(self, Py_ssize_t end) except? 0:
        if self.pos + 1 > end:
            raise _Fallback()
        self.pos += 1
        return self.buf[self.pos - 1]

    cdef inline unsigned int u16(self, Py_ssize_t end) except? 0:
        if self.pos + 2 > end:
            raise _Fallback()
        self.pos += 2
        return (self.buf[self.pos - 2] << 8) | self.buf[self.pos - 1]

    cdef inline unsigned long u32(self, Py_ssize_t end) except? 0:
        if self.pos + 4 > end:
            raise _Fallback()
        self.pos += 4
        return ((<unsigned long>self.buf[self.pos - 4] << 24) | (self.buf[self.pos - 3] << 16)
                | (self.buf[self.pos - 2] << 8) | self.buf[self.pos - 1])

    cdef inline bytes take(self, Py_ssize_t count, Py_ssize_t end):
        if count < 0 or self.pos + count > end:
            raise _Fallback()
        self.pos += count
        return PyBytes_FromStringAndSize(<const char*>self.buf + self.pos - count, count)

    cdef object name(self, Py_ssize_t end, bint decompress, list lower=None):
        """A name at the position (dns.name.from_wire_parser's rules), the position moved past
        its bytes in place; its lowercased labels appended to ``lower`` when given."""
        cdef Py_ssize_t cur = self.pos, start = self.pos, limit = end, after = -1
        cdef Py_ssize_t biggest = self.pos, target, i
        cdef unsigned int count
        cdef int hops = 0, total = 1
        cdef bytearray folded
        labels = []
        while True:
            if cur >= limit:
                raise _Fallback()
            count = self.buf[cur]
            cur += 1
            if count == 0:
                break
            if count < 64:
                if cur + count > limit:
                    raise _Fallback()
                labels.append(PyBytes_FromStringAndSize(<const char*>self.buf + cur, count))
                cur += count
                total += count + 1
            elif count >= 192:
                if not decompress or cur >= limit:
                    raise _Fallback()
                target = ((count & 0x3F) << 8) | self.buf[cur]
                cur += 1
                if after < 0:
                    after = cur
                hops += 1
                if target >= biggest or hops > MAX_HOPS:
                    raise _Fallback()
                biggest = target
                limit = start  # the target may not run into the name itself
                cur = target
                start = target
            else:
                raise _Fallback()
        if total > 255:
            raise _Fallback()
        self.pos = after if after >= 0 else cur
        labels.append(b"")
        key = tuple(labels)
        found = self.names.get(key)
        if found is None:
            found = _new(_Name)
            _set(found, "labels", key)
            self.names[key] = found
        if lower is not None:
            lower.append(b".".join(labels).lower())
        return found

    cdef tuple windows(self, Py_ssize_t end):
        """An NSEC or NSEC3 type bitmap (RFC 4034 §4.1.2) with dnspython's Bitmap checks."""
        cdef int last = -1
        cdef unsigned int window, length
        found = []
        while self.pos < end:
            window = self.u8(end)
            length = self.u8(end)
            if <int>window <= last or length == 0 or length > 32:
                raise _Fallback()
            last = window
            bitmap = self.take(length, end)
            if bitmap[length - 1] == 0:
                raise _Fallback()
            found.append((window, bitmap))
        return tuple(found)


cdef object _rdata(_Reader r, int rdtype, int rdclass, Py_ssize_t end):
    """The rdata from the position to ``end``, built as its dnspython class builds it; None
    when the type is not built here."""
    cdef const unsigned char* b
    cls = _CLASSES.get(rdtype) if rdclass == 1 else None
    if cls is None:
        return None
    rd = _new(cls)
    _set(rd, "rdclass", _rdclass.get(rdclass))
    _set(rd, "rdtype", _rdtype.get(rdtype))
    _set(rd, "rdcomment", None)
    if rdtype == 1:  # A
        if end - r.pos != 4:
            raise _Fallback()
        b = r.buf + r.pos
        _set(rd, "address", f"{b[0]}.{b[1]}.{b[2]}.{b[3]}")
        r.pos = end
    elif rdtype == 28:  # AAAA
        if end - r.pos != 16:
            raise _Fallback()
        _set(rd, "address", _ntoa6(r.take(16, end)))
    elif rdtype in (2, 5, 12):  # NS, CNAME, PTR: compressed targets (RFC 3597 §4)
        _set(rd, "target", r.name(end, True))
    elif rdtype == 16 or rdtype == 99:  # TXT, SPF: <character-string>s (RFC 1035 §3.3.14)
        strings = []
        while r.pos < end:
            strings.append(r.take(r.u8(end), end))
        if not strings:
            raise _Fallback()  # dnspython refuses a TXT without strings
        _set(rd, "strings", tuple(strings))
    elif rdtype == 39:  # DNAME
        _set(rd, "target", r.name(end, False))
    elif rdtype == 6:  # SOA
        _set(rd, "mname", r.name(end, True))
        _set(rd, "rname", r.name(end, True))
        for field in ("serial", "refresh", "retry", "expire", "minimum"):
            _set(rd, field, r.u32(end))
    elif rdtype == 43:  # DS
        _set(rd, "key_tag", r.u16(end))
        _set(rd, "algorithm", _algorithm.get(r.u8(end)))
        digest_type = r.u8(end)
        digest = r.take(end - r.pos, end)
        want = _DIGEST_LENGTH.get(digest_type)
        if digest_type == 0 or (want is not None and len(digest) != want):
            raise _Fallback()
        _set(rd, "digest_type", _digest.get(digest_type))
        _set(rd, "digest", digest)
    elif rdtype == 48:  # DNSKEY
        _set(rd, "flags", _key_flags.get(r.u16(end)))
        _set(rd, "protocol", r.u8(end))
        _set(rd, "algorithm", _algorithm.get(r.u8(end)))
        _set(rd, "key", r.take(end - r.pos, end))
    elif rdtype == 46:  # RRSIG
        _set(rd, "type_covered", _rdtype.get(r.u16(end)))
        _set(rd, "algorithm", _algorithm.get(r.u8(end)))
        _set(rd, "labels", r.u8(end))
        _set(rd, "original_ttl", r.u32(end))
        _set(rd, "expiration", r.u32(end))
        _set(rd, "inception", r.u32(end))
        _set(rd, "key_tag", r.u16(end))
        _set(rd, "signer", r.name(end, False))
        _set(rd, "signature", r.take(end - r.pos, end))
    elif rdtype == 47:  # NSEC
        _set(rd, "next", r.name(end, False))
        _set(rd, "windows", r.windows(end))
    elif rdtype == 50:  # NSEC3
        _set(rd, "algorithm", r.u8(end))
        _set(rd, "flags", r.u8(end))
        _set(rd, "iterations", r.u16(end))
        _set(rd, "salt", r.take(r.u8(end), end))
        following = r.take(r.u8(end), end)
        if not following:
            raise _Fallback()
        _set(rd, "next", following)
        _set(rd, "windows", r.windows(end))
    if r.pos != end:
        raise _Fallback()
    return rd


cdef object _parse(bytes wire):
    cdef _Reader r = _Reader(wire)
    cdef Py_ssize_t size = r.size, end
    cdef unsigned int ident, flags, rdtype, rdclass, rdlen, section, i, count
    cdef unsigned long ttl
    ident = r.u16(size)
    flags = r.u16(size)
    if (flags >> 11) & 0x0F != 0:  # another opcode than QUERY
        raise _Fallback()
    counts = (r.u16(size), r.u16(size), r.u16(size), r.u16(size))
    message = _message(ident, _flags.get(flags), wire)
    sections = message.sections
    for i in range(counts[0]):
        name = r.name(size, True)
        rdtype = r.u16(size)
        rdclass = r.u16(size)
        rrset = _empty(name, _rdclass.get(rdclass), _rdtype.get(rdtype), _NONE)
        sections[0].append(rrset)
    groups = {}
    for section in range(1, 4):
        count = counts[section]
        for i in range(count):
            lower = []
            name = r.name(size, True, lower)
            rdtype = r.u16(size)
            rdclass = r.u16(size)
            ttl = r.u32(size)
            rdlen = r.u16(size)
            end = r.pos + rdlen
            if end > size or rdtype == TSIG:
                raise _Fallback()
            if rdtype == OPT:
                if section != 3 or message.opt is not None or name.labels != _ROOT_LABELS:
                    raise _Fallback()
                # No options: its digestable form is empty (dnspython's OPT._to_wire).
                digestable = b"" if end == r.pos else None
                rd = _opt(r, rdclass, end)  # dns.rrset.from_rdata(name, ttl, rd):
                message.opt = _empty(name, rd.rdclass, rd.rdtype, _NONE)
                _add(message.opt, rd, ttl, rdtype, digestable)  # TTL: the extended flags
                continue
            start = r.pos
            rd = _rdata(r, rdtype, rdclass, end)
            digestable = None
            if rd is None:
                rd = _generic(r, rdtype, rdclass, end)
            else:
                digestable = _digestable(r.wire, rd, rdtype, start, end)
            if digestable is None:
                covers = rd.covers()  # a type dnspython built: SIG covers a type too
            else:  # built here: only an RRSIG covers one (dns.rdata.Rdata.covers)
                covers = rd.type_covered if rdtype == 46 else 0
            key = (section, lower[0], rdclass, rdtype, covers)
            rrset = groups.get(key)
            if rrset is None:
                rrset = _empty(name, _rdclass.get(rdclass), _rdtype.get(rdtype),
                               _rdtype.get(covers))
                groups[key] = rrset
                sections[section].append(rrset)
            _add(rrset, rd, 0 if ttl > 0x7FFFFFFF else ttl, rdtype, digestable)
    if r.pos != size:
        raise _Fallback()  # trailing bytes: dnspython's TrailingJunk
    return message


cdef object _message(unsigned int ident, object flags, bytes wire):
    """``dns.message.QueryMessage(id=ident)`` with the fields ``dns.message.from_wire`` sets
    (flags, wire, no TSIG, no origin), each set here instead of by its Python ``__init__``.
    Without dnspython's index of RRsets (``index = None``, its documented way to turn indexing
    off: find_rrset then scans the sections): filling it hashed every owner name with
    dnspython's per-character Name.__hash__, and nothing looks a reply's RRsets up by it."""
    message = _new(_QueryMessage)
    message.id = ident
    message.flags = flags
    message.sections = [[], [], [], []]
    message.opt = None
    message.request_payload = 0
    message.pad = 0
    message.keyring = None
    message.tsig = None
    message.want_tsig_sign = False
    message.request_mac = b""
    message.xfr = False
    message.origin = None
    message.tsig_ctx = None
    message.index = None
    message.errors = []
    message.time = 0.0
    message.wire = wire
    return message


cdef object _empty(object name, object rdclass, object rdtype, object covers):
    """``dns.rrset.RRset(name, rdclass, rdtype, covers)``, its fields set directly."""
    rrset = _new(_RRset)
    rrset.items = {}
    rrset.rdclass = rdclass
    rrset.rdtype = rdtype
    rrset.covers = covers
    rrset.ttl = 0
    rrset.name = name
    rrset.deleting = None
    return rrset


cdef inline void _add(object rrset, object rd, unsigned long ttl, unsigned int rdtype,
                      bytes digestable) except *:
    """``Rdataset.add(rd, ttl)``: the smallest TTL kept, a singleton type's last record only,
    equal records once (dns.set.Set); hashed as ``hash(digestable)`` when given, which is
    ``rd.__hash__()`` (dns.rdata.Rdata: the hash of ``rd.to_digestable()``)."""
    items = rrset.items
    if not items or ttl < rrset.ttl:
        rrset.ttl = ttl
    if items and rdtype in _SINGLETONS:
        items.clear()
    if digestable is None:
        items.setdefault(rd, None)
    else:
        wireparse_add_hashed(items, rd, hash(digestable))


cdef bytes _folded(object name):
    """A name's uncompressed wire form in lower case (dns.name.Name.to_wire, canonicalize)."""
    out = bytearray()
    for label in name.labels:
        out.append(len(label))
        out += label
    return bytes(out).lower()  # ASCII letters only: length octets (< 64) stay as they are


cdef bytes _digestable(bytes wire, object rd, unsigned int rdtype, Py_ssize_t start,
                       Py_ssize_t end):
    """``rd.to_digestable()`` (RFC 4034 §6.2 as dnspython renders it) from the rdata's bytes
    ``wire[start:end]``: names in NS, CNAME, PTR, SOA and the RRSIG signer in lower case and
    uncompressed; DNAME targets and NSEC next names as they are (uncompressed on the wire,
    not lowered: dnspython follows RFC 6840 §5.1); everything else as it came."""
    if rdtype == 2 or rdtype == 5 or rdtype == 12:  # NS, CNAME, PTR
        return _folded(rd.target)
    if rdtype == 6:  # SOA: two names, then five 32-bit fields
        return _folded(rd.mname) + _folded(rd.rname) + wire[end - 20:end]
    if rdtype == 46:  # RRSIG: 18 octets of fields, the signer (never compressed), signature
        signer = start + 18 + len(_folded(rd.signer))
        return wire[start:start + 18] + wire[start + 18:signer].lower() + wire[signer:end]
    return wire[start:end]


cdef object _opt(_Reader r, unsigned int payload, Py_ssize_t end):
    """The OPT record (RFC 6891 §6.1.2): without options built here (its class is the
    payload size), with options by dnspython's parser (dns.edns knows each option)."""
    if end != r.pos:
        return _generic(r, OPT, payload, end)
    rd = _new(_OPT)
    _set(rd, "rdclass", _rdclass.get(payload))
    _set(rd, "rdtype", _rdtype.get(OPT))
    _set(rd, "rdcomment", None)
    _set(rd, "options", ())
    return rd


cdef object _generic(_Reader r, unsigned int rdtype, unsigned int rdclass, Py_ssize_t end):
    """A record of a type not built here, by dnspython's own rdata parser."""
    parser = _Parser(r.wire, r.pos)
    with parser.restrict_to(end - r.pos):
        rd = _rdata_parser(rdclass, rdtype, parser, None)
    r.pos = end
    return rd


def parse(bytes wire):
    """The message of ``wire`` if this module takes it as it comes, else raises (a caller
    then asks dnspython: :func:`from_wire`)."""
    return _parse(wire)


def from_wire(bytes wire):
    """``dns.message.from_wire(wire)``, the same message (see the module's docstring)."""
    try:
        return _parse(wire)
    except Exception:  # noqa: BLE001 - not taken here, whatever the reason: dnspython decides
        return dns.message.from_wire(wire)
