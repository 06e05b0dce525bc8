"""QNAME minimisation (RFC 9156): what one lookup asks each zone on the way down.

A lookup of one name (and type) asks each zone the name cut to a few labels more than the zone,
type A (§3 step 4, §2.1), until a zone is asked the full question. §2.3 bounds the queries this
costs per name: at most ``MAX_MINIMISE_COUNT`` minimised queries for the lookup, the first
``MINIMISE_ONE_LAB`` adding one label each; after them the labels not yet exposed are spread over
the minimised queries left, the remainder going to the last ones (an 18-label name from the
root: 1,1,1,1,2,2,2,2,3,3), then the full name is asked. The count is per lookup, not per zone:
a name under many zone cuts served by one server is asked in full early, and the server answers
from the deepest zone it holds. The zone cuts such an answer or referral went past are still
established one by one, from each parent's signed data (resolver.resolve.cuts).

Relaxed (§2.3, §3): a minimised query that fails or gets NXDOMAIN makes the lookup ask the full
name from then on; forwarders are never sent minimised queries.
"""

from __future__ import annotations

import dns.name
import dns.rdatatype

from resolver.dnssec.canonical import same
from resolver.dnssec.zone import ancestor

MAX_MINIMISE_COUNT = 10  # RFC 9156 §2.3: minimised queries per lookup (RECOMMENDED 10)
MINIMISE_ONE_LAB = 4  # RFC 9156 §2.3: the first of them add one label each ("a good value is 4")
A = dns.rdatatype.A


class Minimiser:
    """One lookup's minimisation state: ``name``/``qtype`` looked up, ``on`` (off once relaxed),
    ``sent`` (minimised queries asked so far) and ``exposed`` (labels of the last minimised name
    answered without a referral: the next one asks more). Values: :meth:`after` and
    :meth:`relaxed` return new states, so a state kept for queries sent ahead (resolver.resolve.
    ahead) computes the very question the lookup will ask."""

    __slots__ = ("name", "qtype", "on", "sent", "exposed", "_cut")

    def __init__(self, name: dns.name.Name, qtype: int, on: bool, sent: int = 0,
                 exposed: int = 0, cut: dict[int, dns.name.Name] | None = None) -> None:
        self.name, self.qtype, self.on, self.sent, self.exposed = name, qtype, on, sent, exposed
        # The minimised names made so far, by label count: shared by the states that follow,
        # so the queries sent ahead and the lookup ask the very same Name (built once).
        self._cut = {} if cut is None else cut

    def question(self, zone: dns.name.Name) -> tuple[dns.name.Name, int]:
        """What to ask ``zone`` next (RFC 9156 §3 step 4, §2.3): the name cut to the labels
        exposed so far (at least the zone's) plus this step's, with type A; the question itself
        once minimisation is off, spent, or the step reaches the full name."""
        labels = len(self.name.labels)
        base = max(len(zone.labels), self.exposed)
        if not self.on or self.sent >= MAX_MINIMISE_COUNT:
            return self.name, self.qtype
        step = 1 if self.sent < MINIMISE_ONE_LAB else \
            max(1, (labels - base) // (MAX_MINIMISE_COUNT - self.sent))
        if base + step >= labels:
            return self.name, self.qtype
        cut = self._cut.get(base + step)
        if cut is None:
            cut = self._cut[base + step] = ancestor(self.name, base + step)
        return cut, A

    def after(self, qname: dns.name.Name, referral: bool) -> Minimiser:
        """The state once ``qname`` was asked and answered: a minimised query counted; without a
        referral its labels are exposed (the zone has no cut there: ask further), after one the
        new zone starts from its own labels."""
        minimised = not same(qname, self.name)
        return Minimiser(self.name, self.qtype, self.on, self.sent + minimised,
                         0 if referral else len(qname.labels), self._cut)

    def relaxed(self) -> Minimiser:
        """The full name from now on (RFC 9156 §2.3: a server that fails or denies a minimised
        query is asked the question itself)."""
        return Minimiser(self.name, self.qtype, False, self.sent, self.exposed, self._cut)
