"""Posture events (issue #18): each written three ways, as a record in the forensic chain
(``resolver.forensic.record.EVENT_FIELDS``, sealed like a reply's record), as a line of the
process log, and counted (``dnssec_events_total{event}``, and for key changes
``zone_key_changes_total{zone,kind}``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from resolver.forensic import record as fields
from resolver.forensic.seal import ForensicLogError
from resolver.monitor.posture import CHANGE_KINDS

log = logging.getLogger("dnssec-sidecar")

#: Every event kind, in the order README lists them.
KINDS = ("became_insecure", "became_bogus", "dnskey_changed", "ds_changed", "algorithm_changed",
         "nsec3_changed", "signatures_expiring", "answer_unexpected", "canary_resolved",
         "zone_seen")


class Events:
    """Where events go. ``forensic`` is the running ForensicLog (None: no log), ``count(kind)``
    bumps the metric (None: no metrics); ``counts`` and ``key_changes`` keep the totals."""

    def __init__(self, forensic=None, worker: int | None = None,
                 count: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.forensic, self.worker, self.count, self.clock = forensic, worker, count, clock
        self.counts: Counter[str] = Counter()
        self.key_changes: Counter[tuple[str, str]] = Counter()  # (zone, kind)
        self._pending: set[asyncio.Future] = set()

    def emit(self, kind: str, zone: str, detail: dict, posture: dict | None = None) -> None:
        """Write one event: a record (queued; waits for room without holding the caller), a
        process log line, the counts."""
        assert kind in KINDS, kind
        self.counts[kind] += 1
        if kind in CHANGE_KINDS:
            self.key_changes[(zone, CHANGE_KINDS[kind])] += 1
        if self.count is not None:
            self.count(kind)
        level = logging.INFO if kind == "zone_seen" else logging.WARNING
        log.log(level, "posture: %s %s: %s", kind, zone,
                ", ".join(f"{k} {v}" for k, v in detail.items()))
        if self.forensic is None:
            return
        record = fields.event(self.clock(), self.worker, kind, zone, detail, posture)
        try:
            if self.forensic.append_nowait(record):
                return
        except (ForensicLogError, RuntimeError) as exc:  # not started, closed: the line stands
            log.error("posture: %s %s not written to the forensic log: %s", kind, zone, exc)
            return
        task = asyncio.ensure_future(self._append(record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append(self, record: dict) -> None:
        try:
            await self.forensic.append(record)
        except ForensicLogError as exc:
            log.error("posture: %s %s not written to the forensic log: %s", record["event"],
                      record["zone"], exc)
