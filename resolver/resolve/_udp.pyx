# cython: boundscheck=False, wraparound=False
"""Upstream UDP exchanges in compiled code (RFC 1035 §4.2.1, RFC 5452 §9): the sockets of
resolver.resolve.transport's queries, and the match of a reply to its query, on the raw bytes.

A query gets a socket of its own (a fresh ephemeral source port, RFC 5452 §9.2), connected to
its server (the kernel then drops datagrams from any other address or port), made, connected
and sent on in one call without a Python socket object. The sockets that await a reply sit in
one epoll set of this module's per event loop, which the loop watches as one reader: a socket
costs one ``epoll_ctl`` to add and one to remove, where the loop's own ``add_reader`` and
``remove_reader`` cost six system calls a socket and a handle object each (issue #20). Every
datagram waiting is read into one buffer; the first that answers the query ends its wait, the
others are counted by reason in the ``ignored`` counter given, so that a forged packet cannot
end the wait.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8
from libc.errno cimport EAGAIN, EINTR, EINVAL, errno
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset, strchr, strerror

import weakref

from resolver.resolve._wireparse import from_wire
from resolver.sockets cimport (AF_INET, AF_INET6, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK,
                              connect, htons, inet_pton, recv, send, sockaddr, sockaddr_in,
                              sockaddr_in6, sockaddr_storage, socket, socklen_t)
from resolver.wire import MAX_MESSAGE

cdef extern from "<netdb.h>" nogil:
    cdef struct addrinfo:
        int ai_flags
        int ai_family
        socklen_t ai_addrlen
        sockaddr *ai_addr
    enum:
        AI_NUMERICHOST
    int getaddrinfo(const char *node, const char *service, const addrinfo *hints,
                    addrinfo **result)
    void freeaddrinfo(addrinfo *result)

cdef extern from "<sys/epoll.h>" nogil:
    cdef union epoll_data_t:
        int fd
    cdef struct epoll_event:
        unsigned int events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int count, int timeout)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef enum:
    HEADER = 12  # RFC 1035 §4.1.1
    QR = 0x80  # in the header's third octet
    OPCODE_QUERY = 0
    READY_AT_ONCE = 64  # events taken from the epoll set a call

cdef Py_ssize_t _MAX_MESSAGE = MAX_MESSAGE


cdef inline unsigned char _folded(const unsigned char *question, Py_ssize_t i,
                                  Py_ssize_t size) noexcept:
    """Octet ``i`` of a question of ``size`` octets (RFC 1035 §4.1.2) as two questions are
    compared: in the name, A-Z in lower case and nothing else changed (RFC 4343 §3: ASCII
    only; a length octet, below 64, is never in A-Z); QTYPE and QCLASS, the last four, as they
    are: 00 41 (type 65) is not 00 61 (type 97)."""
    cdef unsigned char c = question[i]
    return c + 32 if i < size - 4 and 65 <= c <= 90 else c


def fold(bytes question not None):
    """A question's octets, each as :func:`_folded` gives it: a query's ``match``, which
    :func:`check` compares a reply's question with, octet by octet folded the same way."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(question), i
    cdef const unsigned char *given = <const unsigned char *>PyBytes_AS_STRING(question)
    folded = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(folded)
    for i in range(size):
        out[i] = _folded(given, i, size)
    return folded


def check(int qid, bytes match not None, bytes wire not None):
    """``(reply, "")`` if ``wire`` answers the query of ID ``qid`` whose question's octets,
    :func:`fold`ed, are ``match`` (RFC 5452 §9.1); else ``(None, reason)``: "id",
    "not_reply" (no QR, or an opcode other than QUERY), "unparseable" or "question". ID, QR,
    opcode and the question are read from the raw bytes (the question's name is the first in a
    message: a server has nothing to compress it against), and only a message that passes is
    parsed; one that ends before a question as long as ours is parsed to tell a cut message
    from a shorter question."""
    cdef const unsigned char *data = <const unsigned char *>PyBytes_AS_STRING(wire)
    cdef const unsigned char *want = <const unsigned char *>PyBytes_AS_STRING(match)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(wire), length = PyBytes_GET_SIZE(match), i
    if size < HEADER or (data[0] << 8 | data[1]) != qid:
        return None, "id"
    if not data[2] & QR or (data[2] >> 3) & 0x0F != OPCODE_QUERY:
        return None, "not_reply"
    if size - HEADER < length:
        try:
            from_wire(wire)
        except Exception:  # noqa: BLE001 - hostile bytes may trip any parser error
            return None, "unparseable"
        return None, "question"
    if data[4] != 0 or data[5] != 1:  # QDCOUNT 1
        return None, "question"
    for i in range(length):  # the reply's question as fold reads it, without a copy
        if _folded(data + HEADER, i, length) != want[i]:
            return None, "question"
    try:
        return from_wire(wire), ""  # dnspython's message, parsed in compiled code
    except Exception:  # noqa: BLE001
        return None, "unparseable"


cdef object _os_error(int number):
    """The OSError of ``errno`` ``number``, of the subclass Python gives it
    (ConnectionRefusedError for ECONNREFUSED: an ICMP port unreachable, ...)."""
    return OSError(number, strerror(number).decode())


cdef int _address(str host, int port, sockaddr_storage *address, socklen_t *length) except -1:
    """``host`` (an IPv4 or IPv6 address in text, an IPv6 one with a zone index too) and
    ``port`` as a socket address; never a name lookup."""
    cdef const char *text = PyUnicode_AsUTF8(host)
    cdef sockaddr_in *four = <sockaddr_in *>address
    cdef sockaddr_in6 *six = <sockaddr_in6 *>address
    cdef addrinfo hints
    cdef addrinfo *found = NULL
    cdef bint ipv6 = strchr(text, c':') != NULL
    memset(address, 0, sizeof(sockaddr_storage))
    if not ipv6:
        if inet_pton(AF_INET, text, &four.sin_addr) == 1:
            four.sin_family, four.sin_port = AF_INET, htons(port)
            length[0] = sizeof(sockaddr_in)
            return 0
    elif inet_pton(AF_INET6, text, &six.sin6_addr) == 1:
        six.sin6_family, six.sin6_port = AF_INET6, htons(port)
        length[0] = sizeof(sockaddr_in6)
        return 0
    memset(&hints, 0, sizeof(hints))  # fe80::1%eth0: the zone index as getaddrinfo reads it
    hints.ai_family = AF_INET6
    hints.ai_flags = AI_NUMERICHOST
    if not ipv6 or getaddrinfo(text, NULL, &hints, &found) != 0:
        raise OSError(EINVAL, f"not an IP address: {host!r}")
    memcpy(address, found.ai_addr, found.ai_addrlen)
    length[0] = found.ai_addrlen
    freeaddrinfo(found)
    six.sin6_port = htons(port)
    return 0


@cython.no_gc_clear  # __dealloc__ closes the sockets still in ``sockets``
cdef class Waiting:
    """The upstream UDP sockets of event loop ``loop`` that await their reply, in an epoll set
    the loop watches as one reader. ``loop`` is kept as a weak reference: the set is closed
    when the loop is dropped."""

    cdef readonly object loop  # weakref.ref of the event loop
    cdef int epoll
    cdef unsigned char *buffer  # MAX_MESSAGE octets: every datagram is read into it
    cdef dict sockets  # fd: (query ID, folded question, future)
    cdef object ignored  # reason: count (a collections.Counter)

    def __cinit__(self, loop, ignored):
        self.epoll = -1
        self.sockets = {}
        self.buffer = <unsigned char *>malloc(_MAX_MESSAGE)
        if self.buffer == NULL:
            raise MemoryError()
        self.epoll = epoll_create1(EPOLL_CLOEXEC)
        if self.epoll < 0:
            raise _os_error(errno)
        self.ignored = ignored
        self.loop = weakref.ref(loop)
        loop.add_reader(self.epoll, self.ready)

    def __dealloc__(self):
        for fd in self.sockets:
            close(fd)
        if self.epoll >= 0:
            close(self.epoll)
        free(self.buffer)

    def send(self, bytes wire not None, str host not None, int port, int qid,
             bytes match not None, done) -> int:
        """Send ``wire`` to ``host``, ``port`` from a fresh socket and watch it until a reply
        that :func:`check` passes for ``qid`` and ``match`` sets ``done``'s result to
        ``(message, wire)``, or the socket reports an error, which becomes ``done``'s
        exception. The socket's descriptor, for :meth:`remove`; OSError if it cannot be made,
        connected or sent on."""
        cdef sockaddr_storage address
        cdef socklen_t length
        cdef epoll_event event
        cdef int fd, number
        _address(host, port, &address, &length)
        fd = socket(address.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if fd < 0:
            raise _os_error(errno)
        event.events = EPOLLIN
        event.data.fd = fd
        if (connect(fd, <sockaddr *>&address, length) < 0
                or send(fd, PyBytes_AS_STRING(wire), PyBytes_GET_SIZE(wire), 0) < 0
                or epoll_ctl(self.epoll, EPOLL_CTL_ADD, fd, &event) < 0):
            number = errno
            close(fd)
            raise _os_error(number)
        self.sockets[fd] = (qid, match, done)
        return fd

    def remove(self, int fd) -> None:
        """Stop watching socket ``fd`` and close it."""
        del self.sockets[fd]
        epoll_ctl(self.epoll, EPOLL_CTL_DEL, fd, NULL)  # before the close: no entry outlives it
        close(fd)

    def ready(self) -> None:
        """The loop's reader callback: every socket with datagrams waiting is read."""
        cdef epoll_event events[READY_AT_ONCE]
        cdef int count = epoll_wait(self.epoll, events, READY_AT_ONCE, 0), i
        for i in range(count):
            waiting = self.sockets.get(events[i].data.fd)
            if waiting is not None:
                self._read(events[i].data.fd, waiting[0], waiting[1], waiting[2])

    cdef _read(self, int fd, int qid, bytes match, done):
        cdef ssize_t size
        cdef int number
        while not done.done():
            size = recv(fd, self.buffer, _MAX_MESSAGE, 0)
            if size < 0:
                number = errno
                if number == EINTR:
                    continue
                if number != EAGAIN:  # an ICMP error (port unreachable), as the socket's
                    done.set_exception(_os_error(number))
                return
            wire = PyBytes_FromStringAndSize(<char *>self.buffer, size)
            reply, reason = check(qid, match, wire)
            if reply is not None:
                done.set_result((reply, wire))
                return
            self.ignored[reason] += 1
