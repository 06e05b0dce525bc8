"""The dnstap protobuf, encoded by hand (proto2, the dnstap project's dnstap.proto): a
``Dnstap`` of type MESSAGE around a ``Message`` with the fields dnstap.proto recommends for each
message type. A handful of varint, fixed32 and length-delimited fields (protobuf's encoding
guide); the field numbers are cited at the constants below. tests/test_dnstap.py checks them
against Google's protobuf runtime.
"""

from __future__ import annotations

import socket
import struct

#: The Frame Streams content type of this encoding.
CONTENT_TYPE = b"protobuf:dnstap.Dnstap"

#: Dnstap.Type MESSAGE = 1.
DNSTAP_MESSAGE = 1
#: Message.Type values.
RESOLVER_QUERY = 3
RESOLVER_RESPONSE = 4
CLIENT_QUERY = 5
CLIENT_RESPONSE = 6
FORWARDER_QUERY = 7
FORWARDER_RESPONSE = 8
#: SocketFamily and SocketProtocol values.
INET, INET6 = 1, 2
UDP, TCP, DOT = 1, 2, 3
#: SocketProtocol of a transport name (DOT: DNS over TLS, RFC 7858).
PROTOCOLS = {"udp": UDP, "tcp": TCP, "dot": DOT}

_VARINT, _FIXED32, _LENGTH = 0, 5, 2  # protobuf wire types


def _tag(number: int, wire_type: int) -> bytes:
    return bytes([number << 3 | wire_type])  # every field number here is below 16: one byte


# Dnstap: identity = 1, version = 2 (bytes); message = 14 (Message); type = 15 (Type).
_D_IDENTITY, _D_VERSION = _tag(1, _LENGTH), _tag(2, _LENGTH)
_D_MESSAGE, _D_TYPE = _tag(14, _LENGTH), _tag(15, _VARINT)
# Message: type = 1, socket_family = 2, socket_protocol = 3 (enums); query_address = 4,
# response_address = 5 (bytes); query_port = 6, response_port = 7 (uint32); query_time_sec = 8
# (uint64), query_time_nsec = 9 (fixed32); query_message = 10, query_zone = 11 (bytes);
# response_time_sec = 12 (uint64), response_time_nsec = 13 (fixed32); response_message = 14.
_M_TYPE, _M_FAMILY, _M_PROTOCOL = _tag(1, _VARINT), _tag(2, _VARINT), _tag(3, _VARINT)
_M_QADDR, _M_RADDR = _tag(4, _LENGTH), _tag(5, _LENGTH)
_M_QPORT, _M_RPORT = _tag(6, _VARINT), _tag(7, _VARINT)
_M_QSEC, _M_QNSEC = _tag(8, _VARINT), _tag(9, _FIXED32)
_M_QMSG, _M_QZONE = _tag(10, _LENGTH), _tag(11, _LENGTH)
_M_RSEC, _M_RNSEC = _tag(12, _VARINT), _tag(13, _FIXED32)
_M_RMSG = _tag(14, _LENGTH)

_FIXED = struct.Struct("<I")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _time(parts: list, sec_tag: bytes, nsec_tag: bytes, ns: int) -> None:
    sec, nsec = divmod(ns, 1_000_000_000)
    parts += (sec_tag, _varint(sec), nsec_tag, _FIXED.pack(nsec))


def _address(host: str) -> tuple[int, bytes]:
    """The SocketFamily and the packed address (4 or 16 octets); a scope (``%eth0``) is cut."""
    if ":" in host:
        return INET6, socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    return INET, socket.inet_pton(socket.AF_INET, host)


def encode_message(mtype: int, protocol: int, *, initiator: tuple[str, int] | None = None,
                   responder: tuple[str, int] | None = None, query_time: int | None = None,
                   query_message: bytes | None = None, query_zone: bytes | None = None,
                   response_time: int | None = None, response_message: bytes | None = None,
                   ) -> bytes:
    """A dnstap ``Message``. ``initiator`` and ``responder`` are (address, port) of the query's
    sender and of its receiver; times are nanoseconds since the epoch; ``query_zone`` is a name
    in wire format. Fields are written in field-number order."""
    family = 0
    qaddr = raddr = None
    if initiator is not None:
        family, qaddr = _address(initiator[0])
    if responder is not None:
        family, raddr = _address(responder[0])
    parts = [_M_TYPE, _varint(mtype)]
    if family:
        parts += (_M_FAMILY, _varint(family))
    parts += (_M_PROTOCOL, _varint(protocol))
    if qaddr is not None:
        parts.append(_field(_M_QADDR, qaddr))
    if raddr is not None:
        parts.append(_field(_M_RADDR, raddr))
    if initiator is not None:
        parts += (_M_QPORT, _varint(initiator[1]))
    if responder is not None:
        parts += (_M_RPORT, _varint(responder[1]))
    if query_time is not None:
        _time(parts, _M_QSEC, _M_QNSEC, query_time)
    if query_message is not None:
        parts.append(_field(_M_QMSG, query_message))
    if query_zone is not None:
        parts.append(_field(_M_QZONE, query_zone))
    if response_time is not None:
        _time(parts, _M_RSEC, _M_RNSEC, response_time)
    if response_message is not None:
        parts.append(_field(_M_RMSG, response_message))
    return b"".join(parts)


def encode_header(identity: bytes, version: bytes) -> bytes:
    """The Dnstap fields before ``message``, the same for every message of a writer."""
    return (_field(_D_IDENTITY, identity) if identity else b"") + (
        _field(_D_VERSION, version) if version else b"")


_TRAILER = _D_TYPE + _varint(DNSTAP_MESSAGE)


def wrap(header: bytes, message: bytes) -> bytes:
    """A ``Dnstap`` of type MESSAGE: ``header`` (:func:`encode_header`), then ``message``."""
    return header + _field(_D_MESSAGE, message) + _TRAILER


def encode_dnstap(message: bytes, identity: bytes = b"", version: bytes = b"") -> bytes:
    """A ``Dnstap`` of type MESSAGE around an encoded ``Message``."""
    return wrap(encode_header(identity, version), message)
