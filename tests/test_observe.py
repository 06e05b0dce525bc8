"""``services[].mode: observe`` (issue #17): a refusal is recorded as ``would_refuse`` and
counted, and the query answered; validation stays strict. In the policy, and end to end on both
paths: the full path's record and the compiled hit path's repeat of it, each counted in
``policy_would_refuse_total``."""

from __future__ import annotations

import contextlib
import urllib.request

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resolver.config import ConfigError, parse_service, service_data
from resolver.policycli import ApiClient
from tests.test_api import ADDRESS, Sidecar, answers, ask, generation
from tests.testtree import authority
from tests.test_policy import policy_for


def test_an_observed_refusal_is_allowed_and_says_what_enforcing_would_do():
    policy, service = policy_for("[{zone: example.com., types: [A]}]", "mode: observe")
    for decision, kind in (
            (policy.check_question(service, dns.name.from_text("www.other."),
                                   dns.rdatatype.A), "not-allowed"),
            (policy.check_question(service, dns.name.from_text("www.example.com."),
                                   dns.rdatatype.TXT), "type"),
            (policy.check_name(service, dns.name.from_text("cdn.other.")), "chain"),
            (policy.check_answer(service, service.allow[0], "insecure", ["192.0.2.1"]),
             "insecure"),
            (policy.check_answer(service, service.allow[0], "secure", ["10.0.0.1"]),
             "rebinding")):
        assert decision.allowed and decision.would_refuse and decision.kind == kind
        assert decision.rcode == dns.rcode.NOERROR and decision.ede == 0
        assert decision.reason.startswith("service svc: would refuse: ")
    allowed = policy.check_question(service, dns.name.from_text("www.example.com."),
                                    dns.rdatatype.A)
    assert allowed.allowed and not allowed.would_refuse
    enforcing, service = policy_for("[{zone: example.com.}]")
    refused = enforcing.check_question(service, dns.name.from_text("www.other."),
                                       dns.rdatatype.A)
    assert not refused.allowed and not refused.would_refuse


def test_mode_is_read_checked_and_written_back():
    service = parse_service({"clients": ["10.0.0.0/8"], "allow": [], "mode": "observe"}, "s")
    assert service.mode == "observe" and service_data(service)["mode"] == "observe"
    assert "mode" not in service_data(parse_service({"clients": ["10.0.0.0/8"]}, "s"))
    with pytest.raises(ConfigError, match="^mode: "):
        parse_service({"clients": ["10.0.0.0/8"], "mode": "log"}, "s")


@contextlib.contextmanager
def observing_sidecar(tmp_path, allow: list):
    """The test tree and the resolver with its API, its service ``agent`` put in ``mode:
    observe`` allowing ``allow`` through the API."""
    with authority.start_tree():
        sock = tmp_path / "api.sock"
        running = Sidecar(tmp_path, f'{{listen: "unix:{sock}"}}')
        api = running.api = ApiClient(f"unix:{sock}")
        try:
            running.wait(lambda: sock.exists() and answers(ADDRESS))
            api.call("PUT", "/v1/services/agent", {"listeners": [f"{ADDRESS}:53"],
                                                   "allow": allow, "mode": "observe"},
                     {"If-Match": str(generation(api, "agent"))})
            yield running
        finally:
            running.stop()


@pytest.fixture
def observing(tmp_path):
    with observing_sidecar(tmp_path, [{"zone": "rsasha256.example."}]) as running:
        yield running


def metric(name: str) -> float:
    text = urllib.request.urlopen(f"http://{ADDRESS}:9153/metrics", timeout=5).read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == f"dnssec_sidecar_{name}")


def test_observe_answers_records_and_counts_on_both_paths(observing):
    first = ask("www.ed448.test.")
    assert metric("wire_cache_entries") == 0  # the hit path keeps a name from its second asking
    second = ask("www.ed448.test.")
    assert metric("wire_cache_entries") == 1  # kept for the hit path, which answers the repeat
    repeat = ask("www.ed448.test.")
    assert first.rcode() == second.rcode() == repeat.rcode() == dns.rcode.NOERROR
    assert repeat.answer
    assert ask("www.badsig.test.").rcode() == dns.rcode.SERVFAIL  # still strict
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.NOERROR
    assert metric("policy_would_refuse_total") == 4  # two full-path, the hit path's, the bogus one
    denials = observing.api.call("GET", "/v1/denials?service=agent")["denials"]
    assert {(d["name"], d["decision"]) for d in denials} == {
        ("www.ed448.test.", "would_refuse"), ("www.badsig.test.", "would_refuse")}
    observing.stop()
    records = [r for r in observing.records() if r.get("qname") == "www.ed448.test."]
    assert [(r["cache_hit"], r["policy"]["decision"], r["rcode"]) for r in records] == [
        (False, "would_refuse", "NOERROR"), (True, "would_refuse", "NOERROR"),
        (True, "would_refuse", "NOERROR")]  # fetched; the resolver's cache; the hit path
    assert "would refuse: www.ed448.test. is not in an allowed zone" in \
        records[0]["policy"]["reason"]
    bogus, = [r for r in observing.records() if r.get("qname") == "www.badsig.test."]
    assert (bogus["rcode"], bogus["verdict"]) == ("SERVFAIL", "bogus")
