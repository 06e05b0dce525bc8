"""A forensic log that scales (issue #18): gzip compression (a stream flushed per batch, rotated
files whole, a crashed run's unfinished stream read and closed at the next start), checkpoints
of the chain's head and ``verify-log --head`` finding records removed from the end, and
``verify-log --collected`` on lines a log collector re-encoded."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zlib

import orjson
import pytest
import yaml

from resolver.config import ConfigError, LogConfig, parse_config
from resolver.forensic._fastlog import Digest
from resolver.forensic.checkpoint import Checkpoints
from resolver.forensic.files import Lines
from resolver.forensic.log import ForensicLog
from resolver.forensic.seal import ForensicLogError
from resolver.forensic.verify import run as verify_run
from resolver.forensic.verify import verify
from tests.test_forensic import record, write_log
from tests.test_operations import (METRICS, Sidecar, ask, base_config, scrape, tree,  # noqa: F401
                                   value, wait_for)


def gz_records(path) -> list[dict]:
    return [orjson.loads(line) for line in gzip.decompress(open(path, "rb").read()).splitlines()]


def zipped(path, **settings) -> LogConfig:
    return LogConfig(path=str(path), compress="gzip", **settings)


# --- compression --------------------------------------------------------------------------------

def test_a_compressed_log_is_whole_gzip_verifies_and_continues(tmp_path) -> None:
    path = tmp_path / "log.gz"
    log = write_log(zipped(path), 200)
    assert [r["seq"] for r in gz_records(path)] == list(range(200))
    assert log.stats["records"] == 200 and log.stats["bytes"] == path.stat().st_size
    assert log.stats["bytes"] * 4 < log.stats["record_bytes"]  # compressed, by far
    write_log(zipped(path), 50, start=200)  # a restart appends a member of its own
    assert [r["seq"] for r in gz_records(path)] == list(range(250))
    report = verify([str(path)])
    assert report.ok and report.records == 250 and not report.notes, report.text()
    if shutil.which("gzip"):  # the standard tool agrees
        assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0


def test_compressed_files_rotate_whole_and_the_chain_crosses_them(tmp_path) -> None:
    path = tmp_path / "log.gz"

    async def go() -> None:  # batches of 20: a file rotates between batches
        log = ForensicLog(zipped(path, max_bytes=4096, keep=50))
        await log.start()
        for i in range(600):
            await log.append(record(i))
            if i % 20 == 19:
                await log.flush()
        await log.close()
    asyncio.run(go())
    files = sorted((p for p in tmp_path.iterdir() if p.name.startswith("log.gz.")),
                   key=lambda p: -int(p.name.rsplit(".", 1)[1])) + [path]
    assert len(files) > 2
    seqs = [r["seq"] for f in files for r in gz_records(f)]  # each file whole on its own
    assert seqs == list(range(600))
    assert verify([str(f) for f in files]).ok


def test_busy_and_quiet_batches_share_one_stream(tmp_path) -> None:
    """A large batch is deflated at the busy level, a small one at the quiet level
    (log.GZIP_LEVELS), switching between batches of one stream."""
    path = tmp_path / "log.gz"

    async def go() -> None:
        log = ForensicLog(zipped(path))
        await log.start()
        n = 0
        for burst, flushed in ((400, False), (10, True), (400, False), (5, True)):
            for _ in range(burst):
                log.append_nowait(record(n)) or await log.append(record(n))
                n += 1
                if flushed:
                    await log.flush()
        await log.close()
        assert log.stats["batches"] >= 4
    asyncio.run(go())
    assert [r["seq"] for r in gz_records(path)] == list(range(815))
    assert verify([str(path)]).ok


def crash_copy(path, n: int, tmp_path) -> bytes:
    """The file as a writer killed after ``n`` records left it: written and flushed, never
    closed (copied before close)."""
    async def go() -> bytes:
        log = ForensicLog(zipped(path))
        await log.start()
        for i in range(n):
            await log.append(record(i))
        await log.flush()
        data = path.read_bytes()
        await log.close()
        return data
    return asyncio.run(go())


def test_a_crashed_runs_stream_is_read_to_its_last_flush_and_closed_at_start(tmp_path) -> None:
    path = tmp_path / "log.gz"
    crashed = crash_copy(path, 30, tmp_path)
    path.write_bytes(crashed)
    with pytest.raises(EOFError):  # not a whole gzip file: its member has no trailer
        gzip.decompress(crashed)
    lines = Lines(str(path))
    assert len(list(lines)) == 30 and not lines.finished
    report = verify([str(path)])
    assert report.ok and report.records == 30
    assert any("not closed" in note for note in report.notes), report.text()
    log = write_log(zipped(path), 5, start=30)  # the next run closes it, then appends
    assert any("closed it after its last batch" in note for note in log.notes)
    assert crashed == path.read_bytes()[:len(crashed)]  # nothing written changed
    assert [r["seq"] for r in gz_records(path)] == list(range(35))
    report = verify([str(path)])
    assert report.ok and not report.notes, report.text()


def test_a_torn_compressed_write_stops_the_start_and_fails_verification(tmp_path) -> None:
    path = tmp_path / "log.gz"
    path.write_bytes(crash_copy(path, 30, tmp_path)[:-9])

    async def go() -> None:
        await ForensicLog(zipped(path)).start()
    with pytest.raises(ForensicLogError, match="cannot be continued|torn"):
        asyncio.run(go())
    assert not verify([str(path)]).ok


def test_corrupt_compressed_data_is_named(tmp_path) -> None:
    path = tmp_path / "log.gz"
    write_log(zipped(path), 100)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify([str(path)])
    assert not report.ok
    assert "corrupt" in report.problem.message or "hash mismatch" in report.problem.message \
        or "parse" in report.problem.message


def test_turning_compression_on_rotates_the_plain_file(tmp_path) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 10)
    log = write_log(zipped(path), 10, start=10)
    assert any("rotated" in note for note in log.notes)
    assert [r["seq"] for r in gz_records(path)] == list(range(10, 20))
    assert verify([f"{path}.1", str(path)]).ok
    with pytest.raises(ForensicLogError, match="keep 0"):
        write_log(LogConfig(path=str(path), keep=0), 1, start=20)


def test_log_compress_and_checkpoint_keys() -> None:
    config = parse_config(yaml.safe_load("log: {path: /tmp/x.gz, compress: gzip, "
                                         "checkpoint: 5m}"))
    assert (config.log.compress, config.log.checkpoint) == ("gzip", 300)
    assert LogConfig().compress == "none" and LogConfig().checkpoint == 60
    for text, field in (("log: {compress: gzip}", "log.compress"),
                        ("log: {path: /x, compress: zip}", "log.compress"),
                        ("log: {checkpoint: 2d}", "log.checkpoint"),
                        ("log: {checkpoint: -1}", "log.checkpoint")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            parse_config(yaml.safe_load(text))


# --- checkpoints and truncation ------------------------------------------------------------------

def test_checkpoints_emit_the_written_head_when_it_moves(tmp_path) -> None:
    said = []

    async def go() -> None:
        log = ForensicLog(LogConfig(path=str(tmp_path / "log")))
        checkpoints = Checkpoints(log, 60, said.append)
        await log.start()
        await checkpoints.take()  # nothing logged yet: nothing to say
        for i in range(7):
            await log.append(record(i))
        await checkpoints.take()
        await checkpoints.take()  # unchanged: said once
        await log.close()
        head = json.loads(checkpoints.json())
        assert (head["seq"], head["mac"]) == (6, "sha256")
    asyncio.run(go())
    last = orjson.loads((tmp_path / "log").read_bytes().splitlines()[-1])
    assert said == [f"forensic log head: seq 6 hash {last['hash']} "
                    f"(verify-log --head 6:{last['hash']})"]


def test_verify_head_names_the_records_removed_from_the_end(tmp_path, capsys) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 20)
    data = path.read_bytes().splitlines(keepends=True)
    head = orjson.loads(data[-1])
    checkpoint = f"19:{head['hash']}"
    assert verify_run([str(path)], heads=[checkpoint]) == 0
    path.write_bytes(b"".join(data[:-3]))  # the last 3 records dropped: the chain still holds
    assert verify([str(path)]).ok
    assert verify_run([str(path)], heads=[checkpoint]) == 1
    out = capsys.readouterr().out
    assert "3 record(s) missing after seq 16" in out and "--head 19:" in out
    middle = orjson.loads(data[9])  # a checkpoint inside the log holds too
    assert verify([str(path)], heads=[(9, middle["hash"])]).ok
    problem = verify([str(path)], heads=[(9, "0" * 64)]).problem
    assert problem.seq == 9 and "not the record of the checkpoint" in problem.message
    assert verify_run([str(path)], heads=["19:xyz"]) == 2


def test_verify_head_on_compressed_files(tmp_path) -> None:
    path = tmp_path / "log.gz"
    write_log(zipped(path), 40)
    recs = gz_records(path)
    with gzip.open(path, "wb") as f:
        f.write(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n"
                         for r in recs[:-5]))
    report = verify([str(path)], heads=[(39, recs[-1]["hash"])])
    assert not report.ok and "5 record(s) missing after seq 34" in report.problem.message


# --- lines a collector re-encoded ---------------------------------------------------------------

def reencoded(line: bytes, how: int) -> bytes:
    """What collectors do to a line: a syslog or CRI prefix; the record wrapped, as a string
    or as an object; keys reordered, whitespace and \\u escapes; a whole number as an int."""
    rec = orjson.loads(line)
    if how == 0:
        return b"Dec  7 01:00:00 node1 sidecar: " + line
    if how == 1:
        return b"2026-12-07T01:00:00.1Z stdout F " + line
    if how == 2:
        return json.dumps({"log": line.decode(), "stream": "stdout"}).encode() + b"\n"
    if how == 3:
        return json.dumps({"kubernetes": {"pod": "p"}, "record": dict(reversed(rec.items()))},
                          indent=1).replace("\n", " ").encode() + b"\n"
    if how == 4:
        rec["duration_ms"] = int(rec["duration_ms"]) if rec["duration_ms"].is_integer() \
            else rec["duration_ms"]
        return json.dumps(rec, ensure_ascii=True, separators=(", ", ": ")).encode() + b"\n"
    return line


def test_collected_lines_verify_after_re_encoding(tmp_path, capsys) -> None:
    path = tmp_path / "log"
    write_log(LogConfig(path=str(path)), 30)
    data = path.read_bytes().splitlines(keepends=True)
    assert any(orjson.loads(line)["duration_ms"] == 1.5 for line in data)
    shipped = [reencoded(line, i % 5) for i, line in enumerate(data)]
    shipped.insert(5, b"Dec  7 01:00:00 node1 kernel: something else\n")
    shipped.insert(9, shipped[8])  # delivered twice
    out = tmp_path / "shipped"
    out.write_bytes(b"".join(shipped))
    assert verify_run([str(out)]) == 1  # not canonical: only with --collected
    assert "--collected" in capsys.readouterr().out
    report = verify([str(out)], collected=True)
    assert report.ok and report.records == 30, report.text()
    assert any("1 line(s) with no forensic record" in n for n in report.notes)
    assert any("1 record(s) delivered twice" in n for n in report.notes)
    last = orjson.loads(data[-1])
    assert verify_run([str(out)], heads=[f"29:{last['hash']}"], collected=True) == 0
    tampered = [line.replace(b"n12.example.", b"n13.example.") for line in shipped]
    out.write_bytes(b"".join(tampered))
    report = verify([str(out)], collected=True)
    assert not report.ok and report.problem.seq == 12 and "hash mismatch" in \
        report.problem.message


def test_verify_log_command_takes_the_new_options(tmp_path) -> None:
    path = tmp_path / "log.gz"
    write_log(zipped(path), 3)
    last = gz_records(path)[-1]
    done = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", str(path),
                           "--collected", "--head", f"2:{last['hash']}"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("OK: 3 records"), done
    assert zlib.crc32(b"") == 0  # zlib in use


# --- through the running resolver -----------------------------------------------------------------

def test_a_running_resolver_compresses_checkpoints_and_survives_a_kill(tree, tmp_path) -> None:
    """The server end to end: a gzip log, its head on /log/head, the metric and the process
    log; killed (SIGKILL), its unfinished stream verifies and the next start closes it and
    continues the chain; records dropped from the end fail verify-log --head."""
    log_path = tmp_path / "lookups.jsonl.gz"
    text = base_config(log_path).replace(
        "fsync_interval_ms: 0}", "fsync_interval_ms: 0, compress: gzip, checkpoint: 1}")
    (tmp_path / "run1").mkdir()
    first = Sidecar(tmp_path / "run1", text)
    try:
        for i in range(5):
            ask(f"k{i}.rsasha256.example.")

        def head() -> dict | None:
            try:
                data = urllib.request.urlopen(METRICS + "/log/head", timeout=5).read()
            except urllib.error.HTTPError:
                return None
            return json.loads(data)
        assert wait_for(lambda: (head() or {}).get("seq", -1) >= 4, 30)
        checkpoint = head()
        assert value(scrape(), "dnssec_sidecar_log_head_seq") == checkpoint["seq"]
        first.process.send_signal(signal.SIGKILL)  # a crash: the gzip member is left open
        first.process.wait(timeout=15)
    finally:
        first.stop()
    lines = Lines(str(log_path))
    assert len(list(lines)) >= 5 and not lines.finished
    report = verify([str(log_path)], heads=[(checkpoint["seq"], checkpoint["hash"])])
    assert report.ok and any("not closed" in n for n in report.notes), report.text()
    (tmp_path / "run2").mkdir()
    second = Sidecar(tmp_path / "run2", text)
    try:
        ask("after.rsasha256.example.")
    finally:
        errors = second.stop()
    assert "closed it after its last batch" in errors
    heads = re.findall(r"forensic log head: seq (\d+) hash ([0-9a-f]{64})", errors)
    assert heads, errors  # at least the one taken at stop
    seq, digest = int(heads[-1][0]), heads[-1][1]
    recs = gz_records(log_path)  # a whole gzip file again, two members
    assert [r["seq"] for r in recs] == list(range(seq + 1))
    assert recs[-1]["hash"] == digest and recs[-1]["qname"] == "after.rsasha256.example."
    assert verify_run([str(log_path)], heads=[f"{seq}:{digest}"]) == 0
    with gzip.open(log_path, "wb") as f:  # the last two records removed, the chain intact
        f.write(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n"
                         for r in recs[:-2]))
    report = verify([str(log_path)], heads=[(seq, digest)])
    assert not report.ok and f"2 record(s) missing after seq {seq - 2}" in report.problem.message


@pytest.mark.parametrize("key", [None, b"k" * 32, b"long key " * 10])
def test_the_compiled_digest_is_sha256_and_rfc2104_hmac_for_any_buffer(key) -> None:
    digest = Digest(key)
    for body in (b"", b"x", bytes(range(256)) * 9):
        want = hashlib.sha256(body).hexdigest() if key is None else \
            hmac.new(key, body, hashlib.sha256).hexdigest()
        assert digest.hex(body) == digest(bytearray(body)) == digest(memoryview(body)) == want
