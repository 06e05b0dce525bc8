"""Queries sent ahead of validation, hop after hop (issue #20). Replies are still judged only
once their zone's security is established (RFC 4035 §5.2); what is sent early is the queries.

After a referral to a new child zone, the child's DNSKEY query (when the referral holds a DS)
and the lookup's next question leave together, before the child's DS and DNSKEY set are
validated. When the reply to that next question is itself a referral, the grandchild's queries
leave as soon as it arrives, while the child is still being established: each hop's round trip
overlaps the validation of the hop above, as a pipeline. Nothing sent ahead is believed early:
a reply is classified on arrival (to know where the lookup goes next, as any referral is) and
validated only when the lookup reaches it with its zone established; a zone that proves bogus
cancels everything sent below it, and every query sent counts in the client query's upstream
budget. Only for zones with glue: no NS lookups are started ahead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rdatatype

from resolver.dnssec import Verdict
from resolver.dnssec.validator import find
from resolver.dnssec.zone import Zone
from resolver.resolve.qmin import Minimiser

DS, DNSKEY = dns.rdatatype.DS, dns.rdatatype.DNSKEY


def _retrieve(task: asyncio.Future) -> None:
    """Done callback of a query sent ahead: the outcome of one nobody awaits (its zone proved
    bogus, the lookup failed) is dropped without asyncio's "never retrieved" warning."""
    if not task.cancelled():
        task.exception()


def failed_early(task: asyncio.Future) -> bool:
    """A query sent ahead that failed before its zone was established: held while the zone's
    DNSKEY query, sent with it, was the one trying a held server again (RFC 9520 §3.2). It is
    asked again, not taken as the zone's answer."""
    return task.done() and not task.cancelled() and task.exception() is not None


@dataclass(slots=True, eq=False)
class Hop:
    """A new zone's queries, sent before its security is established: its DNSKEY set
    (``keys``, None without a DS in the referral) and the lookup's next ``question``
    (``task``: the (reply, kind) of the zone's servers), the one ``minimiser`` (the lookup's
    state, resolver.resolve.qmin) asks. ``follow``: when that reply is a referral to a new
    zone, that zone's hop, sent on the reply's arrival."""

    zone: Zone
    question: tuple[dns.name.Name, int]
    minimiser: Minimiser
    task: asyncio.Future
    keys: asyncio.Future | None = None
    follow: Hop | None = None

    def cancel(self) -> None:
        """Drop this hop and every hop sent below it."""
        if self.keys is not None:
            self.keys.cancel()
        self.task.cancel()
        if self.follow is not None:
            self.follow.cancel()


Ask = Callable[..., Awaitable[tuple[dns.message.Message, str]]]


class Ahead:
    """Sends hops for the iterator: ``ask(zone, qname, qtype, ctx)`` asks a zone's servers and
    returns (reply, kind); ``delegation(zone, referral, qname)`` is the child zone a referral
    leads to."""

    def __init__(self, ask: Ask, delegation: Callable[..., Zone]) -> None:
        self.ask, self.delegation = ask, delegation

    def send(self, zone: Zone, qname: dns.name.Name, qtype: int, ctx) -> asyncio.Future:
        """``ask`` started now, so that the query travels while the caller validates."""
        task = asyncio.create_task(self.ask(zone, qname, qtype, ctx))
        task.add_done_callback(_retrieve)
        return task

    def hop(self, child: Zone, referral: dns.message.Message, minimiser: Minimiser,
            ctx) -> Hop | None:
        """The new ``child``'s queries, sent now (None for a child without glue): its DNSKEY
        query first when ``referral`` holds its DS (it is needed first), then the lookup's next
        question, whose reply, if a referral, sends the next hop on arrival."""
        if not child.servers:
            return None
        keys = None
        if find(referral.authority, child.name, DS) is not None:
            keys = self.send(child, child.name, DNSKEY, ctx)
        question = minimiser.question(child.name)
        hop = Hop(child, question, minimiser, None, keys)  # type: ignore[arg-type]  # task below
        hop.task = asyncio.create_task(self._follow(hop, ctx))
        hop.task.add_done_callback(_retrieve)
        return hop

    async def _follow(self, hop: Hop, ctx) -> tuple[dns.message.Message, str]:
        reply, kind = await self.ask(hop.zone, *hop.question, ctx)
        if kind == "referral":
            try:
                child = self.delegation(hop.zone, reply, hop.question[0])
            except Exception:  # noqa: BLE001 - the lookup meets the same referral and says why
                return reply, kind
            if child.security is Verdict.INDETERMINATE:
                after = hop.minimiser.after(hop.question[0], True)
                hop.follow = self.hop(child, reply, after, ctx)
        return reply, kind
