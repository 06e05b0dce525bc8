"""Serve-stale, DNSSEC-safe (RFC 8767): when upstream fails, or has not answered within the
client response timer (§5), a client gets the expired answer instead, with TTL 30 (§4) and
EDE 3 Stale Answer (RFC 8914 §4.4; EDE 19 Stale NXDOMAIN Answer, §4.20, for a name error),
while the resolution goes on in the background and refreshes the cache when it succeeds.

Only data that was Secure or proven Insecure is ever served stale (Bogus is never cached); its
RRSIG validity windows are checked again against the validation clock when it is served, so
data whose signatures expired meanwhile is refused (RFC 4035 §5.3.1); entries stored before a
reload are not served (resolver.resolve.cache's epochs); negative answers (NXDOMAIN, NODATA)
are served stale too (RFC 8767 §4). Stale data is served only when the authorities could not be
reached, never in place of an answer that failed validation. After a failure a name is not
asked upstream again for :data:`RECHECK` seconds: its stale data answers at once (§5's
failure recheck timer).
"""

from __future__ import annotations

from collections import OrderedDict

import dns.name
import dns.rcode
import dns.rdatatype

from resolver.config.schema import ServeStale
from resolver.dnssec import Verdict
from resolver.dnssec.result import Answer, ResolutionFailed
from resolver.dnssec.verify import WINDOW_OK, check_window
from resolver.ede import EDE
from resolver.resolve.chase import Denied
from resolver.resolve.iterator import Iterator

STALE_TTL = 30  # seconds: the TTL of a stale answer (RFC 8767 §4)
RECHECK = 5.0  # seconds a name is not asked upstream again after a failure (RFC 8767 §5)
MAX_FAILING = 10_000  # names whose failure is remembered, the oldest forgotten first
#: Failures of the authorities themselves, as opposed to answers that failed validation.
UNREACHABLE = frozenset((EDE.NO_REACHABLE_AUTHORITY, EDE.NETWORK_ERROR))


class Stale:
    """Stale answers for one resolver: ``config`` (its ``max_stale`` is the cache's), the
    cache's ``clock`` for the failure recheck timer. Counts ``served`` and ``refused`` (stale
    data found but its signatures expired meanwhile)."""

    def __init__(self, config: ServeStale, clock) -> None:
        self.client_timeout = config.client_timeout_ms / 1000
        self.clock = clock
        self._failed: OrderedDict[tuple, float] = OrderedDict()  # (name, type): when it failed
        self.served = self.refused = 0

    def recheck_pending(self, qname: dns.name.Name, qtype: int) -> bool:
        """Whether ``qname``/``qtype`` failed less than :data:`RECHECK` seconds ago."""
        failed = self._failed.get((qname, qtype))
        return failed is not None and self.clock() - failed < RECHECK

    def resolved(self, qname: dns.name.Name, qtype: int,
                 failure: ResolutionFailed | None) -> None:
        """A resolution of ``qname``/``qtype`` ended: a failure to reach the authorities starts
        the recheck timer, anything else stops it."""
        key = (qname, qtype)
        self._failed.pop(key, None)
        if self.wanted(failure):
            self._failed[key] = self.clock()
            if len(self._failed) > MAX_FAILING:
                self._failed.popitem(last=False)

    @staticmethod
    def wanted(failure: ResolutionFailed | None) -> bool:
        """Whether an outcome with ``failure`` may be replaced by stale data."""
        return failure is not None and failure.ede in UNREACHABLE

    async def answer(self, iterator: Iterator, qname: dns.name.Name, qtype: int, permit,
                     why: str) -> Answer | None:
        """The stale answer for ``qname``/``qtype`` from the cache alone (each link of a chain
        fresh or stale, no upstream query: the context's query budget is spent), or None: none
        kept, not Secure nor Insecure, a signature expired at the validation time, a link the
        policy refuses."""
        ctx = iterator.new_context()
        ctx.stale, ctx.queries = True, iterator.s.limits.max_upstream_queries
        try:
            answer = await iterator.chase(qname, qtype, ctx, permit)
        except (ResolutionFailed, Denied):
            return None
        if answer.verdict not in (Verdict.SECURE, Verdict.INSECURE):
            return None
        now = iterator.now()
        if any(check_window(rd.inception, rd.expiration, now) != WINDOW_OK
               for rrset in answer.rrsets + answer.authority
               if rrset.rdtype == dns.rdatatype.RRSIG for rd in rrset):
            self.refused += 1
            return None
        self.served += 1
        answer.ttl = STALE_TTL
        answer.ede = (EDE.STALE_NXDOMAIN_ANSWER if answer.rcode == dns.rcode.NXDOMAIN
                      else EDE.STALE_ANSWER)
        answer.reason = f"stale answer: {why}"
        return answer
