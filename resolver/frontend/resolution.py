"""Resolution for clients: identical questions asked at the same time share one resolution,
each is bounded in time (``timeouts.query_ms``), client queries waiting for one are bounded in
number (resolver.frontend.admission), and every failure comes back as an outcome the answer is
built from: SERVFAIL with an Extended DNS Error (RFC 8914), never an exception.

Only class IN is resolved (RFC 1035 §3.2.4); an outcome does not depend on the query's DO, CD or
AD bits (RFC 4035 §3.2, RFC 6840 §5.7-§5.8), which shape each reply, not the resolution.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import dns.name
import dns.rdatatype

from resolver.ede import EDE
from resolver.frontend.admission import Admission
from resolver.resolve.cache import Answer, Cache
from resolver.resolve.iterator import Denied, Iterator, ResolutionFailed, Settings, chain_end

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one client query came to: an answer, a failure, or a policy refusal met on the way
    (a CNAME target outside the service's zones). ``over_limit`` names the limit of
    resolver.frontend.admission a query was over (then ``failure`` says so and nothing was
    resolved)."""

    answer: Answer | None
    failure: ResolutionFailed | None = None
    cache_hit: bool = False
    upstream: list[str] = field(default_factory=list)
    denied: object = None  # the policy Decision that stopped the resolution
    over_limit: str | None = None


class Resolver:
    """Resolution for clients: identical concurrent questions share one resolution, each is
    bounded in time, client queries waiting for one are bounded in number (``admission``),
    and failures are caught as SERVFAIL outcomes."""

    def __init__(self, settings: Settings, cache: Cache, admission: Admission, *,
                 exchange=None) -> None:
        kwargs = {} if exchange is None else {"exchange": exchange}
        self.iterator = Iterator(settings, cache, **kwargs)
        self.cache = cache
        self.settings = settings
        self.admission = admission
        self._inflight: dict[tuple, asyncio.Future] = {}

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
            return Outcome(cached, cache_hit=True)  # else the chain's next links: chase
        if client is not None:
            limit = self.admission.admit(client)
            if limit is not None:
                return Outcome(None, ResolutionFailed(EDE.OTHER, self.admission.reason(limit)),
                               over_limit=limit)
        try:
            key = (qname, qtype, scope)
            shared = self._inflight.get(key)
            if shared is None:
                shared = asyncio.ensure_future(self._resolve(qname, qtype, permit))
                self._inflight[key] = shared
                shared.add_done_callback(lambda _: self._inflight.pop(key, None))
            return await asyncio.shield(shared)
        finally:
            if client is not None:
                self.admission.release(client)

    async def _resolve(self, qname: dns.name.Name, qtype: int, permit) -> Outcome:
        ctx = self.iterator.new_context()
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

