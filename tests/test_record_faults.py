"""Every reply leaves exactly one forensic record, under faults too, and resolution work is
bounded (issue #14 §4 and §5), through the real server in this process against the signed
test tree.

Faults are injected at every stage of the query path (policy, cache, iterator, transport,
validator, log encoder, send, and after a cache hit's record): a reply to an internal error is
SERVFAIL with EDE 0 and a text, never FORMERR; each reply has its record and no record lacks
its reply; the worker keeps answering. A reload that renames the service of a query in flight
answers it under the policy it arrived under. Queries over ``limits.max_resolutions`` or
``limits.max_resolutions_per_client`` are answered at once (or dropped) while the others wait,
and identical questions in progress share one upstream resolution; beyond a client's
allowance of such answers a second, the UDP listener drops its queries before they reach
Python.

Upstream replies are held at a gate (a hook of the test servers) instead of timed delays, and
each wait is on an event or a state the server reports, bounded.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import threading
import types
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

import resolver
from resolver.resolve import transport
from resolver.resolve.cache import Cache
from resolver.config import load_config
from resolver.forensic.record import FIELDS
from resolver.resolve.iterator import Iterator
from resolver.frontend.policy import Policy
from resolver.ops.metrics import HitTally
from resolver.service import Service
from tests.test_resolver import _config_text
from tests.testtree import authority

ADDRESS = "127.0.0.160"
CLIENT_A, CLIENT_B = "127.0.0.161", "127.0.0.162"
ZONE = "rsasha256.example."
WARM = "www.rsasha256.example."


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


def config_text(log: Path, extra: str = "") -> str:
    """The test tree's resolver config with its log in a file, upstream waits long enough
    that a reply held at a gate is not asked again."""
    return _config_text(ADDRESS, f'log: {{path: "{log}"}}\n' + extra,
                        timeouts="{upstream_ms: 3000, query_ms: 8000}")


class Sidecar:
    """The service of ``config.yaml`` in ``directory``, listening in this event loop."""

    def __init__(self, directory: Path, extra: str = "") -> None:
        self.path = directory / "config.yaml"
        self.log = directory / "lookups.jsonl"
        self.path.write_text(config_text(self.log, extra))
        self.service = Service(load_config(str(self.path)), str(self.path))

    async def __aenter__(self) -> "Sidecar":
        await self.service.forensic.start()
        await self.service.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.service.server.stop()
        await self.service.forensic.close()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def count(self, metric, *labels) -> float:
        self.service.metrics.flush()  # the listener's shed queries, counted in compiled code
        return self.service.metrics.child(metric, *labels)._value.get()


class Gate:
    """A test server hook that holds its replies to ``names`` until opened (it blocks the test
    servers' thread, which the resolver in this process does not share)."""

    def __init__(self, *names: str) -> None:
        self.names = {dns.name.from_text(n) for n in names}
        self.open = threading.Event()
        self.held = threading.Event()

    def __call__(self, _transport, query_wire: bytes, _reply, _addr) -> None:
        if dns.message.from_wire(query_wire).question[0].name in self.names:
            self.held.set()
            self.open.wait(timeout=20)


async def until(condition, what: str) -> None:
    """Wait (bounded) for a state the server reports."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never came: {what}")


def query(name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, want_dnssec=True, **kw)


async def udp(name: str, rdtype: str = "A", source: str = "127.0.0.1",
              **kw) -> dns.message.Message:
    return await dns.asyncquery.udp(query(name, rdtype, **kw), ADDRESS, timeout=20,
                                    source=source)


async def tcp(name: str, rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.tcp(query(name, rdtype), ADDRESS, timeout=20)


def ede(reply: dns.message.Message) -> tuple[int, str] | None:
    return next(((int(o.code), o.text) for o in reply.options if o.otype == dns.edns.EDE), None)


# --- faults at every stage -------------------------------------------------------------------

class Fault:
    """Raise at a stage while it is installed, counting the calls it caught."""

    def __init__(self, error: BaseException = RuntimeError("injected fault")) -> None:
        self.error, self.hits = error, 0

    def __call__(self, *args, **kwargs):
        self.hits += 1
        raise self.error


def _patch_everywhere(monkeypatch, name: str, fault) -> None:
    """Replace ``name`` in every resolver module that imported it (where validation lives may
    move; the stage is the function)."""
    import sys
    original = None
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("resolver") and hasattr(module, name):
            original = original or getattr(module, name)
            if getattr(module, name) is original:
                monkeypatch.setattr(module, name, fault)


STAGES = {  # stage: how to install its fault; the reply it must get is SERVFAIL, never FORMERR
    "policy": lambda m, f: m.setattr(Policy, "check_question", f),
    "cache": lambda m, f: m.setattr(Cache, "get", f),
    "iterator": lambda m, f: m.setattr(Iterator, "chase", f),
    "transport": lambda m, f: m.setattr(transport.Query, "to_wire", f),  # a bug, not the network
    "validator": lambda m, f: _patch_everywhere(m, "validate_rrset", f),
    "log encoder": lambda m, f: m.setattr(resolver.forensic.log, "seal", _once(f)),
}


def _once(fault):
    """A fault that fires on the first call only, then the real function."""
    real = resolver.forensic.log.seal

    def seal(*args, **kwargs):
        if not fault.hits:
            fault(*args, **kwargs)
        return real(*args, **kwargs)
    return seal


def test_every_stage_fault_leaves_one_record_per_reply(tree, tmp_path, monkeypatch):
    """§4: an exception at each stage is answered SERVFAIL with EDE 0 and a text, over UDP and
    TCP, with exactly one record each; replies and records match one to one by ID; the worker
    answers normally afterwards."""
    replies: list[dns.message.Message] = []

    async def go() -> Sidecar:
        async with Sidecar(tmp_path) as sidecar:
            replies.append(await udp(WARM))
            assert replies[-1].rcode() == dns.rcode.NOERROR
            for stage, install in STAGES.items():
                for i, ask in enumerate((udp, tcp)):
                    fault = Fault()
                    with monkeypatch.context() as m:
                        install(m, fault)
                        reply = await ask(f"f{i}-{stage.replace(' ', '-')}.{ZONE}")
                    replies.append(reply)
                    assert fault.hits, f"the {stage} fault was never reached"
                    assert reply.rcode() == dns.rcode.SERVFAIL, (stage, reply)
                    code, text = ede(reply)
                    assert code == 0 and "internal error (RuntimeError)" in text, (stage, text)
            # the worker survives: the same questions answered for real
            for stage in STAGES:
                replies.append(await udp(f"f0-{stage.replace(' ', '-')}.{ZONE}"))
                assert replies[-1].rcode() == dns.rcode.NXDOMAIN
            replies.append(await tcp(WARM))
            assert replies[-1].rcode() == dns.rcode.NOERROR
            return sidecar

    sidecar = asyncio.run(go())
    records = sidecar.records()
    assert len(records) == len(replies)
    assert sorted(r["id"] for r in records) == sorted(r.id for r in replies)
    errors = [r for r in records if r["policy"]["decision"] == "error"]
    assert len(errors) == 2 * len(STAGES)
    assert all(r["rcode"] == "SERVFAIL" and r["ede"]["code"] == 0 for r in errors)
    assert "FORMERR" not in {r["rcode"] for r in records}


def test_socket_failure_upstream_is_a_network_error(tree, tmp_path, monkeypatch):
    """§4: socket() failing for an upstream query (EMFILE; EAFNOSUPPORT where IPv6 is off) is
    an unreachable server like any other, not an exception that escapes the resolution: with
    the process out of descriptors for real (RLIMIT_NOFILE), whether the socket or the event
    loop's epoll set of upstream sockets (resolver.resolve._udp) cannot be made."""
    async def direct(first_of_its_loop: bool) -> None:
        if not first_of_its_loop:  # the loop's epoll set made first
            await transport.exchange(transport.make_query(dns.name.from_text(WARM),
                                                          dns.rdatatype.A), "127.0.0.10")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            with pytest.raises(transport.UpstreamError) as info:
                await transport.exchange(transport.make_query(dns.name.from_text(WARM),
                                                              dns.rdatatype.A),
                                         "127.0.0.10", timeout=1)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert info.value.kind == "network" and "Too many open files" in str(info.value)

    asyncio.run(direct(first_of_its_loop=False))
    asyncio.run(direct(first_of_its_loop=True))
    fault = Fault(OSError(errno.EMFILE, "Too many open files"))
    # In the sidecar below its clients need descriptors too: the fault is put in the stage.
    fake = types.SimpleNamespace(send=fault)  # the loop's upstream sockets (_udp.Waiting)
    replies = []

    async def go() -> Sidecar:
        async with Sidecar(tmp_path) as sidecar:
            replies.append(await udp(WARM))
            with monkeypatch.context() as m:
                m.setattr(transport, "_LAST", None)
                m.setattr(transport, "_waiting_of", lambda loop: fake)
                for i in range(3):
                    replies.append(await udp(f"s{i}.{ZONE}"))
            return sidecar

    sidecar = asyncio.run(go())
    assert fault.hits
    records = sidecar.records()
    assert len(records) == len(replies) == 4
    assert all(r["policy"]["decision"] != "error" for r in records)
    assert sorted(r["id"] for r in records) == sorted(r.id for r in replies)


def test_send_and_encoder_failures_send_nothing_unlogged(tree, tmp_path, monkeypatch):
    """§4: a reply the socket refuses keeps the record sealed before it (counted as
    send_failed); a log whose encoder fails even for the internal error's record sends nothing
    (counted as internal_error). Neither stops the worker."""
    async def go() -> tuple[Sidecar, list]:
        got = []
        async with Sidecar(tmp_path) as sidecar:
            metrics = sidecar.service.metrics
            got.append(await udp(WARM))
            send = Fault()
            listener = sidecar.service.server._udp[0]
            with monkeypatch.context() as m:  # the full path's reply: the hit path is in C
                m.setattr(listener, "io", types.SimpleNamespace(sendto=send))
                await client_send(f"send.{ZONE}")
                await until(lambda: sidecar.count(metrics.dropped, "send_failed") == 1,
                            "the refused send counted")
            encoder = Fault()
            with monkeypatch.context() as m:
                m.setattr(resolver.forensic.log, "seal", encoder)
                await client_send(f"encoder.{ZONE}")
                await until(lambda: sidecar.count(metrics.dropped, "internal_error") == 1,
                            "the unsealed reply counted")
            assert send.hits == 1 and encoder.hits == 2  # the reply's, then the error's
            got.append(await udp(f"encoder.{ZONE}"))  # answered now, from the cache
            return sidecar, got

    sidecar, got = asyncio.run(go())
    qnames = [r["qname"] for r in sidecar.records()]
    assert qnames == [WARM, f"send.{ZONE}", f"encoder.{ZONE}"]
    assert [r.rcode() for r in got] == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN]


async def client_send(name: str) -> None:
    """Send a query without waiting for a reply."""
    loop = asyncio.get_running_loop()
    transport_, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                        remote_addr=(ADDRESS, 53))
    transport_.sendto(query(name).to_wire())
    transport_.close()


def test_a_hit_whose_counting_fails_is_answered_and_logged_once(tree, tmp_path):
    """§4: an exception after a cache hit's record is sealed (counting it) must not send the
    query down the full path, which would log it a second time."""
    async def go() -> tuple[Sidecar, list]:
        async with Sidecar(tmp_path) as sidecar:
            first = await udp(WARM)
            fault = Fault()
            with pytest.MonkeyPatch.context() as m:  # the hit path calls it through its Report
                m.setattr(HitTally, "count", fault)
                hits = [await udp(WARM), await tcp(WARM)]
            assert fault.hits == 2
            return sidecar, [first] + hits

    sidecar, replies = asyncio.run(go())
    records = sidecar.records()
    assert [r["cache_hit"] for r in records] == [False, True, True]
    assert sorted(r["id"] for r in records) == sorted(r.id for r in replies)
    # The full path's record and the hit path's hold the fields of the one table.
    assert all(set(r) == {f.name for f in FIELDS if f.always} for r in records)


def test_reload_renaming_the_service_of_a_query_in_flight(tree, tmp_path):
    """§4: a query in flight when a reload renames its service is answered, and logged, under
    the policy it arrived under (it was a KeyError, answered FORMERR and not logged)."""
    services = ('services:\n  - name: {name}\n    listeners: ["{address}:53"]\n'
                '    allow: [{{zone: {zone}, require: secure}}]\n')
    gate = Gate(f"inflight.{ZONE}")

    async def go() -> tuple[Sidecar, dns.message.Message]:
        async with Sidecar(tmp_path, services.format(name="agent", address=ADDRESS,
                                                     zone=ZONE)) as sidecar:
            await udp(WARM)
            tree.set_faults(ZONE, forge=gate)
            try:
                pending = asyncio.ensure_future(udp(f"inflight.{ZONE}"))
                await until(gate.held.is_set, "the query upstream")
                sidecar.path.write_text(config_text(sidecar.log, services.format(
                    name="renamed", address=ADDRESS, zone=ZONE)))
                assert await sidecar.service.reload("test")
            finally:
                gate.open.set()
                tree.set_faults(ZONE, forge=None)
            return sidecar, await pending

    sidecar, reply = asyncio.run(go())
    assert reply.rcode() == dns.rcode.NXDOMAIN
    records = sidecar.records()
    assert [(r["qname"], r["service"], r["rcode"]) for r in records if "event" not in r] == [
        (WARM, "agent", "NOERROR"), (f"inflight.{ZONE}", "agent", "NXDOMAIN")]
    # the reload's changes are records of the chain too (issue #17)
    assert [(r["action"], r["service"]) for r in records if "event" in r] == [
        ("reload", "agent"), ("reload", "renamed")]


# --- bounded resolutions (§5) ----------------------------------------------------------------

def test_over_max_resolutions_is_answered_at_once(tree, tmp_path):
    """Queries over limits.max_resolutions get SERVFAIL with EDE 0 naming the limit while the
    admitted ones still wait upstream; each reply has its record; the overflow is counted."""
    names = [f"cap{i}.{ZONE}" for i in range(5)]
    gate = Gate(*names)

    async def go():
        async with Sidecar(tmp_path, "limits: {max_resolutions: 2}\n") as sidecar:
            admission = sidecar.service.resolver.admission
            await udp(WARM)
            tree.set_faults(ZONE, forge=gate)
            try:
                waiting = [asyncio.ensure_future(udp(n)) for n in names[:2]]
                await until(lambda: admission.in_progress == 2, "two resolutions waiting")
                over = [await udp(n) for n in names[2:]]
                assert not gate.open.is_set() and not any(w.done() for w in waiting)
            finally:
                gate.open.set()
                tree.set_faults(ZONE, forge=None)
            answered = [await w for w in waiting]
            count = sidecar.count(sidecar.service.metrics.over_limit, "max_resolutions")
            return sidecar, over, answered, count, admission.in_progress

    sidecar, over, answered, count, left = asyncio.run(go())
    for reply in over:
        assert reply.rcode() == dns.rcode.SERVFAIL
        code, text = ede(reply)
        assert code == 0 and "limits.max_resolutions" in text
    assert [r.rcode() for r in answered] == [dns.rcode.NXDOMAIN] * 2
    assert count == 3 and left == 0
    records = sidecar.records()
    assert len(records) == 6
    assert [r["verdict"] for r in records if r["qname"] in names[2:]] == [None] * 3


def test_per_client_limit_and_drop(tree, tmp_path):
    """limits.max_resolutions_per_client holds one client back, not another; with
    over_limit: drop a UDP query over it gets no reply and no record, and is counted, while
    one over TCP is answered SERVFAIL."""
    names = [f"pc{i}.{ZONE}" for i in range(4)]
    gate = Gate(*names)

    async def go():
        extra = "limits: {max_resolutions_per_client: 2, over_limit: drop}\n"
        async with Sidecar(tmp_path, extra) as sidecar:
            metrics = sidecar.service.metrics
            admission = sidecar.service.resolver.admission
            await udp(WARM)
            tree.set_faults(ZONE, forge=gate)
            try:
                waiting = [asyncio.ensure_future(udp(n, source=CLIENT_A)) for n in names[:2]]
                await until(lambda: admission.in_progress == 2, "client A's two waiting")
                lost = asyncio.ensure_future(udp(names[2], source=CLIENT_A))
                await until(lambda: sidecar.count(metrics.dropped, "over_limit") == 1,
                            "client A's third dropped")
                over_tcp = await dns.asyncquery.tcp(query(names[2]), ADDRESS, timeout=20,
                                                    source=CLIENT_A)
                waiting.append(asyncio.ensure_future(udp(names[3], source=CLIENT_B)))
                await until(lambda: admission.in_progress == 3, "client B admitted")
            finally:
                gate.open.set()
                tree.set_faults(ZONE, forge=None)
            answered = [await w for w in waiting]
            lost.cancel()
            return (sidecar, answered, over_tcp,
                    sidecar.count(metrics.over_limit, "max_resolutions_per_client"))

    sidecar, answered, over_tcp, count = asyncio.run(go())
    assert [r.rcode() for r in answered] == [dns.rcode.NXDOMAIN] * 3
    assert over_tcp.rcode() == dns.rcode.SERVFAIL  # TCP is answered: no forged source there
    assert "limits.max_resolutions_per_client" in ede(over_tcp)[1]
    assert count == 2
    records = sidecar.records()
    assert [r["transport"] for r in records if r["qname"] == names[2]] == ["tcp"]
    assert {names[0], names[1], names[3]} <= {r["qname"] for r in records}


class Collect(asyncio.DatagramProtocol):
    """The replies a raw UDP client receives."""

    def __init__(self) -> None:
        self.replies: list[dns.message.Message] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.replies.append(dns.message.from_wire(data))


def test_a_flood_over_the_per_client_limit_is_shed_in_the_listener(tree, tmp_path):
    """A client over limits.max_resolutions_per_client gets at most
    over_limit_answers_per_second SERVFAIL answers a second, each with its record; the rest of
    its burst is dropped in the listener (no reply, no record) and counted, while another
    client's cached question is answered from the hit path meanwhile."""
    names = [f"shed{i}.{ZONE}" for i in range(2)]
    burst = [query(f"burst{i}.{ZONE}") for i in range(40)]
    gate = Gate(*names)
    allowance = 3

    async def go():
        extra = ("limits: {max_resolutions_per_client: 2, "
                 f"over_limit_answers_per_second: {allowance}}}\n")
        async with Sidecar(tmp_path, extra) as sidecar:
            metrics = sidecar.service.metrics
            admission = sidecar.service.resolver.admission
            await udp(WARM, source=CLIENT_B)
            tree.set_faults(ZONE, forge=gate)
            loop = asyncio.get_running_loop()
            flooder, collect = await loop.create_datagram_endpoint(
                Collect, local_addr=(CLIENT_A, 0), remote_addr=(ADDRESS, 53))
            try:
                waiting = [asyncio.ensure_future(udp(n, source=CLIENT_A)) for n in names]
                await until(lambda: admission.in_progress == 2, "client A's two waiting")
                for message in burst:
                    flooder.sendto(message.to_wire())
                await until(lambda: len(collect.replies)
                            + sidecar.count(metrics.dropped, "over_limit") == len(burst),
                            "every query of the burst answered or dropped")
                cached = await udp(WARM, source=CLIENT_B)
                assert admission.in_progress == 2 and not gate.open.is_set()
            finally:
                flooder.close()
                gate.open.set()
                tree.set_faults(ZONE, forge=None)
            answered = [await w for w in waiting]
            return (sidecar, collect.replies, cached, answered,
                    sidecar.count(metrics.dropped, "over_limit"),
                    sidecar.count(metrics.over_limit, "max_resolutions_per_client"))

    sidecar, over, cached, answered, dropped, counted = asyncio.run(go())
    # The allowance is per second: a burst that straddles a second's turn gets two.
    assert allowance <= len(over) <= 2 * allowance
    assert dropped == len(burst) - len(over) and counted == len(burst)
    for reply in over:
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert "limits.max_resolutions_per_client" in ede(reply)[1]
    assert cached.rcode() == dns.rcode.NOERROR and cached.answer
    assert [r.rcode() for r in answered] == [dns.rcode.NXDOMAIN] * 2
    records = sidecar.records()
    burst_records = [r for r in records if r["qname"].startswith("burst")]
    assert sorted(r["id"] for r in burst_records) == sorted(r.id for r in over)
    assert [r["cache_hit"] for r in records if r["qname"] == WARM] == [False, True]


def test_misses_over_the_rate_limit_per_client(tree, tmp_path, caplog):
    """limits.max_misses_per_client_per_second: of a burst of unique names from one client,
    that many are resolved, over_limit_answers_per_second more are answered SERVFAIL naming
    the limit, the rest are dropped in the listener, all counted, and the process log says
    so; another client's miss in the same second is resolved."""
    rate, allowance = 3, 2
    burst = [query(f"rate{i}.{ZONE}") for i in range(30)]

    async def go():
        extra = (f"limits: {{max_misses_per_client_per_second: {rate}, "
                 f"over_limit_answers_per_second: {allowance}}}\n")
        async with Sidecar(tmp_path, extra) as sidecar:
            metrics = sidecar.service.metrics
            await udp(WARM, source=CLIENT_B)
            loop = asyncio.get_running_loop()
            flooder, collect = await loop.create_datagram_endpoint(
                Collect, local_addr=(CLIENT_A, 0), remote_addr=(ADDRESS, 53))
            try:
                for message in burst:
                    flooder.sendto(message.to_wire())
                other = await udp(f"other.{ZONE}", source=CLIENT_B)
                await until(lambda: len(collect.replies)
                            + sidecar.count(metrics.dropped, "over_limit") == len(burst),
                            "every query of the burst answered or dropped")
            finally:
                flooder.close()
            return (collect.replies, other, sidecar.count(metrics.dropped, "over_limit"),
                    sidecar.count(metrics.over_limit, "max_misses_per_client_per_second"))

    replies, other, dropped, counted = asyncio.run(go())
    resolved = [r for r in replies if r.rcode() == dns.rcode.NXDOMAIN]
    refused = [r for r in replies if r.rcode() == dns.rcode.SERVFAIL]
    # Per second: a burst that straddles a second's turn gets twice.
    assert rate <= len(resolved) <= 2 * rate and allowance <= len(refused) <= 2 * allowance
    assert len(resolved) + len(refused) == len(replies)
    for reply in refused:
        assert "limits.max_misses_per_client_per_second" in ede(reply)[1]
    assert dropped == len(burst) - len(replies) and counted == len(burst) - len(resolved)
    assert other.rcode() == dns.rcode.NXDOMAIN
    assert f"client {CLIENT_A} is over limits.max_misses_per_client_per_second" in caplog.text


def test_identical_questions_share_one_resolution(tree, tmp_path):
    """Identical questions in progress (DO, CD and AD aside) are resolved once upstream; each
    client query still gets its own reply, shaped by its own flags, and its own record."""
    name = f"joined.{ZONE}"
    gate = Gate(name)
    flags = [dict(want_dnssec=True), dict(want_dnssec=False), dict(flags=dns.flags.RD | dns.flags.CD),
             dict(flags=dns.flags.RD | dns.flags.AD), dict(want_dnssec=True)]

    async def go():
        async with Sidecar(tmp_path) as sidecar:
            admission = sidecar.service.resolver.admission
            await udp(WARM)
            tree.clear()
            tree.set_faults(ZONE, forge=gate)
            try:
                waiting = [asyncio.ensure_future(dns.asyncquery.udp(
                    dns.message.make_query(name, "A", **kw), ADDRESS, timeout=20))
                    for kw in flags]
                await until(lambda: admission.in_progress == len(flags), "all five waiting")
            finally:
                gate.open.set()
                tree.set_faults(ZONE, forge=None)
            return sidecar, [await w for w in waiting]

    sidecar, replies = asyncio.run(go())
    assert len(tree.queried(name)) == 1
    assert [r.rcode() for r in replies] == [dns.rcode.NXDOMAIN] * len(flags)
    assert [bool(r.authority) and any(rr.rdtype == 46 for rr in r.authority)
            for r in replies] == [True, False, False, False, True]  # RRSIGs only with DO
    records = [r for r in sidecar.records() if r["qname"] == name]
    assert sorted(r["id"] for r in records) == sorted(r.id for r in replies)


def test_limits_follow_a_reload_and_show_in_metrics(tmp_path):
    """A reload applies new resolution limits at once; /metrics shows the queries waiting."""
    from prometheus_client import generate_latest
    sidecar = Sidecar(tmp_path, "limits: {max_resolutions: 5}\n")
    admission = sidecar.service.resolver.admission
    assert (admission.total, admission.per_client, admission.drop,
            admission.answers_per_second, admission.misses_per_second) == (5, 500, False, 10, 100)
    sidecar.path.write_text(config_text(sidecar.log, "limits: {max_resolutions: 7, "
                                        "max_resolutions_per_client: 3, over_limit: drop, "
                                        "over_limit_answers_per_second: 2, "
                                        "max_misses_per_client_per_second: 5}\n"))
    assert asyncio.run(sidecar.service.reload("test"))
    assert (admission.total, admission.per_client, admission.drop,
            admission.answers_per_second, admission.misses_per_second) == (7, 3, True, 2, 5)
    assert admission.admit("192.0.2.1") is None
    text = generate_latest(sidecar.service.metrics.registry).decode()
    assert "dnssec_sidecar_resolutions_in_progress 1.0" in text


def test_admission_bookkeeping():
    """Counts per process and per client; a client's entry goes with its last query."""
    from resolver.frontend.admission import CLIENT, PROCESS, Admission
    admission = Admission(3, 2, False, 10)
    assert [admission.admit("a"), admission.admit("a"), admission.admit("a")] == [
        None, None, CLIENT]
    assert admission.admit("b") is None
    assert admission.admit("c") == PROCESS and admission.in_progress == 3
    for client in ("a", "a", "b"):
        admission.release(client)
    assert admission.in_progress == 0 and not admission._clients
    assert "limits.max_resolutions_per_client" in admission.reason(CLIENT)


def test_a_query_that_fails_to_parse_again_gets_a_header_only_servfail(tmp_path, monkeypatch):
    """The internal-error reply to a query the parser itself fails on (not a DNS format error:
    a bug) is a header-only SERVFAIL with its record, counted like any reply."""
    import dns.message as message

    from resolver.frontend import pipeline

    async def go() -> tuple[Sidecar, bytes, bytes]:
        async with Sidecar(tmp_path) as sidecar:
            wire = query(WARM).to_wire()
            with monkeypatch.context() as m:
                m.setattr(pipeline, "from_wire", Fault())  # the compiled parser (_wireparse)
                m.setattr(message, "from_wire", Fault())  # dnspython's, parsing it again
                reply = await sidecar.service.server.frontend.handle(
                    wire, "udp", (ADDRESS, 53), ("127.0.0.1", 5300), 512)
            return sidecar, wire, reply

    sidecar, wire, reply = asyncio.run(go())
    parsed = dns.message.from_wire(reply)
    assert parsed.id == int.from_bytes(wire[:2], "big") and parsed.rcode() == dns.rcode.SERVFAIL
    assert not parsed.question
    record, = sidecar.records()
    assert (record["rcode"], record["policy"]["decision"]) == ("SERVFAIL", "error")
    assert sidecar.count(sidecar.service.metrics.queries, "", "", "SERVFAIL") == 1
