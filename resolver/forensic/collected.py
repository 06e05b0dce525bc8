"""Forensic records as a log collector delivers them (issue #18): ``verify-log --collected``.

A record's ``hash`` covers its canonical encoding (``resolver.forensic.seal``): the JSON value,
not the bytes of the line. A collector (rsyslog, Fluent Bit, Vector, the container runtime)
may change the bytes and keep the value: a prefix before the JSON (a syslog header, RFC 5424
§6 or RFC 3164 §4.1; a CRI log line's time, stream and tag), the record wrapped in an object
of its own (as a string, ``{"log": "<the line>"}``, or as an object), keys reordered,
whitespace and escapes changed, a number that is whole written as an integer. :func:`recover`
finds the record in such a line; the checker then re-encodes it canonically and checks the
hash on that. What a collector may not change is any value: that is what the hash protects.
"""

from __future__ import annotations

import orjson

from resolver.forensic import record as fields

__all__ = ["recover"]

_CHAIN = ("seq", "prev", "hash")  # a record has these; a collector's wrapper does not
_DEPTH = 4  # wrappers inside wrappers looked into at most
#: Fields whose values are JSON numbers that may be fractional: a collector that writes a whole
#: value (``1.0``) as ``1`` changes the canonical bytes, not the value.
_FRACTIONAL = tuple(f.name for f in fields.FIELDS if f.shape == "number")


def recover(line: bytes) -> dict | None:
    """The forensic record a collector's line carries, or None when it carries none: the JSON
    object from the line's first ``{`` to its end (what comes before is a prefix), or the
    record inside it (a wrapper object's member, or a string member holding the line)."""
    return _recover(line, _DEPTH)


def _recover(line: bytes, depth: int) -> dict | None:
    start = line.find(b"{")
    if start < 0 or depth == 0:
        return None
    try:
        value = orjson.loads(line[start:])
    except orjson.JSONDecodeError:
        return None
    rec = _unwrap(value, depth)
    if rec is not None:
        for name in _FRACTIONAL:
            number = rec.get(name)
            if type(number) is int:
                rec[name] = float(number)
    return rec


def _unwrap(value: object, depth: int) -> dict | None:
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return _recover(value.encode(), depth - 1)
    if not isinstance(value, dict) or depth == 0:
        return None
    if all(name in value for name in _CHAIN):
        return value
    for member in value.values():
        found = _unwrap(member, depth - 1)
        if found is not None:
            return found
    return None
