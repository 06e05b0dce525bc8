"""Wire mutators for hostile-input tests and fuzzing: each takes a message and ``pick(n)``, a
chooser of an integer in ``range(n)``, so one mutator serves hypothesis (``draw``), a seeded
``random.Random`` (``randrange``) and atheris (``ConsumeIntInRange``).

They aim at what DNS parsers get wrong (RFC 1035 §4.1): header counts, label lengths,
compression pointers (§4.1.4), RDATA lengths, the OPT record and its options (RFC 6891 §6.1)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

Pick = Callable[[int], int]
HEADER = 12


def bit_flip(wire: bytes, pick: Pick) -> bytes:
    if not wire:
        return wire
    i = pick(len(wire))
    return wire[:i] + bytes([wire[i] ^ (1 << pick(8))]) + wire[i + 1:]


def byte_set(wire: bytes, pick: Pick) -> bytes:
    if not wire:
        return wire
    i = pick(len(wire))
    return wire[:i] + bytes([pick(256)]) + wire[i + 1:]


def truncate(wire: bytes, pick: Pick) -> bytes:
    return wire[:pick(len(wire) + 1)]


def huge_count(wire: bytes, pick: Pick) -> bytes:
    """QDCOUNT, ANCOUNT, NSCOUNT or ARCOUNT set to a large or off-by-one value."""
    if len(wire) < HEADER:
        return wire
    field = 4 + 2 * pick(4)
    old = struct.unpack_from("!H", wire, field)[0]
    new = (0xFFFF, 0x8000, old + 1, max(old - 1, 0), 0)[pick(5)] & 0xFFFF
    return wire[:field] + struct.pack("!H", new) + wire[field + 2:]


def pointer(wire: bytes, pick: Pick) -> bytes:
    """A compression pointer (RFC 1035 §4.1.4) written over two octets after the header: to
    itself (a loop), forwards, past the end, into the header, or anywhere."""
    if len(wire) < HEADER + 2:
        return wire
    i = HEADER + pick(len(wire) - HEADER - 1)
    target = (i, i + 2, len(wire) + pick(64), pick(HEADER), pick(len(wire)))[pick(5)]
    return wire[:i] + struct.pack("!H", 0xC000 | (target & 0x3FFF)) + wire[i + 2:]


def label_length(wire: bytes, pick: Pick) -> bytes:
    """A length octet replaced by an extended label type (0x40, 0x80), 63, 64 or a length
    that runs past its name."""
    if len(wire) <= HEADER:
        return wire
    i = HEADER + pick(len(wire) - HEADER)
    value = (0x40, 0x80, 63, 64, 0x3F & pick(256), 0)[pick(6)]
    return wire[:i] + bytes([value]) + wire[i + 1:]


def long_name(wire: bytes, pick: Pick) -> bytes:
    """The question name replaced by one of 254 to 300 octets, or of many empty-looking
    labels: beyond RFC 1035 §2.3.4's 255 octets."""
    if len(wire) <= HEADER:
        return wire
    end = _name_end(wire, HEADER)
    size = 254 + pick(47)
    labels = b"".join(bytes([min(63, size - k)]) + b"a" * min(63, size - k)
                      for k in range(0, size, 64))
    if pick(2):
        labels = b"\x01a" * (size // 2)
    return wire[:HEADER] + labels + b"\x00" + wire[end:]


def splice(wire: bytes, pick: Pick, others: Sequence[bytes] = ()) -> bytes:
    """Octets of another message (or of this one) inserted or written over a range."""
    donor = others[pick(len(others))] if others else wire
    if not donor:
        return wire
    i, j = pick(len(wire) + 1), pick(len(donor))
    piece = donor[j:j + 1 + pick(64)]
    if pick(2):
        return wire[:i] + piece + wire[i:]
    return wire[:i] + piece + wire[i + len(piece):]


def edns_garbage(wire: bytes, pick: Pick) -> bytes:
    """An OPT record (RFC 6891 §6.1.2) appended with odd fields: a version above 0, a payload
    below 512, options whose lengths lie, known option codes (ECS 8, cookie 10, padding 12,
    EDE 15) with random contents, a root owner that is not, or several OPTs."""
    if len(wire) < HEADER:
        return wire
    options = b""
    for _ in range(pick(4)):
        code = (8, 10, 12, 15, 3, 65001, pick(65536))[pick(7)]
        data = bytes(pick(256) for _ in range(pick(12)))
        length = (len(data), len(data) + 1 + pick(8), max(len(data) - 1, 0))[pick(3)]
        options += struct.pack("!HH", code, length) + data
    rdlen = (len(options), len(options) + pick(9), 0xFFFF)[pick(3)] & 0xFFFF
    owner = (b"\x00", b"\x01a\x00", b"\xc0\x0c")[pick(3)]
    opt = owner + struct.pack("!HHBBHH", 41, pick(1400), pick(2) * pick(256),
                              (0, 1, pick(256))[pick(3)], pick(65536), rdlen) + options
    copies = 1 + (pick(4) == 0)
    arcount = struct.unpack_from("!H", wire, 10)[0] + copies
    return wire[:10] + struct.pack("!H", arcount & 0xFFFF) + wire[HEADER:] + opt * copies


MUTATORS: tuple[Callable[..., bytes], ...] = (
    bit_flip, byte_set, truncate, huge_count, pointer, label_length, long_name, splice,
    edns_garbage)


def mutate(wire: bytes, pick: Pick, others: Sequence[bytes] = (), rounds: int = 3) -> bytes:
    """One to ``rounds`` mutations, each chosen by ``pick``."""
    for _ in range(1 + pick(rounds)):
        mutator = MUTATORS[pick(len(MUTATORS))]
        wire = mutator(wire, pick, others) if mutator is splice else mutator(wire, pick)
    return wire


def _name_end(wire: bytes, pos: int) -> int:
    """Offset past the uncompressed name at ``pos``, or the end of ``wire`` if it runs off."""
    while pos < len(wire):
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0:
            return pos + 2
        pos += 1 + length
    return len(wire)
