"""The signed test tree served by NSD, an authoritative server we did not write
(tests/testtree/nsd.py), resolved by the real `dnssec-sidecar serve` process: every name whose
expected outcome tree.json states, on a path of zones that authoritative servers hold, gets
that outcome (rcode, answers or NODATA, AD, EDE) from NSD's replies as it does from our own test
servers' (tests/test_resolver.py). The zone files were signed by BIND and ldns; with NSD
serving them, neither the signatures nor the shape of a reply (its sections, glue, denial
records, truncation) are ours.
"""

from __future__ import annotations

import pytest

from tests.test_resolver import _start, _stop, ask, check_expected, expectations
from tests.testtree import nsd, zonedata

RESOLVER = "127.0.0.5"

pytestmark = pytest.mark.skipif(not nsd.available(), reason="needs NSD (apt-get install nsd)")


ROLES = {zone: server.get("role") for server in zonedata.manifest()["servers"].values()
         for zone in server.get("zones", [])}  # the role of the server holding each zone


def _served_by_authoritative_servers(name: str) -> bool:
    """Whether every zone a resolver meets resolving ``name`` is held by an authoritative
    server of the tree (NsdTree serves those; the hostile, lame and forwarding servers have
    behaviours of authority.py's own)."""
    return all(ROLES.get(zone) == "authoritative" for zone in nsd.zones_for([name]))


FORWARDED = "fwd.example."  # test_resolver's configuration forwards it to the tree's forwarder

CASES = [case for case in expectations() if _served_by_authoritative_servers(case.values[0])
         and not case.values[0].endswith(FORWARDED)]


@pytest.fixture(scope="module")
def resolver(tmp_path_factory):
    with nsd.NsdTree(tmp_path_factory.mktemp("nsd")):
        process = _start(RESOLVER, tmp_path_factory.mktemp("resolver"))
        yield RESOLVER
        _stop(process)


def test_most_of_the_tree_is_served():
    """The cases below are the tree's, not a handful: a filter that dropped most would leave
    this file proving little."""
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("name,rdtype,expected", CASES)
def test_every_name_served_by_nsd(resolver, name, rdtype, expected):
    check_expected(ask(name, rdtype, server=resolver), expected)
