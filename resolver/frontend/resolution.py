"""Resolution for clients: identical questions asked at the same time share one resolution,
each is bounded in time (``timeouts.query_ms``), client queries waiting for one are bounded in
number (resolver.frontend.admission), and every failure comes back as an outcome the answer is
built from: SERVFAIL with an Extended DNS Error (RFC 8914), never an exception.

With serve-stale on (resolver.resolve.stale, RFC 8767), a query whose resolution fails to reach
the authorities, or is still running when the client response timer fires, is answered from
expired data while the resolution goes on in the background; with prefetch on
(resolver.resolve.prefetch), an answer used in the last tenth of its TTL is resolved again in the
background. Both background resolutions are the in-flight ones clients join: one per question.

Only class IN is resolved (RFC 1035 §3.2.4); an outcome does not depend on the query's DO, CD or
AD bits (RFC 4035 §3.2, RFC 6840 §5.7-§5.8), which shape each reply, not the resolution.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import dns.name
import dns.rdatatype

from resolver.config.schema import ServeStale
from resolver.dnssec.canonical import name_wire
from resolver.ede import EDE
from resolver.frontend.admission import Admission
from resolver.resolve.cache import Answer, Cache
from resolver.resolve.chase import Denied, chain_end
from resolver.resolve.prefetch import Prefetch
from resolver.resolve.stale import RECHECK, Stale
from resolver.resolve.iterator import Iterator, ResolutionFailed, Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one client query came to: an answer, a failure, or a policy refusal met on the way
    (a CNAME target outside the service's zones). ``over_limit`` names the limit of
    resolver.frontend.admission a query was over (then ``failure`` says so and nothing was
    resolved). ``stale``: the answer is expired data (RFC 8767)."""

    answer: Answer | None
    failure: ResolutionFailed | None = None
    cache_hit: bool = False
    upstream: list[str] = field(default_factory=list)
    denied: object = None  # the policy Decision that stopped the resolution
    over_limit: str | None = None
    stale: bool = False


class Resolver:
    """Resolution for clients: identical concurrent questions share one resolution, each is
    bounded in time, client queries waiting for one are bounded in number (``admission``),
    and failures are caught as SERVFAIL outcomes. ``serve_stale`` (None: off) and ``prefetch``
    as ``cache.serve_stale`` and ``cache.prefetch`` configure them."""

    def __init__(self, settings: Settings, cache: Cache, admission: Admission, *,
                 exchange=None, serve_stale: ServeStale | None = None,
                 prefetch: bool = False) -> None:
        kwargs = {} if exchange is None else {"exchange": exchange}
        self.iterator = Iterator(settings, cache, **kwargs)
        self.cache = cache
        self.settings = settings
        self.admission = admission
        #: Resolutions in flight by :func:`_flight` of their question and scope.
        self._inflight: dict[tuple, asyncio.Future] = {}
        self.stale = None if serve_stale is None else Stale(serve_stale, cache.clock)
        self.prefetch = Prefetch(cache) if prefetch else None

    async def resolve(self, qname: dns.name.Name, qtype: int, *, permit=None,
                      scope: object = "", client: str | None = None) -> Outcome:
        """Resolve for a client. ``permit`` is the client's policy for names met on the way.
        Concurrent queries for the same question (class IN, the only one served) under the same
        ``scope`` (the service and the policy it is judged by) share one resolution: its
        outcome does not depend on the query's DO, CD or AD bits, which only shape each reply.
        A cache miss of a ``client`` is counted by ``admission`` while it waits, and over a
        limit it is not resolved (internal callers, ``client`` None, are not counted)."""
        cached = self.cache.get(qname, qtype)
        if cached is not None and chain_end(qname, qtype, cached.rrsets) is None:
            if self.prefetch is not None:
                until = self.prefetch.due(qname, qtype)
                if until is not None:
                    self.refresh(qname, qtype, until, permit=permit, scope=scope)
            return Outcome(cached, cache_hit=True)  # else the chain's next links: chase
        if client is not None:
            limit = self.admission.admit(client)
            if limit is not None:
                return Outcome(None, ResolutionFailed(EDE.OTHER, self.admission.reason(limit)),
                               over_limit=limit)
        try:
            stale = self.stale
            if stale is not None and stale.recheck_pending(qname, qtype):
                outcome = await self._stale(qname, qtype, permit, "the authorities failed "
                                            f"within the last {RECHECK:g} s")
                if outcome is not None:
                    return outcome
            key = _flight(qname, qtype, scope)
            shared = self._inflight.get(key)
            if shared is None:
                shared = self._start(key, qname, qtype, permit)
            if stale is None:
                return await asyncio.shield(shared)
            done, _ = await asyncio.wait([shared], timeout=stale.client_timeout)
            if done and not stale.wanted(shared.result().failure):
                return shared.result()
            failed = shared.result() if done else None
            why = (failed.failure.reason if failed else
                   f"no answer within {stale.client_timeout * 1000:.0f} ms")
            outcome = await self._stale(qname, qtype, permit, why,
                                        failed.upstream if failed else [])
            if outcome is None:
                return await asyncio.shield(shared)
            return outcome
        finally:
            if client is not None:
                self.admission.release(client)

    def refresh(self, qname: dns.name.Name, qtype: int, until: float, *, permit=None,
                scope: object = "") -> bool:
        """Resolve ``qname``/``qtype`` again in the background (a prefetch), asking again for
        cached data expiring before ``until`` (the cache's clock); not when a resolution of the
        question is in flight already. Returns whether one started."""
        key = _flight(qname, qtype, scope)
        if self.prefetch is None or key in self._inflight:
            return False
        self.prefetch.started += 1
        self._start(key, qname, qtype, permit, until)
        return True

    def _start(self, key: tuple, qname: dns.name.Name, qtype: int, permit,
               refresh_until: float = 0.0) -> asyncio.Future:
        """A resolution others asking the same question under the same scope (``key``:
        :func:`_flight`) join while it runs."""
        shared = asyncio.get_running_loop().create_task(
            self._resolve(qname, qtype, permit, refresh_until))  # no ensure_future checks
        self._inflight[key] = shared
        shared.add_done_callback(lambda _: self._inflight.pop(key, None))
        if self.stale is not None:
            shared.add_done_callback(lambda done: done.cancelled() or done.exception() or
                                     self.stale.resolved(qname, qtype, done.result().failure))
        return shared

    async def _stale(self, qname: dns.name.Name, qtype: int, permit, why: str,
                     upstream: list[str] = ()) -> Outcome | None:
        """The stale answer as an outcome (``upstream``: the servers the failed resolution
        asked), or None when there is none to give."""
        answer = await self.stale.answer(self.iterator, qname, qtype, permit, why)
        return None if answer is None else Outcome(answer, upstream=list(upstream), stale=True)

    async def _resolve(self, qname: dns.name.Name, qtype: int, permit,
                       refresh_until: float = 0.0) -> Outcome:
        ctx = self.iterator.new_context()
        ctx.refresh_until = refresh_until
        try:
            async with asyncio.timeout(self.settings.query_timeout):
                answer = await self.iterator.chase(qname, qtype, ctx, permit)
                # Proven from kept NSEC or NSEC3 records alone (RFC 8198): a cache hit.
                return Outcome(answer, cache_hit=bool(answer.proof.synthesised
                                                      and not ctx.servers_asked),
                               upstream=ctx.servers_asked)
        except Denied as denied:
            return Outcome(None, upstream=ctx.servers_asked, denied=denied.decision)
        except ResolutionFailed as failure:
            log.info("SERVFAIL %s/%s: %s", qname, dns.rdatatype.to_text(qtype), failure.reason)
            return Outcome(None, failure, upstream=ctx.servers_asked)
        except TimeoutError:
            return Outcome(None, ResolutionFailed(
                EDE.NO_REACHABLE_AUTHORITY,
                f"resolution of {qname} did not finish within {self.settings.query_timeout}s"),
                upstream=ctx.servers_asked)


def _flight(qname: dns.name.Name, qtype: int, scope: object) -> tuple:
    """The key of a resolution in flight: the question's name in canonical form (RFC 4034
    §6.2; RFC 4343 case folded, as names compare), its type, the scope. A bytes key hashes in
    C, once: a tuple holding the Name hashed it in Python, per character, at every lookup."""
    return name_wire(qname.labels), qtype, scope
