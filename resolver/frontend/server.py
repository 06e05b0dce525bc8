"""The client side: UDP and TCP listeners (RFC 1035 §4.2, RFC 7766), request checks, and answers
built from validated results (RFC 4035 §3.2, RFC 6840 §5.7-§5.8, RFC 8914).

Bogus or indeterminate data never reaches a client: it becomes SERVFAIL with an Extended DNS
Error naming the zone and the reason. A client's CD bit does not bypass validation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import orjson

from resolver.resolve._fastcache import WireCache
from resolver.frontend.admission import Admission
from resolver.resolve.cache import Answer, Cache
from resolver.dnssec import Verdict
from resolver.ede import EDE
from resolver.forensic import record as fields
from resolver.forensic._fastlog import HitTemplate
from resolver.frontend._fastpath import HitPath, UdpListener
from resolver.forensic.seal import ForensicLogError, hit_template
from resolver.resolve.iterator import Denied, Iterator, ResolutionFailed, Settings, chain_end
from resolver.wire import EDNS_PAYLOAD, MAX_TCP, MIN_UDP, NOT_SERVED, udp_limit

log = logging.getLogger(__name__)

#: Octets asked for a UDP listener's receive buffer (the kernel caps it at net.core.rmem_max):
#: datagrams that arrive while the event loop is busy wait there, where the listener sheds a
#: flood's excess and answers hits in C, instead of being dropped by the kernel with the flood.
UDP_RECEIVE_BUFFER = 4 << 20
DNSSEC_TYPES = frozenset((dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3))


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
                return Outcome(answer, upstream=ctx.servers_asked)
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


def header_only(wire: bytes, rcode: int) -> bytes | None:
    """A header-only reply with ``rcode`` to a query that cannot be parsed, or None if not even
    the header is there or it is a response (RFC 1035 §4.1.1)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    flags = 0x8000 | (wire[2] & 0x78) << 8 | (wire[2] & 0x01) << 8 | rcode
    return wire[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def _response(query: dns.message.Message, rcode: int) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.flags |= dns.flags.RA | (query.flags & dns.flags.CD)
    response.set_rcode(rcode)
    if query.edns >= 0:
        response.use_edns(0, query.ednsflags & dns.flags.DO, EDNS_PAYLOAD)
    return response


def _with_ede(response: dns.message.Message, ede: EDE, text: str) -> None:
    if response.edns >= 0:
        options = list(response.options) + [dns.edns.EDEOption(int(ede), text[:400])]
        response.use_edns(0, response.ednsflags, EDNS_PAYLOAD, options=options)


def build_answer(query: dns.message.Message, outcome: Outcome) -> dns.message.Message:
    """The response to ``query`` from a resolution outcome."""
    if outcome.failure is not None:
        response = _response(query, dns.rcode.SERVFAIL)
        _with_ede(response, outcome.failure.ede, outcome.failure.reason)
        return response
    answer = outcome.answer
    response = _response(query, answer.rcode)
    dnssec_ok = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
    qtype = query.question[0].rdtype
    for rrset in answer.rrsets:
        if dnssec_ok or rrset.rdtype not in DNSSEC_TYPES or rrset.rdtype == qtype:
            response.answer.append(_with_ttl(rrset, answer.ttl))
    for rrset in answer.authority:
        if dnssec_ok or rrset.rdtype not in DNSSEC_TYPES:
            response.authority.append(_with_ttl(rrset, answer.ttl))
    if answer.verdict is Verdict.SECURE and (dnssec_ok or query.flags & dns.flags.AD):
        response.flags |= dns.flags.AD  # RFC 6840 §5.8
    if answer.ede is not None:
        _with_ede(response, answer.ede, answer.reason)
    return response


def _with_ttl(rrset, ttl: int):
    """The cached RRset with its remaining TTL (RFC 1035 §3.2.1 counts down in caches)."""
    if rrset.ttl <= ttl:
        return rrset
    copy = rrset.copy()
    copy.ttl = ttl
    return copy


def refuse(query: dns.message.Message, rcode: int, ede: EDE, text: str) -> dns.message.Message:
    response = _response(query, rcode)
    _with_ede(response, ede, text)
    return response


DNSSEC_EDE = frozenset(range(1, 13)) | {25, 27}


class Frontend:
    """Everything between a client's bytes and the reply: request checks, the client's service
    and its policy, resolution, the answer, and one forensic record per query, written (or
    queued, with back-pressure) before the reply leaves. A ``tap`` (resolver.ops.dnstap.Dnstap)
    is given each query as received and each reply as it leaves."""

    def __init__(self, resolver: Resolver, policy=None, forensic=None, metrics=None,
                 tap=None, wire_entries: int = 100_000, worker: int | None = None) -> None:
        self.resolver = resolver
        self.worker = worker  # in every record when several processes serve (config workers)
        self.policy = policy
        self.forensic = forensic
        self.metrics = metrics
        self.tap = tap
        # Responses sent, by service and question, answered again from their bytes (issue #5).
        self.wirecache = WireCache(max(1, wire_entries))
        self._counters: dict[tuple, tuple] = {}  # the metric children of hits, shared (_Hit)
        self.hits = HitPath(self, _service_scope, _listener_json)

    def fast(self, wire: bytes, transport: str, listener: tuple[str, int],
             client: tuple[str, int]) -> bytes | None:
        """The hit path (compiled: ``_fastpath.HitPath``): a repeated question of a service
        answered from the bytes sent before (``_fastcache``), its forensic record sealed from
        the template stored with them (``_fastlog``). None sends the query down the full path:
        a miss, a service with budgets to count, a log that is unhealthy or full (the full path
        then waits for it)."""
        return self.hits.answer(wire, transport == "tcp", listener, client)

    def _remember(self, wire: bytes, reply: bytes, service, decision, outcome,
                  record: dict) -> None:
        """Keep an allowed, validated answer's bytes and record for the hit path, for as long
        as the answer may be cached."""
        if outcome is None or outcome.answer is None or outcome.denied is not None:
            return
        if decision is not None and not decision.allowed:
            return
        if service is not None and _has_budgets(service):
            return
        self.wirecache.store(wire, service.name if service else "", reply, time.time(),
                             outcome.answer.ttl, self._hit_record(record))

    def _hit_record(self, record: dict) -> _Hit:
        """What the hit path needs to log and count a repeat of this answer (no record
        template without a log: it is most of an entry's memory)."""
        template = None
        if self.forensic is not None:
            template = hit_template(record, self.forensic.codebook)
        m = self.metrics
        counters = None
        if m is not None:
            ede = record["ede"]
            counters = (m.query_counter(record["service"], record["qtype"], record["rcode"]),
                        m.child(m.validation, record["verdict"], str(ede["code"]) if ede else ""))
            counters = self._counters.setdefault(counters, counters)  # one pair per label set
        return _Hit(template, counters)

    async def handle(self, wire: bytes, transport: str, listener: tuple[str, int],
                     client: tuple[str, int], max_size: int | None) -> bytes | None:
        """Answer one query message; ``max_size`` None for TCP. None means send nothing (a
        response message, a packet too short to answer, a UDP query over a limit of
        resolver.frontend.admission with ``limits.over_limit: drop``).

        The one place where a full-path reply gets its forensic record: the reply is built,
        its record sealed into the log (queued, with back-pressure), and only then returned to
        be sent. An internal error on the way (policy, cache, iteration, transport, validation,
        the reply itself) is answered SERVFAIL with EDE 0 naming it, never FORMERR, and so is a
        record the log cannot encode. What follows the seal (metrics, storing the reply for
        the hit path, dnstap) cannot change or stop the reply."""
        started = time.perf_counter()
        received = time.time_ns()
        tap = self.tap
        if tap is not None:
            _quietly(tap.client_query, wire, client, listener, transport, received)
        base = fields.arrival(time.time(), self.worker, client, transport,
                              _endpoint_text(listener))
        record = dict(base)
        try:
            reply, done = await self._reply(wire, transport, listener, client, max_size,
                                            record, started)
        except Exception as exc:  # noqa: BLE001 - a worker never dies on one query
            log.exception("%s query from %s: internal error", transport.upper(), client[0])
            record = dict(base)
            reply, done = self._internal_error(wire, record, exc, max_size, transport, started)
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
            reply, done = self._internal_error(wire, record, exc, max_size, transport, started)
            await self._log(record, started)  # failing again: no reply either (see _answer)
        if done is not None:
            _quietly(done)
        if tap is not None:
            _quietly(tap.client_response, wire, reply, client, listener, transport, received,
                     time.time_ns())
        return reply

    async def _reply(self, wire: bytes, transport: str, listener: tuple[str, int],
                     client: tuple[str, int], max_size: int | None, record: dict,
                     started: float):
        """The reply to ``wire`` (None: none) with ``record`` filled, and what to do once the
        record is sealed (None: nothing)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:
            reply = header_only(wire, dns.rcode.FORMERR)
            self._malformed(transport, reply)
            if reply is not None:
                record.update(id=int.from_bytes(wire[:2], "big"), qname=None, qtype=None,
                              policy={"decision": "malformed", "rule": None, "reason": str(exc)},
                              rcode="FORMERR")
            return reply, None
        if query.flags & dns.flags.QR:
            self._malformed(transport, None)
            return None, None
        policy = self.policy  # the whole query is judged by one policy, whatever a reload does
        service = policy.service_for(listener, client[0]) if policy else None
        outcome, decision, response = None, None, None
        question = query.question[0] if len(query.question) == 1 else None
        if query.opcode() != dns.opcode.QUERY:
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
            response = refuse(query, dns.rcode.SERVFAIL, EDE.NOT_READY,  # see _answer
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
                    decision = self._check_answer(policy, service, question.name,
                                                  outcome.answer)
            if decision is not None and not decision.allowed:
                response = refuse(query, decision.rcode, EDE(decision.ede), decision.reason)
                if decision.rcode == dns.rcode.NXDOMAIN:
                    response.flags &= ~dns.flags.AD
            else:
                response = build_answer(query, outcome)
        reply = _to_wire(query, response, max_size)
        self._fill(record, query, service, decision, outcome, response)

        def done() -> None:
            if self.metrics is not None:
                self._count(record, decision, outcome, transport, started)
            if policy is self.policy:  # not under a policy a reload replaced meanwhile
                self._remember(wire, reply, service, decision, outcome, record)
        return reply, done

    def _internal_error(self, wire: bytes, record: dict, exc: Exception, max_size: int | None,
                        transport: str, started: float):
        """SERVFAIL with EDE 0 (RFC 8914 §4.1) for a query the server failed on, and its
        record; a header-only SERVFAIL if the query cannot even be parsed again."""
        text = f"internal error ({type(exc).__name__}); see the resolver's log"
        detail = {"decision": "error", "rule": None, "reason": f"{type(exc).__name__}: {exc}"}
        try:
            query = dns.message.from_wire(wire)
            response = refuse(query, dns.rcode.SERVFAIL, EDE.OTHER, text)
            reply = _to_wire(query, response, max_size)
            self._fill(record, query, None, None, None, response)
            record["policy"] = detail
        except Exception:  # noqa: BLE001 - the query itself is what fails
            reply = header_only(wire, dns.rcode.SERVFAIL)
            record.update(id=int.from_bytes(wire[:2], "big"), service=None, qname=None,
                          qtype=None, policy=detail, rcode="SERVFAIL", ede=None, verdict=None,
                          proof=None)

        def done() -> None:
            if self.metrics is not None:
                self._count(record, None, None, transport, started)
        return reply, done

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

    def _count(self, record: dict, decision, outcome, transport: str, started: float) -> None:
        m = self.metrics
        m.query_counter(record["service"], record["qtype"], record["rcode"]).inc()
        m.child(m.duration, transport).observe(time.perf_counter() - started)
        ede = record["ede"]
        if record["verdict"] is not None:
            m.child(m.validation, record["verdict"], str(ede["code"]) if ede else "").inc()
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
        # is itself the data asked for (its owner on the chain).
        chain = {qname, *cnames}
        names = [qname] + [r.name for r in data] + cnames + [
            r[0].target for r in data if r.rdtype == dns.rdatatype.DNAME and r.name in chain]
        decision = None
        for name in dict.fromkeys(names):
            decision = policy.check_name(service, name)
            if not decision.allowed:
                return decision
        for name in dict.fromkeys([qname] + [r.name for r in data] + list(answer.verdicts)):
            rule = policy.rule_for(service, name)
            addresses = [rd.address for r in data if r.name == name
                         and r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for rd in r]
            decision = policy.check_answer(service, rule, answer.verdict_of(name).value,
                                           addresses)
            if not decision.allowed:
                return decision
        return decision

    def _fill(self, record: dict, query, service, decision, outcome, response) -> None:
        question = query.question[0] if query.question else None
        do = query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)
        ede = next(((int(o.code), o.text) for o in response.options
                    if o.otype == dns.edns.EDE), None)
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
        fields.reply(
            record,
            service=service.name if service is not None else None,
            id=query.id,
            qname=question.name.to_text() if question is not None else None,
            qtype=dns.rdatatype.to_text(question.rdtype) if question is not None else None,
            flags=fields.flags(rd=bool(query.flags & dns.flags.RD), do=do,
                               cd=bool(query.flags & dns.flags.CD),
                               ad=bool(query.flags & dns.flags.AD)),
            policy={"decision": "refuse" if refused else "allow",
                    "rule": decision.rule if decision is not None else None,
                    "reason": decision.reason if refused else None},
            cache_hit=bool(outcome and outcome.cache_hit),
            upstream=list(outcome.upstream) if outcome is not None else [],
            rcode=dns.rcode.to_text(response.rcode()),
            ede={"code": ede[0], "text": ede[1]} if ede else None,
            answer=[{"name": r.name.to_text(), "type": dns.rdatatype.to_text(r.rdtype),
                     "ttl": r.ttl, "rdata": [rd.to_text() for rd in r]} for r in response.answer],
            verdict=verdict,
            proof=None if proof is None else {
                "zones": list(proof.zones), "keys": list(proof.notes),
                "signatures": [{"owner": o, "type": t, "signer": s, "key_tag": k,
                                "algorithm": a, "inception": i, "expiration": e}
                               for o, t, s, k, a, i, e in proof.signatures],
                "denial": proof.denial})

    async def _log(self, record: dict, started: float) -> None:
        fields.finish(record, time.perf_counter() - started)
        if self.forensic is not None and not self.forensic.append_nowait(record):
            await self.forensic.append(record)  # back-pressure: wait rather than drop


NEAR_EXPIRY = 3 * 86400  # seconds: a signature this close to expiry is worth an alert


def _quietly(step, *args) -> None:
    """Run ``step``, an observer of a reply already sealed (metrics, dnstap, the hit path's
    store): its failure is logged and changes nothing for the client."""
    try:
        step(*args)
    except Exception:  # noqa: BLE001
        log.exception("after a reply: %s failed", getattr(step, "__qualname__", step))


def _service_scope(policy, listener: tuple[str, int], address: str) -> str | None:
    """The hit path's cache scope for a client: its service's name, or None when the service
    has budgets to count (its queries take the full path)."""
    service = policy.service_for(listener, address)
    return None if _has_budgets(service) else service.name


def _has_budgets(service) -> bool:
    budgets = service.budgets
    return (budgets.query_rate is not None or budgets.max_label_length is not None
            or budgets.distinct_names_per_minute is not None)


class _Hit(NamedTuple):
    """Stored with a cached answer's bytes: its record template (None without a log) and the
    metric children a repeat counts in (queries, validation)."""
    template: HitTemplate | None
    counters: tuple | None


def _listener_json(endpoint: tuple[str, int]) -> bytes:
    return orjson.dumps(_endpoint_text(endpoint))


@functools.lru_cache(maxsize=1024)
def _endpoint_text(endpoint: tuple[str, int]) -> str:
    host, port = endpoint[0], endpoint[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"




def _to_wire(query: dns.message.Message, response: dns.message.Message,
             max_size: int | None) -> bytes:
    if max_size is None:
        return response.to_wire(max_size=MAX_TCP)
    limit = udp_limit(query.payload if query.edns >= 0 else None)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # RFC 2181 §9: a truncated reply sets TC and the client retries over TCP.
        truncated = _response(query, response.rcode())
        truncated.flags |= dns.flags.TC | (response.flags & dns.flags.AD)
        return truncated.to_wire(max_size=limit)


class _UdpServer(UdpListener):
    """A UDP listener: hits are answered in batches by the compiled ``UdpListener``, which
    also sheds the misses of clients over a resolution limit; the rest here, each in a task of
    its own."""

    def __init__(self, frontend: Frontend, sock: socket.socket, listener: tuple[str, int]) -> None:
        super().__init__(frontend.hits, sock, listener, frontend.resolver.admission)
        self.frontend = frontend
        self.tasks: set[asyncio.Task] = set()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()

    def send_failed(self, reason: str) -> None:
        metrics = self.frontend.metrics
        if metrics is not None:
            metrics.child(metrics.dropped, "send_failed").inc()
        log.debug("UDP %s: a reply not sent: %s", _endpoint_text(self.listener), reason)

    def miss(self, data: bytes, addr) -> None:
        task = asyncio.ensure_future(self._handle(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, data: bytes, addr) -> None:
        reply = await _answer(self.frontend, data, "udp", self.listener, addr[:2], MIN_UDP)
        if reply is not None and not self.closed:
            try:
                self.sendto(reply, addr)  # counts a reply the socket refuses (OSError)
            except Exception as exc:  # noqa: BLE001 - and one that fails in any other way
                self.send_failed(str(exc))


async def _answer(frontend: Frontend, wire: bytes, transport: str, listener: tuple[str, int],
                  client: tuple[str, int], max_size: int | None) -> bytes | None:
    """The reply to one client message, or None to send nothing.

    While the forensic log cannot write (a full disk, I/O errors), queries are answered
    SERVFAIL with EDE 14 Not Ready (RFC 8914 §4.15) naming the log's error, and nothing is
    resolved for them: a stub fails over to its next server at once rather than waiting out
    a timeout, and the operator reads why in the answer, the process log, the metrics and
    /readyz. Their records wait in the log's bounded queue and are written when the disk
    takes them again. Once that queue is full too, a query is dropped (no reply) and counted
    in ``queries_dropped{reason="log_unavailable"}``: no reply leaves without its record, and
    waiting for room would pile up queries without bound."""
    try:
        return await frontend.handle(wire, transport, listener, client, max_size)
    except ForensicLogError:
        if frontend.metrics is not None:
            frontend.metrics.child(frontend.metrics.dropped, "log_unavailable").inc()
        return None
    except Exception:  # noqa: BLE001 - not even the record of an internal error sealed
        log.exception("%s query from %s: no record sealed, no reply", transport.upper(),
                      client[0])
        if frontend.metrics is not None:
            frontend.metrics.child(frontend.metrics.dropped, "internal_error").inc()
        return None


@dataclass(slots=True, eq=False)
class _TcpClient:
    """One client TCP connection: when a message was last read from it or a reply taken, and
    its queries in progress."""

    writer: asyncio.StreamWriter
    active: float
    task: asyncio.Task | None
    busy: int = 0


class Server:
    """UDP and TCP listeners on every configured endpoint.

    Client TCP connections are bounded (RFC 7766 §6.2.3, §10): at most ``tcp_clients`` open
    (a new one closes the connection idle longest, or is closed itself when every one has
    queries in progress), at most ``tcp_pipeline`` queries in progress on each (reading pauses
    at the limit, RFC 7766 §6.2.1.1), and ``tcp_idle`` seconds both for a whole message to
    arrive and for the client to take a reply (a client that never reads is closed). UDP is
    not affected by any of this."""

    def __init__(self, frontend: Frontend, endpoints: list[tuple[str, int]],
                 tcp_idle: float = 10.0, reuse_port: bool = False, tcp_clients: int = 100,
                 tcp_pipeline: int = 16) -> None:
        self.frontend = frontend
        self.endpoints = endpoints
        self.tcp_idle = tcp_idle
        self.tcp_clients = tcp_clients
        self.tcp_pipeline = tcp_pipeline
        self.reuse_port = reuse_port  # several worker processes share the listeners
        self._udp: list[_UdpServer] = []
        self._tcp: list[asyncio.base_events.Server] = []
        self.connections: dict[asyncio.StreamWriter, _TcpClient] = {}
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.endpoints:
            udp = _UdpServer(self.frontend, await self._udp_socket(host, port), (host, port))
            loop.add_reader(udp.sock.fileno(), udp.readable)
            self._udp.append(udp)
            self._tcp.append(await asyncio.start_server(
                lambda r, w, listener=(host, port): self._tcp_client(r, w, listener), host, port,
                reuse_port=self.reuse_port or None))

    async def _udp_socket(self, host: str, port: int) -> socket.socket:
        """A non-blocking UDP socket bound to ``host``:``port`` (SO_REUSEPORT for workers)."""
        family, kind, proto, _, address = (await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE))[0]
        sock = socket.socket(family, kind, proto)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            sock.setblocking(False)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _closing(self, conn: _TcpClient, reason: str | None, abort: bool = False) -> None:
        """Close a client connection and count why the server did ("idle", "limit",
        "write_timeout"; None when the client closed it or the server stops)."""
        self.connections.pop(conn.writer, None)
        if abort:  # discard unsent replies: the client is not taking them
            conn.writer.transport.abort()
        else:
            conn.writer.close()
        metrics = self.frontend.metrics
        if metrics is not None and reason is not None:
            metrics.child(metrics.tcp_closed, reason).inc()

    def _admit(self, conn: _TcpClient) -> bool:
        """Make room for a new connection at the limit by closing the one idle longest; False
        (the new one is closed) when every open connection has queries in progress."""
        if len(self.connections) >= self.tcp_clients:
            idle = [c for c in self.connections.values() if c.busy == 0]
            if not idle:
                self._closing(conn, "limit")
                return False
            self._closing(min(idle, key=lambda c: c.active), "limit")
        self.connections[conn.writer] = conn
        return True

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          listener: tuple[str, int]) -> None:
        conn = _TcpClient(writer, time.monotonic(), asyncio.current_task())
        if not self._admit(conn):
            return
        lock = asyncio.Lock()
        pending: set[asyncio.Task] = set()
        client = writer.get_extra_info("peername")[:2]

        async def handle(wire: bytes) -> None:
            try:
                reply = self.frontend.fast(wire, "tcp", listener, client)
            except Exception:  # the full path answers, and logs, whatever the hit path cannot
                log.exception("hit path failed for a TCP query from %s", client)
                reply = None
            try:
                if reply is None:
                    reply = await _answer(self.frontend, wire, "tcp", listener, client, None)
                async with lock:
                    if reply is None or writer.is_closing():
                        return
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    async with asyncio.timeout(self.tcp_idle):
                        await writer.drain()
                    conn.active = time.monotonic()
            except TimeoutError:  # the client does not take its replies
                self._closing(conn, "write_timeout", abort=True)
            except ConnectionError:
                pass
            finally:
                conn.busy -= 1
                if self._stopping and conn.busy == 0 and writer in self.connections:
                    self._closing(conn, None)  # answered what was in flight; stop reading

        reason = None
        try:
            while not writer.is_closing() and not self._stopping:
                if len(pending) >= self.tcp_pipeline:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    continue
                async with asyncio.timeout(self.tcp_idle):  # RFC 7766 §6.2.3
                    length = struct.unpack("!H", await reader.readexactly(2))[0]
                    wire = await reader.readexactly(length)
                conn.active = time.monotonic()
                conn.busy += 1
                task = asyncio.ensure_future(handle(wire))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except TimeoutError:
            reason = "idle"
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if pending:  # answered before the connection closes
                await asyncio.gather(*pending, return_exceptions=True)
            if writer in self.connections:
                self._closing(conn, reason)

    async def stop(self, deadline: float = 5.0) -> None:
        """Stop accepting, then let queries in flight finish (within ``deadline`` seconds) so
        each is answered and logged."""
        self._stopping = True
        for server in self._tcp:
            server.close()
        for conn in [c for c in self.connections.values() if c.busy == 0]:
            self._closing(conn, None)
        pending = [task for udp in self._udp for task in udp.tasks]
        pending += [c.task for c in self.connections.values() if c.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=deadline)
        for udp in self._udp:
            udp.close()
        for server in self._tcp:
            await server.wait_closed()
