# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled end of the forensic log (issues #4, #5, #16): the hash chain, and the cache hit's
record filled and sealed in C.

Each record carries ``seq``, ``prev`` (the previous record's hash) and ``hash``: the hex SHA-256,
or HMAC-SHA-256 under a key (RFC 2104), of the record's canonical encoding without ``hash``.
A cache hit's record differs from the one logged when its answer was resolved only in its
per-query fields, so ``resolver.forensic.seal.hit_template`` encodes the rest once per cached
answer (a :class:`HitTemplate`) with a hole per query field and chain field, each named by the
``FILL_*`` code the field table (``resolver.forensic.record``) gives it; :meth:`Chain.append_hit`
fills them in C: the same bytes ``seal()`` makes of the record as a dict (property-tested),
without a Python frame. No field name is written here: they all come from the table. The chain
extends the queue of sealed lines the writer thread drains (``_queue``). The classes' fields are
declared in ``_fastlog.pxd``, so that the hit path (resolver.frontend._fastpath) holds a typed
:class:`Chain`.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy
from libc.time cimport gmtime_r, strftime, time_t, tm

from resolver.clock cimport realtime
from resolver.forensic._queue cimport Queue

import hashlib
import zlib

import orjson

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    str PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)

cdef extern from "<openssl/sha.h>" nogil:
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)

GENESIS = "0" * 64  # the prev of a chain's first record
MAC_SHA256 = "sha256"
MAC_HMAC = "hmac-sha256"

# What the hit path writes into a hole of a template (the field table names one per hole):
# the client's address (a JSON string) and port; the time from the query's arrival to the
# record in ms; the query's flags (the template's JSON, by the query's RD bit) and its message
# ID; the listener's JSON text; the arrival time (RFC 3339); "udp" or "tcp"; the chain's mac
# name, prev hash and seq; and where the line carries the record's hash (the hashed body, the
# record without its hash, has nothing there).
cdef enum:
    F_ADDRESS, F_PORT, F_ELAPSED, F_FLAGS, F_ID, F_LISTENER, F_STARTED, F_TRANSPORT, F_MAC
    F_PREV, F_SEQ, F_HASH, FILLS
(FILL_ADDRESS, FILL_PORT, FILL_ELAPSED, FILL_FLAGS, FILL_ID, FILL_LISTENER, FILL_STARTED,
 FILL_TRANSPORT, FILL_MAC, FILL_PREV, FILL_SEQ, FILL_HASH) = range(FILLS)
cdef enum:
    HEX = 64  # a SHA-256 in hex


cdef enum:
    MARK = 0x01  # opens a hole in a template's text; the next octet is its FILL_* code


cdef class HitTemplate:
    """A cached answer's record as text with its holes marked in it (``texts[0]``, hole
    ``fills[0]``, ``texts[1]``, ...): the answer's own fields encoded once. A hole is two octets,
    0x01 and its ``FILL_*`` code: canonical JSON has no octet below 0x20 (RFC 8259 §7 escapes
    control characters, and it has no whitespace), so a template needs no table of offsets
    (issue #20, memory) and a hit finds its holes with ``memchr``. The hash's hole sits between
    the text that opens its member (``,"<name>":"``) and the one that closes it (``"``), which
    the line has and the hashed body has not. ``flags``
    is the query flags' JSON with RD clear and set (the only query flag a hit may differ in).
    A :class:`Codebook` keeps it compressed, as bytes, while it is not in use."""

    def __init__(self, texts, fills, flags):
        if len(texts) != len(fills) + 1:
            raise ValueError("a template has one text more than holes")
        if list(fills).count(F_HASH) != 1 or any(not 0 <= f < FILLS for f in fills):
            raise ValueError("template holes are FILL_* codes, one of them FILL_HASH")
        if any(octet < 0x20 for text in texts for octet in <bytes?>text):
            raise ValueError("a template's text is canonical JSON: no octet below 0x20")
        parts = [texts[0]]
        for i, fill in enumerate(fills):
            if fill == F_HASH:
                opens, closes = <bytes>texts[i], <bytes>texts[i + 1]
                if not (opens.endswith(b'":"') and opens.rfind(b',"') >= 0
                        and closes.startswith(b'"')):
                    raise ValueError("the hash's hole is a string member, not the first")
                self.hash_key = len(opens) - opens.rindex(b',"')
            parts += (bytes((MARK, fill)), texts[i + 1])
        self.text = b"".join(parts)
        if type(flags) is tuple and len(flags) == 2 and type(flags[0]) is bytes \
                and type(flags[1]) is bytes:
            self.flags = flags  # the caller's pair, which many templates share
        else:
            self.flags = (bytes(flags[0]), bytes(flags[1]))

    @staticmethod
    cdef HitTemplate _made(bytes text, unsigned char hash_key, tuple flags):
        cdef HitTemplate t = HitTemplate.__new__(HitTemplate)
        t.text, t.hash_key, t.flags = text, hash_key, flags
        return t


@cython.final
cdef class Codebook:
    """Compression for the texts of hit templates (issue #5, #20: memory): zlib (RFC 1950,
    1951) with a preset dictionary (RFC 1950 §2.2, FDICT) made of the first templates' texts.
    Later records share most of their text with those (the keys, the policy, the zones'
    proofs), so a template keeps about a seventh of its size. A packed template is one bytes
    object, no template object beside it: its hash member's length, the index of its flags
    pair in :attr:`pairs`, then the compressed text. The ``hot`` templates unpacked last are
    kept, by their packed bytes; one that drops out of them is unpacked again when used."""

    def __init__(self, Py_ssize_t learn=16384, Py_ssize_t hot=4096):
        self.zdict = None
        self.samples = []
        self.learned = 0
        self.want = learn
        self.pairs = []
        self.hot = {}
        self.ring = [None] * max(1, hot)
        self.at = 0
        self._compressobj = zlib.compressobj
        self._decompressobj = zlib.decompressobj

    cpdef object pack(self, HitTemplate template):
        """``template`` as packed bytes, or itself while the dictionary is still being learned
        (or when its flags are not among the 256 pairs a packed template can name)."""
        cdef Py_ssize_t pair
        if self.zdict is None:
            self.samples.append(template.text)
            self.learned += PyBytes_GET_SIZE(template.text)
            if self.learned >= self.want:
                learned = b"".join(self.samples)
                self.zdict = learned[max(0, len(learned) - 32768):]  # RFC 1951: 32 KiB window
                self.samples = None
            return template
        try:
            pair = self.pairs.index(template.flags)
        except ValueError:
            if len(self.pairs) > 255:
                return template
            pair = len(self.pairs)
            self.pairs.append(template.flags)
        packer = self._compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, self.zdict)
        return bytes((template.hash_key, pair)) + packer.compress(template.text) + packer.flush()

    cdef HitTemplate unpack(self, bytes packed):
        """The template ``packed`` holds: a hot one, or unpacked and made hot (the one it
        replaces among the hot is dropped)."""
        cdef HitTemplate template = self.hot.get(packed)
        if template is not None:
            return template
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(packed)
        unpacker = self._decompressobj(15, self.zdict)
        template = HitTemplate._made(unpacker.decompress(packed[2:]) + unpacker.flush(), p[0],
                                     self.pairs[p[1]])
        old = self.ring[self.at]
        if old is not None:
            del self.hot[old]
        self.ring[self.at] = packed
        self.hot[packed] = template
        self.at = (self.at + 1) % len(self.ring)
        return template


@cython.final
cdef class Digest:
    """A record's hash: hex SHA-256 of the body, or HMAC-SHA-256 under ``key`` (RFC 2104), the
    padded-key states of RFC 2104 §2 hashed once and copied per record; computed by OpenSSL's
    libcrypto (FIPS 180-4 SHA-256, as Python's hashlib) without a Python object per record."""

    def __init__(self, key=None):
        self.key = key
        self.mac_json = b'"%s"' % (MAC_SHA256 if key is None else MAC_HMAC).encode()
        self.keyed = key is not None
        if key is None:
            return
        block = (hashlib.sha256(key).digest() if len(key) > 64 else bytes(key)).ljust(64, b"\0")
        inner = bytes(b ^ 0x36 for b in block)
        outer = bytes(b ^ 0x5C for b in block)
        SHA256_Init(&self.inner)
        SHA256_Update(&self.inner, PyBytes_AS_STRING(inner), 64)
        SHA256_Init(&self.outer)
        SHA256_Update(&self.outer, PyBytes_AS_STRING(outer), 64)

    def __call__(self, body):
        return self.hex(body)

    cdef void into(self, const char *body, Py_ssize_t n, char *out) noexcept nogil:
        """The hash of ``n`` octets at ``body`` as 64 lowercase hex digits at ``out``."""
        cdef SHA256_CTX ctx
        cdef unsigned char md[32]
        cdef int i
        if self.keyed:
            memcpy(&ctx, &self.inner, sizeof(SHA256_CTX))
            SHA256_Update(&ctx, body, n)
            SHA256_Final(md, &ctx)
            memcpy(&ctx, &self.outer, sizeof(SHA256_CTX))
            SHA256_Update(&ctx, md, 32)
        else:
            SHA256_Init(&ctx)
            SHA256_Update(&ctx, body, n)
        SHA256_Final(md, &ctx)
        for i in range(32):
            out[2 * i] = _HEX_DIGITS[md[i] >> 4]
            out[2 * i + 1] = _HEX_DIGITS[md[i] & 15]

    cpdef str hex(self, body):
        """The hex hash of ``body`` (bytes-like)."""
        cdef const unsigned char[::1] view
        cdef char out[HEX]
        cdef const char *start = _HEX_DIGITS  # any valid address for no octets
        cdef Py_ssize_t n
        if type(body) is bytes:  # the usual case: no buffer view made
            start, n = PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)
        else:
            view = body
            n = view.shape[0]
            if n:
                start = <const char *>&view[0]
        self.into(start, n, out)
        return PyUnicode_DecodeASCII(out, HEX, NULL)


cdef const char *_HEX_DIGITS = b"0123456789abcdef"


@cython.final
cdef class Chain(Queue):
    """The log's end: the next ``seq``, ``prev`` and the digest (the event loop's alone) over
    the queue of sealed lines (:class:`_queue.Queue`: ``offer``, ``drain`` and the counts),
    and the ``codebook`` that packs its hit templates."""

    def __cinit__(self):
        self.buf = NULL
        self.cap = 0

    def __init__(self, waiters, Py_ssize_t limit, key=None, Codebook codebook=None):
        Queue.__init__(self, waiters, limit)
        self.seq, self.prev = 0, GENESIS
        self.digest = Digest(key)
        self.codebook = Codebook() if codebook is None else codebook

    def __dealloc__(self):
        free(self.buf)

    def use_key(self, key):
        """Hash from now on under ``key`` (None: plain SHA-256)."""
        self.digest = Digest(key)

    def restart(self, long long seq, str prev):
        """Continue a chain whose last record had ``seq - 1`` and hash ``prev``."""
        self.seq, self.prev = seq, prev

    def advance(self, str digest):
        """The record at ``seq`` was sealed with hash ``digest``."""
        self.seq += 1
        self.prev = digest

    cpdef bint append_hit(self, object template, tuple client, bytes query,
                          bytes listener, double started, bint tcp):
        """Seal and queue a cache hit's record from its ``template`` (a :class:`HitTemplate`,
        or one packed by :attr:`codebook`): ``client`` (address, port), the ``query``
        message (its ID and RD bit), the ``listener``'s JSON text, the time the hit began and
        the transport; False, with nothing sealed, when the queue has no room or the log is
        not open or cannot write (the full path then waits or refuses)."""
        if not (self.open and self.healthy and self.has_room()):
            return False
        self.offer(self._seal_hit(template if type(template) is HitTemplate
                                  else self.codebook.unpack(template),
                                  client, query, listener, started, tcp))
        return True

    cdef bytes _seal_hit(self, HitTemplate t, tuple client, bytes query, bytes listener,
                         double started, bint tcp):
        cdef Py_ssize_t alen = 0, at = 0, start = 0, end, hash_at = -1, key = 0, need, n
        cdef int kind
        cdef const char *address = PyUnicode_AsUTF8AndSize(<str?>client[0], &alen)
        cdef long port = client[1]
        cdef const unsigned char *q = <const unsigned char *>PyBytes_AS_STRING(query)
        cdef bytes flags = t.flags[(q[2] & 1) if PyBytes_GET_SIZE(query) > 2 else 0]
        cdef bytes escaped = None
        cdef bytes raw = t.text
        cdef const unsigned char *text = <const unsigned char *>PyBytes_AS_STRING(raw)
        cdef const unsigned char *mark
        cdef char *o
        cdef double now = realtime()
        cdef str digest
        cdef bytes line
        cdef char *out
        cdef char hexed[HEX]
        if not _plain(address, alen):
            escaped = orjson.dumps(client[0])
        n = PyBytes_GET_SIZE(raw)
        need = n + alen * 6 + 64 + PyBytes_GET_SIZE(flags) + PyBytes_GET_SIZE(listener) + 220
        if need > self.cap:
            o = <char *>realloc(self.buf, need)
            if o == NULL:
                raise MemoryError()
            self.buf, self.cap = o, need
        o = self.buf
        while True:
            mark = <const unsigned char *>memchr(text + start, MARK, n - start)
            end = n if mark == NULL else mark - text
            kind = -1 if mark == NULL else mark[1]
            if kind == F_HASH:
                key = end - t.hash_key  # where the hash's member opens, in the text
                end = key
            memcpy(o + at, text + start, end - start)
            at += end - start
            if mark == NULL:
                break
            start = mark - text + 2
            if kind == F_ADDRESS:
                if escaped is None:
                    o[at] = b'"'
                    at += 1 + _put(o + at + 1, address, alen)
                    o[at] = b'"'
                    at += 1
                else:
                    at += _put(o + at, PyBytes_AS_STRING(escaped), PyBytes_GET_SIZE(escaped))
            elif kind == F_PORT:
                at += _digits(o + at, port)
            elif kind == F_ELAPSED:
                at += _millis(o + at, (now - started) * 1000)
            elif kind == F_FLAGS:
                at += _put(o + at, PyBytes_AS_STRING(flags), PyBytes_GET_SIZE(flags))
            elif kind == F_ID:
                at += _digits(o + at, (q[0] << 8 | q[1]) if PyBytes_GET_SIZE(query) > 1 else 0)
            elif kind == F_LISTENER:
                at += _put(o + at, PyBytes_AS_STRING(listener), PyBytes_GET_SIZE(listener))
            elif kind == F_STARTED:
                o[at] = b'"'
                at += 1 + _rfc3339(o + at + 1, started)
                o[at] = b'"'
                at += 1
            elif kind == F_TRANSPORT:
                at += _put(o + at, b'"tcp"' if tcp else b'"udp"', 5)
            elif kind == F_MAC:
                at += _put(o + at, PyBytes_AS_STRING(self.digest.mac_json),
                           PyBytes_GET_SIZE(self.digest.mac_json))
            elif kind == F_PREV:
                o[at] = b'"'
                at += 1 + _put(o + at + 1, PyUnicode_AsUTF8AndSize(self.prev, &alen), alen)
                o[at] = b'"'
                at += 1
            elif kind == F_SEQ:
                at += _digits(o + at, self.seq)
            elif kind == F_HASH:  # the body has no hash member; its closing quote is skipped too
                hash_at = at
                start += 1
        self.digest.into(o, at, hexed)
        digest = PyUnicode_DecodeASCII(hexed, HEX, NULL)
        # The line: the body with the hash member put back where it was cut out.
        line = PyBytes_FromStringAndSize(NULL, at + t.hash_key + HEX + 2)
        out = PyBytes_AS_STRING(line)
        memcpy(out, o, hash_at)
        memcpy(out + hash_at, text + key, t.hash_key)
        memcpy(out + hash_at + t.hash_key, hexed, HEX)
        out[hash_at + t.hash_key + HEX] = b'"'
        memcpy(out + hash_at + t.hash_key + HEX + 1, o + hash_at, at - hash_at)
        out[at + t.hash_key + HEX + 1] = b"\n"
        self.seq += 1
        self.prev = digest
        return line


cdef long long _second = -1  # the whole second _stamp holds, formatted
cdef char _stamp[24]


cdef Py_ssize_t _rfc3339(char *o, double seconds) noexcept:
    """RFC 3339 UTC with microseconds; the date and time of day formatted once a second."""
    global _second
    cdef long long whole = <long long>seconds
    cdef time_t t = whole
    cdef tm parts
    if whole != _second:
        gmtime_r(&t, &parts)
        strftime(_stamp, sizeof(_stamp), "%Y-%m-%dT%H:%M:%S", &parts)
        _second = whole
    cdef long micro = <long>((seconds - whole) * 1e6)
    cdef int i
    memcpy(o, _stamp, 19)
    o[19] = b"."
    for i in range(25, 19, -1):
        o[i] = 48 + micro % 10  # "0"
        micro //= 10
    o[26] = b"Z"
    return 27


def rfc3339(double seconds):
    """A record's time: ``2026-11-23T18:40:54.074390Z`` (RFC 3339, UTC, microseconds)."""
    cdef char out[40]
    cdef Py_ssize_t n = _rfc3339(out, seconds)
    return out[:n].decode("ascii")


cdef inline Py_ssize_t _put(char *o, const char *s, Py_ssize_t n) noexcept nogil:
    memcpy(o, s, n)
    return n


cdef inline bint _plain(const char *s, Py_ssize_t n) noexcept nogil:
    """Printable ASCII with no quote or backslash: a JSON string as it is (RFC 8259 §7)."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] < 0x20 or s[i] > 0x7E or s[i] == b'"' or s[i] == b"\\":
            return False
    return True


cdef Py_ssize_t _digits(char *o, long long value) noexcept nogil:
    """``value`` in decimal, as JSON writes an integer."""
    cdef char tmp[24]
    cdef int n = 0, i
    cdef unsigned long long v = <unsigned long long>(-value if value < 0 else value)
    while True:
        tmp[n] = 48 + v % 10  # "0"
        n += 1
        v //= 10
        if v == 0:
            break
    if value < 0:
        tmp[n] = b"-"
        n += 1
    for i in range(n):
        o[i] = tmp[n - 1 - i]
    return n


cdef Py_ssize_t _millis(char *o, double ms) noexcept nogil:
    """``ms`` rounded to 3 decimals as Python prints the rounded float (``0.002``, ``1.0``),
    which is how the full path records ``duration_ms``."""
    cdef Py_ssize_t n = snprintf(o, 32, "%.3f", ms)
    while n > 2 and o[n - 1] == b"0" and o[n - 2] != b".":
        n -= 1
    return n
