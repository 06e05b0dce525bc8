"""The forensic record's encoding and hash chain (issue #4): a record (a dict, its fields in
``resolver.forensic.record``) becomes one line, chained to the one before it, and a line is
checked on its own (:func:`check_line`, for the writer continuing a file and ``verify-log``).

Canonical encoding: orjson with keys sorted by code point at every level, UTF-8, no
whitespace (RFC 8259 JSON; close to RFC 8785's JCS, which sorts by UTF-16 unit and writes
numbers its own way; README states ours byte by byte, for checkers written elsewhere). Each line is the canonical encoding of the whole record (``hash``
included) and ``"\\n"``, so re-encoding a parsed line gives the same bytes; ``hash`` is the
hex SHA-256, or HMAC-SHA-256 (RFC 2104) under the key, of the line less its ``"\\n"`` and
its ``"hash":"<hex>",`` member (see :func:`seal`). A cache hit's record is sealed in C from a
template (:func:`hit_template`, ``_fastlog.Chain.append_hit``) to the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from resolver.errors import ResolverError
from resolver.forensic import record as fields
from resolver.forensic._fastlog import FILL_HASH, MAC_HMAC, MAC_SHA256, Codebook, Digest, HitTemplate

__all__ = ["NEEDS_KEY", "ForensicLogError", "UnreadableKey", "canonical", "check_line",
           "check_record", "hasher",
           "hit_template", "load_hmac_key", "record_hash", "seal"]

MIN_KEY_BYTES = 16
_SORTED = orjson.OPT_SORT_KEYS
_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
_PLACEHOLDER = secrets.token_hex(32)
_PLACEHOLDER_PAIR = b'"hash":"' + _PLACEHOLDER.encode() + b'",'
_COLLECTED = " (a log collector's copy? verify-log --collected)"
NEEDS_KEY = ("the log is HMAC-protected (mac hmac-sha256): its chain cannot be checked without "
             "the key")


class ForensicLogError(ResolverError):
    """The log cannot start, or could not write everything it accepted."""


class UnreadableKey(ForensicLogError):
    """The HMAC key file cannot be read at all (rather than read and found too short)."""


# --- encoding and the chain--------------------------------------------------------------------

def load_hmac_key(path: str) -> bytes:
    """The HMAC key: the file's raw bytes less one trailing newline; at least 16 bytes. Errors
    name the file; the caller names the setting (log.hmac_key_file, --hmac-key-file)."""
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise UnreadableKey(f"{path}: cannot read: {exc.strerror}") from exc
    if key.endswith(b"\r\n"):
        key = key[:-2]
    elif key.endswith(b"\n"):
        key = key[:-1]
    if len(key) < MIN_KEY_BYTES:
        raise ForensicLogError(f"{path} holds {len(key)} bytes; an HMAC key "
                               f"needs at least {MIN_KEY_BYTES} (e.g. head -c 32 /dev/urandom)")
    return key


def canonical(record: dict) -> bytes:
    """The canonical encoding: orjson, keys sorted at every level, UTF-8."""
    return orjson.dumps(record, option=_SORTED)


def record_hash(body: bytes, key: bytes | None) -> str:
    """Hex SHA-256 of ``body``, or HMAC-SHA-256 (RFC 2104) under ``key``."""
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.digest(key, body, "sha256").hex()


def hasher(key: bytes | None) -> Callable[[bytes], str]:
    """:func:`record_hash` with the key bound (compiled; for HMAC the padded-key states of
    RFC 2104 are hashed once and copied per record)."""
    return Digest(key)


def _sanitize(value: Any) -> Any:
    """A JSON-safe copy of a value orjson refused: other keys and objects become strings."""
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(value)


def seal(record: dict, seq: int, prev: str, key: bytes | None,
         digest_of: Callable[[bytes], str] | None = None) -> tuple[bytes, str]:
    """The line to write for ``record`` at ``seq`` after ``prev``, and its hash (``digest_of``:
    ``hasher(key)``, if the caller has it). The record is copied, not changed; values JSON
    cannot carry are stringified (noted in ``encode_error``)."""
    rec = dict(record)
    rec["seq"], rec["prev"], rec["mac"] = seq, prev, MAC_HMAC if key is not None else MAC_SHA256
    # One encoding instead of two: encode with a placeholder hash that is random per process,
    # then cut the placeholder pair out for the hashed body (it is never the last key: mac,
    # prev and seq sort after it) and put the digest in its place for the line. The bytes are
    # those of encoding without, then with, the hash.
    rec["hash"] = _PLACEHOLDER
    try:
        template = orjson.dumps(rec, option=_LINE)
    except TypeError as exc:  # never drop a record for a value the server should not have sent
        rec = _sanitize(rec)
        rec["encode_error"] = str(exc)
        template = orjson.dumps(rec, option=_LINE)
    digest_of = digest_of or hasher(key)
    at = template.find(_PLACEHOLDER_PAIR)
    end = at + len(_PLACEHOLDER_PAIR)
    digest = digest_of(template[:at] + template[end:-1])
    return b"".join((template[:at], b'"hash":"', digest.encode(), b'",', template[end:])), digest


def hit_template(record: dict, codebook: Codebook | None = None) -> HitTemplate | bytes:
    """The record of a cache hit on the answer ``record`` logs, for the compiled hit path
    (``_fastlog.Chain.append_hit``, issue #5): its canonical encoding cut around a hole for
    each field of the table with a ``fill`` (the query's and the chain's), the stored fields
    with a ``hit`` value set to it, so that a hit only fills the holes in. The query flags'
    JSON with RD clear and set come from the record's ``flags``; with a ``codebook``, packed by
    it (``Chain.append_hit`` of a chain with that codebook unpacks it)."""
    token = secrets.token_hex(16)
    rec = dict(record)
    holes = []  # (member name, placeholder, fill)
    for field in fields.FIELDS:
        if field.hit is not None:
            rec[field.name] = field.hit
        if isinstance(field.fill, dict):
            rec[field.name] = {member: f"{token}:{fill}" for member, fill in field.fill.items()}
            holes += [(member, f"{token}:{fill}", fill) for member, fill in field.fill.items()]
        elif field.fill is not None:
            rec[field.name] = f"{token}:{field.fill}"
            holes.append((field.name, f"{token}:{field.fill}", field.fill))
        elif field.source != fields.STORED:
            rec.pop(field.name, None)  # set when sealed (encode_error), never kept from the answer
    text = canonical(rec)
    spots = []
    for member, mark, fill in holes:
        key = canonical(member) + b":"
        spots.append((text.index(key + canonical(mark)) + len(key), len(mark) + 2, fill))
    texts: list[bytes] = []
    at = 0
    spots.sort()
    for value, length, fill in spots:
        if fill == FILL_HASH:  # the text keeps the hash's quotes: only its hex is a hole
            value, length = value + 1, length - 2
        texts.append(text[at:value])
        at = value + length
    texts.append(text[at:])
    flags = record["flags"]
    template = HitTemplate(texts, [fill for _, _, fill in spots],
                           _flags_json(flags["ad"], flags["cd"], flags["do"]))
    return template if codebook is None else codebook.pack(template)


@functools.lru_cache(maxsize=None)
def _flags_json(ad: bool, cd: bool, do: bool) -> tuple[bytes, bytes]:
    """A hit record's query flags as JSON, with RD clear and set: 8 pairs shared by every
    cached answer (issue #5, memory)."""
    return tuple(canonical(fields.flags(rd, do, cd, ad)) for rd in (False, True))


def check_line(line: bytes, key: bytes | None, digest_of: Callable[[bytes], str] | None = None,
               ) -> tuple[dict | None, str | None]:
    """Parse one log line and check it on its own: ``(record, None)`` or ``(record or None,
    what is wrong)``. Shared by the writer (continuing a file) and ``verify-log``."""
    if not line.endswith(b"\n"):
        return None, "truncated line (no newline): the record was cut off or changed"
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, (f"line does not parse ({exc}): the record was truncated or changed"
                      f"{_COLLECTED}")
    if not isinstance(rec, dict):
        return None, "line is not a JSON object: the record was changed"
    rec, problem = check_record(rec, key, digest_of)
    if problem is None and orjson.dumps(rec, option=_LINE) != line:
        return rec, ("line is not in canonical form (re-encoded, or duplicate keys): "
                     f"the record was changed{_COLLECTED}")
    return rec, problem


def check_record(rec: dict, key: bytes | None, digest_of: Callable[[bytes], str] | None = None,
                 ) -> tuple[dict, str | None]:
    """Check a parsed record's chain fields and hash, which covers its canonical encoding
    (whatever bytes it was parsed from): ``(record, None)`` or ``(record, what is wrong)``."""
    seq, digest = rec.get("seq"), rec.get("hash")
    if type(seq) is not int or seq < 0 or not isinstance(rec.get("prev"), str) \
            or not isinstance(digest, str):
        return rec, "chain fields (seq, prev, hash) missing or malformed: the record was changed"
    mac = rec.get("mac")
    if mac not in (MAC_SHA256, MAC_HMAC):
        return rec, f"unknown mac {mac!r}: the record was changed"
    if key is not None and mac != MAC_HMAC:
        return rec, ("mac is sha256 but an HMAC key was given: the log was re-hashed without the "
                     "key (forged), or it was not written with an HMAC key")
    if key is None and mac == MAC_HMAC:
        return rec, NEEDS_KEY
    body = dict(rec)
    del body["hash"]
    if not hmac.compare_digest((digest_of or hasher(key))(canonical(body)), digest):
        extra = " (or the HMAC key is not the one it was written with)" if key else ""
        return rec, "hash mismatch: record changed" + extra
    return rec, None
