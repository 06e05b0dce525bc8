"""The posture of the expected zones, kept current (issue #18): the zones named in allow rules
and the zone cuts above them, fed by the chain of trust as it establishes zone cuts (its
``observer``, RFC 4035 §5.2) and by a background check every ``monitor.interval``: each zone's
SOA, DS (asked of the parent, RFC 4035 §3.1.4.1), DNSKEY and NSEC3PARAM (RFC 5155 §4), resolved
afresh through the resolver's own validating iteration, within ``monitor.budget`` lookups an
interval (canaries first, then the zones checked longest ago). A canary (``monitor.canary``)
is a name that must fail validation: one that resolves means validation is off, and fails
readiness. The frontend tells it of answers refused for being outside ``allow[].expect``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import dns.name
import dns.rcode
import dns.rdatatype

from resolver.config import Config, MonitorConfig
from resolver.dnssec import Verdict, dnskey_tag
from resolver.dnssec.canonical import within
from resolver.dnssec.result import Answer, ResolutionFailed
from resolver.dnssec.zone import Lru, Zone
from resolver.ede import EDE
from resolver.frontend.pipeline import DNSSEC_EDE
from resolver.monitor.events import Events
from resolver.monitor.posture import SEP, STATES, Posture, absolute

log = logging.getLogger("dnssec-sidecar")

SOA, DS, DNSKEY, NSEC, NSEC3, NSEC3PARAM, A = (
    dns.rdatatype.SOA, dns.rdatatype.DS, dns.rdatatype.DNSKEY, dns.rdatatype.NSEC,
    dns.rdatatype.NSEC3, dns.rdatatype.NSEC3PARAM, dns.rdatatype.A)
ROOT = dns.name.root
MAX_ZONES = 10_000  # zones whose posture is kept (expected zones and the cuts above them)
SEEN_UNEXPECTED = 1024  # refused answers remembered, so a repeat within an interval is no event


class Monitor:
    """The posture table and what keeps it current. ``iterator()`` gives the running
    resolver.resolve.iterator.Iterator (a reload replaces it)."""

    def __init__(self, config: Config, iterator: Callable, events: Events,
                 clock: Callable[[], float] = time.time) -> None:
        self.iterator, self.events, self.clock = iterator, events, clock
        self.zones: dict[dns.name.Name, Posture] = {}
        self.holder: dict[dns.name.Name, dns.name.Name] = {}  # allow zone -> the cut holding it
        self.cuts: set[dns.name.Name] = set()  # the zone cuts met on the way to them
        self.canaries: dict[dns.name.Name, str | None] = {}  # name -> what it resolved to
        self._unexpected: Lru[tuple, float] = Lru(SEEN_UNEXPECTED)
        self._by_text: dict[str, dns.name.Name] = {}  # the zones' names as signers write them
        self._seen: dict[dns.name.Name, int] = {}  # earliest expiry seen since the last check
        self.configure(config)

    def configure(self, config: Config) -> None:
        """The expected zones and canaries of ``config`` (at start and on a reload)."""
        self.config: MonitorConfig = config.monitor
        services = (*config.services, config.default_service)
        self.expected = sorted({rule.zone for s in services for rule in s.allow},
                               key=lambda n: (len(n.labels), n))
        self.canaries = {name: self.canaries.get(name) for name in self.config.canary}
        # Zones no rule expects any more are forgotten (their metrics go with them).
        self.zones = {n: p for n, p in self.zones.items() if self.tracks(n)}
        self._by_text = {p.zone: n for n, p in self.zones.items()}
        self.cuts = {n for n in self.cuts if self.tracks(n)}
        self.holder = {n: h for n, h in self.holder.items() if n in self.expected}

    # --- what is expected ----------------------------------------------------------------

    def tracks(self, name: dns.name.Name) -> bool:
        """Whether ``name`` is an expected zone or a zone cut above one."""
        return any(within(zone, name) for zone in self.expected)

    def _posture(self, name: dns.name.Name) -> Posture | None:
        found = self.zones.get(name)
        if found is None and len(self.zones) < MAX_ZONES:
            found = self.zones[name] = Posture(name.to_text())
            self._by_text[found.zone] = name
        return found

    def _view(self, name: dns.name.Name, **view) -> Posture | None:
        posture = self._posture(name)
        if posture is None:
            return None
        now, validation_now = self.clock(), self.iterator().now()
        for kind, detail in posture.update(now, validation_now, self.config.expiry_warning,
                                           **view):
            self.events.emit(kind, posture.zone, detail, posture.as_dict())
        return posture

    # --- the observers ---------------------------------------------------------------------

    def observe_zone(self, zone: Zone) -> None:
        """The chain of trust's observer: a zone cut's security was just decided."""
        if not self.config.enabled or zone.recursive or not self.tracks(zone.name):
            return
        state = zone.security.value
        if state not in STATES:
            return
        view: dict = {"state": state, "reason": zone.reason}
        if state == "secure":
            view["dnskey"] = _keys(zone.keys)
            if zone.ds is not None:
                view["ds"] = _ds(zone.ds)
            if zone.key_expiration is not None:
                known = self.zones.get(zone.name)
                expiry = absolute(zone.key_expiration, self.iterator().now())
                if known is not None and known.expiry is not None:
                    expiry = min(expiry, known.expiry)
                view["expiry"] = expiry
        elif any(note.startswith("no-ds ") for note in zone.proof):
            view["ds"] = frozenset()  # the parent's signed denial proves no DS (RFC 4035 §5.2)
        self._view(zone.name, **view)

    def signed(self, signatures: list[dict]) -> None:
        """The frontend's callback with the signatures (``proof.signatures`` of the forensic
        record) a fetched answer was validated with: an expected zone's earliest expiry may
        be earlier than its SOA's and DNSKEY set's."""
        if not self.config.enabled:
            return
        now = None
        for sig in signatures:
            name = self._by_text.get(sig["signer"])
            posture = self.zones.get(name) if name is not None else None
            if posture is None:
                continue
            now = now if now is not None else self.iterator().now()
            expiry = absolute(sig["expiration"], now)
            self._seen[name] = min(expiry, self._seen.get(name, expiry))
            if posture.expiry is None or expiry < posture.expiry:
                self._view(name, expiry=expiry)

    def unexpected(self, service: str, zone: str, qname: str, reason: str) -> None:
        """The frontend's callback for an answer refused by ``allow[].expect``: an
        ``answer_unexpected`` event, once per service, name and reason an interval."""
        key = (service, qname.lower(), reason)
        now = self.clock()
        seen = self._unexpected.get(key)
        if seen is not None and now - seen < self.config.interval:
            return
        self._unexpected.put(key, now)
        known = self.zones.get(dns.name.from_text(zone))
        self.events.emit("answer_unexpected", zone, {"service": service, "qname": qname,
                                                     "reason": reason},
                         known.as_dict() if known is not None else None)

    def report(self) -> dict:
        """The posture table as JSON values (``GET /posture``, the ``posture`` command):
        zones by name, each canary with what it resolved to (null: it failed validation, or
        was not checked yet)."""
        return {"zones": [p.as_dict() for _, p in sorted(self.zones.items())],
                "canaries": {name.to_text(): what for name, what in self.canaries.items()}}

    @property
    def problem(self) -> str | None:
        """Why the resolver is not ready: a canary resolved (None: none did)."""
        resolved = [f"{name} ({what})" for name, what in self.canaries.items() if what]
        if not resolved:
            return None
        return ("validation canary resolved: " + ", ".join(resolved) +
                " must fail validation (monitor.canary)")

    # --- the background check --------------------------------------------------------------

    async def run(self) -> None:
        """Check every ``monitor.interval``, the first one interval after the start."""
        while True:
            await asyncio.sleep(self.config.interval)
            if self.config.enabled:
                try:
                    await self.check()
                except Exception:  # noqa: BLE001 - the next round tries again
                    log.exception("posture: background check failed")

    async def check(self) -> int:
        """One round within the budget: the canaries, then the zones checked longest ago
        (never checked first, parents before children). Returns the lookups made."""
        budget = self.config.budget
        spent = 0
        for name in list(self.canaries):
            if spent >= budget:
                return spent
            spent += 1
            await self._canary(name)
        todo = set(self.expected) | self.cuts
        done: set[dns.name.Name] = set()
        while spent < budget:
            waiting = [z for z in todo - done if z not in self.holder or self.holder[z] == z]
            if not waiting:
                break
            zone = min(waiting, key=lambda z: (self.zones[z].checked or 0.0
                                               if z in self.zones else 0.0, len(z.labels), z))
            done.add(zone)
            spent += await self._check_zone(zone, budget - spent, todo)
        return spent

    async def _canary(self, name: dns.name.Name) -> None:
        result = await self._lookup(name, A)
        if isinstance(result, ResolutionFailed):
            if int(result.ede) in DNSSEC_EDE and self.canaries.get(name):
                log.warning("posture: canary %s fails validation again", name)
                self.canaries[name] = None
            elif int(result.ede) in DNSSEC_EDE:
                self.canaries[name] = None
            return  # unreachable: says nothing of validation
        what = f"{result.verdict.value}, {dns.rcode.to_text(result.rcode)}"
        if not self.canaries.get(name):
            self.events.emit("canary_resolved", name.to_text(), {
                "verdict": result.verdict.value, "rcode": dns.rcode.to_text(result.rcode),
                "answer": [r.to_text() for r in result.rrsets
                           if r.rdtype != dns.rdatatype.RRSIG][:4]})
            log.error("posture: canary %s resolved (%s): validation is not working", name, what)
        self.canaries[name] = what

    async def _check_zone(self, name: dns.name.Name, budget: int,
                          todo: set[dns.name.Name]) -> int:
        """Check one zone afresh: its cut and the NSEC or NSEC3 records kept of it forgotten,
        so that it is established again from its parent; SOA first (its proof names the zone cuts down to it: those above are
        expected too), then, at a zone's apex, DS, DNSKEY and NSEC3PARAM. Returns lookups."""
        iterator = self.iterator()
        iterator.zones.pop(name)
        iterator.trust.secured.pop(name)
        if iterator.cache.ranges is not None:  # nothing proven from records kept (RFC 8198)
            iterator.cache.ranges.forget(name)
        soa = await self._lookup(name, SOA)
        spent = 1
        if isinstance(soa, ResolutionFailed):
            if int(soa.ede) in DNSSEC_EDE:
                self._view(name, state="bogus", reason=soa.reason)
            else:
                log.info("posture: %s not checked: %s", name, soa.reason)
            self._checked(name)
            return spent
        cuts = [dns.name.from_text(z) for z in soa.proof.zones]
        for cut in cuts:
            if cut not in self.cuts and len(self.cuts) < MAX_ZONES:
                self.cuts.add(cut)
                todo.add(cut)
        apex = next((r for r in soa.rrsets if r.rdtype == SOA and r.name == name), None)
        if apex is None:  # not a zone's apex: the cut holding it is checked instead
            self.holder[name] = cuts[-1] if cuts else ROOT
            gone = self.zones.pop(name, None)
            if gone is not None:
                self._by_text.pop(gone.zone, None)
            return spent
        self.holder[name] = name
        expiries = _expiries(soa, name)
        view: dict = {"serial": apex[0].serial, "state": soa.verdict.value}
        complete = True
        for rdtype in (DS, DNSKEY, NSEC3PARAM):
            if rdtype == DS and name == ROOT:
                continue
            if spent >= budget:  # the rest next round: not counted as checked
                complete = False
                continue
            spent += 1
            result = await self._lookup(name, rdtype)
            if isinstance(result, ResolutionFailed):
                if int(result.ede) in DNSSEC_EDE:
                    view.update(state="bogus", reason=result.reason)
                continue
            expiries += _expiries(result, name)
            self._read(name, rdtype, result, view)
        seen = self._seen.pop(name, None)
        expiries = [absolute(e, iterator.now()) for e in expiries] + \
            ([seen] if seen is not None else [])
        if expiries:  # what this check saw and answers since the last one
            view["expiry"] = min(expiries)
        posture = self._view(name, **view)
        if complete and posture is not None and posture.checked is None:  # `posture --log`
            self.events.emit("zone_seen", posture.zone, {}, posture.as_dict())  # baseline
        if complete:
            self._checked(name)
        return spent

    def _read(self, name: dns.name.Name, rdtype: int, answer: Answer, view: dict) -> None:
        """What one validated answer says of the zone (and of its parent's denial)."""
        data = next((r for r in answer.rrsets if r.rdtype == rdtype and r.name == name), None)
        if rdtype == DS:
            if answer.verdict is Verdict.SECURE:
                view["ds"] = _ds(data) if data is not None else frozenset()
            parent_nsec3 = next((r for r in answer.authority if r.rdtype == NSEC3), None)
            if parent_nsec3 is not None and name.parent() in self.zones:
                self._view(name.parent(), denial=_nsec3(parent_nsec3[0]))
        elif rdtype == DNSKEY:
            if view.get("state") != "bogus":
                view["state"] = answer.verdict.value
            if answer.verdict is Verdict.SECURE and data is not None:
                view["dnskey"] = _keys(data)
        elif answer.verdict is Verdict.SECURE:
            if data is not None:
                rd = data[0]
                view["denial"] = ("nsec3", rd.iterations, rd.salt.hex(), None)
            else:
                nsec3 = next((r for r in answer.authority if r.rdtype == NSEC3), None)
                if nsec3 is not None:
                    view["denial"] = _nsec3(nsec3[0])
                elif any(r.rdtype == NSEC for r in answer.authority):
                    view["denial"] = ("nsec",)

    def _checked(self, name: dns.name.Name) -> None:
        posture = self.zones.get(name)
        if posture is not None:
            posture.checked = self.clock()

    async def _lookup(self, name: dns.name.Name, rdtype: int) -> Answer | ResolutionFailed:
        """``name``/``rdtype`` resolved and validated afresh: nothing cached is taken."""
        iterator = self.iterator()
        ctx = iterator.new_context()
        ctx.refresh_until = math.inf
        try:
            async with asyncio.timeout(iterator.s.query_timeout):
                return await iterator.chase(name, rdtype, ctx)
        except ResolutionFailed as failure:
            return failure
        except TimeoutError:
            return ResolutionFailed(EDE.NO_REACHABLE_AUTHORITY, f"{name} "
                                    f"{dns.rdatatype.to_text(rdtype)}: no answer in time")


def _keys(rrset) -> frozenset:
    return frozenset((dnskey_tag(rd), int(rd.algorithm), int(rd.flags) & SEP) for rd in rrset)


def _ds(rrset) -> frozenset:
    return frozenset((rd.key_tag, int(rd.algorithm), int(rd.digest_type)) for rd in rrset)


def _nsec3(rd) -> tuple:
    return ("nsec3", rd.iterations, rd.salt.hex(), bool(rd.flags & 1))


def _expiries(answer: Answer, signer: dns.name.Name) -> list[int]:
    """The expirations of the answer's signatures made by ``signer``."""
    text = signer.to_text()
    return [sig[6] for sig in answer.proof.signatures if sig[2] == text]
