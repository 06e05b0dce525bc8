"""``dnssec-sidecar learn`` (issue #17): a service run in ``mode: observe``, then an allow list
learned from its forensic log: one rule per zone cut the proofs show (a CNAME's target zone
included), ``require: secure`` only where every answer was Secure, the types seen. The output
passes ``check-config``, and enforced it allows what the workload asked and nothing else."""

from __future__ import annotations

import dns.rcode
import pytest
import yaml

from tests.test_api import ADDRESS, ask, cli, generation
from tests.test_observe import observing_sidecar

ASKED = [("www.rsasha256.example.", "A"), ("mail.rsasha256.example.", "A"),
         ("www.rsasha256.example.", "AAAA"), ("www.insecure.example.", "A"),
         ("cname-out.ed25519.example.", "A"), ("www.badsig.test.", "A")]


@pytest.fixture
def observed(tmp_path):
    with observing_sidecar(tmp_path, []) as running:
        for name, rdtype in ASKED:
            ask(name, rdtype=rdtype)
        yield running


def test_learn_writes_one_rule_per_zone_cut_that_check_config_accepts(observed, tmp_path):
    observed.stop()  # the log complete
    done = cli("learn", str(observed.log), "--service", "agent")
    assert done.returncode == 0, done.stderr
    learned = tmp_path / "learned.yaml"
    learned.write_text(done.stdout)
    checked = cli("check-config", "--no-host", str(learned))
    assert checked.returncode == 0, checked.stderr
    service, = yaml.safe_load(done.stdout)["services"]
    rules = {rule["zone"]: rule for rule in service["allow"]}
    # cname-out.ed25519.example. is a CNAME to www.ed448.test.: its target's zone is learned
    assert list(rules) == ["ed25519.example.", "insecure.example.", "rsasha256.example.",
                           "ed448.test."]
    assert rules["rsasha256.example."] == {"zone": "rsasha256.example.", "require": "secure",
                                           "types": ["A", "AAAA"]}
    assert rules["insecure.example."]["require"] == "insecure-ok"
    assert "badsig.test." not in rules  # bogus: nothing learned
    assert "# not learned from: 1 bogus" in done.stdout
    line, = [text for text in done.stdout.splitlines() if "{zone: 'rsasha256.example.'" in text]
    assert line.endswith("# 2 name(s); A 2, AAAA 1; secure 3")
    assert service["listeners"] == [f"{ADDRESS}:53"]


def test_the_learned_list_enforced_allows_what_was_asked(observed):
    done = cli("learn", str(observed.log), "--service", "agent")
    service = yaml.safe_load(done.stdout)["services"][0]
    api = observed.api
    api.call("PUT", "/v1/services/agent", service, {"If-Match": str(generation(api, "agent"))})
    for name, rdtype in ASKED[:-1]:
        assert ask(name, rdtype=rdtype).rcode() == dns.rcode.NOERROR, name
    assert ask("www.ecdsap256.example.").rcode() == dns.rcode.REFUSED
    assert ask("www.rsasha256.example.", rdtype="TXT").rcode() == dns.rcode.REFUSED


def test_learn_says_what_is_wrong_in_one_line(tmp_path):
    bad = tmp_path / "log"
    bad.write_text("not json\n")
    done = cli("learn", str(bad), "--service", "agent")
    assert done.returncode == 3 and done.stderr.startswith(f"learn: {bad}:1: not a forensic")
    missing = cli("learn", str(tmp_path / "none"), "--service", "agent")
    assert missing.returncode == 4 and len(missing.stderr.splitlines()) == 1
