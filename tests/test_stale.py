"""Serve-stale (RFC 8767) and prefetch against the signed test tree, in process: the tree's
authorities in memory (tests/testtree/memory.py) behind a switch that makes them time out or
hang, the answer cache on a clock the test moves, the validation time moved through the
iterator's settings.

Stale answers: EDE 3 (EDE 19 for NXDOMAIN, RFC 8914 §4.4, §4.20) and TTL 30 (RFC 8767 §4) once
the authorities die after the TTL ran out, or when they have not answered within the client
response timer; never data whose signatures expired meanwhile, never Bogus nor in place of an
answer that failed validation, never across a reload; the background resolution replaces the
stale entry once the authorities are back, and after a failure the name is not asked again
before the recheck timer ends. Prefetch: an answer used in its last tenth is resolved again
before it expires, from the answer cache and from the hit path, once at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from resolver.config import ConfigError, parse_config
from resolver.config.schema import ServeStale
from resolver.ede import EDE
from resolver.frontend.admission import Admission
from resolver.frontend.pipeline import Frontend
from resolver.frontend.policy import Policy
from resolver.frontend.resolution import Resolver
from resolver.resolve import stale as stale_module
from resolver.resolve import transport
from resolver.resolve._fastcache import WireCache
from resolver.resolve.cache import Cache
from resolver.resolve.failures import MAX_HOLD
from resolver.resolve.prefetch import FRACTION
from tests.test_resolver import _start, _stop, ask, ede_of
from tests.test_resolver import tree  # noqa: F401 (the tree's servers, a fixture)
from tests.testtree import NOW, memory

LISTENER, CLIENT = ("127.0.0.1", 53), ("127.0.0.2", 5353)
NAME = "www.rsasha256.example."
NXNAME = "nope.ed448.test."
AFTER_SIGNATURES = 2082844800  # 2036-01-02: every signature of the tree has expired


class Clock:
    """The answer cache's clock (monotonic seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Authorities:
    """The tree's servers, which may be ``down`` (every query times out at once) or ``hung``
    (queries wait until the event is set); ``upstream.asked`` lists the queries answered."""

    def __init__(self, **kwargs) -> None:
        self.upstream = memory.Upstream(**kwargs)
        self.down = False
        self.hung: asyncio.Event | None = None

    async def __call__(self, query, host, port=53, **kwargs):
        if self.down:
            raise transport.UpstreamError("timeout", f"no answer from {host} over UDP")
        if self.hung is not None:
            await self.hung.wait()
        return await self.upstream(query, host, port, **kwargs)

    def asked(self, name: str) -> int:
        return sum(q == name for _, q, _ in self.upstream.asked)


def _frontend(stale: ServeStale | None = ServeStale(), prefetch: bool = False, policy=None,
              **kwargs) -> tuple[Frontend, Authorities, Clock]:
    clock, authorities = Clock(), Authorities(**kwargs)
    cache = Cache(clock=clock, max_stale=stale.max_stale if stale else 0)
    resolver = Resolver(memory.settings(), cache, Admission(100, 100, False, 10),
                        exchange=authorities, serve_stale=stale, prefetch=prefetch)
    # Servers and zones that did not answer are held back (RFC 9520) on the same clock.
    resolver.iterator.infra.holds.clock = resolver.iterator.zone_holds.clock = clock
    return Frontend(resolver, policy, None, None, None), authorities, clock


async def _ask(frontend: Frontend, name: str = NAME, rdtype: str = "A"):
    """The full path's reply to a DO query, and its forensic record."""
    wire = dns.message.make_query(name, rdtype, want_dnssec=True).to_wire()
    record: dict = {}
    reply, done = await frontend._reply(wire, "udp", LISTENER, CLIENT, None, record)
    done()
    return dns.message.from_wire(reply), record


def _ede(response: dns.message.Message) -> list[int]:
    return [int(option.code) for option in response.options if option.otype == 15]


async def _settle(frontend: Frontend) -> None:
    """Wait for the background resolutions in flight."""
    await asyncio.gather(*frontend.resolver._inflight.values())


def _expire(frontend: Frontend, clock: Clock, name: str = NAME, rdtype: str = "A") -> None:
    """Move the cache's clock just past the expiry of ``name``'s answer (the hit path's copy
    expires with it, on the wall clock)."""
    answer = frontend.resolver.cache.get(dns.name.from_text(name),
                                         dns.rdatatype.from_text(rdtype))
    clock.now += answer.ttl + 1
    frontend.wirecache.clear()


async def _dead_after_expiry(name: str = NAME, rdtype: str = "A", **kwargs):
    """A frontend that answered ``name`` once, its answer expired since, its authorities down;
    and the first answer."""
    frontend, authorities, clock = _frontend(**kwargs)
    fresh, _ = await _ask(frontend, name, rdtype)
    _expire(frontend, clock, name, rdtype)
    authorities.down = True
    return frontend, authorities, clock, fresh


def test_stale_answer_when_the_authority_dies_after_expiry():
    async def run():
        frontend, _, _, fresh = await _dead_after_expiry()
        assert fresh.rcode() == 0 and fresh.flags & dns.flags.AD
        response, record = await _ask(frontend)
        assert response.rcode() == 0 and response.flags & dns.flags.AD, response
        assert _ede(response) == [EDE.STALE_ANSWER]
        assert {r.ttl for r in response.answer} == {30}
        assert [str(rd) for r in response.answer for rd in r if r.rdtype == 1] == \
            [str(rd) for r in fresh.answer for rd in r if r.rdtype == 1]
        assert record["stale"] and record["verdict"] == "secure" and record["ede"]["code"] == 3
        assert record["upstream"], "the servers the failed resolution asked"
        assert frontend.resolver.stale.served == 1
        # Not kept for the hit path: every stale answer is judged again when served.
        wire = dns.message.make_query(NAME, "A", want_dnssec=True).to_wire()
        assert frontend.fast(wire, "udp", LISTENER, CLIENT) is None
    asyncio.run(run())


@pytest.mark.parametrize("name,rdtype,rcode,ede", [
    (NXNAME, "A", dns.rcode.NXDOMAIN, EDE.STALE_NXDOMAIN_ANSWER),
    (NAME, "TXT", dns.rcode.NOERROR, EDE.STALE_ANSWER),
], ids=["nxdomain", "nodata"])
def test_a_negative_answer_is_served_stale_too(name, rdtype, rcode, ede):
    async def run():
        frontend, _, _, fresh = await _dead_after_expiry(name, rdtype)
        assert fresh.rcode() == rcode and not fresh.answer and fresh.authority
        response, record = await _ask(frontend, name, rdtype)
        assert response.rcode() == rcode and record["stale"], response
        assert _ede(response) == [ede] and not response.answer
        assert response.authority and all(r.ttl <= 30 for r in response.authority)
        assert response.flags & dns.flags.AD
    asyncio.run(run())


@pytest.mark.parametrize("name,secure", [("cname-out.rsasha256.example.", True),
                                         ("cname-insecure.rsasha256.example.", False)],
                         ids=["secure-chain-across-zones", "into-an-unsigned-zone"])
def test_a_chain_is_served_stale_link_by_link(name, secure):
    """Each link of a CNAME chain is its own cache entry: the stale answer follows them all,
    from the cache alone; a chain into a proven unsigned zone is served stale as Insecure."""
    async def run():
        frontend, authorities, clock, fresh = await _dead_after_expiry(name)
        clock.now += 3600  # the zones' TTL: every link has expired now
        response, record = await _ask(frontend, name)
        assert response.rcode() == 0 and record["stale"], response
        assert [r.rdtype for r in response.answer if r.rdtype != dns.rdatatype.RRSIG] == \
            [r.rdtype for r in fresh.answer if r.rdtype != dns.rdatatype.RRSIG]
        assert bool(response.flags & dns.flags.AD) is secure
        assert record["verdict"] == ("secure" if secure else "insecure")
    asyncio.run(run())


def test_off_by_default():
    config = parse_config({})
    assert config.cache.serve_stale is None and config.cache.prefetch is False

    async def run():
        frontend, _, _, _ = await _dead_after_expiry(stale=None)
        response, record = await _ask(frontend)
        assert response.rcode() == dns.rcode.SERVFAIL and not record["stale"]
        assert _ede(response) == [EDE.NO_REACHABLE_AUTHORITY]
    asyncio.run(run())


def test_data_whose_signatures_expired_meanwhile_is_not_served_stale():
    async def run():
        frontend, _, _, _ = await _dead_after_expiry()
        frontend.resolver.iterator.s.validation_time = AFTER_SIGNATURES
        response, record = await _ask(frontend)
        assert response.rcode() == dns.rcode.SERVFAIL and not record["stale"], response
        assert frontend.resolver.stale.refused == 1 and frontend.resolver.stale.served == 0
    asyncio.run(run())


def test_bogus_is_never_served_stale():
    async def run():
        frontend, authorities, clock = _frontend()
        bogus, _ = await _ask(frontend, "www.badsig.test.")
        assert bogus.rcode() == dns.rcode.SERVFAIL
        clock.now += 86400
        authorities.down = True
        response, record = await _ask(frontend, "www.badsig.test.")
        assert response.rcode() == dns.rcode.SERVFAIL and not record["stale"]
    asyncio.run(run())


def test_an_answer_that_fails_validation_is_not_replaced_by_stale_data():
    """Stale data stands in for unreachable authorities only: an answer that arrives and fails
    validation (here its RRSIGs stripped) is SERVFAIL, as without serve-stale."""
    strip = {"on": False}

    def tamper(host, query, response):
        if strip["on"]:
            for section in (response.answer, response.authority):
                section[:] = [r for r in section if r.rdtype != dns.rdatatype.RRSIG]
        return response

    async def run():
        frontend, authorities, clock = _frontend(tamper=tamper)
        await _ask(frontend)
        _expire(frontend, clock)
        strip["on"] = True
        response, record = await _ask(frontend)
        assert response.rcode() == dns.rcode.SERVFAIL and not record["stale"], response
        assert EDE.STALE_ANSWER not in _ede(response)
    asyncio.run(run())


def test_not_served_stale_across_a_reload():
    async def run():
        frontend, authorities, clock, _ = await _dead_after_expiry()
        frontend.use_policy(None)  # what a reload does, whatever changed
        response, record = await _ask(frontend)
        assert response.rcode() == dns.rcode.SERVFAIL and not record["stale"]
        # Stored after the reload: served stale again.
        authorities.down = False
        clock.now += MAX_HOLD  # the failures just cached (RFC 9520) are over, backoff included
        await _ask(frontend)
        _expire(frontend, clock)
        authorities.down = True
        response, record = await _ask(frontend)
        assert response.rcode() == 0 and record["stale"]
    asyncio.run(run())


def test_slow_authorities_get_a_stale_answer_then_the_refresh_replaces_it():
    """The client response timer (RFC 8767 §5): a resolution still running when it fires is
    answered stale, goes on in the background, and its answer replaces the stale entry."""
    async def run():
        frontend, authorities, clock = _frontend(ServeStale(86400, 20))
        await _ask(frontend)
        _expire(frontend, clock)
        authorities.hung = asyncio.Event()
        asked = authorities.asked(NAME)
        response, record = await _ask(frontend)
        assert record["stale"] and _ede(response) == [EDE.STALE_ANSWER]
        assert frontend.resolver._inflight, "the resolution goes on"
        authorities.hung.set()
        await _settle(frontend)
        assert authorities.asked(NAME) == asked + 1
        refreshed = frontend.resolver.cache.get(dns.name.from_text(NAME), 1)
        assert refreshed is not None and refreshed.ttl > 30
        response, record = await _ask(frontend)
        assert not record["stale"] and record["cache_hit"] and not _ede(response)
    asyncio.run(run())


def test_after_a_failure_the_name_is_asked_again_only_after_the_recheck_timer():
    async def run():
        frontend, authorities, clock, _ = await _dead_after_expiry()
        first, record = await _ask(frontend)
        assert record["stale"]
        asked = len(authorities.upstream.asked)
        authorities.down = False
        again, record = await _ask(frontend)  # within the recheck timer: stale, nobody asked
        assert record["stale"] and len(authorities.upstream.asked) == asked
        assert record["upstream"] == [] and "failed within the last" in record["ede"]["text"]
        clock.now += stale_module.RECHECK
        response, record = await _ask(frontend)  # the authorities are back
        assert not record["stale"] and response.rcode() == 0 and not _ede(response)
        assert authorities.asked(NAME) >= 1
        assert frontend.resolver.cache.get(dns.name.from_text(NAME), 1).ttl > 30
    asyncio.run(run())


def test_prefetch_refreshes_an_answer_used_in_its_last_tenth():
    async def run():
        frontend, authorities, clock = _frontend(stale=None, prefetch=True)
        await _ask(frontend)
        name = dns.name.from_text(NAME)
        ttl = frontend.resolver.cache.get(name, 1).ttl
        asked = authorities.asked(NAME)
        clock.now += ttl * 0.5
        await _ask(frontend)
        assert frontend.resolver.prefetch.started == 0
        clock.now += ttl * (0.95 - 0.5)
        authorities.hung = asyncio.Event()
        response, record = await _ask(frontend)
        assert record["cache_hit"] and response.rcode() == 0
        await _ask(frontend)  # a second use while the refresh runs starts none
        assert frontend.resolver.prefetch.started == 1
        authorities.hung.set()
        await _settle(frontend)
        assert authorities.asked(NAME) == asked + 1
        assert frontend.resolver.cache.get(name, 1).ttl > ttl * 0.5  # before it expired
    asyncio.run(run())


def test_prefetch_from_the_hit_path():
    """A reply kept for the hit path, used in its last tenth, calls back once: the question is
    resolved again under the service it was kept for (here a policy's)."""
    policy = Policy(parse_config(yaml.safe_load("""
        listen: ["127.0.0.1:53"]
        services:
          - {name: svc, listeners: ["127.0.0.1:53"], allow: [{zone: rsasha256.example.}]}
    """)))

    async def run():
        frontend, authorities, clock = _frontend(stale=None, prefetch=True, policy=policy)
        wire = dns.message.make_query(NAME, "A", want_dnssec=True).to_wire()
        for _ in range(2):  # kept for the hit path once repeated
            await frontend.handle(wire, "udp", LISTENER, CLIENT, None)
        ttl = frontend.resolver.cache.get(dns.name.from_text(NAME), 1).ttl
        asked = authorities.asked(NAME)
        clock.now += ttl * 0.95
        later = time.time() + ttl * 0.95
        assert frontend.wirecache.answer(wire, "svc", later) is not None
        assert frontend.wirecache.answer(wire, "svc", later) is not None  # once per entry
        assert frontend.resolver.prefetch.started == 1
        await _settle(frontend)
        assert authorities.asked(NAME) == asked + 1
    asyncio.run(run())


def test_the_hit_path_calls_back_once_per_entry_in_its_last_part():
    calls = []
    cache = WireCache(10, lambda query, scope, left: calls.append((scope, left)), FRACTION)
    query = dns.message.make_query("a.example.", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("a.example.", 100, "IN", "A", "192.0.2.1"))
    assert cache.store(query.to_wire(), "s", response.to_wire(), 0.0, 100)
    for now in (10.0, 89.0, 91.0, 95.0):
        assert cache.answer(query.to_wire(), "s", now) is not None
    assert calls == [("s", 9.0)]
    assert WireCache(10).answer(query.to_wire(), "s", 0.0) is None  # no callback: none called


@pytest.mark.parametrize("value,seconds", [("1d", 86400), ("12h", 43200), ("30m", 1800),
                                           ("90s", 90), (3600, 3600), ("600", 600)])
def test_max_stale_takes_a_duration(value, seconds):
    config = parse_config({"cache": {"serve_stale": {"max_stale": value}}})
    assert config.cache.serve_stale == ServeStale(seconds, 1800)


@pytest.mark.parametrize("value,text", [
    ({"max_stale": "1w"}, "cache.serve_stale.max_stale"),
    ({"max_stale": "9d"}, "cache.serve_stale.max_stale"),
    ({"client_timeout_ms": -1}, "cache.serve_stale.client_timeout_ms"),
    ({"stale": 1}, "cache.serve_stale.stale"),
    ("yes", "cache.serve_stale"),
])
def test_serve_stale_keys_are_checked(value, text):
    with pytest.raises(ConfigError) as caught:
        parse_config({"cache": {"serve_stale": value}})
    assert str(caught.value).startswith(text), caught.value


def test_serve_stale_true_takes_the_defaults():
    assert parse_config({"cache": {"serve_stale": True, "prefetch": True}}).cache \
        .serve_stale == ServeStale(86400, 1800)
    assert NOW < AFTER_SIGNATURES


# --- end to end: `dnssec-sidecar serve` against the tree's servers on 127.0.0.N -------------------

E2E = "127.0.0.143"


def test_end_to_end_the_authority_dies_after_the_ttl(tree, tmp_path):
    """Answers cached for a second (cache.max_ttl: 1), then the zone's server stops answering:
    once the entry has expired, the client gets it stale (EDE 3, TTL 30), its record says
    ``stale: true`` and the metric counts it."""
    log = tmp_path / "lookups.jsonl"
    process = _start(E2E, tmp_path, "cache: {max_ttl: 1, serve_stale: {max_stale: 1h, "
                     f"client_timeout_ms: 100}}}}\nlog: {{path: '{log}'}}\n")
    try:
        fresh = ask(NAME, server=E2E)
        assert fresh.rcode() == 0 and fresh.flags & dns.flags.AD and not ede_of(fresh)
        tree.set_faults("rsasha256.example.", drop=True)
        for _ in range(100):  # bounded: the entry expires a second after it was stored
            response = ask(NAME, server=E2E)
            if ede_of(response):
                break
            time.sleep(0.05)
        (code, text), = ede_of(response)
        assert code == 3 and text.startswith("stale answer"), text
        assert response.rcode() == 0 and response.flags & dns.flags.AD
        assert {r.ttl for r in response.answer} == {30}
        metrics = urllib.request.urlopen(f"http://{E2E}:9153/metrics", timeout=5).read()
        assert b"dnssec_sidecar_stale_answers_total 1.0" in metrics
    finally:
        tree.set_faults("rsasha256.example.", drop=False)
        _stop(process)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    stale = [r for r in records if r["stale"]]
    assert len(stale) == 1 and stale[0]["ede"]["code"] == 3 and not stale[0]["cache_hit"]
    assert not records[0]["stale"]
