"""Checkpoints of the forensic chain (issue #18): the head of the chain (the last record's
``seq`` and ``hash``, once written and fsynced) emitted every ``log.checkpoint`` seconds to
places the log's writer cannot rewrite: the process log (standard error, collected apart from
the forensic log), and through the metrics endpoint (``log_head_seq``, and ``/log/head`` with
the hash) for a collector or Prometheus to keep. The hash chain alone cannot show records
removed from the end of a log: ``verify-log --head SEQ:HASH`` with a checkpoint kept elsewhere
does (``resolver.forensic.verify``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from resolver.forensic._fastlog import rfc3339
from resolver.forensic.log import ForensicLog

__all__ = ["Checkpoints"]


class Checkpoints:
    """Takes the chain's head every ``interval`` seconds (:meth:`run`) and when asked
    (:meth:`take`), hands a line for the process log to ``say`` when the head moved, and keeps
    the last one (``last``: seq, hash, POSIX time) for the metrics endpoint."""

    def __init__(self, log: ForensicLog, interval: float, say: Callable[[str], None]) -> None:
        self.log, self.interval, self.say = log, interval, say
        self.last: tuple[int, str, float] | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.take()

    async def take(self) -> None:
        """Emit the head once the records up to it are written, if it moved."""
        head = await self.log.head()
        if head is None or (self.last is not None and self.last[:2] == head):
            return
        seq, digest = head
        self.last = (seq, digest, time.time())
        self.say(f"forensic log head: seq {seq} hash {digest} "
                 f"(verify-log --head {seq}:{digest})")

    def json(self) -> bytes | None:
        """The last checkpoint as served on ``/log/head``; None before the first."""
        if self.last is None:
            return None
        seq, digest, at = self.last
        return orjson.dumps({"seq": seq, "hash": digest, "time": rfc3339(at),
                             "mac": "hmac-sha256" if self.log.config.hmac_key_file
                             else "sha256"}, option=orjson.OPT_APPEND_NEWLINE)
