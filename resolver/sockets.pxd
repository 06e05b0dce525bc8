# cython: language_level=3
"""The POSIX socket declarations of the compiled modules, declared once: the server's UDP
listeners (resolver.frontend._fastpath: recvmmsg, sendmmsg, the clients' addresses) and the
upstream UDP exchanges (resolver.resolve._udp: socket, connect, send, recv)."""

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    cdef struct sockaddr:
        pass
    cdef struct sockaddr_storage:
        sa_family_t ss_family
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    cdef struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        int msg_flags
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    enum:
        AF_INET
        AF_INET6
        SOCK_DGRAM
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_DONTWAIT
        MSG_TRUNC
    int socket(int domain, int kind, int protocol)
    int connect(int fd, const sockaddr *address, socklen_t length)
    ssize_t send(int fd, const void *data, size_t length, int flags)
    ssize_t recv(int fd, void *data, size_t length, int flags)
    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags)

cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        pass
    cdef struct in6_addr:
        pass
    cdef struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    cdef struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int family, const void *address, char *text, socklen_t size)
    int inet_pton(int family, const char *text, void *address)
