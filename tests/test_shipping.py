"""A forensic log shipped through a real collector and verified on the far side (issue #18):
Debian's rsyslog reads the log file with imfile and forwards it over TCP (RFC 6587 octet
counting) to a second rsyslog, which writes it out twice: as syslog lines (a timestamp, host and
tag before each record) and as JSON objects wrapping each record as an escaped string. Both
copies verify with ``verify-log --collected`` and reach the chain's last checkpoint; a record
changed on the far side does not verify. Loopback only (run it in a network namespace of its
own, as every test here). Needs ``apt-get install rsyslog``."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from resolver.config import LogConfig
from resolver.forensic.log import ForensicLog
from resolver.forensic.verify import verify
from tests.test_forensic import record

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
pytestmark = pytest.mark.skipif(RSYSLOGD is None, reason="needs rsyslog (apt-get install rsyslog)")

SENDER = """\
global(workDirectory="{dir}/sender" maxMessageSize="64k")
module(load="imfile")
input(type="imfile" file="{log}" tag="dnssec-sidecar" ruleset="forward")
ruleset(name="forward") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
         tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}}
"""
RECEIVER = """\
global(workDirectory="{dir}/receiver" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="store")
template(name="wrapped" type="list") {{
  constant(value="{{\\"host\\":\\"") property(name="hostname")
  constant(value="\\",\\"message\\":\\"") property(name="msg" format="json")
  constant(value="\\"}}\\n")
}}
ruleset(name="store") {{
  action(type="omfile" file="{dir}/central.log" template="RSYSLOG_FileFormat")
  action(type="omfile" file="{dir}/central.json" template="wrapped")
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rsyslogd(directory: Path, name: str, text: str) -> subprocess.Popen:
    (directory / name).mkdir()
    conf = directory / f"{name}.conf"
    conf.write_text(text)
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i", str(directory / f"{name}.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_lines(path: Path, n: int, procs: list[subprocess.Popen], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} lines after {limit} s")


def test_a_log_shipped_through_two_rsyslogs_verifies_on_the_far_side(tmp_path) -> None:
    log_path, port = tmp_path / "lookups.jsonl", free_port()
    heads = []

    async def write(start: int, n: int) -> None:
        log = ForensicLog(LogConfig(path=str(log_path)))
        await log.start()
        for i in range(start, start + n):
            rec = record(i)
            if i % 7 == 3:  # what a collector may escape differently: quotes, non-ASCII
                rec["policy"] = {"decision": "refuse", "rule": 'caf\u00e9 "x"\\y',
                                 "reason": "\u00fcber\t\u2603"}
            await log.append(rec)
        heads.append(await log.head())
        await log.close()

    asyncio.run(write(0, 40))
    receiver = rsyslogd(tmp_path, "receiver", RECEIVER.format(dir=tmp_path, port=port))
    sender = None
    try:
        for _ in range(200):  # until the receiver listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert receiver.poll() is None, receiver.stderr.read()
                time.sleep(0.05)
        sender = rsyslogd(tmp_path, "sender", SENDER.format(dir=tmp_path, log=log_path,
                                                            port=port))
        wait_lines(tmp_path / "central.log", 40, [receiver, sender])
        asyncio.run(write(40, 25))  # a restart of the resolver: the file grows, followed
        for name in ("central.log", "central.json"):
            wait_lines(tmp_path / name, 65, [receiver, sender])
    finally:
        for proc in (sender, receiver):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    seq, digest = heads[-1]
    assert seq == 64
    for name in ("central.log", "central.json"):
        shipped = tmp_path / name
        first = shipped.read_bytes().splitlines()[0]
        assert first != log_path.read_bytes().splitlines()[0]  # re-encoded on the way
        report = verify([str(shipped)], collected=True, heads=[(seq, digest)])
        assert report.ok and report.records == 65, (name, report.text())
        assert not verify([str(shipped)]).ok  # not the original bytes: only as collected
        tampered = shipped.read_bytes().replace(b"n17.example.", b"n18.example.", 1)
        shipped.write_bytes(tampered)
        problem = verify([str(shipped)], collected=True).problem
        assert problem is not None and problem.seq == 17, name
    wrapped = orjson.loads((tmp_path / "central.json").read_bytes().splitlines()[3])
    assert set(wrapped) == {"host", "message"}
