"""The cache kept across restarts (``cache.persist``, resolver/resolve/persist.py), in process
against the signed test tree in memory: what is written (Secure and proven Insecure entries,
never Bogus), what is read back (TTLs less the wall-clock time elapsed, entries whose RRSIGs
expired meanwhile dropped, a file written under other trust anchors or policy not used), and a
truncated, corrupt or foreign file ignored with one line."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from resolver.config import parse_config
from resolver.dnssec import Verdict
from resolver.dnssec.result import Answer
from resolver.frontend.admission import Admission
from resolver.frontend.resolution import Resolver
from resolver.resolve import persist
from resolver.resolve.cache import Cache
from tests.testtree import NOW, authority, memory

AFTER_SIGNATURES = 2082844800  # 2036-01-02: every signature of the tree has expired
QUESTIONS = [("www.rsasha256.example.", "A"), ("nope.ed448.test.", "A"),
             ("www.insecure.example.", "A"), ("www.rsasha256.example.", "TXT")]
WALL = 1_800_000_000.0


def CLOCK() -> float:
    """The caches' monotonic clock, still: TTLs compare to the second."""
    return 1000.0


def _resolved() -> Resolver:
    """A resolver whose cache holds the answers to QUESTIONS, resolved from the tree."""
    resolver = Resolver(memory.settings(), Cache(clock=CLOCK), Admission(100, 100, False, 10),
                        exchange=memory.Upstream())

    async def fill() -> None:
        for name, rdtype in QUESTIONS:
            outcome = await resolver.resolve(dns.name.from_text(name),
                                             dns.rdatatype.from_text(rdtype))
            assert outcome.answer is not None, (name, outcome.failure)

    asyncio.run(fill())
    return resolver


def _cached(cache: Cache) -> dict[tuple[str, int], Answer]:
    return {(name.to_text(), rdtype): answer
            for name, rdtype, answer in cache.fresh(persist.MOST)}


FINGERPRINT = persist.fingerprint(parse_config(None))


def test_written_and_read_back_with_the_elapsed_time_taken_off(tmp_path):
    resolver = _resolved()
    before = _cached(resolver.cache)
    assert {answer.verdict for answer in before.values()} == {Verdict.SECURE, Verdict.INSECURE}
    path = str(tmp_path / "cache")
    written = persist.save(resolver.cache, path, FINGERPRINT, wall=lambda: WALL)
    assert written == len(before) >= len(QUESTIONS)
    fresh = Cache(clock=CLOCK)
    kept, dropped = persist.load(fresh, persist.read_file(path), path, FINGERPRINT, NOW,
                                 wall=lambda: WALL + 100)
    assert (kept, dropped) == (written, 0)
    after = _cached(fresh)
    assert after.keys() == before.keys()
    for key, answer in after.items():
        old = before[key]
        assert answer.ttl == old.ttl - 100  # the time since the file was written is gone
        assert (answer.rcode, answer.verdict, answer.ede, answer.reason) == (
            old.rcode, old.verdict, old.ede, old.reason)
        assert [r.to_text() for r in answer.rrsets] == [r.to_text() for r in old.rrsets]
        assert [r.to_text() for r in answer.authority] == [r.to_text() for r in old.authority]
        assert answer.proof == old.proof
    nx = fresh.get(dns.name.from_text("nope.ed448.test."), dns.rdatatype.A)
    assert nx.rcode == dns.rcode.NXDOMAIN and nx.verdict is Verdict.SECURE


def test_an_entry_past_its_ttl_or_its_signatures_is_dropped(tmp_path):
    resolver = _resolved()
    path = str(tmp_path / "cache")
    persist.save(resolver.cache, path, FINGERPRINT, wall=lambda: WALL)
    raw = persist.read_file(path)
    fresh = Cache(clock=CLOCK)
    # The validation time moved past every signature of the tree: Secure data is dropped,
    # the proven Insecure answer (no RRSIG of its own) is kept.
    kept, dropped = persist.load(fresh, raw, path, FINGERPRINT, AFTER_SIGNATURES,
                                 wall=lambda: WALL)
    left = _cached(fresh)
    assert dropped and kept == len(left)
    assert {answer.verdict for answer in left.values()} == {Verdict.INSECURE}
    assert ("www.insecure.example.", dns.rdatatype.A) in left
    assert fresh.get(dns.name.from_text("www.rsasha256.example."), dns.rdatatype.A) is None
    # A day later every TTL of the tree (an hour at most) has run out.
    assert persist.load(Cache(clock=CLOCK), raw, path, FINGERPRINT, NOW, wall=lambda: WALL + 86400) == (
        0, len(_cached(resolver.cache)))


def test_bogus_and_indeterminate_are_never_written(tmp_path):
    cache = Cache(clock=CLOCK)
    name = dns.name.from_text("x.example.")
    for verdict, rdtype in ((Verdict.INDETERMINATE, dns.rdatatype.A),
                            (Verdict.SECURE, dns.rdatatype.AAAA)):
        cache.put(name, rdtype, Answer(dns.rcode.NOERROR, verdict, ttl=300))
    cache.put(name, dns.rdatatype.TXT, Answer(dns.rcode.NOERROR, Verdict.BOGUS, ttl=300))
    path = str(tmp_path / "cache")
    assert persist.save(cache, path, FINGERPRINT) == 1
    fresh = Cache(clock=CLOCK)
    assert persist.load(fresh, persist.read_file(path), path, FINGERPRINT, NOW) == (1, 0)
    assert [(n.to_text(), t) for n, t, _ in fresh.fresh(persist.MOST)] == [
        ("x.example.", dns.rdatatype.AAAA)]


def test_another_trust_anchor_or_policy_is_another_fingerprint():
    base = parse_config(None)
    policy = parse_config(yaml.safe_load("services: [{name: web, clients: [10.0.0.0/8], "
                                         "allow: [{zone: example.}]}]"))
    anchors = parse_config({"trust_anchors": authority.trust_anchor_lines()})  # the tree's
    ntas = parse_config({"negative_trust_anchors": ["example."]})
    trusts = {persist.fingerprint(c)[0] for c in (base, anchors, ntas)}
    assert len(trusts) == 3 and persist.fingerprint(policy)[0] == FINGERPRINT[0]
    assert persist.fingerprint(policy)[1] != FINGERPRINT[1]
    assert persist.fingerprint(parse_config(None)) == FINGERPRINT  # stable across loads
    # The validation time is not in it: each signature is checked again at load instead.
    assert persist.fingerprint(parse_config(
        {"validation": {"time": "2030-01-01T00:00:00Z"}})) == FINGERPRINT


def test_a_file_of_other_trust_anchors_is_not_used(tmp_path, caplog):
    resolver = _resolved()
    path = str(tmp_path / "cache")
    persist.save(resolver.cache, path, FINGERPRINT)
    with caplog.at_level(logging.WARNING):
        assert persist.load(Cache(clock=CLOCK), persist.read_file(path), path,
                            ("0" * 64, FINGERPRINT[1]), NOW) == (0, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"cache.persist: {path}: written under other trust anchors or validator settings: "
        "not used; starting with an empty cache"]


def test_under_another_policy_entries_are_kept_but_never_served_stale(tmp_path):
    """As a reload keeps them (README): fresh answers served, nothing of them stale."""
    resolver = _resolved()
    path = str(tmp_path / "cache")
    written = persist.save(resolver.cache, path, FINGERPRINT)
    now = [1000.0]
    fresh = Cache(clock=lambda: now[0], max_stale=86400)
    assert persist.load(fresh, persist.read_file(path), path, (FINGERPRINT[0], "1" * 64),
                        NOW) == (written, 0)
    name = dns.name.from_text("www.rsasha256.example.")
    assert fresh.get(name, dns.rdatatype.A) is not None
    now[0] += 86400 / 2  # expired, within max_stale
    assert fresh.get(name, dns.rdatatype.A, stale=True) is None
    same = Cache(clock=lambda: now[0], max_stale=86400)
    persist.load(same, persist.read_file(path), path, FINGERPRINT, NOW)
    assert same.get(name, dns.rdatatype.A, stale=True) is not None  # our policy: stale ok


def _lines(path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


@pytest.mark.parametrize("damage,why", [
    (lambda data: data[:len(data) // 2], "truncated or not a cache file"),
    (lambda data: data[:-1], "truncated or not a cache file"),
    (lambda data: data.replace(b"rsasha256", b"rsasha257", 1),
     "truncated or corrupt (its digest does not match)"),
    (lambda data: b"\x00\xff garbage \n" * 4, "not a cache file"),
    (lambda data: b'{"format": "something else"}\n{}\n{}\n', "not a cache file"),
    (lambda data: data.replace(b'"version": 1', b'"version": 99', 1),
     "format version 99, not 1"),
    (lambda data: b"", "truncated or not a cache file"),
])
def test_a_damaged_or_foreign_file_is_ignored_in_one_line(tmp_path, caplog, damage, why):
    resolver = _resolved()
    path = tmp_path / "cache"
    persist.save(resolver.cache, str(path), FINGERPRINT)
    path.write_bytes(damage(path.read_bytes()))
    fresh = Cache(clock=CLOCK)
    with caplog.at_level(logging.INFO):
        assert persist.load(fresh, persist.read_file(str(path)), str(path), FINGERPRINT,
                            NOW) == (0, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"cache.persist: {path}: {why}; starting with an empty cache"]
    assert len(fresh) == 0


def test_an_entry_that_does_not_parse_is_one_line_too(tmp_path, caplog):
    """A file whose digest matches but whose entry is not one we wrote (hand-made): still one
    line, no traceback."""
    path = tmp_path / "cache"
    header = json.dumps({"format": persist.FORMAT, "version": persist.VERSION,
                         "written": WALL, "trust": FINGERPRINT[0],
                         "policy": FINGERPRINT[1]})
    entry = json.dumps({"name": "x.example.", "verdict": "bogus"})
    body = f"{header}\n{entry}\n"
    trailer = json.dumps({"end": 1, "sha256": hashlib.sha256(body.encode()).hexdigest()})
    path.write_text(body + trailer + "\n")
    with caplog.at_level(logging.WARNING):
        assert persist.load(Cache(clock=CLOCK), persist.read_file(str(path)), str(path), FINGERPRINT,
                            NOW, wall=lambda: WALL) == (0, 0)
    [record] = caplog.records
    assert record.getMessage().startswith(f"cache.persist: {path}: an entry cannot be read (")
    assert record.exc_info is None


def test_a_missing_file_is_a_first_start(tmp_path, caplog):
    path = str(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        assert persist.load(Cache(clock=CLOCK), persist.read_file(path), path, FINGERPRINT, NOW) == (0, 0)
    assert caplog.records == []


def test_only_the_entries_used_last_are_kept(tmp_path, monkeypatch):
    """At most persist.MOST entries, the most recently used (each costs half a millisecond
    to write and more to read)."""
    monkeypatch.setattr(persist, "MOST", 3)
    cache = Cache(clock=CLOCK)
    names = [dns.name.from_text(f"n{i}.example.") for i in range(5)]
    for name in names:
        cache.put(name, dns.rdatatype.A, Answer(dns.rcode.NOERROR, Verdict.INSECURE, ttl=300))
    cache.get(names[0], dns.rdatatype.A)  # used last now
    path = str(tmp_path / "cache")
    assert persist.save(cache, path, FINGERPRINT) == 3
    fresh = Cache(clock=CLOCK)
    persist.load(fresh, persist.read_file(path), path, FINGERPRINT, NOW)
    assert {n.to_text() for n, _, _ in fresh.fresh(10)} == {"n3.example.", "n4.example.",
                                                            "n0.example."}
