"""Who else holds a listening address: the process that takes over from this one on a restart.

Every listener is bound with SO_REUSEPORT (socket(7)), so a new process binds the same
addresses while the old one runs, and the kernel spreads datagrams and connections over both.
A successor binds only once it can answer (resolver.service primes it first), so "another
process's UDP socket and TCP listener on each of our addresses" means "a successor answers
there": the old process then leaves the groups (resolver.frontend.listeners.Server.hand_over)
and stops.

The sockets are read from /proc/net/udp, /proc/net/tcp and their IPv6 twins (proc(5)): local
address and port, state, inode. Sockets of this process, and of its sibling workers under the
same supervisor, are not another process's. No BPF, no protocol of our own."""

from __future__ import annotations

import os
import socket
import struct

#: /proc/net/udp's state of an unconnected socket (TCP_CLOSE; a connected one, a process that
#: has handed over, is no longer picked by the kernel for new datagrams), and /proc/net/tcp's of
#: a listening socket.
UNCONNECTED, LISTENING = "07", "0A"


def _address(text: str) -> tuple[int, bytes, int]:
    """(family, packed address, port) of /proc/net/udp's ``ADDR:PORT``: the address printed
    as 32-bit words in host order, the port in hex."""
    addr, port = text.split(":")
    words = [int(addr[i:i + 8], 16) for i in range(0, len(addr), 8)]
    family = socket.AF_INET if len(words) == 1 else socket.AF_INET6
    return family, struct.pack(f"={len(words)}I", *words), int(port, 16)


def bound(protocol: str, state: str) -> dict[tuple[int, bytes, int], set[int]]:
    """The inodes of this network namespace's ``protocol`` ("udp", "tcp") sockets in
    ``state``, by local address: (family, packed address, port)."""
    found: dict[tuple[int, bytes, int], set[int]] = {}
    for table in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
        try:
            with open(table) as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == state:
                        found.setdefault(_address(fields[1]), set()).add(int(fields[9]))
        except (OSError, ValueError):
            continue  # no IPv6, or no /proc: nobody else is seen
    return found


def key(sockname: tuple, family: int) -> tuple[int, bytes, int]:
    """The /proc key of a bound socket's ``getsockname()``."""
    return family, socket.inet_pton(family, sockname[0]), sockname[1]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def holders(path: str) -> list[int]:
    """The other processes we can see (our PID namespace, our user or root) that have ``path``
    open: a predecessor still writing a file we would write too."""
    target = os.path.realpath(path)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (proc(5): the fourth field of
    /proc/<pid>/stat, after the command name in parentheses)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == parent:
            found.append(int(pid))
    return found


def generation(worker: bool) -> set[int]:
    """The socket inodes of this process and, for a worker, of its siblings (the supervisor's
    other children, which share its listeners): sockets that are not a successor's."""
    pids = {os.getpid()}
    if worker:
        pids.update(_children(os.getppid()))
    inodes: set[int] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    return inodes


def others(keys: list[tuple[int, bytes, int]], worker: bool) -> bool:
    """Whether another process (not this one, not a sibling worker) serves every one of
    ``keys`` as we do, an unconnected UDP socket and a TCP listener on each: a successor
    answering on all our addresses, or, before we bind, a predecessor still serving them (a
    program holding only one of the two is neither)."""
    if not keys:
        return False
    udp, tcp = bound("udp", UNCONNECTED), bound("tcp", LISTENING)
    ours = generation(worker)
    return all(udp.get(k, set()) - ours and tcp.get(k, set()) - ours for k in keys)
