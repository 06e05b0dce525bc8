"""dnstap output (issue #4): what we write is read back by independent decoders: Google's
protobuf runtime through the ``dnstap-pb`` classes, a Frame Streams reader written here from the
protocol, and, where Debian's packages are installed (``.ci/run`` installs them), ``dnstap-ldns``
(libfstrm and protobuf-c) for files and golang-dnstap's ``dnstap`` as the collector on a unix
socket.

Covered: the encoding field by field; a file (START, data, STOP; an old file moved aside); a
unix socket (READY/ACCEPT/START ... STOP/FINISH) against a test collector; a collector that
does not accept the content type; drops counted when the collector is too slow; a collector
that is not up yet, goes away and comes back; the config key; and the real resolver (on
127.0.0.13, which no other test uses) writing CLIENT_QUERY/CLIENT_RESPONSE pairs for its
clients and RESOLVER_* (FORWARDER_* for a forwarded zone) for its upstream queries.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from resolver.config import ConfigError, DnstapConfig, parse_config
from resolver.ops.dnstap import Dnstap, DnstapCollector
from resolver.ops.dnstap.message import (CLIENT_QUERY, CLIENT_RESPONSE, CONTENT_TYPE,
                                         FORWARDER_QUERY, FORWARDER_RESPONSE, RESOLVER_QUERY,
                                         RESOLVER_RESPONSE, encode_dnstap, encode_message)
from tests.testtree import authority, zonedata

ROOT_DIR = Path(__file__).resolve().parent.parent
RESOLVER = "127.0.0.13"
FAST = (0.02, 0.2)  # reconnect backoff for tests

# Frame Streams, from the protocol description (not from resolver.ops.dnstap).
ACCEPT, START, STOP, READY, FINISH = 1, 2, 3, 4, 5
NAMES = {ACCEPT: "ACCEPT", START: "START", STOP: "STOP", READY: "READY", FINISH: "FINISH"}


@pytest.fixture(scope="module")
def pb():
    """The dnstap protobuf classes (the ``dnstap-pb`` package, a test dependency)."""
    return pytest.importorskip("dnstap_pb", reason="dnstap-pb (pip install -e '.[test]')")


def control(kind: int, types: tuple[bytes, ...] = ()) -> bytes:
    body = struct.pack(">I", kind) + b"".join(struct.pack(">II", 1, len(t)) + t for t in types)
    return struct.pack(">II", 0, len(body)) + body


def parse_stream(data: bytes) -> list[tuple[str, object]]:
    """Frames of a byte stream: ("START", [content types]) ... ("DATA", payload)."""
    frames, at = [], 0
    while at < len(data):
        length, = struct.unpack_from(">I", data, at)
        at += 4
        if length:
            frames.append(("DATA", data[at:at + length]))
            at += length
            continue
        clen, kind = struct.unpack_from(">II", data, at)
        body, at = data[at + 8:at + 4 + clen], at + 4 + clen
        types, i = [], 0
        while i < len(body):
            ftype, flen = struct.unpack_from(">II", body, i)
            assert ftype == 1
            types.append(body[i + 8:i + 8 + flen])
            i += 8 + flen
        frames.append((NAMES[kind], types))
    assert at == len(data), "trailing bytes"
    return frames


def decode(pb, payload: bytes):
    tap = pb.Dnstap()
    tap.ParseFromString(payload)
    return tap


def wire(i: int, size: int = 0) -> bytes:
    """A query with id ``i``, padded with zeros to ``size`` bytes (to fill buffers)."""
    query = dns.message.make_query(f"n{i}.example.", "A")
    query.id = i % 65536
    data = query.to_wire()
    return data + b"\0" * (size - len(data)) if size > len(data) else data


# --- the encoding ----------------------------------------------------------------------------

def test_field_numbers_match_dnstap_proto(pb):
    """Every field we write, by name, has the number dnstap.proto gives it."""
    numbers = {f.name: f.number for f in pb.Message.DESCRIPTOR.fields}
    expected = {"type": 1, "socket_family": 2, "socket_protocol": 3, "query_address": 4,
                "response_address": 5, "query_port": 6, "response_port": 7,
                "query_time_sec": 8, "query_time_nsec": 9, "query_message": 10,
                "query_zone": 11, "response_time_sec": 12, "response_time_nsec": 13,
                "response_message": 14}
    assert {name: numbers[name] for name in expected} == expected
    top = {f.name: f.number for f in pb.Dnstap.DESCRIPTOR.fields}
    assert (top["identity"], top["version"], top["message"], top["type"]) == (1, 2, 14, 15)


def test_every_field_round_trips_through_protobuf(pb):
    t_query = 1780272000 * 10**9 + 123_456_789
    message = encode_message(
        RESOLVER_RESPONSE, 2, responder=("2001:db8::53", 5353), query_time=t_query,
        query_message=b"\x12\x34query", query_zone=dns.name.from_text("Example.").to_wire(),
        response_time=t_query + 999_999_999, response_message=b"r" * 300)
    tap = decode(pb, encode_dnstap(message, b"pod-7", b"0.1.0"))
    assert tap.type == pb.Dnstap.MESSAGE
    assert (tap.identity, tap.version) == (b"pod-7", b"0.1.0")
    m = tap.message
    assert m.type == pb.Message.RESOLVER_RESPONSE
    assert m.socket_family == pb.INET6 and m.socket_protocol == pb.TCP
    assert not m.HasField("query_address") and not m.HasField("query_port")
    assert socket.inet_ntop(socket.AF_INET6, m.response_address) == "2001:db8::53"
    assert m.response_port == 5353
    assert (m.query_time_sec, m.query_time_nsec) == (1780272000, 123_456_789)
    assert (m.response_time_sec, m.response_time_nsec) == (1780272001, 123_456_788)
    assert m.query_message == b"\x12\x34query"
    assert dns.name.from_wire(m.query_zone, 0)[0] == dns.name.from_text("example.")
    assert m.response_message == b"r" * 300  # a length over 127: a two-byte varint

    client = decode(pb, encode_dnstap(encode_message(
        CLIENT_QUERY, 1, initiator=("192.0.2.1", 65535), responder=("127.0.0.1", 53),
        query_time=5, query_message=b"q")))
    m = client.message
    assert not client.HasField("identity") and not client.HasField("version")
    assert m.type == pb.Message.CLIENT_QUERY and m.socket_family == pb.INET
    assert m.socket_protocol == pb.UDP
    assert (socket.inet_ntoa(m.query_address), m.query_port) == ("192.0.2.1", 65535)
    assert (socket.inet_ntoa(m.response_address), m.response_port) == ("127.0.0.1", 53)
    assert (m.query_time_sec, m.query_time_nsec) == (0, 5)
    assert not m.HasField("response_message") and not m.HasField("response_time_sec")


# --- a file ----------------------------------------------------------------------------------

def feed(tap: Dnstap, first: int, count: int, size: int = 0) -> None:
    for i in range(first, first + count):
        tap.client_query(wire(i, size), ("127.0.0.1", 40000 + i % 1000), ("127.0.0.13", 53),
                         "udp", time.time_ns())


def test_file_is_a_unidirectional_stream(pb, tmp_path):
    path = tmp_path / "dns.tap"
    path.write_bytes(b"an earlier capture")
    tap = Dnstap(DnstapConfig(str(path), "file", identity="id-1", version="v-1"))
    tap.start()
    feed(tap, 0, 3)
    q = dns.message.from_wire(wire(3))
    reply = dns.message.make_response(q).to_wire()
    tap.client_response(wire(3), reply, ("::1", 4000), ("::1", 53), "tcp", 10**9, 2 * 10**9)
    tap.resolver_query(wire(4), ("127.0.0.10", 53), dns.name.from_text("example."), 3 * 10**9)
    tap.resolver_response(wire(4), reply, ("127.0.0.10", 53), dns.name.root, "tcp", 3, 4,
                          forwarder=True)
    tap.stop()
    assert (tmp_path / "dns.tap.1").read_bytes() == b"an earlier capture"
    frames = parse_stream(path.read_bytes())
    assert frames[0] == ("START", [CONTENT_TYPE])
    assert frames[-1] == ("STOP", [])
    assert [kind for kind, _ in frames[1:-1]] == ["DATA"] * 6
    taps = [decode(pb, payload) for _, payload in frames[1:-1]]
    assert {(t.identity, t.version) for t in taps} == {(b"id-1", b"v-1")}
    assert [t.message.type for t in taps] == [CLIENT_QUERY] * 3 + [
        CLIENT_RESPONSE, RESOLVER_QUERY, FORWARDER_RESPONSE]
    assert [dns.message.from_wire(t.message.query_message).id for t in taps[:3]] == [0, 1, 2]
    cr = taps[3].message
    assert cr.response_message == reply and cr.socket_protocol == pb.TCP
    assert cr.socket_family == pb.INET6 and cr.query_port == 4000 and cr.response_port == 53
    assert (cr.query_time_sec, cr.response_time_sec) == (1, 2)
    assert taps[4].message.query_zone == b"\x07example\x00"
    assert taps[5].message.query_zone == b"\x00"
    assert tap.stats["messages"] == 6 and tap.stats["dropped"] == 0


@pytest.mark.skipif(shutil.which("dnstap-ldns") is None, reason="dnstap-ldns not installed")
def test_dnstap_ldns_reads_our_file(tmp_path):
    path = tmp_path / "dns.tap"
    tap = Dnstap(DnstapConfig(str(path), "file"))
    tap.start()
    query = dns.message.make_query("www.rsasha256.example.", "AAAA")
    reply = dns.message.make_response(query)
    now = time.time_ns()
    tap.client_query(query.to_wire(), ("127.0.0.1", 5353), ("127.0.0.13", 53), "udp", now)
    tap.resolver_query(query.to_wire(), ("127.0.0.10", 53), dns.name.root, now)
    tap.resolver_response(query.to_wire(), reply.to_wire(), ("127.0.0.10", 53), dns.name.root,
                          "udp", now, now + 1)
    tap.client_response(query.to_wire(), reply.to_wire(), ("127.0.0.1", 5353),
                        ("127.0.0.13", 53), "udp", now, now + 2)
    tap.stop()
    quiet = subprocess.run(["dnstap-ldns", "-q", "-r", str(path)], capture_output=True,
                           text=True, timeout=10, check=True).stdout.splitlines()
    assert [line.split()[2:5] for line in quiet] == [
        ["CQ", "127.0.0.1", "UDP"], ["RQ", "127.0.0.10", "UDP"], ["RR", "127.0.0.10", "UDP"],
        ["CR", "127.0.0.1", "UDP"]]
    assert all('"www.rsasha256.example." IN AAAA' in line for line in quiet)
    yaml = subprocess.run(["dnstap-ldns", "-y", "-r", str(path)], capture_output=True,
                          text=True, timeout=10, check=True).stdout
    assert yaml.count('identity: "dnssec-sidecar"') == 4
    assert "response_address: \"127.0.0.13\"" in yaml and "response_port: 53" in yaml
    assert 'query_zone: "."' in yaml


def test_a_fifo_without_reader_is_retried(tmp_path):
    fifo = tmp_path / "tap.fifo"
    os.mkfifo(fifo)
    tap = Dnstap(DnstapConfig(str(fifo), "file"), backoff=FAST)
    tap.start()
    deadline = time.monotonic() + 5
    while tap.stats["connect_errors"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tap.stats["connect_errors"] >= 2 and not tap.connected  # ENXIO: nobody reads
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    feed(tap, 0, 2)
    assert tap.drain()
    tap.stop()
    reader.join(5)
    frames = parse_stream(received[0])
    assert [k for k, _ in frames] == ["START", "DATA", "DATA", "STOP"]


def test_stop_gives_up_on_a_stalled_reader(tmp_path):
    fifo = tmp_path / "tap.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        tap = Dnstap(DnstapConfig(str(fifo), "file", queue_size=100), backoff=FAST)
        tap.start()
        assert wait_for(lambda: tap.connected)
        feed(tap, 0, 500, size=1000)       # more than the pipe holds
        # The reader never reads: a stop that waited for it would never return. It gives up
        # (timeout 0.3 s, abandoned after a long wait here, not timed) and ends the writer.
        stopper = threading.Thread(target=tap.stop, kwargs={"timeout": 0.3})
        stopper.start()
        stopper.join(60)
        assert not stopper.is_alive(), "stop() waits for a reader that never reads"
        tap._thread.join(60)  # the writer, which stop() may leave finishing its abandon
        assert not tap._thread.is_alive()
        stats = tap.stats
        assert not tap.connected and stats["dropped"] > 0
        assert stats["messages"] + stats["dropped"] == 500
    finally:
        os.close(reader)


# --- a unix socket ---------------------------------------------------------------------------

class Collector:
    """A bidirectional Frame Streams reader on a unix socket, as a dnstap collector runs one.
    ``frames`` records what each connection sent, in order; with ``reading`` cleared it stops
    reading data (a slow collector); ``accept`` is the content types its ACCEPT offers."""

    def __init__(self, path: Path, *, accept: tuple[bytes, ...] = (CONTENT_TYPE,),
                 reading: bool = True) -> None:
        self.path, self.accept = str(path), accept
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self.frames: list[tuple[str, object]] = []
        self.connections = 0
        self.finished = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _control(self) -> tuple[str, list[bytes]]:
        length, = struct.unpack(">I", self._exact(4))
        return parse_stream(b"\0\0\0\0" + struct.pack(">I", length) + self._exact(length))[0]

    def _serve(self) -> None:
        while True:
            try:
                self.conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                self._session()
            except (EOFError, OSError):
                self.frames.append(("EOF", None))
            finally:
                self.conn.close()

    def _session(self) -> None:
        escape, = struct.unpack(">I", self._exact(4))
        assert escape == 0
        self.frames.append(self._control())            # READY
        self.conn.sendall(control(ACCEPT, self.accept))
        while True:
            escape, = struct.unpack(">I", self._exact(4))
            if escape:
                self.reading.wait()
                self.frames.append(("DATA", self._exact(escape)))
                continue
            kind, types = self._control()
            self.frames.append((kind, types))
            if kind == "STOP":
                self.conn.sendall(control(FINISH))
                self.finished.set()
                return

    def data(self) -> list[bytes]:
        return [payload for kind, payload in self.frames if kind == "DATA"]

    def close(self) -> None:
        """Go away abruptly, as a crashed collector does."""
        self.reading.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        os.unlink(self.path)


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def ids(pb, payloads: list[bytes]) -> list[int]:
    """The DNS message ids of the queries carried (the first two bytes)."""
    return [struct.unpack_from(">H", decode(pb, p).message.query_message)[0]
            for p in payloads]


def test_unix_socket_handshake(pb, tmp_path):
    collector = Collector(tmp_path / "tap.sock")
    tap = Dnstap(DnstapConfig(str(tmp_path / "tap.sock"), identity="sidecar-a"))
    tap.start()
    feed(tap, 0, 5)
    assert tap.drain()
    tap.stop()
    assert collector.finished.wait(5), collector.frames  # our STOP answered with FINISH
    frames = collector.frames
    assert frames[0] == ("READY", [CONTENT_TYPE])
    assert frames[1] == ("START", [CONTENT_TYPE])
    assert frames[-1] == ("STOP", [])
    assert ids(pb, collector.data()) == [0, 1, 2, 3, 4]
    assert {decode(pb, p).identity for p in collector.data()} == {b"sidecar-a"}
    assert tap.stats["messages"] == 5 and tap.stats["connects"] == 1
    collector.close()


def test_collector_offering_another_content_type_is_refused(tmp_path):
    collector = Collector(tmp_path / "tap.sock", accept=(b"protobuf:other.Thing",))
    tap = Dnstap(DnstapConfig(str(tmp_path / "tap.sock")), backoff=FAST)
    tap.start()
    assert wait_for(lambda: tap.stats["connect_errors"] >= 2)
    feed(tap, 0, 3)
    tap.stop()
    assert "does not accept protobuf:dnstap.Dnstap" in tap.stats["last_error"]
    assert not collector.data() and ("START", [CONTENT_TYPE]) not in collector.frames
    assert tap.stats["messages"] == 0 and tap.stats["dropped"] == 3
    collector.close()


def test_slow_collector_makes_drops_that_are_counted(pb, tmp_path):
    """The writer blocks on a collector that stops reading; the queue fills and further
    messages are dropped and counted, never waited for; what was not dropped arrives."""
    collector = Collector(tmp_path / "tap.sock", reading=False)
    tap = Dnstap(DnstapConfig(str(tmp_path / "tap.sock"), queue_size=64))
    tap.start()
    assert wait_for(lambda: tap.connected)
    total = 3000
    # 3.6 MB: far more than the socket buffers hold. The callers never wait for the
    # collector: feeding ends while the collector still reads nothing (a caller that waited
    # would wait until ``reading`` is set below, which only happens after this join).
    feeder = threading.Thread(target=feed, args=(tap, 0, total, 1200))
    feeder.start()
    feeder.join(60)
    assert not feeder.is_alive(), "the callers wait for the collector"
    stats = tap.stats
    assert stats["dropped"] > 0 and stats["dropped_queue_full"] == stats["dropped"]
    assert stats["queue_depth"] <= 64
    collector.reading.set()
    assert tap.drain(10)
    tap.stop()
    assert collector.finished.wait(5)
    stats = tap.stats
    assert len(collector.data()) == stats["messages"]
    assert stats["messages"] + stats["dropped"] == total
    got = ids(pb, collector.data())
    assert got == sorted(got)  # in order, no duplicates
    collector.close()


def test_collector_late_gone_and_back(pb, tmp_path):
    """Not up at start: retried. Gone: noticed, reconnected with backoff once it is back,
    with a fresh handshake. Every message is delivered or counted as dropped."""
    path = tmp_path / "tap.sock"
    tap = Dnstap(DnstapConfig(str(path)), backoff=FAST)
    tap.start()
    assert wait_for(lambda: tap.stats["connect_errors"] >= 2)
    feed(tap, 0, 5)                      # queued while no collector is there
    first = Collector(path)
    assert wait_for(lambda: len(first.data()) == 5)
    assert ids(pb, first.data()) == [0, 1, 2, 3, 4]
    first.close()
    assert wait_for(lambda: not tap.connected, 3)  # noticed while idle
    feed(tap, 5, 5)                      # while nobody listens
    second = Collector(path)
    assert wait_for(lambda: tap.connected and tap.stats["connects"] == 2)
    feed(tap, 10, 5)
    assert tap.drain()
    tap.stop()
    assert second.finished.wait(5)
    assert second.frames[:2] == [("READY", [CONTENT_TYPE]), ("START", [CONTENT_TYPE])]
    got = ids(pb, second.data())
    assert got[-5:] == [10, 11, 12, 13, 14] and got == sorted(got)
    stats = tap.stats
    assert len(first.data()) + len(second.data()) + stats["dropped"] == 15
    assert stats["messages"] == len(first.data()) + len(second.data())
    second.close()


def test_collector_gone_mid_stream_loses_only_what_is_counted(pb, tmp_path):
    path = tmp_path / "tap.sock"
    first = Collector(path)
    tap = Dnstap(DnstapConfig(str(path)), backoff=FAST)
    tap.start()
    feed(tap, 0, 3)
    assert wait_for(lambda: len(first.data()) == 3)
    first.close()
    feed(tap, 3, 3)  # the write fails (EPIPE): dropped and counted, or queued if seen first
    assert wait_for(lambda: not tap.connected)
    second = Collector(path)
    assert wait_for(lambda: tap.stats["connects"] == 2)
    feed(tap, 6, 3)
    assert tap.drain()
    tap.stop()
    assert second.finished.wait(5)
    stats = tap.stats
    assert ids(pb, second.data())[-3:] == [6, 7, 8]
    assert stats["messages"] == len(first.data()) + len(second.data())
    assert len(first.data()) + len(second.data()) + stats["dropped"] == 9
    assert stats["write_errors"] + stats["connects"] >= 2
    second.close()


@pytest.mark.skipif(shutil.which("dnstap") is None,
                    reason="golang-dnstap's dnstap command not installed")
def test_golang_dnstap_collector_accepts_us(tmp_path):
    sock = tmp_path / "tap.sock"
    out = open(tmp_path / "out.txt", "w")
    process = subprocess.Popen(["dnstap", "-u", str(sock), "-q"], stdout=out,
                               stderr=subprocess.DEVNULL)
    try:
        assert wait_for(sock.exists)
        tap = Dnstap(DnstapConfig(str(sock)), backoff=FAST)
        tap.start()
        query = dns.message.make_query("www.ed25519.example.", "A")
        tap.client_query(query.to_wire(), ("127.0.0.1", 5353), ("127.0.0.13", 53), "tcp",
                         time.time_ns())
        tap.resolver_query(query.to_wire(), ("127.0.0.10", 53), dns.name.root,
                           time.time_ns(), forwarder=True)
        assert wait_for(lambda: tap.stats["messages"] == 2)
        tap.stop()
        assert wait_for(lambda: len((tmp_path / "out.txt").read_text().splitlines()) == 2)
    finally:
        process.terminate()
        process.wait(5)
        out.close()
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert [line.split()[1:4] for line in lines] == [["CQ", "127.0.0.1", "TCP"],
                                                     ["FQ", "127.0.0.10", "UDP"]]
    assert all('"www.ed25519.example." IN A' in line for line in lines)


def test_queued_before_start_or_after_stop_is_dropped(tmp_path):
    tap = Dnstap(DnstapConfig(str(tmp_path / "nobody.sock")), backoff=FAST)
    feed(tap, 0, 2)
    tap.start()
    tap.stop()
    feed(tap, 2, 2)
    assert tap.stats["dropped"] == 4 and tap.stats["messages"] == 0


def test_metrics_collector(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    tap = Dnstap(DnstapConfig(str(tmp_path / "x.sock")))
    feed(tap, 0, 3)
    registry = CollectorRegistry()
    registry.register(DnstapCollector(tap))
    text = generate_latest(registry).decode()
    assert "dnssec_sidecar_dnstap_dropped_total 3.0" in text
    assert "dnssec_sidecar_dnstap_connected 0.0" in text


# --- the config key --------------------------------------------------------------------------

@pytest.mark.parametrize("path, mode, stored", [
    ("/var/run/dnstap.sock", "unix", "/var/run/dnstap.sock"),
    ("unix:/var/run/dnstap.sock", "unix", "/var/run/dnstap.sock"),
    ("UNIX:rel.sock", "unix", "rel.sock"),
    ("file:/var/log/dns.tap", "file", "/var/log/dns.tap"),
    ("./odd:name.sock", "unix", "./odd:name.sock"),
])
def test_config_paths(path, mode, stored):
    config = parse_config({"dnstap": {"path": path}}).dnstap
    assert (config.mode, config.path) == (mode, stored)
    assert (config.identity, config.client, config.resolver) == ("dnssec-sidecar", True, True)
    from resolver import __version__
    assert config.version == __version__ and config.queue_size == 10000


def test_config_absent_or_null_is_off():
    assert parse_config({}).dnstap is None
    assert parse_config({"dnstap": None}).dnstap is None


def test_config_all_keys():
    config = parse_config({"dnstap": {"path": "file:/t", "identity": "pod-1", "version": "x",
                                      "client": False, "resolver": True, "queue_size": 5}})
    assert config.dnstap == DnstapConfig("/t", "file", "pod-1", "x", False, True, 5)


@pytest.mark.parametrize("value, field, reason", [
    ({}, "dnstap.path", "missing"),
    ({"path": ""}, "dnstap.path", "empty path"),
    ({"path": "file:"}, "dnstap.path", "empty path"),
    ({"path": 5}, "dnstap.path", "expected a path"),
    ({"path": "tcp:127.0.0.1:6000"}, "dnstap.path", "unsupported output 'tcp'"),
    ({"path": "file://var/x"}, "dnstap.path", "not a URL"),
    ({"path": "/" + "s" * 107}, "dnstap.path", "at most 107 bytes"),
    ({"path": "/x", "identity": 7}, "dnstap.identity", "expected a string"),
    ({"path": "/x", "version": "v" * 256}, "dnstap.version", "longer than 255 bytes"),
    ({"path": "/x", "client": "yes"}, "dnstap.client", "expected true or false"),
    ({"path": "/x", "queue_size": 0}, "dnstap.queue_size", "out of range"),
    ({"path": "/x", "client": False, "resolver": False}, "dnstap", "nothing to send"),
    ({"path": "/x", "socket": "/y"}, "dnstap.socket", "unknown key"),
    ("/x", "dnstap", "expected a mapping"),
])
def test_config_errors_name_the_field(value, field, reason):
    with pytest.raises(ConfigError) as info:
        parse_config({"dnstap": value})
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_long_file_path_is_fine():
    assert parse_config({"dnstap": {"path": "file:/" + "f" * 200}}).dnstap.mode == "file"


def test_check_config_summary(tmp_path, capsys):
    from resolver import configcheck
    path = tmp_path / "c.yaml"
    path.write_text('dnstap: {path: "file:/var/log/dns.tap", identity: pod-1, client: false}\n')
    assert configcheck.run(str(path)) == 0
    assert ("  dnstap: file /var/log/dns.tap, resolver messages, identity 'pod-1', version "
            f"'{DnstapConfig('x').version}', queue 10000") in capsys.readouterr().out.splitlines()
    path.write_text("")
    assert configcheck.run(str(path)) == 0
    assert "  dnstap: off" in capsys.readouterr().out.splitlines()


def test_service_wires_the_tap_and_a_reload_keeps_it(tmp_path, caplog):
    """Client messages at the frontend, resolver messages at the iterator, as configured; a
    changed dnstap (or cache) key takes a restart, and a new iterator made by a reload is wired
    again."""
    import asyncio

    from resolver.config import load_config
    from resolver.service import Service
    path = tmp_path / "c.yaml"
    text = ('listen: ["127.0.0.13:53"]\nlog: {enabled: false}\nmetrics: {enabled: false}\n'
            'qname_minimisation: %s\ndnstap: {path: "%s", client: false}\n'
            'cache: {prefetch: %s}\n')
    path.write_text(text % ("true", tmp_path / "a.sock", "false"))
    service = Service(load_config(str(path)), str(path))
    assert service.tap is not None and service.tap.config.path == str(tmp_path / "a.sock")
    assert service.server.frontend.report.tap is None
    assert service.resolver.iterator.tap is service.tap
    path.write_text(text % ("false", tmp_path / "b.sock", "true"))
    assert asyncio.run(service.reload("test"))
    assert service.resolver.settings.qname_minimisation is False  # a new iterator
    assert service.resolver.iterator.tap is service.tap
    assert service.config.dnstap.path == str(tmp_path / "a.sock")
    assert "dnstap changed; that takes a restart" in caplog.text
    assert "cache changed; that takes a restart" in caplog.text
    assert service.config.cache.prefetch is False and service.resolver.prefetch is None


# --- the real resolver -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tree():
    with authority.start_tree(forwarder=True) as running:
        yield running


def resolver_config(extra: str) -> str:
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    return (f'listen: ["{RESOLVER}:53"]\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            f'forward: [{{zone: fwd.example., addresses: ["{manifest["forwarder"]}"]}}]\n'
            "timeouts: {upstream_ms: 300, query_ms: 4000}\n"
            f'metrics: {{listen: "{RESOLVER}:9153"}}\n'
            "log: {enabled: false}\n" + extra)


class Sidecar:
    def __init__(self, directory: Path, extra: str) -> None:
        config = directory / "config.yaml"
        config.write_text(resolver_config(extra))
        self.stderr = open(directory / "stderr.txt", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config", str(config), "-v"],
            cwd=ROOT_DIR, stderr=self.stderr)
        self.errors = directory / "stderr.txt"
        ok = wait_for(self._listening, 60)  # bounded: a loaded machine starts slowly
        if not ok:
            self.stop()
            pytest.fail("the resolver did not start: " + self.errors.read_text())

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            return True
        try:
            with socket.create_connection((RESOLVER, 53), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)
        self.stderr.close()


def udp_exchange(query: bytes) -> tuple[bytes, tuple[str, int]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(8)
        s.sendto(query, (RESOLVER, 53))
        return s.recv(65535), s.getsockname()


def tcp_exchange(query: bytes) -> tuple[bytes, tuple[str, int]]:
    with socket.create_connection((RESOLVER, 53), timeout=8,
                                  source_address=("127.0.0.1", 0)) as s:
        s.sendall(struct.pack(">H", len(query)) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = s.recv(65535)
            assert chunk
            data += chunk
        return data[2:], s.getsockname()


def test_resolver_writes_client_and_resolver_messages(pb, tree, tmp_path):
    path = tmp_path / "dns.tap"
    sidecar = Sidecar(tmp_path, f'dnstap: {{path: "file:{path}", identity: e2e}}\n')
    try:
        exchanges = []
        for name, rdtype, over in (("www.rsasha256.example.", "A", udp_exchange),
                                   ("www.ed25519.example.", "AAAA", tcp_exchange),
                                   ("www.fwd.example.", "A", udp_exchange)):
            query = dns.message.make_query(name, rdtype, want_dnssec=True).to_wire()
            reply, source = over(query)
            assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
            exchanges.append((query, reply, source, over is tcp_exchange))
        metrics = urllib.request.urlopen(f"http://{RESOLVER}:9153/metrics", timeout=5).read()
        assert b"dnssec_sidecar_dnstap_messages_total" in metrics
    finally:
        sidecar.stop()
    assert sidecar.process.returncode == 0, sidecar.errors.read_text()

    frames = parse_stream(path.read_bytes())
    assert frames[0] == ("START", [CONTENT_TYPE]) and frames[-1] == ("STOP", [])
    taps = [decode(pb, payload) for _, payload in frames[1:-1]]
    assert {t.identity for t in taps} == {b"e2e"}
    messages = [t.message for t in taps]

    # Each client exchange: a CLIENT_QUERY with the bytes sent, a CLIENT_RESPONSE with the
    # bytes received, the addresses and ports of both ends, and times in order.
    for query, reply, (address, port), tcp in exchanges:
        cq = [m for m in messages if m.type == CLIENT_QUERY and m.query_message == query]
        cr = [m for m in messages if m.type == CLIENT_RESPONSE and m.response_message == reply]
        assert len(cq) == 1 and len(cr) == 1
        for m in cq + cr:
            assert m.socket_family == pb.INET
            assert m.socket_protocol == (pb.TCP if tcp else pb.UDP)
            assert (socket.inet_ntoa(m.query_address), m.query_port) == (address, port)
            assert (socket.inet_ntoa(m.response_address), m.response_port) == (RESOLVER, 53)
        (cq,), (cr,) = cq, cr
        assert (cr.query_time_sec, cr.query_time_nsec) == (cq.query_time_sec,
                                                             cq.query_time_nsec)
        assert (cr.response_time_sec, cr.response_time_nsec) >= (cr.query_time_sec,
                                                                   cr.query_time_nsec)
    assert dns.message.from_wire(exchanges[0][1]).flags & dns.flags.AD

    # Upstream: every RESOLVER_QUERY went to a server of the tree, with DO and without RD,
    # naming the zone asked; its RESOLVER_RESPONSE carries the same id and zone.
    servers = set(zonedata.manifest()["servers"])
    rq = [m for m in messages if m.type == RESOLVER_QUERY]
    rr = [m for m in messages if m.type == RESOLVER_RESPONSE]
    assert rq and rr and len(rr) <= len(rq)
    queries = {}
    for m in rq:
        assert socket.inet_ntoa(m.response_address) in servers and m.response_port == 53
        assert not m.HasField("query_address")
        query = dns.message.from_wire(m.query_message)
        assert query.ednsflags & dns.flags.DO and not query.flags & dns.flags.RD
        queries[query.id, m.response_address] = (m.query_zone, query.question[0])
    for m in rr:
        reply = dns.message.from_wire(m.response_message)
        zone, question = queries[reply.id, m.response_address]
        assert m.query_zone == zone and reply.question[0] == question
        assert (m.response_time_sec, m.response_time_nsec) >= (m.query_time_sec,
                                                               m.query_time_nsec)
    asked = {dns.message.from_wire(m.query_message).question[0].name.to_text() for m in rq}
    assert "www.rsasha256.example." in asked and "www.ed25519.example." in asked
    zones = {dns.name.from_wire(m.query_zone, 0)[0].to_text() for m in rq}
    assert {".", "example.", "rsasha256.example."} <= zones

    # The forwarded zone: FORWARDER_QUERY with RD and CD to the forwarder, and its reply.
    forwarder = zonedata.manifest()["forwarder"]
    fq = [m for m in messages if m.type == FORWARDER_QUERY]
    fr = [m for m in messages if m.type == FORWARDER_RESPONSE]
    assert fq and fr
    assert {socket.inet_ntoa(m.response_address) for m in fq + fr} == {forwarder}
    first = dns.message.from_wire(fq[0].query_message)
    assert first.flags & dns.flags.RD and first.flags & dns.flags.CD
    assert dns.name.from_wire(fq[0].query_zone, 0)[0] == dns.name.from_text("fwd.example.")


def test_resolver_to_a_collector_client_messages_only(pb, tree, tmp_path):
    collector = Collector(tmp_path / "tap.sock")
    sidecar = Sidecar(tmp_path, f'dnstap: {{path: "{tmp_path / "tap.sock"}", '
                                "resolver: false}\n")
    try:
        query = dns.message.make_query("www.ecdsap256.example.", "A", want_dnssec=True)
        reply, _ = udp_exchange(query.to_wire())
        assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
    finally:
        sidecar.stop()
    assert collector.finished.wait(5), collector.frames
    assert collector.frames[:2] == [("READY", [CONTENT_TYPE]), ("START", [CONTENT_TYPE])]
    types = [decode(pb, payload).message.type for payload in collector.data()]
    assert types == [CLIENT_QUERY, CLIENT_RESPONSE]
    assert decode(pb, collector.data()[1]).message.response_message == reply
    collector.close()
