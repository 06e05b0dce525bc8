"""The forensic lookup log (issue #4): the hash chain across records, rotation and restarts;
verify-log naming the first changed, removed or reordered record; HMAC; back-pressure; write
errors; standard output."""

from __future__ import annotations

import asyncio
import collections
import datetime
import errno
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.config import LogConfig
from resolver.forensic import log as forensic
from resolver.forensic import verify as verifylog
from resolver.forensic import record as fields
from resolver.forensic._fastlog import FILL_HASH, GENESIS, Chain, Codebook, HitTemplate
from resolver.forensic._fastlog import rfc3339 as forensic_rfc3339
from resolver.forensic.log import ForensicLog
from resolver.forensic.seal import (ForensicLogError, canonical, check_line, hasher, hit_template,
                                    load_hmac_key, record_hash, seal)
from resolver.forensic.verify import run as verify_run
from resolver.forensic.verify import verify


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


def record(i: int) -> dict:
    return {"time": now_text(),
            "client": {"address": "127.0.0.1", "port": 40000 + i}, "transport": "udp",
            "listener": "127.0.0.1:53", "service": "web", "id": i, "qname": f"n{i}.example.",
            "qtype": "A", "flags": {"rd": True, "do": False, "cd": False, "ad": False},
            "policy": {"decision": "allow", "rule": "example.", "reason": None},
            "cache_hit": False, "stale": False, "upstream": ["127.0.0.10"], "rcode": "NOERROR",
            "ede": None, "answer": [{"name": f"n{i}.example.", "type": "A", "ttl": 300,
                        "rdata": ["192.0.2.1"]}],
            "verdict": "secure", "proof": {"zones": [".", "example."], "keys": [],
                                           "signatures": [], "denial": None},
            "duration_ms": 1.5}


def write_log(config: LogConfig, n: int, *, start: int = 0, clock=time.time) -> ForensicLog:
    async def go() -> ForensicLog:
        log = ForensicLog(config, clock=clock)
        await log.start()
        for i in range(start, start + n):
            await log.append(record(i))
        await log.close()
        return log
    return asyncio.run(go())


def lines(path) -> list[bytes]:
    with open(path, "rb") as f:
        return f.readlines()


def records(path) -> list[dict]:
    return [orjson.loads(line) for line in lines(path)]


# --- the format as README documents it, with nothing of ours -------------------------------------
# These read the bytes on disk with the standard library alone (json, hashlib, hmac), following
# the record format as README states it: an independent check of what the tests below also
# compare with our own seal() and verify-log.

def readme_key(key_file) -> bytes:
    """README: the key is the file's bytes less one trailing newline (LF or CR LF)."""
    data = Path(key_file).read_bytes()
    return data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data


def readme_hash(line: bytes, key: bytes | None) -> str:
    """README: hex SHA-256 (HMAC-SHA-256 under the key) of the line without its final newline
    and without its top-level ``"hash":"<hex>",`` member."""
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    member = b'"hash":"' + json.loads(line)["hash"].encode("ascii") + b'",'
    assert line.count(member) == 1, line
    body = line[:-1].replace(member, b"")
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def readme_check(data: list[bytes], key: bytes | None, seq: int = 0, prev: str = "0" * 64,
                 ) -> None:
    """Every line of a chain (oldest first, from ``seq`` after ``prev``; README: 64 zeros
    before seq 0) as README says: canonical JSON, its hash recomputed from its bytes, ``prev``
    the hash before, ``seq`` counting up."""
    for seq, line in enumerate(data, seq):
        rec = json.loads(line)
        assert json.dumps(rec, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode() + b"\n" == line  # canonical form
        assert rec["mac"] == ("sha256" if key is None else "hmac-sha256")
        assert (rec["seq"], rec["prev"]) == (seq, prev)
        assert re.fullmatch("[0-9a-f]{64}", rec["hash"]) and readme_hash(line, key) == rec["hash"]
        prev = rec["hash"]


def rewrite(path, new_lines: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(b"".join(new_lines))


def rehash(recs: list[dict], key: bytes | None, mac: str) -> list[bytes]:
    """What an attacker without the writer's key can do: rebuild a consistent chain."""
    out, prev = [], recs[0]["prev"]
    for rec in recs:
        rec = {k: v for k, v in rec.items() if k != "hash"}
        rec["prev"], rec["mac"] = prev, mac
        rec["hash"] = prev = record_hash(canonical(rec), key)
        out.append(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
    return out


# --- encoding ------------------------------------------------------------------------------------

def test_seal_is_the_canonical_encoding_and_hash() -> None:
    key = b"0123456789abcdef"
    for k in (None, key):
        line, digest = seal(record(1), 7, "ab" * 32, k)
        rec = orjson.loads(line)
        body = {x: v for x, v in rec.items() if x != "hash"}
        assert rec["seq"] == 7 and rec["prev"] == "ab" * 32
        assert rec["mac"] == ("hmac-sha256" if k else "sha256")
        expected = (hmac.new(k, canonical(body), hashlib.sha256).hexdigest() if k
                    else hashlib.sha256(canonical(body)).hexdigest())
        assert rec["hash"] == digest == expected
        assert line == canonical(rec) + b"\n"
        assert check_line(line, k) == (rec, None)


@pytest.mark.parametrize("size", [16, 64, 65, 200])
def test_hasher_is_rfc2104_hmac(size: int) -> None:
    key = bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
    key = (key + b"k" * size)[:size]
    body = b'{"a":1}' * 50
    assert hasher(key)(body) == hmac.new(key, body, hashlib.sha256).hexdigest()
    assert hasher(None)(body) == hashlib.sha256(body).hexdigest()


def test_values_json_cannot_carry_are_kept_as_text(tmp_path) -> None:
    path = tmp_path / "log"
    odd = dict(record(0), extra={1: b"\x00", "s": {3}}, big=1 << 70)
    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(path)))
        await log.start()
        await log.append(odd)
        await log.append(record(1))
        await log.close()
    asyncio.run(go())
    rec = records(path)[0]
    assert rec["encode_error"] and rec["big"] == str(1 << 70)
    assert rec["extra"]["1"] == "b'\\x00'"
    assert verify([str(path)]).ok


_text = st.text(st.characters(codec="utf-8"), max_size=12)  # '%', quotes, escapes, non-ASCII
_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | _text,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=8)
_FLAGS = ({"rd": False, "do": True, "cd": False, "ad": False},
          {"rd": True, "do": True, "cd": False, "ad": False})


def rfc3339(seconds: float) -> str:
    """The record time format, from Python's own formatting (the reference)."""
    whole = int(seconds)
    return "%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)),
                         int((seconds - whole) * 1e6))


def open_chain(seq: int = 0, prev: str = GENESIS, key: bytes | None = None,
               codebook: Codebook | None = None) -> Chain:
    chain = Chain(collections.deque(), 1000, key, codebook)
    chain.restart(seq, prev)
    chain.open = True
    return chain


def expected_hit(static: dict, line: bytes, address: str, port: int, query: bytes,
                 listener: str, started: float, tcp: bool, sealed: tuple[float, float]) -> dict:
    """The record a hit line must hold, its duration taken from the line (measured inside),
    once it is checked to lie between the clock (time.time) read just before and just after
    the seal: ``sealed``, less ``started``, to within its 3 decimals."""
    duration = orjson.loads(line)["duration_ms"]
    before, after = ((t - started) * 1000 for t in sealed)
    assert before - 0.001 <= duration <= after + 0.001, (before, duration, after)
    return {**static, "cache_hit": True, "stale": False, "upstream": [],
            "client": {"address": address, "port": port}, "duration_ms": duration,
            "flags": _FLAGS[query[2] & 1], "id": query[0] << 8 | query[1],
            "listener": listener, "time": rfc3339(started), "transport": "tcp" if tcp else "udp"}


@settings(max_examples=80, deadline=None)
@given(static=st.dictionaries(st.sampled_from(["answer", "policy", "proof", "qname", "service",
                                               "verdict", "zzz", "a%b", "rcode"]), _json),
       address=st.one_of(st.ip_addresses().map(str), _text),
       port=st.integers(0, 65535), query=st.binary(min_size=12, max_size=40),
       listener=st.sampled_from(["127.0.0.1:53", "[::1]:5353", 'od"d\\']),
       started=st.floats(0, 4e9), tcp=st.booleans(),
       seq=st.integers(0, 2**40), hmac_key=st.booleans())
def test_hit_records_seal_to_the_same_bytes_as_the_dict(static, address, port, query, listener,
                                                       started, tcp, seq, hmac_key) -> None:
    """A cache hit's record filled and sealed in C (``Chain.append_hit``) is exactly the line
    and hash the writer makes of the same record as a dict."""
    key = b"k" * 32 if hmac_key else None
    static = dict(static, flags=_FLAGS[0])  # the answer's query flags: a hit's differ in RD only
    template = hit_template(static)
    chain = open_chain(seq, "ab" * 32, key)
    before = time.time()
    assert chain.append_hit(template, (address, port), query, canonical(listener), started, tcp)
    sealed = before, time.time()
    line, = chain.lines
    rec = expected_hit(static, line, address, port, query, listener, started, tcp, sealed)
    assert (line, chain.prev) == seal(rec, seq, "ab" * 32, key, hasher(key))
    readme_check([line], key, seq, "ab" * 32)  # and as README documents the format
    assert chain.seq == seq + 1 and chain.accepted == chain.outstanding == 1
    assert check_line(line, key)[1] is None


@pytest.mark.parametrize("with_key", [False, True], ids=["sha256", "hmac-sha256"])
def test_records_on_disk_check_by_the_readme_alone(tmp_path, with_key) -> None:
    """Dict and hit records, rotated across files, with text that needs escaping: each
    record's hash recomputes from the bytes on disk with hashlib (hmac) as README says, and
    the chain links across the files; a changed byte is caught the same way."""
    path, key_file = tmp_path / "log", tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef-key\n")
    key = readme_key(key_file) if with_key else None
    template = hit_template(dict(record(0), qname="hé.example."))

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(path), max_bytes=8000, keep=20,
                                    hmac_key_file=str(key_file) if with_key else None))
        await log.start()
        for i in range(40):
            if i % 2:
                assert log.chain.append_hit(template, ("::1", 40000 + i), bytes([0, i]) + bytes(10),
                                            b'"[::1]:53"', time.time(), True)
            else:
                await log.append(dict(record(i), ede={"code": 0, "text": 'q"\\/\t\x01é '}))
        await log.close()
    asyncio.run(go())
    files = sorted(tmp_path.glob("log.*"), key=lambda f: -int(f.suffix[1:])) + [path]
    assert len(files) > 2  # rotated: the chain runs through several files
    data = [line for f in files for line in lines(f)]
    assert len(data) == 40
    readme_check(data, key)
    changed = data[7].replace(b'"port":40007', b'"port":40008')
    assert changed != data[7] and readme_hash(changed, key) != json.loads(changed)["hash"]


def test_compressed_templates_seal_the_same_bytes() -> None:
    """Templates packed by a Codebook (preset dictionary learned from the first ones, 3 kept
    unpacked) seal exactly what unpacked ones do, in and out of the hot ones; a packed one
    is a bytes object of less than half the text's size."""
    codebook = Codebook(learn=3000, hot=3)
    records = [record(i) for i in range(12)]
    packed = [hit_template(r, codebook) for r in records]
    plain = [hit_template(r) for r in records]
    assert codebook.zdict is not None
    assert all(type(t) is HitTemplate for t in packed[:2])  # while learning
    assert all(type(t) is bytes for t in packed[6:])
    assert sum(map(len, packed[6:])) < sum(sys.getsizeof(t.text) for t in plain[6:]) / 2
    one, other = open_chain(codebook=codebook), open_chain()
    query = b"\x00\x07\x01\x00" + bytes(8)
    for i in [0, 5, 6, 7, 11, 6, 8, 9, 10, 7, 6, 2]:
        for chain, templates in ((one, packed), (other, plain)):
            assert chain.append_hit(templates[i], ("192.0.2.1", 53), query, b'"x"', 1e9, True)
    assert [orjson.loads(a)["qname"] for a in one.lines] == [
        f"n{i}.example." for i in [0, 5, 6, 7, 11, 6, 8, 9, 10, 7, 6, 2]]
    varies = {"duration_ms": 0, "hash": "", "prev": ""}  # measured per hit, and chained on it
    for a, b in zip(one.lines, other.lines):
        assert check_line(a, None)[1] is None
        assert {**orjson.loads(a), **varies} == {**orjson.loads(b), **varies}


def test_hit_fields_in_the_template_are_filled_per_query() -> None:
    """Fields of the answer's record named like the per-query ones are replaced, not kept."""
    template = hit_template(record(0))
    chain = open_chain()
    query = b"\x12\x34\x01\x00" + bytes(8)
    assert chain.append_hit(template, ("192.0.2.7", 5300), query, b'"127.0.0.2:53"', 1e9, False)
    rec = orjson.loads(chain.lines[0])
    assert rec["client"] == {"address": "192.0.2.7", "port": 5300} and rec["id"] == 0x1234
    assert rec["flags"]["rd"] and rec["listener"] == "127.0.0.2:53"
    assert rec["time"] == "2001-09-09T01:46:40.000000Z" and rec["transport"] == "udp"
    assert rec["qname"] == "n0.example." and rec["cache_hit"] and rec["prev"] == GENESIS


def test_a_template_marks_its_holes_in_json_text_alone() -> None:
    """A hole is marked by one octet below 0x20 in the text, which canonical JSON never has:
    text carrying such an octet, or holes that are not FILL_* codes, are refused."""
    flags = (b"{}", b"{}")
    assert HitTemplate([b'{"a":1,"hash":"', b'"}'], [FILL_HASH], flags)
    with pytest.raises(ValueError, match="no octet below 0x20"):
        HitTemplate([b'{"a":"\x01","hash":"', b'"}'], [FILL_HASH], flags)
    with pytest.raises(ValueError, match="FILL_"):
        HitTemplate([b'{"a":', b',"hash":"', b'"}'], [99, FILL_HASH], flags)
    with pytest.raises(ValueError, match="one text more"):
        HitTemplate([b'{"a":1,"hash":"'], [FILL_HASH], flags)
    with pytest.raises(ValueError, match="string member"):
        HitTemplate([b'{"hash":', b'}'], [FILL_HASH], flags)


def test_a_full_or_closed_chain_seals_nothing() -> None:
    template = hit_template({"answer": 1, "flags": _FLAGS[0]})
    chain = Chain(collections.deque(), 1)
    args = (template, ("::1", 1), bytes(12), b'"x"', 0.0, True)
    assert not chain.append_hit(*args)  # not open
    chain.open = True
    assert chain.append_hit(*args) and not chain.append_hit(*args)  # queue_size 1
    assert chain.seq == 1 and len(chain.lines) == 1


HOLES = tuple(f.name for f in fields.FIELDS if f.source == fields.QUERY)  # a hit's per query


def test_the_table_names_each_field_once_and_a_hole_for_each_fill() -> None:
    """One row per field; every per-query and chain field a record always has is a hole of
    the hit template, each filled its own way; the hash sorts neither first (the hit template
    cuts the comma before it) nor last (seal() cuts the one after it)."""
    names = [f.name for f in fields.FIELDS]
    assert len(names) == len(set(names))
    fills = []
    for f in fields.FIELDS:
        if f.source != fields.STORED and f.always:
            fills += list(f.fill.values()) if isinstance(f.fill, dict) else [f.fill]
        else:
            assert f.fill is None, f
    assert None not in fills and len(fills) == len(set(fills))
    assert HOLES == ("time", "client", "transport", "listener", "id", "flags",
                            "duration_ms")
    assert sorted(names)[0] != "hash" != sorted(names)[-1]


def full_path_record() -> dict:
    """A record as the full path builds it, with the field table's builders."""
    rec = fields.arrival(1780272000.25, 2, ("192.0.2.1", 5353), "udp", "127.0.0.1:53")
    fields.reply(rec, service="web", id=513, qname="a.example.", qtype="A",
                 flags=fields.flags(rd=True, do=True, cd=False, ad=False),
                 policy={"decision": "allow", "rule": "example.", "reason": None},
                 cache_hit=False, stale=False, upstream=["127.0.0.10"], rcode="NOERROR",
                 ede=None, answer=[{"name": "a.example.", "type": "A", "ttl": 300,
                          "rdata": ["192.0.2.9"]}], verdict="secure", proof=None)
    fields.finish(rec, 0.0123456)
    return rec


@pytest.mark.parametrize("key", [None, b"k" * 32], ids=["sha256", "hmac-sha256"])
def test_full_path_and_hit_records_have_exactly_the_tables_fields(key) -> None:
    """The record the full path builds and seals in Python and a hit's on the same answer,
    filled and sealed in C, have the table's fields, no more, no fewer."""
    rec = full_path_record()
    assert rec["time"] == "2026-06-01T00:00:00.250000Z" and rec["duration_ms"] == 12.346
    line, digest = seal(rec, 0, GENESIS, key)
    chain = open_chain(1, digest, key)
    assert chain.append_hit(hit_template(rec), ("::1", 1), b"\x02\x01\x00" + bytes(9),
                            b'"[::1]:53"', time.time(), True)
    always = {f.name for f in fields.FIELDS if f.always}
    full, hit = orjson.loads(line), orjson.loads(chain.lines[0])
    assert set(full) == always == set(hit)
    assert hit["cache_hit"] and hit["upstream"] == [] and not hit["flags"]["rd"]
    assert {k: v for k, v in hit.items() if k not in HOLES + ("cache_hit", "upstream",
                                                                       "seq", "prev", "hash")} \
        == {k: v for k, v in full.items() if k not in HOLES + ("cache_hit", "upstream",
                                                                         "seq", "prev", "hash")}
    readme_check([line, chain.lines[0]], key)


def test_a_reply_sets_every_reply_field() -> None:
    rec = full_path_record()
    with pytest.raises(TypeError, match="missing .*'verdict'.*unknown .*'verdicts'"):
        fields.reply(rec, **dict({k: rec[k] for k in ("service", "id", "qname", "qtype",
                                                      "flags", "policy", "cache_hit", "upstream",
                                                      "rcode", "ede", "answer", "proof")},
                                 verdicts="secure"))


VECTORS = Path(__file__).parent / "vectors" / "forensic-d119c4a"


@pytest.mark.parametrize("chain", ["sha256", "hmac"])
def test_logs_written_before_the_field_table_verify_and_seal_the_same(chain) -> None:
    """Logs written by the code before the field table (commit d119c4a; README of
    tests/vectors): dict and hit records, rotated once. verify-log checks them, and each
    record sealed again from its fields is the same line, byte for byte (a hit's line is what
    seal() makes of its record: test_hit_records_seal_to_the_same_bytes_as_the_dict)."""
    key_file = VECTORS / chain / "key"
    key = load_hmac_key(str(key_file)) if key_file.exists() else None
    files = [str(VECTORS / chain / "log.1"), str(VECTORS / chain / "log")]
    report = verify(files, hmac_key=key)
    assert report.ok and report.records == 12, report.text()
    hits = 0
    for line in (line for f in files for line in lines(f)):
        rec = orjson.loads(line)
        body = {k: v for k, v in rec.items() if k not in ("seq", "prev", "mac", "hash")}
        assert seal(body, rec["seq"], rec["prev"], key) == (line, rec["hash"])
        hits += rec["cache_hit"]
    assert hits == 4


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["TXT", "SPF"]),
       st.lists(st.binary(max_size=40) | st.text("ab \"\\~", max_size=20).map(str.encode),
                min_size=1, max_size=4))
def test_answer_rdata_text_is_dnspythons(rdtype: str, strings: list[bytes]) -> None:
    """The record's fast text of TXT-like RDATA is dnspython's presentation form, escapes
    included (RFC 1035 §5.1), and any other RDATA is its own to_text()."""
    import dns.rdata
    wire = b"".join(bytes([len(s)]) + s for s in strings)
    rdata = dns.rdata.from_wire("IN", rdtype, wire, 0, len(wire))
    assert fields.rdata_text(rdata) == rdata.to_text()
    assert fields.rdata_text(dns.rdata.from_text("IN", "MX", "10 a.")) == "10 a."


def test_record_time_format() -> None:
    for t in (0.0, 1e9, 1780272000.5, 1780272000.999999, 4102444799.000001):
        assert forensic_rfc3339(t) == rfc3339(t)


def test_dicts_and_hit_records_share_one_chain(tmp_path) -> None:
    path = tmp_path / "log"
    template = hit_template(record(0))

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(path)))
        await log.start()
        for i in range(200):
            if i % 3:
                query = bytes([0, i]) + bytes(10)
                assert log.chain.append_hit(template, ("127.0.0.1", 40000 + i), query,
                                            b'"127.0.0.1:53"', time.time(), False)
            else:
                await log.append(record(i))
        await log.close()
    asyncio.run(go())
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(200))
    assert [r["id"] for r in recs] == list(range(200))
    assert verify([str(path)]).ok


# --- the chain -----------------------------------------------------------------------------------

def test_chain_over_many_records(tmp_path) -> None:
    path = tmp_path / "log"
    log = write_log(LogConfig(path=str(path), fsync_interval_ms=0), 3000)
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(3000))
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:]))
    assert [r["qname"] for r in recs] == [f"n{i}.example." for i in range(3000)]
    report = verify([str(path)])
    assert report.ok and report.records == 3000 and report.last_seq == 2999, report.text()
    stats = log.stats
    assert stats["records"] == 3000 and stats["queue_depth"] == 0
    assert stats["bytes"] == path.stat().st_size and stats["fsyncs"] >= 1


def test_size_rotation_continues_the_chain(tmp_path) -> None:
    path = tmp_path / "log"
    max_bytes = 8000
    log = write_log(LogConfig(path=str(path), max_bytes=max_bytes, keep=100), 400)
    count = log.stats["rotations"]
    assert count >= 10
    files = [f"{path}.{n}" for n in range(count, 0, -1)] + [str(path)]
    assert not os.path.exists(f"{path}.{count + 1}")
    seqs, prev = [], GENESIS
    for name in files:
        assert 0 < os.path.getsize(name) <= max_bytes
        for rec in records(name):
            assert rec["prev"] == prev
            prev = rec["hash"]
            seqs.append(rec["seq"])
    assert seqs == list(range(400))
    report = verify(files)
    assert report.ok and report.records == 400 and not report.notes, report.text()


def test_rotation_keeps_only_keep_files(tmp_path) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path), max_bytes=5000, keep=2), 300)
    assert sorted(os.listdir(tmp_path)) == ["log", "log.1", "log.2"]
    report = verify([f"{path}.2", f"{path}.1", str(path)])
    assert report.ok and report.first_seq > 0 and report.last_seq == 299
    assert "rotated away" in report.notes[0]


def test_time_rotation_with_injected_clock(tmp_path) -> None:
    path = tmp_path / "log"
    now = [1000.0]

    async def go() -> ForensicLog:
        log = ForensicLog(LogConfig(path=str(path), max_age_s=60), clock=lambda: now[0])
        await log.start()
        for i in range(5):
            await log.append(record(i))
        await log.flush()
        now[0] += 59
        await log.append(record(5))
        await log.flush()
        assert log.stats["rotations"] == 0
        now[0] += 1
        for i in range(6, 9):
            await log.append(record(i))
        await log.flush()
        assert log.stats["rotations"] == 1
        now[0] += 120
        await log.append(record(9))
        await log.close()
        return log
    log = asyncio.run(go())
    assert log.stats["rotations"] == 2
    assert [r["seq"] for r in records(f"{path}.2")] == list(range(6))
    assert [r["seq"] for r in records(f"{path}.1")] == [6, 7, 8]
    assert [r["seq"] for r in records(path)] == [9]
    assert verify([f"{path}.2", f"{path}.1", str(path)]).ok


def test_restart_continues_the_file(tmp_path) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 10)
    write_log(LogConfig(path=str(path)), 5, start=10)
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(15))
    assert recs[10]["prev"] == recs[9]["hash"]
    assert verify([str(path)]).ok


def test_restart_counts_the_file_age_from_its_first_record(tmp_path) -> None:
    path = tmp_path / "log"
    old = dict(record(0), time="2020-01-01T00:00:00.000000Z")
    asyncio.run(_append_all(LogConfig(path=str(path)), [old]))
    write_log(LogConfig(path=str(path), max_age_s=86400), 2, start=1)
    assert [r["seq"] for r in records(f"{path}.1")] == [0]
    assert [r["seq"] for r in records(path)] == [1, 2]
    assert verify([f"{path}.1", str(path)]).ok


async def _append_all(config: LogConfig, recs: list[dict]) -> None:
    log = ForensicLog(config)
    await log.start()
    for rec in recs:
        await log.append(rec)
    await log.close()


def test_restart_after_rotation_before_the_first_write(tmp_path) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 4)
    os.rename(path, f"{path}.1")
    path.write_bytes(b"")  # rotated, then stopped before the new file's first record
    write_log(LogConfig(path=str(path)), 2, start=4)
    assert [r["seq"] for r in records(path)] == [4, 5]
    assert verify([f"{path}.1", str(path)]).ok


def test_restart_refuses_a_corrupt_last_line(tmp_path) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 3)
    data = path.read_bytes()
    path.write_bytes(data[:-20])

    async def go() -> None:
        await ForensicLog(LogConfig(path=str(path))).start()
    with pytest.raises(ForensicLogError, match="last record cannot be continued.*truncated"):
        asyncio.run(go())
    path.write_bytes(data.replace(b'"n2.example."', b'"n9.example."'))
    with pytest.raises(ForensicLogError, match="hash mismatch"):
        asyncio.run(go())


def test_restart_refuses_another_mac(tmp_path) -> None:
    path, key = tmp_path / "log", tmp_path / "key"
    key.write_bytes(b"k" * 32)
    write_log(LogConfig(path=str(path), hmac_key_file=str(key)), 3)

    async def go(key_file) -> None:
        await ForensicLog(LogConfig(path=str(path), hmac_key_file=key_file)).start()
    with pytest.raises(ForensicLogError, match="HMAC key.*no log.hmac_key_file"):
        asyncio.run(go(None))
    other = tmp_path / "other"
    other.write_bytes(b"x" * 32)
    with pytest.raises(ForensicLogError, match="not the one it was written with"):
        asyncio.run(go(str(other)))


# --- verify-log ----------------------------------------------------------------------------------

@pytest.fixture
def chain(tmp_path):
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 20)
    return path


def first_problem(*paths, key=None):
    report = verify([str(p) for p in paths], hmac_key=key)
    assert not report.ok
    return report.problem


def test_verify_detects_a_changed_record(chain) -> None:
    data = lines(chain)
    data[7] = data[7].replace(b"n7.example.", b"evil.test.")
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (8, 7)
    assert "hash mismatch: record changed" in problem.message


def test_verify_detects_a_changed_and_rehashed_record(chain) -> None:
    recs = records(chain)
    recs[7]["qname"] = "evil.test."
    data = lines(chain)
    data[7] = rehash([recs[7]], None, "sha256")[0]
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (9, 8)
    assert "prev does not match" in problem.message and "seq 7" in problem.message


def test_verify_detects_a_removed_record(chain) -> None:
    data = lines(chain)
    del data[12]
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (13, 13)
    assert problem.message == "seq jumps from 11 to 13: record 12 removed"


def test_verify_detects_a_removed_and_renumbered_record(chain) -> None:
    recs = records(chain)
    del recs[12]
    for rec in recs[12:]:
        rec["seq"] -= 1
    data = lines(chain)[:12] + rehash(recs[12:], None, "sha256")
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (13, 12)
    assert "prev does not match: " not in problem.message  # names the record before it
    assert "removed or reordered" in problem.message


def test_verify_detects_a_reordered_pair(chain) -> None:
    data = lines(chain)
    data[5], data[6] = data[6], data[5]
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (6, 6)
    assert "record 5 comes later" in problem.message and "reordered" in problem.message


def test_verify_detects_a_repeated_record(chain) -> None:
    data = lines(chain)
    data.insert(4, data[3])
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.message) == (5, "seq 3 again: record repeated")


def test_verify_detects_a_truncated_last_line(chain) -> None:
    data = chain.read_bytes()
    for cut in (1, 30):
        chain.write_bytes(data[:-cut])
        problem = first_problem(chain)
        assert problem.line == 20
        assert "truncated" in problem.message


def test_verify_detects_a_garbled_line(chain) -> None:
    data = lines(chain)
    data[3] = b"not json\n"
    rewrite(chain, data)
    problem = first_problem(chain)
    assert (problem.line, problem.seq) == (4, None) and "does not parse" in problem.message


def test_verify_detects_a_non_canonical_line(chain) -> None:
    data = lines(chain)
    data[2] = data[2].replace(b'"qname":', b'"qname": ', 1)
    rewrite(chain, data)
    assert "canonical form" in first_problem(chain).message


def test_verify_detects_a_forged_start(chain) -> None:
    recs = records(chain)
    recs[0]["prev"] = "1" * 64
    rewrite(chain, rehash(recs, None, "sha256"))
    assert "genesis" in first_problem(chain).message


def test_verify_detects_a_removed_middle_file(tmp_path) -> None:
    path = tmp_path / "log"
    log = write_log(LogConfig(path=str(path), max_bytes=6000, keep=100), 100)
    count = log.stats["rotations"]
    files = [f"{path}.{n}" for n in range(count, 0, -1)] + [str(path)]
    assert verify(files).ok
    gone = files.pop(2)
    problem = first_problem(*files)
    first_gone, last_gone = records(gone)[0]["seq"], records(gone)[-1]["seq"]
    assert (problem.file, problem.line, problem.seq) == (files[2], 1, last_gone + 1)
    assert f"records {first_gone} to {last_gone} removed" in problem.message
    assert "whole file missing" in problem.message
    problem = first_problem(*reversed(files))
    assert "oldest first" in problem.message


def test_verify_log_command_line(chain, capsys) -> None:
    assert verifylog.main([str(chain)]) == 0
    with pytest.raises(SystemExit):
        verifylog.main([])
    capsys.readouterr()


def test_verify_run_exit_codes_and_output(chain, tmp_path, capsys) -> None:
    assert verify_run([str(chain)]) == 0
    assert "OK: 20 records, seq 0 to 19" in capsys.readouterr().out
    assert verify_run([]) == 2  # usage
    assert verify_run([str(tmp_path / "missing")]) == 4  # unreadable
    assert verify_run([str(chain)], str(tmp_path / "missing")) == 4
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"verify-log: --hmac-key-file: {tmp_path / 'missing'}: cannot read: "
        "No such file or directory")
    short = tmp_path / "short"
    short.write_bytes(b"short\n")
    assert verify_run([str(chain)], str(short)) == 3  # invalid content
    assert "at least 16" in capsys.readouterr().err
    data = lines(chain)
    del data[3]
    rewrite(chain, data)
    assert verify_run([str(chain)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"TAMPERED: {chain}:4 (seq 4): seq jumps from 2 to 4: record 3 removed")


# --- HMAC ----------------------------------------------------------------------------------------

@pytest.fixture
def hmac_chain(tmp_path):
    path, key_file = tmp_path / "log", tmp_path / "key"
    key_file.write_bytes(b"s3cret-key-0123456789\n")
    write_log(LogConfig(path=str(path), hmac_key_file=str(key_file)), 10)
    return path, key_file, b"s3cret-key-0123456789"


def test_hmac_key_file() -> None:
    with pytest.raises(ForensicLogError, match="cannot read"):
        load_hmac_key("/nonexistent/key")


def test_hmac_key_too_short_refuses_to_start(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcde\n")  # 15 bytes and a newline

    async def go() -> None:
        await ForensicLog(LogConfig(path=str(tmp_path / "log"), hmac_key_file=str(key_file))
                          ).start()
    with pytest.raises(ForensicLogError, match="15 bytes.*at least 16"):
        asyncio.run(go())


def test_hmac_chain_verifies_with_the_key(hmac_chain, capsys) -> None:
    path, key_file, key = hmac_chain
    assert load_hmac_key(str(key_file)) == key  # trailing newline stripped
    recs = records(path)
    assert all(r["mac"] == "hmac-sha256" for r in recs)
    body = {k: v for k, v in recs[0].items() if k != "hash"}
    assert recs[0]["hash"] == hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    report = verify([str(path)], hmac_key=key)
    assert report.ok and report.mac == "hmac-sha256"
    assert verify_run([str(path)], str(key_file)) == 0


def test_hmac_chain_fails_with_a_wrong_key(hmac_chain) -> None:
    path, _, _ = hmac_chain
    problem = first_problem(path, key=b"another-key-0123456789")
    assert problem.line == 1 and "hash mismatch" in problem.message


def test_hmac_chain_cannot_be_checked_without_the_key(hmac_chain, capsys) -> None:
    path, _, _ = hmac_chain
    report = verify([str(path)])
    assert report.needs_key and not report.ok
    assert verify_run([str(path)]) == 2
    out = capsys.readouterr().out
    assert "cannot be checked without the key" in out and "--hmac-key-file" in out


def test_attacker_without_the_key_cannot_forge(hmac_chain) -> None:
    path, _, key = hmac_chain
    recs = records(path)
    recs[4]["qname"] = "exfil.evil.test."
    # Re-hashed with plain SHA-256, the mac left as it was: the key is needed, and it finds it.
    rewrite(path, rehash(recs, None, "hmac-sha256"))
    assert verify([str(path)]).needs_key
    problem = first_problem(path, key=key)
    assert problem.line == 1 and "hash mismatch" in problem.message
    # Re-hashed and relabelled sha256: verifies without the key, but not with it.
    rewrite(path, rehash(recs, None, "sha256"))
    assert verify([str(path)]).ok
    problem = first_problem(path, key=key)
    assert problem.line == 1 and "mac is sha256 but an HMAC key was given" in problem.message


# --- back-pressure, write errors, close ----------------------------------------------------------

def test_back_pressure_waits_and_drops_nothing(tmp_path, monkeypatch) -> None:
    path = tmp_path / "log"
    release = threading.Event()
    real_write = forensic._write

    def slow_write(fd, data):
        release.wait(10)
        return real_write(fd, data)
    monkeypatch.setattr(forensic, "_write", slow_write)

    async def go() -> ForensicLog:
        log = ForensicLog(LogConfig(path=str(path), queue_size=10))
        await log.start()

        async def producer() -> None:
            for i in range(60):
                if not log.append_nowait(record(i)):
                    await log.append(record(i))
        task = asyncio.create_task(producer())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if log.stats["waiting"]:
                break
        stats = log.stats
        assert not task.done() and stats["waiting"] == 1 and stats["blocked_waits"] >= 1
        assert stats["queue_depth"] == 10 and stats["records"] == 0
        assert not log.append_nowait(record(999))  # full, and others are waiting first
        release.set()
        await asyncio.wait_for(task, 10)
        await log.close()
        return log
    log = asyncio.run(go())
    assert [r["id"] for r in records(path)] == list(range(60))
    assert log.stats["records"] == 60 and log.stats["queue_depth"] == 0
    assert verify([str(path)]).ok


def test_a_steady_stream_is_written_without_coming_back_to_python(tmp_path) -> None:
    """Under load the writer thread drains batch after batch without the GIL: it comes back to
    Python for the fsync of each interval, not for every batch (a writer preempted while it
    holds the GIL would stall the event loop's replies). Each burst is written before the next
    is offered (an event, not a pause), so there are at least 60 batches, all within one fsync
    interval (an hour: however slow the machine, no interval ends during the test)."""
    path = tmp_path / "log"

    async def go() -> dict:
        log = ForensicLog(LogConfig(path=str(path), fsync_interval_ms=3_600_000))
        await log.start()
        for i in range(60):  # 60 bursts of 50 records
            for j in range(50):
                assert log.append_nowait(record(i * 50 + j))
            for _ in range(10_000):  # bounded: until the writer has taken the burst
                if log.stats["records"] == (i + 1) * 50:
                    break
                await asyncio.sleep(0.001)
        stats = log.stats
        await log.close()
        return stats
    stats = asyncio.run(go())
    assert stats["records"] == 3000, stats
    assert stats["batches"] >= 60 and stats["writer_passes"] <= 1, stats
    assert len(records(path)) == 3000 and verify([str(path)]).ok


def test_concurrent_appends_all_logged(tmp_path) -> None:
    path = tmp_path / "log"

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(path), queue_size=5))
        await log.start()
        await asyncio.gather(*(log.append(record(i)) for i in range(500)))
        await log.close()
    asyncio.run(go())
    assert sorted(r["id"] for r in records(path)) == list(range(500))
    assert verify([str(path)]).ok


def test_disk_full_keeps_records_and_recovers(tmp_path, monkeypatch) -> None:
    path = tmp_path / "log"
    real_write = forensic._write
    allow = threading.Event()
    calls = {"n": 0, "failed": 0}

    def full_disk(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:  # a partial write first: the rest must follow, nothing twice
            return real_write(fd, bytes(data[:100]))
        if not allow.is_set() or calls["failed"] < 3:
            calls["failed"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)
    monkeypatch.setattr(forensic, "_write", full_disk)

    async def go() -> ForensicLog:
        log = ForensicLog(LogConfig(path=str(path), queue_size=50))
        await log.start()
        assert log.healthy
        for i in range(20):
            await log.append(record(i))
        for _ in range(200):
            if not log.healthy:
                break
            await asyncio.sleep(0.01)
        assert not log.healthy
        stats = log.stats
        assert stats["write_errors"] >= 1 and "ENOSPC" in stats["last_error"]
        assert stats["queue_depth"] == 20 - stats["records"] > 0
        for i in range(20, 30):
            await log.append(record(i))
        allow.set()
        await asyncio.wait_for(log.flush(), 20)
        assert log.healthy
        await log.close()
        return log
    log = asyncio.run(go())
    assert log.stats["write_errors"] >= 3
    assert [r["id"] for r in records(path)] == list(range(30))
    assert verify([str(path)]).ok


def test_fsync_errors_are_reported_and_retried(tmp_path, monkeypatch) -> None:
    path = tmp_path / "log"
    real_fsync = forensic._fsync
    failures = [2]

    def bad_fsync(fd):
        if failures[0]:
            failures[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)
    monkeypatch.setattr(forensic, "_fsync", bad_fsync)
    log = write_log(LogConfig(path=str(path), fsync_interval_ms=0), 5)
    assert log.stats["write_errors"] == 2 and log.healthy and log.stats["fsyncs"] >= 1
    assert "EIO" in log.stats["last_error"]
    assert verify([str(path)]).ok


def test_close_gives_up_loudly_when_writes_keep_failing(tmp_path, monkeypatch) -> None:
    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(forensic, "_write", no_space)

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(tmp_path / "log")))
        await log.start()
        await log.append(record(0))
        await log.append(record(1))
        await log.close(timeout=0.2)
    with pytest.raises(ForensicLogError, match="2 records not written at close: ENOSPC"):
        asyncio.run(go())


def test_stdout_mode_writes_to_fd_1(capfd, tmp_path) -> None:
    async def go() -> None:
        log = ForensicLog(LogConfig(path="-"))
        await log.start()
        for i in range(3):
            assert log.append_nowait(record(i))
        await log.flush()
        assert log.stats["fsyncs"] == 0
        await log.close()
    asyncio.run(go())
    out = capfd.readouterr().out
    copy = tmp_path / "stdout.log"
    copy.write_text(out)
    assert [r["id"] for r in records(copy)] == [0, 1, 2]
    assert verify([str(copy)]).ok
    assert not list(tmp_path.glob("-*"))


def test_disabled_log_takes_records_and_writes_nothing(capfd) -> None:
    async def go() -> None:
        log = ForensicLog(LogConfig(enabled=False))
        await log.start()
        assert log.append_nowait(record(0))
        await log.append(record(1))
        await log.flush()
        await log.close()
        assert log.healthy and log.stats["records"] == 0
    asyncio.run(go())
    assert capfd.readouterr().out == ""


def test_misuse_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError):
        LogConfig(queue_size=0)

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(tmp_path / "log")))
        with pytest.raises(RuntimeError, match="start"):
            log.append_nowait(record(0))
        await log.start()
        with pytest.raises(TypeError):
            log.append_nowait("not a record")  # type: ignore[arg-type]
        await log.close()
        with pytest.raises(RuntimeError, match="closed"):
            await log.append(record(0))
    asyncio.run(go())
    with pytest.raises(ForensicLogError, match="cannot open"):
        write_log(LogConfig(path=str(tmp_path / "no" / "such" / "log")), 1)
