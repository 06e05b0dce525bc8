"""Who else holds a listening address: the process that takes over from this one on a restart.

Every listener is bound with SO_REUSEPORT (socket(7)), so a new process binds the same
addresses while the old one runs, and the kernel spreads datagrams and connections over both.
A successor binds only once it can answer (resolver.service primes it first), so "another
process's UDP socket bound to each of our addresses" means "a successor answers there": the
old process then leaves the groups (resolver.frontend.listeners.Server.hand_over) and stops.

The sockets are read from /proc/net/udp and /proc/net/udp6 (proc(5)): local address and
port, state, inode. Sockets of this process, and of its sibling workers under the same
supervisor, are not another process's. No BPF, no protocol of our own."""

from __future__ import annotations

import os
import socket
import struct

#: /proc/net/udp's state of an unconnected socket (TCP_CLOSE); a connected one (a process that
#: has handed over) is no longer picked by the kernel for new datagrams.
UNCONNECTED = "07"


def _address(text: str) -> tuple[int, bytes, int]:
    """(family, packed address, port) of /proc/net/udp's ``ADDR:PORT``: the address printed
    as 32-bit words in host order, the port in hex."""
    addr, port = text.split(":")
    words = [int(addr[i:i + 8], 16) for i in range(0, len(addr), 8)]
    family = socket.AF_INET if len(words) == 1 else socket.AF_INET6
    return family, struct.pack(f"={len(words)}I", *words), int(port, 16)


def bound_udp() -> dict[tuple[int, bytes, int], set[int]]:
    """The inodes of the unconnected UDP sockets of this network namespace, by local
    address: (family, packed address, port)."""
    found: dict[tuple[int, bytes, int], set[int]] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == UNCONNECTED:
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


def generation(worker: bool) -> set[int]:
    """The socket inodes of this process and, for a worker, of its siblings (the supervisor's
    other children, which share its listeners): sockets that are not a successor's."""
    pids = {os.getpid()}
    if worker:
        parent = os.getppid()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except (OSError, ValueError):
            pass
    inodes: set[int] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    return inodes


def others(keys: list[tuple[int, bytes, int]], worker: bool) -> bool:
    """Whether another process (not this one, not a sibling worker) has an unconnected UDP
    socket on every one of ``keys``: a successor answering on all our addresses, or, before
    we bind, a predecessor still serving them."""
    if not keys:
        return False
    held = bound_udp()
    ours = generation(worker)
    return all(held.get(k, set()) - ours for k in keys)
