"""Prefetch, as Unbound's (no RFC; RFC 8767 §5 notes it beside serve-stale): an answer asked for
in the last tenth of its TTL is resolved again in the background before it expires, so a name in
use never misses. The answer cache's entries (here) and the hit path's stored replies
(resolver.resolve._fastcache, told :data:`FRACTION` by its owner) both trigger it; the owner
starts the resolution, at most one per question at a time.
"""

from __future__ import annotations

import dns.name

from resolver.resolve.cache import Cache

FRACTION = 0.1  # the last part of its TTL in which a use of an answer refreshes it
MARGIN = 1.0  # seconds: cached data expiring this soon after the answer is refreshed with it


class Prefetch:
    """When the answers of ``cache`` are due for a refresh; counts the refreshes ``started``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.started = 0

    def due(self, qname: dns.name.Name, qtype: int) -> float | None:
        """The ``refresh_until`` (resolver.resolve.iterator.Context) of a refresh of the cached
        ``qname``/``qtype`` when it is in the last :data:`FRACTION` of its TTL, else None."""
        expires = self.cache.expiring(qname, qtype, FRACTION)
        return None if expires is None else expires + MARGIN

    def until(self, seconds_left: float) -> float:
        """The ``refresh_until`` of a refresh of an answer that expires in ``seconds_left``."""
        return self.cache.clock() + seconds_left + MARGIN
