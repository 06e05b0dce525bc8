"""The per-query steps of the full path, between a client's bytes and the reply: request checks
(RFC 1035 §4.1.1: a response or an unparsable message is dropped or answered FORMERR, one
question, opcode QUERY, class IN, the types of resolver.wire.NOT_SERVED answered NOTIMP with EDE
21, RFC 8914 §4.22), the client's service and its policy (resolver.frontend.policy), resolution
(resolver.frontend.resolution), the answer (resolver.frontend.answers), its addresses committed
to the service's nftables sets when it pins (resolver.frontend.pinning), one forensic record per
query sealed before the reply leaves (resolver.forensic), and what follows it: the metrics and
the dnstap client messages (through the same :class:`~resolver.frontend._fastpath.Report` as
the hit path), and the reply's bytes kept for the hit path (not a stale answer's, RFC 8767:
each is judged again when served). A kept reply used in the last tenth of its TTL is resolved
again in the background when prefetch is on (resolver.resolve.prefetch).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import orjson

from resolver.dnssec.canonical import name_wire
from resolver.ede import EDE
from resolver.forensic import record as fields
from resolver.forensic.seal import ForensicLogError, hit_template
from resolver.frontend._fastpath import HitPath, Report
from resolver.frontend.addresses import addresses, targets
from resolver.frontend.answers import (DNSSEC_TYPES, Reply, build_answer, dnssec_ok,
                                      header_only, refuse, to_wire)
from resolver.frontend.pinning import PinError, elements
from resolver.frontend.denials import Denials
from resolver.frontend.resolution import Resolver
from resolver.resolve._fastcache import WireCache
from resolver.resolve._wireparse import from_wire
from resolver.resolve.cache import Answer
from resolver.resolve.prefetch import FRACTION
from resolver.wire import NOT_SERVED

log = logging.getLogger(__name__)

#: EDE codes of DNSSEC failures (RFC 8914 §4.2-§4.13, §4.26, §4.28): a failed resolution with one
#: of them is recorded as bogus, any other as indeterminate.
DNSSEC_EDE = frozenset(range(1, 13)) | {25, 27}
# A query's header bits the record notes, as plain ints (dnspython's are enums).
_RD, _CD, _AD = int(dns.flags.RD), int(dns.flags.CD), int(dns.flags.AD)


class Frontend:
    """Everything between a client's bytes and the reply: request checks, the client's service
    and its policy, resolution, the answer, and one forensic record per query, written (or
    queued, with back-pressure) before the reply leaves. Each reply is counted in ``metrics``
    (resolver.ops.metrics.Metrics) and given, with its query, to a ``tap``
    (resolver.ops.dnstap.Dnstap) through ``report``, which the hit path uses too.

    The policy is set once here and swapped by :meth:`use_policy` (a reload); the log, the
    metrics and the tap are fixed for the frontend's life."""

    def __init__(self, resolver: Resolver, policy=None, forensic=None, metrics=None,
                 tap=None, wire_entries: int = 100_000, worker: int | None = None,
                 pinner=None) -> None:
        self.resolver = resolver
        self.pinner = pinner  # resolver.frontend.pinning.Pinner: services[].pin
        self.worker = worker  # in every record when several processes serve (config workers)
        self.policy = policy
        self.forensic = forensic
        self.metrics = metrics
        self.report = Report(metrics.tally if metrics is not None else None, tap)
        # Responses sent, by service and question, answered again from their bytes (issue #5),
        # kept from a question's second time on (issue #20: names asked once, an agent's most,
        # are held by the resolver's cache alone, not twice).
        self.wirecache = WireCache(max(1, wire_entries),
                                   self._prefetch if resolver.prefetch is not None else None,
                                   FRACTION, doorkeeper=True)
        self._counters: dict[tuple, tuple] = {}  # the metric children of replies, shared
        self.denials = Denials()  # recent refusals, for the runtime API (resolver.ops.api)
        self.hits = HitPath(self.wirecache, forensic.chain if forensic is not None else None,
                            self.report, policy, _service_scope, _listener_json)
        #: The posture of expected zones (its owner's resolver.monitor Monitor), told after
        #: each full-path reply of an answer refused for an address outside its rule's
        #: ``expect`` (``unexpected(service, zone, qname, reason)``; such an answer is never
        #: kept for the hit path: :meth:`_remember` keeps allowed answers only) and of the
        #: signatures a fetched answer was validated with (``signed(signatures)``).
        self.posture = None

    def use_policy(self, policy) -> None:
        """Judge queries by ``policy`` from the next one on (a reload), on both paths at once:
        the hit path forgets the services it matched clients to and the answers stored under
        the old policy's decisions. A query in flight finishes under the policy it arrived
        under, and its answer is not stored."""
        self.policy = policy
        self.hits.use_policy(policy)
        self.wirecache.clear()
        self.resolver.cache.new_epoch()  # nothing judged before is served stale (RFC 8767)

    def _prefetch(self, wire: bytes, scope: str, seconds_left: float) -> None:
        """The hit path's callback for a kept reply used in the last tenth of its TTL: resolve
        its question again in the background, under the service it was kept for."""
        try:
            question = dns.message.from_wire(wire).question[0]
            policy, permit, key = self.policy, None, ""
            if policy is not None:
                service = next(s for s in (*policy.services, policy.default_service)
                               if s.name == scope)
                permit = lambda name, s=service: policy.check_name(s, name)  # noqa: E731
                key = (policy, service.name)
            self.resolver.refresh(question.name, question.rdtype,
                                  self.resolver.prefetch.until(seconds_left), permit=permit,
                                  scope=key)
        except Exception:  # noqa: BLE001 - a prefetch never costs the hit its reply
            log.exception("prefetch from the hit path failed")

    def fast(self, wire: bytes, transport: str, listener: tuple[str, int],
             client: tuple[str, int]) -> bytes | None:
        """The hit path (compiled: ``_fastpath.HitPath``): a repeated question of a service
        answered from the bytes sent before (``_fastcache``), its forensic record sealed from
        the template stored with them (``_fastlog``). None sends the query down the full path:
        a miss, a service with budgets to count or pins to commit, a log that is unhealthy or
        full (the full path then waits for it)."""
        return self.hits.answer(wire, transport == "tcp", listener, client)

    def _remember(self, wire: bytes, reply: bytes, service, decision, outcome,
                  record: dict) -> None:
        """Keep an allowed, validated answer's bytes and record for the hit path, for as long
        as the answer may be cached."""
        if outcome is None or outcome.answer is None or outcome.denied is not None \
                or outcome.stale:
            return
        if decision is not None and not decision.allowed:
            return
        if service is not None and _full_path(service):
            return
        scope = service.name if service else ""
        if reply[2] & 0x02 or not self.wirecache.admits(wire, scope):
            return  # truncated (RFC 1035 §4.1.1 TC), or a first asking: no record template
        # What the hit path needs to log and count a repeat of this answer: its record
        # template (none without a log: it is most of an entry's memory) and metric children.
        template = None
        if self.forensic is not None:
            template = hit_template(record, self.forensic.codebook)
        self.wirecache.store(wire, scope, reply, time.time(), outcome.answer.ttl, template,
                             self._counters_of(record, decision))

    def _counters_of(self, record: dict, decision=None) -> tuple | None:
        """The metric children a reply with ``record`` counts in, on either path (None without
        metrics): ``queries`` by service, type and rcode, ``validation`` by verdict and
        EDE code when it carries a verdict, and ``policy_would_refuse`` when ``decision`` is
        an observed refusal (``mode: observe``: a repeat from the hit path counts it too).
        One tuple per label set, shared by the cached answers that count in it."""
        m = self.metrics
        if m is None:
            return None
        counters = (m.query_counter(record["service"], record["qtype"], record["rcode"]),)
        if record["verdict"] is not None:
            ede = record["ede"]
            counters += (m.child(m.validation, record["verdict"],
                                 str(ede["code"]) if ede else ""),)
        if decision is not None and decision.would_refuse:
            counters += (m.child(m.would_refuse, decision.service,
                                 decision.rule or decision.kind),)
        return self._counters.setdefault(counters, counters)

    async def handle(self, wire: bytes, transport: str, listener: tuple[str, int],
                     client: tuple[str, int], max_size: int | None,
                     send: Callable[[bytes], None] | None = None) -> bytes | None:
        """Answer one query message; ``max_size`` None for TCP. None means send nothing (a
        response message, a packet too short to answer, a UDP query over a limit of
        resolver.frontend.admission with ``limits.over_limit: drop``).

        The one place where a full-path reply gets its forensic record: the reply is built,
        its record sealed into the log (queued, with back-pressure), and only then given to
        ``send`` (if given) and returned. An internal error on the way (policy, cache,
        iteration, transport, validation, the reply itself) is answered SERVFAIL with EDE 0
        naming it, never FORMERR, and so is a record the log cannot encode. What follows the
        seal (metrics, storing the reply for the hit path, dnstap) runs after ``send``, off the
        client's wait, and cannot change or stop the reply."""
        started = time.perf_counter()
        received = time.time_ns()
        _quietly(self.report.received, wire, client, listener, transport, received)
        base = fields.arrival(time.time(), self.worker, client, transport,
                              endpoint_text(listener))
        record = dict(base)
        try:
            reply, done = await self._reply(wire, transport, listener, client, max_size,
                                            record)
        except Exception as exc:  # noqa: BLE001 - a worker never dies on one query
            log.exception("%s query from %s: internal error", transport.upper(), client[0])
            record = dict(base)
            reply, done = self._internal_error(wire, record, exc, max_size)
        if reply is None:
            return None
        try:
            await self._log(record, started)
        except ForensicLogError:
            raise
        except Exception as exc:  # noqa: BLE001 - the record could not be encoded
            log.exception("the forensic record of a %s query from %s could not be sealed",
                          transport.upper(), client[0])
            record = dict(base)
            reply, done = self._internal_error(wire, record, exc, max_size)
            await self._log(record, started)  # failing again: no reply either (see respond)
        if send is not None:
            send(reply)
        counters = _quietly(done) if done is not None else None
        _quietly(self.report.answered, wire, reply, client, listener, transport, received,
                 counters, time.perf_counter() - started)
        return reply

    async def respond(self, wire: bytes, transport: str, listener: tuple[str, int],
                      client: tuple[str, int], max_size: int | None,
                      send: Callable[[bytes], None] | None = None) -> bytes | None:
        """The reply to one client message, or None to send nothing; given to ``send`` too, if
        given, as soon as its record is sealed (:meth:`handle`).

        While the forensic log cannot write (a full disk, I/O errors), queries are answered
        SERVFAIL with EDE 14 Not Ready (RFC 8914 §4.15) naming the log's error, and nothing is
        resolved for them: a stub fails over to its next server at once rather than waiting out
        a timeout, and the operator reads why in the answer, the process log, the metrics and
        /readyz. Their records wait in the log's bounded queue and are written when the disk
        takes them again. Once that queue is full too, a query is dropped (no reply) and counted
        in ``queries_dropped{reason="log_unavailable"}``: no reply leaves without its record, and
        waiting for room would pile up queries without bound."""
        try:
            return await self.handle(wire, transport, listener, client, max_size, send)
        except ForensicLogError:
            if self.metrics is not None:
                self.metrics.child(self.metrics.dropped, "log_unavailable").inc()
            return None
        except Exception:  # noqa: BLE001 - not even the record of an internal error sealed
            log.exception("%s query from %s: no record sealed, no reply", transport.upper(),
                          client[0])
            if self.metrics is not None:
                self.metrics.child(self.metrics.dropped, "internal_error").inc()
            return None

    async def _reply(self, wire: bytes, transport: str, listener: tuple[str, int],
                     client: tuple[str, int], max_size: int | None, record: dict):
        """The reply to ``wire`` (None: none) with ``record`` filled, and what to do once the
        record is sealed, which gives the metric children the reply counts in (None: the
        reply is not counted, nor kept)."""
        try:
            query = from_wire(wire)  # compiled; dnspython's message, and its errors
        except dns.exception.DNSException as exc:
            reply = header_only(wire, dns.rcode.FORMERR)
            self._malformed(transport, reply)
            if reply is not None:
                record.update(id=int.from_bytes(wire[:2], "big"), qname=None, qtype=None,
                              policy={"decision": "malformed", "rule": None, "reason": str(exc)},
                              rcode="FORMERR")
            return reply, None
        if wire[2] & 0x80:  # QR: a response (the header's bits read from its octets)
            self._malformed(transport, None)
            return None, None
        policy = self.policy  # the whole query is judged by one policy, whatever a reload does
        service = policy.service_for(listener, client[0]) if policy else None
        outcome, decision, response, pinned = None, None, None, None
        question = query.question[0] if len(query.question) == 1 else None
        if wire[2] & 0x78:  # an OPCODE other than QUERY (0)
            response = refuse(query, dns.rcode.NOTIMP, EDE.NOT_SUPPORTED, "only QUERY is supported")
        elif question is None:
            response = refuse(query, dns.rcode.FORMERR, EDE.INVALID_DATA, "one question expected")
            self._malformed(transport, response)
        elif question.rdclass != dns.rdataclass.IN:
            response = refuse(query, dns.rcode.REFUSED, EDE.NOT_SUPPORTED, "class IN only")
        elif question.rdtype in NOT_SERVED:
            response = refuse(query, dns.rcode.NOTIMP, EDE.NOT_SUPPORTED,
                              f"{dns.rdatatype.to_text(question.rdtype)} is not served")
        elif self.forensic is not None and not self.forensic.healthy:
            response = refuse(query, dns.rcode.SERVFAIL, EDE.NOT_READY,  # see respond
                              f"forensic log unavailable ({self.forensic.stats['last_error']}): "
                              "not answering unlogged")
        else:
            if service is not None:
                decision = policy.check_question(service, question.name, question.rdtype)
            if decision is None or decision.allowed:
                permit = None if service is None else (
                    lambda name, s=service: policy.check_name(s, name))
                outcome = await self.resolver.resolve(
                    question.name, question.rdtype, permit=permit,
                    scope=(policy, service.name) if service else "", client=client[0])
                if outcome.over_limit is not None:
                    # TCP is answered: its source is not forged, and a dropped query would
                    # hold the connection until the client gives up.
                    drop = self.resolver.admission.drop and transport == "udp"
                    self._over_limit(outcome.over_limit, drop)
                    if drop:
                        return None, None
                if outcome.denied is not None:
                    decision = outcome.denied
                elif outcome.answer is not None and service is not None:
                    checked = self._check_answer(policy, service, question.name,
                                                 outcome.answer)
                    if not (decision.would_refuse and checked.allowed):
                        decision = checked  # the question's observed refusal is kept
            if decision is not None and not decision.allowed:
                response = refuse(query, decision.rcode, EDE(decision.ede), decision.reason)
            else:
                response = build_answer(query, outcome)
                if self.pinner is not None and self.pinner.wants(service):
                    response, pinned = await self._pin(query, service, response)
        reply = to_wire(response, max_size)
        self._fill(record, query, service, decision, outcome, response, pinned)

        def done() -> tuple | None:
            if self.metrics is not None:
                _quietly(self._count, record, decision, outcome)
            posture = self.posture
            if posture is not None and decision is not None and decision.kind == "unexpected":
                _quietly(posture.unexpected, record["service"], decision.zone,
                         record["qname"], decision.reason)
            if posture is not None and record["proof"] and not record["cache_hit"]:
                _quietly(posture.signed, record["proof"]["signatures"])
            if decision is not None and (not decision.allowed or decision.would_refuse):
                _quietly(self.denials.add, time.time(), decision.service, record["qname"],
                         record["qtype"], record["policy"]["decision"], decision.rule,
                         decision.reason, client[0])
            if policy is self.policy:  # not under a policy a reload replaced meanwhile
                _quietly(self._remember, wire, reply, service, decision, outcome, record)
            return self._counters_of(record, decision)
        return reply, done

    async def _pin(self, query, service, response):
        """Pin the addresses of an allowed answer (resolver.frontend.pinning) before it is
        released: the response and the record's ``pin`` field (None: nothing to pin). Fails
        closed: when the sets cannot be updated, SERVFAIL with EDE 14 Not Ready (RFC 8914
        §4.15) saying so, as when the forensic log cannot write."""
        found = elements(response.answer)
        if not found:
            return response, None
        try:
            pinned = await self.pinner.pin(service.name, query.question[0].name, found)
        except PinError as exc:
            if self.metrics is not None:
                self.metrics.child(self.metrics.pins, service.name, "failed").inc()
            return refuse(query, dns.rcode.SERVFAIL, EDE.NOT_READY,
                          f"pin failed ({exc}): not answering unpinned"), {
                "added": [], "error": str(exc)}
        if self.metrics is not None and pinned.added:
            self.metrics.child(self.metrics.pins, service.name, "added").inc(len(pinned.added))
        return response, {"added": [{"address": a, "timeout": t} for a, t in pinned.added],
                          "error": None}

    def _internal_error(self, wire: bytes, record: dict, exc: Exception, max_size: int | None):
        """SERVFAIL with EDE 0 (RFC 8914 §4.1) for a query the server failed on, and its
        record; a header-only SERVFAIL if the query cannot even be parsed again."""
        text = f"internal error ({type(exc).__name__}); see the resolver's log"
        detail = {"decision": "error", "rule": None, "reason": f"{type(exc).__name__}: {exc}"}
        try:
            query = dns.message.from_wire(wire)
            response = refuse(query, dns.rcode.SERVFAIL, EDE.OTHER, text)
            reply = to_wire(response, max_size)
            self._fill(record, query, None, None, None, response)
            record["policy"] = detail
        except Exception:  # noqa: BLE001 - the query itself is what fails
            reply = header_only(wire, dns.rcode.SERVFAIL)
            record.update(id=int.from_bytes(wire[:2], "big"), service=None, qname=None,
                          qtype=None, policy=detail, rcode="SERVFAIL", ede=None, verdict=None,
                          proof=None)
        return reply, functools.partial(self._counters_of, record)

    def _over_limit(self, limit: str, dropped: bool) -> None:
        if self.metrics is not None:
            self.metrics.child(self.metrics.over_limit, limit).inc()
            if dropped:
                self.metrics.child(self.metrics.dropped, "over_limit").inc()

    def _malformed(self, transport: str, reply) -> None:
        """Count a client packet that is no well-formed query: answered FORMERR, or dropped
        (``reply`` None)."""
        if self.metrics is not None:
            action = "dropped" if reply is None else "formerr"
            self.metrics.child(self.metrics.malformed, transport, action).inc()

    def _count(self, record: dict, decision, outcome) -> None:
        """What a full-path reply counts beyond :meth:`_counters_of`: refusals, downgrades,
        exhausted budgets, signatures near expiry."""
        m = self.metrics
        if decision is not None and not decision.allowed:
            m.child(m.refusals, record["service"] or "", decision.rule or decision.kind).inc()
            if decision.kind == "insecure":
                m.child(m.events, "downgrade").inc()  # a zone expected signed answered insecure
        failure = outcome.failure if outcome is not None else None
        if failure is not None and failure.budget is not None:
            m.child(m.budgets, failure.budget.value).inc()
        proof = record["proof"]
        if proof and outcome is not None and not outcome.cache_hit:
            now = self.resolver.iterator.now()
            if any(0 <= (sig["expiration"] - now) % 2**32 < NEAR_EXPIRY
                   for sig in proof["signatures"]):
                m.child(m.events, "signature_near_expiry").inc()

    @staticmethod
    def _check_answer(policy, service, qname: dns.name.Name, answer: Answer):
        """The whole answer, not only the question: every name in the chain (CNAME and DNAME
        targets) must be allowed, and each name's data meet the requirement of the rule of
        the zone that owns it (security, rebinding), with that link's own verdict."""
        data = [r for r in answer.rrsets if r.rdtype not in DNSSEC_TYPES]
        cnames = [rd.target for r in data if r.rdtype == dns.rdatatype.CNAME for rd in r]
        # Owners and CNAME targets (those synthesised from a DNAME included): a DNAME's own
        # target is only a suffix, so the synthesised CNAME stands for it, unless the DNAME
        # is itself the data asked for (its owner on the chain). Names are told apart by their
        # canonical form (RFC 4343: ASCII case folded), not dnspython's per-character hash.
        owners = [name_wire(r.name.labels) for r in data]
        chain = {name_wire(qname.labels), *[name_wire(n.labels) for n in cnames]}
        names = _distinct([qname] + [r.name for r in data] + cnames + [
            r[0].target for r, owner in zip(data, owners)
            if r.rdtype == dns.rdatatype.DNAME and owner in chain])
        decision = observed = None
        for _, name in names:
            decision = policy.check_name(service, name)
            if not decision.allowed:
                return decision
            observed = observed or (decision if decision.would_refuse else None)
        for r in data:  # SVCB, HTTPS and SRV targets, as CNAME targets (RFC 9460 §2.5)
            for target in targets(r):
                decision = policy.check_name(
                    service, target, f"the target of {r.name} {dns.rdatatype.to_text(r.rdtype)}")
                if not decision.allowed:
                    return decision
                observed = observed or (decision if decision.would_refuse else None)
        for key, name in _distinct([qname] + [r.name for r in data] + list(answer.verdicts)):
            rule = policy.rule_for(service, name)
            found = [a for r, owner in zip(data, owners) if owner == key
                     for a in addresses(r)]  # hints too
            decision = policy.check_answer(service, rule, answer.verdict_of(name).value, found)
            if not decision.allowed:
                return decision
            observed = observed or (decision if decision.would_refuse else None)
        return observed or decision  # in mode: observe, the first refusal it would have made

    def _fill(self, record: dict, query, service, decision, outcome, response: Reply,
              pinned=None) -> None:
        question = query.question[0] if query.question else None
        flags = int(query.flags)  # dnspython's enum: slow to test bits of
        answer = outcome.answer if outcome is not None else None
        failure = outcome.failure if outcome is not None else None
        refused = decision is not None and not decision.allowed
        if refused or outcome is None or outcome.over_limit is not None:
            verdict = None
        elif answer is not None:
            verdict = answer.verdict.value
        else:
            verdict = "bogus" if int(failure.ede) in DNSSEC_EDE else "indeterminate"
        proof = answer.proof if answer is not None else (failure.proof if failure else None)
        ede = response.ede
        fields.reply(
            record,
            service=service.name if service is not None else None,
            id=query.id,
            qname=fields.name_text(question.name) if question is not None else None,
            qtype=fields.type_text(question.rdtype) if question is not None else None,
            flags=fields.flags(rd=bool(flags & _RD), do=dnssec_ok(response.edns),
                               cd=bool(flags & _CD), ad=bool(flags & _AD)),
            policy=_policy_field(decision),
            cache_hit=bool(outcome and outcome.cache_hit),
            stale=bool(outcome and outcome.stale),
            upstream=list(outcome.upstream) if outcome is not None else [],
            rcode=fields.rcode_text(response.rcode),
            ede={"code": ede[0], "text": ede[1]} if ede else None,
            answer=[{"name": fields.name_text(r.name), "type": fields.type_text(r.rdtype),
                     "ttl": r.ttl, "rdata": fields.rdata_texts(r)}
                    for r in response.answer],
            verdict=verdict,
            proof=None if proof is None else {
                "zones": list(proof.zones), "keys": list(proof.notes),
                "signatures": [{"owner": o, "type": t, "signer": s, "key_tag": k,
                                "algorithm": a, "inception": i, "expiration": e}
                               for o, t, s, k, a, i, e in proof.signatures],
                "denial": proof.denial, "synthesised": list(proof.synthesised)},
            pin=pinned)

    async def _log(self, record: dict, started: float) -> None:
        fields.finish(record, time.perf_counter() - started)
        if self.forensic is not None and not self.forensic.append_nowait(record):
            await self.forensic.append(record)  # back-pressure: wait rather than drop


NEAR_EXPIRY = 3 * 86400  # seconds: a signature this close to expiry is worth an alert


def _distinct(names: list[dns.name.Name]) -> list[tuple[bytes, dns.name.Name]]:
    """Each name of ``names`` once, in order, with its canonical wire form (RFC 4034 §6.2),
    which tells names apart as DNS does (RFC 4343: ASCII case folded)."""
    found: dict[bytes, dns.name.Name] = {}
    for name in names:
        found.setdefault(name_wire(name.labels), name)
    return list(found.items())


def _policy_field(decision) -> dict:
    """The record's ``policy``: the decision (``allow``, ``refuse``, or ``would_refuse`` in
    ``mode: observe``), its rule, and the reason of a refusal."""
    if decision is None:
        return {"decision": "allow", "rule": None, "reason": None}
    word = ("refuse" if not decision.allowed else "would_refuse" if decision.would_refuse
            else "allow")
    return {"decision": word, "rule": decision.rule,
            "reason": decision.reason if word != "allow" else None}


def _quietly(step, *args):
    """``step(*args)``, an observer of a reply (metrics, dnstap, the hit path's store): its
    failure is logged, returns None and changes nothing for the client."""
    try:
        return step(*args)
    except Exception:  # noqa: BLE001
        log.exception("after a reply: %s failed", getattr(step, "__qualname__", step))
        return None


def _service_scope(policy, listener: tuple[str, int], address: str) -> str | None:
    """The hit path's cache scope for a client: its service's name, or None when the service
    has budgets to count or pins to commit (its queries take the full path)."""
    service = policy.service_for(listener, address)
    return None if _full_path(service) else service.name


def _full_path(service) -> bool:
    """Whether every query of ``service`` takes the full path: it has budgets to count, or pins
    to refresh and commit before the reply leaves (the compiled hit path cannot wait)."""
    budgets = service.budgets
    return (budgets.query_rate is not None or budgets.max_label_length is not None
            or budgets.distinct_names_per_minute is not None or service.pin is not None)


def _listener_json(endpoint: tuple[str, int]) -> bytes:
    return orjson.dumps(endpoint_text(endpoint))


@functools.lru_cache(maxsize=1024)
def endpoint_text(endpoint: tuple[str, int]) -> str:
    """``host:port``, ``[host]:port`` for IPv6 (RFC 3986 §3.2.2), as records name listeners."""
    host, port = endpoint[0], endpoint[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
