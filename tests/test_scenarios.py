"""Scripted-authority scenarios (tests/scenarios/*.yaml, format in tests/scenarios/README.md),
each run against a fresh dnssec-sidecar and a fresh Unbound: scripted servers on loopback
addresses, the resolver's queries, the answers expected (rcode, AD, answer records, EDE)."""

from __future__ import annotations

import dns.flags
import dns.name
import dns.rdata
import dns.rcode
import dns.rdatatype
import pytest

from tests.onpath import resolvers
from tests.scenarios import runner
from tests.test_resolver import ede_of

SCENARIOS = runner.load_all()
ADDRESS = {"dnssec-sidecar": "127.0.0.173", "unbound": "127.0.0.174"}  # the resolvers under test


def _cases():
    for scenario in SCENARIOS:
        for kind in resolvers.KINDS:
            marks = []
            if kind == "unbound" and resolvers.UNBOUND is None:
                marks.append(pytest.mark.skip(reason="unbound not installed "
                                                     "(apt-get install unbound)"))
            if kind not in scenario.get("only", resolvers.KINDS):
                continue
            reason = scenario.get("known", {}).get(kind)
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            yield pytest.param(scenario, kind, marks=marks, id=f"{scenario['name']}-{kind}")


def test_scenario_names_are_unique():
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == len(set(names))


def _norm(text: str) -> str:
    """``owner TYPE rdata`` in one spelling."""
    owner, rdtype, rdata = text.split(None, 2)
    rd = dns.rdata.from_text("IN", rdtype, rdata)
    return f"{dns.name.from_text(owner).to_text().lower()} {rdtype.upper()} " \
           f"{rd.to_text().lower()}"


def _records(section) -> set[str]:
    return {f"{r.name.to_text().lower()} {dns.rdatatype.to_text(r.rdtype)} "
            f"{rd.to_text().lower()}" for r in section if r.rdtype != dns.rdatatype.RRSIG
            for rd in r}


def _check(step: dict, kind: str, response, servers: runner.Servers) -> None:
    expect = {**step, **step.get(kind.replace("dnssec-", ""), {})}
    where = f"{step['ask']} ({expect.get('why', '')}):\n{response}"
    assert dns.rcode.to_text(response.rcode()) == expect["rcode"], where
    if "ad" in expect:
        assert bool(response.flags & dns.flags.AD) == expect["ad"], where
    if "answer" in expect:
        assert _records(response.answer) == {_norm(a) for a in expect["answer"]}, where
    ede = ede_of(response)
    if expect["rcode"] == "SERVFAIL" and not expect.get("silent"):
        assert ede, "a SERVFAIL says why (RFC 8914)"
    if "ede" in expect and not expect.get("silent"):
        assert expect["ede"] in [code for code, _ in ede], where
    if "max_ttl" in expect:  # no record given with a TTL above the cache's cap
        ttls = [r.ttl for r in response.answer + response.authority]
        assert max(ttls, default=0) <= expect["max_ttl"], where
    for rrset in expect.get("authority_not", []):  # "owner TYPE" that must not be there
        owner, rdtype = rrset.split()
        assert not [r for r in response.authority if r.name == dns.name.from_text(owner)
                    and r.rdtype == dns.rdatatype.from_text(rdtype)], where
    for question in expect.get("not_queried", []):  # "name TYPE" no server was asked
        name, rdtype = question.split()
        assert not [q for q in servers.queries if q.qname == name.lower() and q.qtype == rdtype]
    if kind == "dnssec-sidecar":
        for text in expect.get("text", []):
            assert any(text in t for _, t in ede), (text, ede)


@pytest.mark.parametrize("scenario,kind", list(_cases()))
def test_scenario(scenario: dict, kind: str, tmp_path):
    built = runner.build(scenario, tmp_path / "zones")
    with runner.Servers(built) as servers, \
            resolvers.start(kind, ADDRESS[kind], tmp_path / kind, hints=built.hints,
                            anchors=built.anchors, now=built.now,
                            allow_sha1=scenario.get("allow_sha1", False),
                            extra=scenario.get("sidecar_config", "")) as resolver:
        for step in scenario["steps"]:
            if "servers" in step:
                servers.apply(step["servers"])
                continue
            name, rdtype = step["ask"].split()
            response = resolver.ask(name, rdtype, dnssec=step.get("dnssec", True))
            _check(step, kind, response, servers)
        assert not servers.errors, "\n".join(servers.errors)
