"""A flood of unique names against a bounded cache, end to end (issue #7, Faults): the real
`dnssec-sidecar serve` with ``cache.max_entries`` small is sent a bounded stream of distinct
validated names (wildcard expansions and proven NXDOMAINs of the test tree), a popular name
among them. Both caches (the answer cache and the hit path's bytes) stay within the bound,
evictions are counted, resident memory stops growing once the caches are full, and the
popular name keeps being answered from the cache: the tree is never asked for it again."""

from __future__ import annotations

import concurrent.futures
import json
import dns.flags
import dns.rcode
import pytest

from tests.test_client_faults import Sidecar, sidecar_config, udp
from tests.testtree import authority

ADDRESS = "127.0.0.152"
MAX_ENTRIES = 100
POPULAR = "www.ed25519.example."
FIRST, SECOND = 300, 900  # unique names before and after the first RSS reading
RSS_SLACK_MIB = 4.0  # growth allowed between the readings; an unbounded cache adds ~8 MiB


def unique(i: int) -> str:
    """Distinct names, each validated afresh: a wildcard expansion or an NXDOMAIN proof."""
    zone = ("ed25519.example.", "ecdsap256.example.")[i % 2]
    return f"f{i}.wild.{zone}" if i % 4 < 2 else f"nx{i}.{zone}"


@pytest.fixture(scope="module")
def tree():
    with authority.start_tree() as running:
        yield running


def test_unique_name_flood_stays_within_the_cache_bound(tree, tmp_path):
    sidecar = Sidecar(tmp_path, sidecar_config(
        ADDRESS, tmp_path / "log.jsonl", cache={"max_entries": MAX_ENTRIES},
        timeouts={"upstream_ms": 2000, "query_ms": 6000},  # the tree shares this process
        limits={"max_misses_per_client_per_second": 0}))  # one client sends all the names

    def flood(names: range) -> None:
        def one(i: int) -> None:
            reply = udp(POPULAR if i % 25 == 0 else unique(i), ADDRESS)
            assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN), reply
            assert reply.flags & dns.flags.AD
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(one, names))  # bounded: one query per name

    try:
        flood(range(FIRST))
        first = sidecar.rss_mib()
        flood(range(FIRST, FIRST + SECOND))
        second = sidecar.rss_mib()
        m = {name: sidecar.metric(f"dnssec_sidecar_{name}") for name in (
            "cache_entries", "wire_cache_entries", "cache_evictions_total",
            "wire_cache_evictions_total")}
    finally:
        assert sidecar.stop() == 0
    print(f"RSS {first:.1f} MiB after {FIRST} names, {second:.1f} MiB after "
          f"{FIRST + SECOND}; {m}")
    assert m["cache_entries"] <= MAX_ENTRIES and m["wire_cache_entries"] <= MAX_ENTRIES
    # Every unique name made at least one entry (an answer, the delegations and keys met on
    # the way); all but MAX_ENTRIES of them were evicted.
    assert m["cache_evictions_total"] >= (FIRST + SECOND) * 0.9 - MAX_ENTRIES
    # A unique name is asked once: the hit path keeps none of them (but the few its
    # doorkeeper takes for a repeat), only the popular name.
    assert m["wire_cache_entries"] + m["wire_cache_evictions_total"] <= (FIRST + SECOND) * 0.1
    assert second - first < RSS_SLACK_MIB, (first, second)
    assert len(tree.queried(POPULAR, "A")) == 1  # resolved once, then always from the cache
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    popular = [r for r in records if r["qname"] == POPULAR]
    assert len(popular) == (FIRST + SECOND) // 25
    assert all(r["cache_hit"] for r in popular[1:])
    assert len(records) == FIRST + SECOND
    assert "Traceback" not in sidecar.stderr()
