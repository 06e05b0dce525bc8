"""Recent policy refusals, for an approval prompt (``GET /v1/denials``, resolver.ops.api): one
entry per service, question and decision (``refuse``, or ``would_refuse`` in ``mode: observe``),
with the rule and reason of the last one, when it was first and last seen and how often. Bounded:
past :data:`MAX_ENTRIES` the entry seen least recently is forgotten. Fed by the full path
(resolver.frontend.pipeline); a refused question is never kept for the hit path, so every refusal
passes here, and in observe mode the first of each (its repeats answered by the hit path are
counted in ``policy_would_refuse_total``, not here)."""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Denials", "MAX_ENTRIES"]

#: Distinct (service, name, type, decision) entries kept.
MAX_ENTRIES = 1000


class Denials:
    """The recent refusals; one event loop, no locking."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, dict] = OrderedDict()

    def add(self, seconds: float, service: str, qname: str, qtype: str, decision: str,
            rule: str | None, reason: str, client: str) -> None:
        """A refusal at ``seconds`` (time.time) of ``qname``/``qtype`` asked by ``client``."""
        key = (service, qname.lower(), qtype, decision)
        entry = self._entries.pop(key, None)
        if entry is None:
            if len(self._entries) >= self.max_entries:
                self._entries.popitem(last=False)
            entry = {"service": service, "name": qname, "type": qtype, "decision": decision,
                     "first_seen": seconds, "count": 0}
        entry.update(rule=rule, reason=reason, client=client, last_seen=seconds,
                     count=entry["count"] + 1)
        self._entries[key] = entry

    def recent(self, service: str | None = None, since: float | None = None) -> list[dict]:
        """Entries of ``service`` (None: every service) last seen at or after ``since``, the
        most recent first."""
        return [dict(entry) for entry in reversed(self._entries.values())
                if (service is None or entry["service"] == service)
                and (since is None or entry["last_seen"] >= since)]

    def forget(self, service: str) -> None:
        """Drop a deleted service's entries."""
        for key in [key for key in self._entries if key[0] == service]:
            del self._entries[key]
