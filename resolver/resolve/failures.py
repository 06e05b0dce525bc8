"""Whom to ask, and whom not to ask for a while: the round-trip times of upstream servers (like
Unbound's infra cache) and the negative cache of resolution failures (RFC 9520).

RFC 9520 §3.2: a resolver caches resolution failures, at least 1 second, backing off
exponentially for failures that persist, no longer than 5 minutes, and sends no query that a
cached failure covers until it expires. Kept here, per kind as §3.2 suggests:

- a server address that did not answer (a timeout, a network error: unresponsive) is held
  back, and not asked, while the hold lasts (:class:`Infra`);
- a zone none of whose servers answered is held too (``Iterator.zone_holds``): names at or
  below it fail at once with the failure that was cached (EDE 22, No Reachable Authority), and
  nothing is asked for them, its parent's referral included (§3.3, RFC 4697 §2.1.1).

DNSSEC validation failures of a zone's DS or DNSKEY set (§3.4) are cached with the zone cut
itself (resolver.dnssec.chain: a Bogus zone is remembered for ``BOGUS_TTL``).

A hold starts at :data:`FIRST_HOLD` and doubles with each failure in a row, up to
:data:`MAX_HOLD`. When it ends, one query goes through (the probe) while the others stay held
for as long as the probe may take; an answer forgets the failure, another failure doubles the
hold. Failures of queries that were already in flight when a hold began do not count twice.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from resolver.dnssec.zone import Lru

K = TypeVar("K")
FIRST_HOLD = 1.0  # seconds: RFC 9520 §3.2's minimum
MAX_HOLD = 60.0  # seconds: below §3.2's 5 minutes, so a sidecar sees a server return soon


@dataclass(slots=True)
class Hold:
    """A cached failure: held until ``until`` (a monotonic time), ``failures`` in a row, and
    what the last one was (a reason, or the failure to raise again)."""

    until: float
    failures: int
    what: object
    probing: bool = False  # the hold ended and one query went through to try again


class Holds(Generic[K]):
    """Failures per key with exponential backoff (RFC 9520 §3.2), at most ``size`` keys (the
    least recently used forgotten first). ``probe`` is how long the other queries stay held
    while the one let through after a hold tries again."""

    def __init__(self, size: int, probe: float, clock=time.monotonic) -> None:
        self.probe = probe
        self.clock = clock
        self._holds: Lru[K, Hold] = Lru(size)

    def held(self, key: K) -> Hold | None:
        """The hold on ``key``, or None when it may be asked: no failure cached, or the hold
        has ended and this query is the probe."""
        hold = self._holds.get(key)
        if hold is None:
            return None
        now = self.clock()
        if now < hold.until:
            return hold
        hold.until, hold.probing = now + self.probe, True
        return None

    def failed(self, key: K, what: object) -> None:
        """A failure of ``key``: a new hold, or a longer one after a failed probe."""
        hold = self._holds.get(key)
        now = self.clock()
        if hold is None:
            self._holds.put(key, Hold(now + FIRST_HOLD, 1, what))
        elif hold.probing or now >= hold.until:
            hold.failures += 1
            hold.until = now + min(FIRST_HOLD * 2 ** (hold.failures - 1), MAX_HOLD)
            hold.what, hold.probing = what, False

    def answered(self, key: K) -> None:
        self._holds.pop(key)

    def __len__(self) -> int:
        return len(self._holds)


class Infra:
    """Per server address: smoothed round-trip times, for choosing whom to ask (unknown servers
    first in random order, then the fastest; timeouts back off), and the RFC 9520 holds of
    unresponsive servers. Zones name the addresses, so at most ``max_servers`` of each are
    remembered: the one updated least recently is forgotten first (it is then an unknown
    server again)."""

    def __init__(self, max_servers: int, probe: float = 1.2) -> None:
        self.max_servers = max_servers
        self.srtt: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.holds: Holds[tuple[str, int]] = Holds(max_servers, probe)

    def order(self, servers: list[tuple[str, int]]) -> list[tuple[str, int]]:
        if len(servers) < 2:
            return list(servers)
        srtt = self.srtt  # unknown servers (-1.0) first, in random order: each is tried once
        return sorted(servers, key=lambda s: (srtt.get(s, -1.0), random.random()))

    def success(self, server: tuple[str, int], rtt: float) -> None:
        old = self.srtt.get(server)
        self._set(server, rtt if old is None else 0.7 * old + 0.3 * rtt)
        self.holds.answered(server)

    def failure(self, server: tuple[str, int], timeout: float) -> None:
        """A server that failed a query: asked after the others for a while."""
        self._set(server, min(max(self.srtt.get(server, 0.0) * 2, timeout), 120.0))

    def unresponsive(self, server: tuple[str, int], timeout: float, reason: str) -> None:
        """A server that did not answer at all: asked after the others, and held (RFC 9520)."""
        self.failure(server, timeout)
        self.holds.failed(server, reason)

    def _set(self, server: tuple[str, int], srtt: float) -> None:
        self.srtt[server] = srtt
        self.srtt.move_to_end(server)
        if len(self.srtt) > self.max_servers:
            self.srtt.popitem(last=False)
