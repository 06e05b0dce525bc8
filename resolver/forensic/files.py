"""The forensic log's files (issues #4, #18): reading one, plain or gzip-compressed
(:class:`Lines`), where a log continues its chain after a restart (:func:`continuation`), the
age of a file (its first record's RFC 3339 ``time``) and the renames that rotate it (``log`` to
``log.1``, ``log.1`` to ``log.2``, ..., the oldest past ``keep`` removed). A rotated file's first
record has as ``prev`` the last hash of the file before.

A compressed file (``log.compress: gzip``) is gzip (RFC 1952): one member per run of the writer,
each batch of lines ended by a sync flush (an empty stored block, RFC 1951 §3.2.4), the member
closed (last block and trailer) when the file is rotated or the log closed. A writer that
stopped without closing it (killed, a power cut) leaves a member with no trailer, readable up
to its last flush; at the next start :func:`close_stream` closes it with an empty final block
and the trailer of what it holds, and the new run appends a member of its own.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime

import orjson

from resolver.config import LogConfig
from resolver.forensic.seal import NEEDS_KEY, ForensicLogError, check_line

__all__ = ["Lines", "close_stream", "compressed", "continuation", "first_time", "rotation"]

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 §2.3.1: ID1, ID2
_SYNC_MARK = b"\x00\x00\xff\xff"  # the end of a sync flush: an empty stored block's LEN, NLEN
_FINAL_BLOCK = b"\x03\x00"  # an empty final block with fixed codes (RFC 1951 §3.2.6), aligned
_CHUNK = 1 << 20
_TAIL = 1 << 20  # octets of a compressed file's end kept to find its last line (a record's
                 # line is at most ~70 KB: an answer near the largest DNS message)


def compressed(path: str) -> bool:
    """Whether the file is gzip (by its first octets; an empty file is not)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


class Lines:
    """The lines of a log file, each with its newline (the last one may have none), read
    through once: plain, or gzip with any number of members. After reading, ``compressed``,
    ``finished`` (False: the last member has no trailer, its writer stopped without closing it)
    and, for that last member, ``crc`` and ``size`` (CRC-32 and length of what it holds).
    A gzip stream that does not decompress raises :class:`ValueError` after the lines before
    the fault."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.compressed = compressed(path)
        self.finished = True
        self.crc = self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            if not self.compressed:
                yield from f
                return
            rest = b""
            for data in self.inflate(f):
                rest += data
                lines = rest.split(b"\n")
                rest = lines.pop()
                for line in lines:
                    yield line + b"\n"
            if rest:
                yield rest

    def inflate(self, f) -> Iterator[bytes]:
        """The decompressed data of the open file ``f``, chunk by chunk."""
        stream, fed = zlib.decompressobj(31), False
        while chunk := f.read(_CHUNK):
            while chunk:
                fed = True
                try:
                    data = stream.decompress(chunk)
                except zlib.error as exc:
                    raise ValueError(f"compressed data corrupt ({exc})") from None
                self.crc, self.size = zlib.crc32(data, self.crc), self.size + len(data)
                yield data
                chunk = b""
                if stream.eof:  # the member is closed; another may follow (RFC 1952 §2.2)
                    chunk, fed = stream.unused_data, False
                    stream = zlib.decompressobj(31)
                    self.crc = self.size = 0
        self.finished = not fed


def close_stream(path: str) -> str | None:
    """Close the last gzip member of ``path`` if its writer stopped without closing it: when
    it ends with a whole batch (a sync flush after a complete line), append an empty final
    block and the trailer (CRC-32 and size of what it holds, RFC 1952 §2.2), changing none of
    its data; return what was done, for the process log. :class:`ForensicLogError` when it ends
    in a torn write (the chain cannot be continued from a partial record)."""
    reader = Lines(path)
    last = None
    for last in reader:
        pass
    if reader.finished:
        return None
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - len(_SYNC_MARK)))
        tail = f.read()
    if tail != _SYNC_MARK or not (last or b"").endswith(b"\n"):
        raise ForensicLogError(
            f"forensic log {path}: its compressed stream ends in a torn write (the writer "
            f"stopped during one): check it with 'dnssec-sidecar verify-log', then move the log "
            f"files aside to start a new chain")
    with open(path, "ab") as f:
        f.write(_FINAL_BLOCK + struct.pack("<II", reader.crc, reader.size & 0xFFFFFFFF))
        f.flush()
        os.fsync(f.fileno())
    return (f"forensic log {path}: the last run stopped without closing its compressed stream; "
            f"closed it after its last batch (no record changed)")


def _last_line(path: str) -> bytes | None:
    """The file's last line (with its newline, if any), None if the file is empty."""
    if compressed(path):  # inflated through, only its tail kept (no line split on the way)
        tail = b""
        with open(path, "rb") as f:
            for data in Lines(path).inflate(f):
                tail = (tail + data)[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        return tail[cut + 1:] or None
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        buf = b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut >= 0:
                return buf[cut + 1:]
        return buf or None


def first_time(path: str) -> float | None:
    """The ``time`` of a file's first record as a POSIX timestamp (the file's age), if any."""
    try:
        rec = orjson.loads(next(iter(Lines(path)), b""))
        return datetime.fromisoformat(rec["time"]).timestamp()
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def continuation(config: LogConfig, key: bytes | None) -> tuple[int, str] | None:
    """The seq and hash a log file continues from: its last record, or the last of ``.1``
    when it was rotated and stopped before its first record; None for a new chain. That
    record must verify on its own, else :class:`ForensicLogError` (the chain is not forked)."""
    path = config.path
    source = path if _size(path) > 0 else None
    if source is None and config.keep > 0 and _size(path + ".1") > 0:
        source = path + ".1"  # rotated, then stopped before the new file's first record
    if source is None:
        return None
    try:
        line = _last_line(source)
    except OSError as exc:
        raise ForensicLogError(f"cannot read forensic log {source}: {exc.strerror}") from exc
    except ValueError as exc:  # a compressed file that does not decompress
        raise ForensicLogError(f"forensic log {source}: {exc}: check it with 'dnssec-sidecar "
                               f"verify-log', then move the log files aside") from exc
    rec, problem = check_line(line or b"", key)
    if problem == NEEDS_KEY:
        problem = ("it was written with an HMAC key (mac hmac-sha256) and no "
                   "log.hmac_key_file is configured")
    if problem is not None:
        raise ForensicLogError(
            f"forensic log {source}: its last record cannot be continued: {problem}. Refusing "
            f"to fork the chain: check it with 'dnssec-sidecar verify-log', then move the "
            f"log files aside to start a new chain")
    return rec["seq"] + 1, rec["hash"]


def rotation(path: str, keep: int) -> list[tuple[str, str]]:
    """The renames (source, destination; "" to remove) that rotate the log file ``path``,
    keeping ``keep`` rotated files, in the order to make them: oldest first, so that a rotation
    interrupted by an error resumes where it stopped."""
    plan = [(f"{path}.{n}", f"{path}.{n + 1}") for n in range(keep - 1, 0, -1)
            if os.path.exists(f"{path}.{n}")]
    plan.append((path, f"{path}.1" if keep else ""))
    n = keep + 1
    while os.path.exists(f"{path}.{n}"):  # left over from a larger `keep`
        plan.insert(0, (f"{path}.{n}", ""))
        n += 1
    return plan
