"""The forensic log's files (issue #4): where a log continues its chain after a restart
(:func:`continuation`), the age of a file (its first record's RFC 3339 ``time``) and the renames
that rotate it (``log`` to ``log.1``, ``log.1`` to ``log.2``, ..., the oldest past ``keep``
removed). A rotated file's first record has as ``prev`` the last hash of the file before.
"""

from __future__ import annotations

import os
from datetime import datetime

import orjson

from resolver.config import LogConfig
from resolver.forensic.seal import NEEDS_KEY, ForensicLogError, check_line

__all__ = ["continuation", "first_time", "rotation"]


def _last_line(path: str) -> bytes | None:
    """The file's last line (with its newline, if any), None if the file is empty."""
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
        with open(path, "rb") as f:
            rec = orjson.loads(f.readline(1 << 20))
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
