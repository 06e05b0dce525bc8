"""The Frame Streams protocol (farsightsec/fstrm, the framing dnstap uses): data frames
carrying a payload, control frames (READY, ACCEPT, START, STOP, FINISH) carrying content types,
and reading the control frame a collector answers with on a bidirectional stream.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

from resolver.errors import ResolverError

#: Control frame types and the one control field type of the Frame Streams protocol.
CONTROL_ACCEPT, CONTROL_START, CONTROL_STOP, CONTROL_READY, CONTROL_FINISH = 1, 2, 3, 4, 5
FIELD_CONTENT_TYPE = 1
#: The longest control frame a reader accepts (libfstrm's FSTRM_CONTROL_FRAME_LENGTH_MAX).
MAX_CONTROL_FRAME = 512
_BE32 = struct.Struct(">I")


def data_frame(payload: bytes) -> bytes:
    """A data frame: the payload's length (big-endian, never 0), the payload."""
    return _BE32.pack(len(payload)) + payload


def control_frame(ctype: int, content_types: Iterable[bytes] = ()) -> bytes:
    """A control frame: the escape (a zero length), the frame's length, its type, then a
    CONTENT_TYPE field for each content type."""
    body = _BE32.pack(ctype) + b"".join(
        struct.pack(">II", FIELD_CONTENT_TYPE, len(ct)) + ct for ct in content_types)
    return b"\0\0\0\0" + _BE32.pack(len(body)) + body


class ProtocolError(ResolverError):
    """The collector broke the Frame Streams handshake."""


def parse_control(body: bytes) -> tuple[int, list[bytes]]:
    """The type and content types of a control frame's body (after its length)."""
    if len(body) < 4:
        raise ProtocolError("control frame too short")
    ctype, = _BE32.unpack_from(body)
    fields, at = [], 4
    while at < len(body):
        if at + 8 > len(body):
            raise ProtocolError("truncated control field")
        ftype, length = struct.unpack_from(">II", body, at)
        at += 8
        if at + length > len(body):
            raise ProtocolError("control field longer than its frame")
        if ftype == FIELD_CONTENT_TYPE:
            fields.append(body[at:at + length])
        at += length
    return ctype, fields


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ProtocolError("the collector closed the connection")
        data += chunk
    return data


def read_control(sock: socket.socket) -> tuple[int, list[bytes]]:
    """The next frame on ``sock``, which must be a control frame: its type and content types.
    ProtocolError or OSError (a timeout included) otherwise."""
    escape, length = struct.unpack(">II", _read_exactly(sock, 8))
    if escape != 0:
        raise ProtocolError("expected a control frame, got a data frame")
    if not 4 <= length <= MAX_CONTROL_FRAME:
        raise ProtocolError(f"control frame of {length} bytes")
    return parse_control(_read_exactly(sock, length))
