# cython: language_level=3
"""Declarations of the compiled end of the forensic log (``_fastlog.pyx``): the hit's record
template, the codebook that packs templates, the record's digest and the :class:`Chain` that
extends the queue of sealed lines (``_queue.Queue``), so the hit path
(resolver.frontend._fastpath) calls :meth:`Chain.append_hit` through C, typed."""

cimport cython
from libc.stdint cimport uint32_t

from resolver.forensic._queue cimport Queue

cdef extern from "<openssl/sha.h>" nogil:  # OpenSSL's libcrypto, as Python's hashlib uses
    ctypedef struct SHA256_CTX:
        pass

cdef class HitTemplate:
    cdef readonly bytes text  # with its holes marked
    cdef unsigned char hash_key  # octets of the text before the hash's hole that open its member
    cdef readonly tuple flags

    @staticmethod
    cdef HitTemplate _made(bytes text, unsigned char hash_key, tuple flags)


@cython.final
cdef class Codebook:
    cdef readonly bytes zdict  # None while learning
    cdef list samples
    cdef Py_ssize_t learned, want
    cdef list pairs  # the flags pairs packed templates name by index
    cdef dict hot  # packed bytes -> its template, for those in ring
    cdef list ring
    cdef Py_ssize_t at
    cdef object _compressobj, _decompressobj

    cpdef object pack(self, HitTemplate template)
    cdef HitTemplate unpack(self, bytes packed)


@cython.final
cdef class Digest:
    cdef readonly object key
    cdef readonly bytes mac_json  # the record's ``mac`` field, as JSON text
    cdef bint keyed
    cdef SHA256_CTX inner, outer  # HMAC: the padded key blocks hashed (RFC 2104 §2)

    cdef void into(self, const char *body, Py_ssize_t n, char *out) noexcept nogil
    cpdef str hex(self, body)


@cython.final
cdef class Chain(Queue):
    cdef readonly long long seq
    cdef readonly str prev
    cdef readonly Digest digest
    cdef readonly Codebook codebook
    cdef char *buf  # where a hit's record is put together
    cdef Py_ssize_t cap

    cpdef bint append_hit(self, object template, tuple client, bytes query,
                          bytes listener, double started, bint tcp)
    cdef bytes _seal_hit(self, HitTemplate t, tuple client, bytes query, bytes listener,
                         double started, bint tcp)
