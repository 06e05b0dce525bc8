"""A user's mistake is one line naming the key or file and the reason, with the exit status of
its kind, never a traceback (issue #14 §2).

Every file-valued setting is walked with a missing file and an unreadable one, through
``check-config`` and ``serve``, each in a fresh process. The tests run as root, for whom
``chmod 000`` means nothing, so "unreadable" is done twice, both of which really fail: a
directory where a file is expected, and a file of mode 000 read after the process dropped to
``nobody`` (it imports everything as root first: the interpreter may live where ``nobody``
cannot read, as under /root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from resolver import status

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "tests" / "testtree"
ZONE = TREE / "zones" / "ed25519.example"
HOST = "127.0.0.161"  # this file's own loopback address (the test tree has .10 to .103)
LISTEN, METRICS = f"{HOST}:5353", f"{HOST}:9153"
NOBODY = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None

# Runs the command line in argv[2:] as cli.main does, after importing everything as root and
# then dropping to the UID in argv[1] (0: stay).
RUN = r"""
import os, sys
import resolver.cli, resolver.configcheck, resolver.checkzone, resolver.forensic.verify
import resolver.preflight, resolver.service, uvloop
uid = int(sys.argv[1])
if uid:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
sys.exit(resolver.cli.main(sys.argv[2:]))
"""


def run(args: list[str], uid: int = 0, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONDEVMODE")}
    return subprocess.run([sys.executable, "-c", RUN, str(uid), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def one_line(done: subprocess.CompletedProcess, code: int, *named: str) -> str:
    """The process ended with ``code`` and said so in one line naming each of ``named``."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    for text in named:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture
def place():
    """A directory every user can read and enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="user-errors-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def config(place: Path, extra: str = "") -> str:
    path = place / "config.yaml"
    path.write_text(f'listen: ["{LISTEN}"]\nmetrics: {{listen: "{METRICS}"}}\n' + extra)
    path.chmod(0o644)
    return str(path)


def _secret(path: Path, data: bytes) -> None:
    """A file only root may read."""
    path.write_bytes(data)
    path.chmod(0o000)


# Each file-valued key: its YAML given the file, what a good file holds (None: the process
# writes it), and the exit status of a missing and of an unusable one.
KEY = b"0123456789abcdef0123456789abcdef\n"
ANCHOR = (ZONE / "ds").read_bytes()
CASES = {
    # key: (YAML with {path}, content of a good file or None for an output, status)
    "log.hmac_key_file": ("log: {{hmac_key_file: {path}}}\n", KEY, status.UNREADABLE),
    "trust_anchor_file": ("trust_anchor_file: {path}\n", ANCHOR, status.UNREADABLE),
    "log.path": ("log: {{path: {path}}}\n", None, status.UNWRITABLE),
    "dnstap.path": ("dnstap: {{path: 'file:{path}'}}\n", None, status.UNWRITABLE),
}


def _fault(place: Path, key: str, fault: str) -> tuple[str, int]:
    """The config for ``key`` with ``fault`` ("missing", "directory" or "permission"), and
    the UID to run as."""
    yaml, content, _ = CASES[key]
    target = place / "file"
    uid = 0
    if fault == "missing":
        target = place / "no-such-dir" / "file" if content is None else place / "missing"
    elif fault == "directory":
        target.mkdir()
    else:  # permission, as nobody
        uid = NOBODY
        if content is None:
            target = place / "locked" / "file"  # a directory nobody may not write in
            target.parent.mkdir()
        else:
            _secret(target, content)
    return config(place, yaml.format(path=target)), uid


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("fault", ["missing", "directory", "permission"])
@pytest.mark.parametrize("key", sorted(CASES))
def test_every_file_valued_key_missing_or_unreadable(place, key, fault, command):
    if fault == "permission" and NOBODY is None:
        pytest.skip("needs root to drop to nobody")
    path, uid = _fault(place, key, fault)
    argv = ["check-config", path] if command == "check-config" else ["serve", "--config", path]
    done = run(argv, uid)
    line = one_line(done, CASES[key][2], key, str(place))
    assert ("cannot read" if CASES[key][1] is not None else "") in line
    assert line.startswith(f"{command if command == 'check-config' else 'dnssec-sidecar'}: "
                           f"{path}: {key}: ")
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("fault", ["missing", "directory", "permission"])
def test_the_config_file_itself_missing_or_unreadable(place, fault, command):
    if fault == "permission" and NOBODY is None:
        pytest.skip("needs root to drop to nobody")
    path = place / "config.yaml"
    if fault == "directory":
        path.mkdir()
    elif fault == "permission":
        _secret(path, b"listen: ['127.0.0.1:5353']\n")
    argv = ["check-config", str(path)] if command == "check-config" else [
        "serve", "--config", str(path)]
    done = run(argv, NOBODY if fault == "permission" else 0)
    one_line(done, status.UNREADABLE, str(path), "cannot read")


def test_the_services_own_files_work_for_the_setup_above(place):
    """The control: the same keys with good files pass check-config (so each fault above is
    the one named, not something else of the setup)."""
    key, anchors = place / "key", place / "anchors"
    key.write_bytes(KEY)
    anchors.write_bytes(ANCHOR)
    path = config(place, f"trust_anchor_file: {anchors}\nlog: {{hmac_key_file: {key}, path: "
                         f"{place / 'log'}}}\ndnstap: {{path: 'file:{place / 'tap'}'}}\n")
    done = run(["check-config", path])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"{path}: OK")


def test_an_hmac_key_too_short_is_invalid(place):
    key = place / "key"
    key.write_bytes(b"short\n")
    done = run(["check-config", config(place, f"log: {{hmac_key_file: {key}}}\n")])
    one_line(done, status.INVALID, "log.hmac_key_file", "at least 16")


def test_a_log_whose_last_record_does_not_verify_stops_check_and_serve(place):
    log = place / "log"
    log.write_text('{"seq": 0, "not": "a record"}\n')
    path = config(place, f"log: {{path: {log}}}\n")
    for argv in (["check-config", path], ["serve", "--config", path]):
        one_line(run(argv), status.LOG_CHAIN, "log.path", "cannot be continued")


def test_a_dnstap_socket_not_there_yet_is_a_note_not_a_fault(place):
    """The collector may come up after the resolver: serve connects when it listens."""
    done = run(["check-config", config(place, f"dnstap: {{path: 'unix:{place / 'sock'}'}}\n")])
    assert done.returncode == 0, done.stderr
    assert f"  note: dnstap.path: no socket at {place / 'sock'} yet" in done.stdout
    (place / "sock").mkdir()
    done = run(["check-config", config(place, f"dnstap: {{path: 'unix:{place / 'sock'}'}}\n")])
    one_line(done, status.UNWRITABLE, "dnstap.path", "is a directory")


@pytest.mark.parametrize("key", ["listen[0]", "metrics.listen"])
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_an_address_in_use_names_its_key(place, key, command):
    """A second instance on the same listener or metrics address (127.0.0.1:9153 by default)
    is told which key to change."""
    endpoint = LISTEN if key == "listen[0]" else METRICS
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind((HOST, int(endpoint.rsplit(":", 1)[1])))
        holder.listen()
        path = config(place)
        argv = ["check-config", path] if command == "check-config" else [
            "serve", "--config", path]
        line = one_line(run(argv), status.ADDRESS, f"{key}: {endpoint}: address already in use")
        assert line.endswith(f"needs its own {key.split('[')[0]})")
        if command == "check-config":  # the file of a running resolver, checked for a reload
            done = run(["check-config", "--no-host", path])
            assert done.returncode == 0 and done.stderr == "", done.stderr
            assert "note: this host's files, directories and addresses not checked" in done.stdout
    finally:
        holder.close()


def test_serve_listen_option_in_use_names_the_option(place):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        holder.bind((HOST, 5354))
        done = run(["serve", "--config", config(place), "--listen", f"{HOST}:5354"])
        one_line(done, status.ADDRESS, f"--listen: {HOST}:5354: address already in use")
    finally:
        holder.close()


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


@pytest.mark.skipif(NOBODY is None, reason="needs root to drop to nobody")
@pytest.mark.skipif(_unprivileged_port_start() <= 53,
                    reason="net.ipv4.ip_unprivileged_port_start lets anyone bind port 53 here")
def test_a_privileged_port_is_a_note_for_check_config_and_a_fault_for_serve(place):
    path = place / "config.yaml"
    path.write_text(f'listen: ["{HOST}:53"]\nmetrics: {{listen: "{METRICS}"}}\n')
    path.chmod(0o644)
    done = run(["check-config", str(path)], NOBODY)
    assert done.returncode == 0, done.stderr
    assert (f"note: listen[0]: {HOST}:53: cannot tell whether it is free: port 53 needs root "
            "or CAP_NET_BIND_SERVICE") in done.stdout
    one_line(run(["serve", "--config", str(path)], NOBODY), status.ADDRESS,
             f"listen[0]: {HOST}:53: permission denied")


@pytest.mark.parametrize("fault", ["missing", "directory"])
def test_check_zone_trust_and_zone_files(place, fault):
    bad = place / "bad"
    if fault == "directory":
        bad.mkdir()
    zone = ["check-zone", str(ZONE / "signed.zone"), "--origin", "ed25519.example.",
            "--time", "2026-06-01T00:00:00Z"]
    one_line(run(zone + ["--trust", str(bad)]), status.UNREADABLE, str(bad), "cannot read")
    zone[1] = str(bad)
    one_line(run(zone), status.UNREADABLE, str(bad), "cannot read")


def test_check_zone_trust_file_without_the_zones_keys_is_invalid(place):
    other = place / "ds"
    other.write_bytes((TREE / "zones" / "rsasha256.example" / "ds").read_bytes())
    done = run(["check-zone", str(ZONE / "signed.zone"), "--origin", "ed25519.example.",
                "--trust", str(other)])
    one_line(done, status.INVALID, str(other), "no DS or DNSKEY record for ed25519.example.")


def test_verify_log_missing_file_and_key(place):
    one_line(run(["verify-log", str(place / "nope")]), status.UNREADABLE, str(place / "nope"))
    log = place / "log"
    log.write_text("")
    one_line(run(["verify-log", str(log), "--hmac-key-file", str(place / "nokey")]),
             status.UNREADABLE, "--hmac-key-file", str(place / "nokey"))


@pytest.mark.parametrize("args", [
    ["check-config", str(TREE / "resolver.yaml")],
    ["check-zone", str(ZONE / "signed.zone"), "--origin", "ed25519.example.", "-v",
     "--trust", str(ZONE / "ds"), "--time", "2026-06-01T00:00:00Z"],
], ids=["check-config", "check-zone"])
def test_a_closed_standard_output_is_quiet(args):
    """``... | head -1`` once the reader has gone: no BrokenPipeError, the status a shell
    gives a command ended by SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "resolver.cli", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == status.CLOSED_OUTPUT


def test_help_lists_the_exit_statuses():
    done = subprocess.run([sys.executable, "-m", "resolver.cli", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0
    for code, text in status.TABLE:
        assert f"{code:3d}  {text}" in done.stdout


def test_preflight_checks_every_workers_files_and_metrics_port(place):
    """Worker N logs to <log.path>.wN, taps to <dnstap file>.wN and serves metrics on
    port + N: each is checked, and named, before any worker starts."""
    from resolver import preflight
    from resolver.config import for_worker, load_config
    log = place / "log"
    text = (f"workers: 2\nlog: {{path: {log}}}\ndnstap: {{path: 'file:{place / 'tap'}'}}\n")
    loaded = load_config(config(place, text))
    assert for_worker(loaded, 1).dnstap.path == f"{place / 'tap'}.w1"
    assert for_worker(loaded, 1).log.path == f"{log}.w1"
    assert preflight.check(loaded, serving=True) == []
    (place / "log.w1").mkdir()
    with pytest.raises(status.Failure) as fault:
        preflight.check(loaded, serving=True)
    assert (fault.value.where, fault.value.status) == ("log.path", status.UNWRITABLE)
    assert fault.value.reason == f"{log}.w1: is a directory"
    (place / "log.w1").rmdir()
    port = int(METRICS.rsplit(":", 1)[1]) + 1
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind((HOST, port))
        with pytest.raises(status.Failure) as fault:
            preflight.check(loaded, serving=True)
        assert (fault.value.where, fault.value.status) == ("metrics.listen", status.ADDRESS)
        assert fault.value.reason.startswith(f"{HOST}:{port}: address already in use")
    finally:
        holder.close()
