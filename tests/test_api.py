"""The runtime policy API (issue #17), end to end through the real server and the test tree:
concurrent changes from one generation (one wins, one 409), a bad body (400 naming the field,
nothing changed), revocation taking effect with the next query (the hit path's kept answers
included), a new service's listener bound and answering, the dry-run check, denials, every
change a record of the forensic chain that verify-log accepts; the ``policy`` command line
against it, and ``policy check`` offline."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml

from resolver import status
from resolver.policycli import ApiClient
from tests.test_operations import ADDRESS, ROOT_DIR, base_config
from tests.testtree import authority
SANDBOX = "127.0.5.1"  # no server of the test tree there


def config_text(tmp: Path, api: str, extra: str = "") -> str:
    """The test tree's configuration (metrics on 127.0.0.9:9153) with the API and a service
    ``agent`` on the listener."""
    return base_config(tmp / "log", f"api: {api}\n"
                       "services:\n"
                       "  - name: agent\n"
                       f'    listeners: ["{ADDRESS}:53"]\n'
                       "    allow: [{zone: rsasha256.example., require: secure}, "
                       "{zone: ed448.test.}]\n" + extra)


class Sidecar:
    def __init__(self, tmp: Path, api: str, extra: str = "") -> None:
        self.config = tmp / "config.yaml"
        self.config.write_text(config_text(tmp, api, extra))
        self.log = tmp / "log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver.cli", "serve", "--config", str(self.config), "-v"],
            cwd=ROOT_DIR, stderr=subprocess.PIPE, text=True)

    def wait(self, ready) -> None:
        for _ in range(1200):  # bounded: 60 s on a loaded machine
            if ready():
                return
            if self.process.poll() is not None:
                pytest.fail(self.process.stderr.read())
            time.sleep(0.05)
        pytest.fail("resolver did not start")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.communicate(timeout=15)[1]

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def answers(address: str) -> bool:
    try:
        with socket.create_connection((address, 53), timeout=0.2):
            return True
    except OSError:
        return False


def ask(name: str, address: str = ADDRESS, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, want_dnssec=True), address,
                         port=53, timeout=5)


@pytest.fixture
def tree():
    with authority.start_tree() as running:
        yield running


@pytest.fixture
def sidecar(tree, tmp_path):
    sock = tmp_path / "api.sock"
    running = Sidecar(tmp_path, f'{{listen: "unix:{sock}"}}')
    running.api = ApiClient(f"unix:{sock}")
    running.wait(lambda: sock.exists() and answers(ADDRESS))
    yield running
    running.stop()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resolver.cli", *args], cwd=ROOT_DIR,
                          capture_output=True, text=True, input=stdin, timeout=60)


def generation(api: ApiClient, name: str) -> int:
    code, data = api.request("GET", f"/v1/services/{name}")
    return data["generation"] if code == 200 else 0


def test_concurrent_puts_from_one_generation_one_wins(sidecar):
    api = sidecar.api
    start = generation(api, "agent")
    bodies = [{"listeners": [f"{ADDRESS}:53"], "allow": [{"zone": zone}]}
              for zone in ("rsasha256.example.", "ed448.test.")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda body: api.request(
            "PUT", "/v1/services/agent", body, {"If-Match": str(start)}), bodies))
    codes = sorted(code for code, _ in results)
    assert codes == [200, 409], results
    winner = next(body for body, (code, _) in zip(bodies, results) if code == 200)
    loser = next(data for code, data in results if code == 409)
    current = api.call("GET", "/v1/services/agent")
    assert loser["generation"] == current["generation"] > start
    assert current["service"]["allow"] == [dict(winner["allow"][0], require="secure")]
    # the same again from the stale generation is refused, and a create of an existing name
    assert api.request("PUT", "/v1/services/agent", bodies[0], {"If-Match": str(start)})[0] == 409
    assert api.request("PUT", "/v1/services/agent", bodies[0], {"If-Match": "0"})[0] == 409
    assert api.request("PUT", "/v1/services/agent", bodies[0])[0] == 428


def test_a_bad_body_is_400_naming_the_field_and_changes_nothing(sidecar):
    api = sidecar.api
    before = api.call("GET", "/v1/services")
    for body, field in (({"listeners": [f"{ADDRESS}:53"], "allow": [{"zone": 3}]},
                         "allow[0].zone"),
                        ({"listeners": [f"{ADDRESS}:53"], "allow": [], "mode": "audit"}, "mode"),
                        ({"listeners": [f"{ADDRESS}:53"], "allow": [], "colour": 1}, "colour"),
                        ({"allow": []}, "service"),
                        ([1, 2], "service")):
        code, data = api.request("PUT", "/v1/services/agent", body,
                                 {"If-Match": str(generation(api, "agent"))})
        assert (code, data["field"]) == (400, field), data
        assert data["error"].startswith(f"{field}: ")
    assert api.call("GET", "/v1/services") == before
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.NOERROR
    assert not [r for r in sidecar.records() if r.get("event")]


def test_revocation_takes_effect_at_once_and_a_new_listener_answers(sidecar):
    api = sidecar.api
    assert ask("www.ed448.test.").rcode() == dns.rcode.NOERROR
    assert ask("www.ed448.test.").rcode() == dns.rcode.NOERROR  # now kept for the hit path
    agent = api.call("GET", "/v1/services/agent")
    narrowed = dict(agent["service"], allow=[{"zone": "rsasha256.example."}])
    changed = api.call("PUT", "/v1/services/agent", narrowed,
                       {"If-Match": str(agent["generation"])})
    refused = ask("www.ed448.test.")  # the very next query: the kept answer is gone
    assert refused.rcode() == dns.rcode.REFUSED
    assert "not in an allowed zone" in refused.options[0].text
    # a new service on a new address: bound then and there, answering by its own rules
    assert not answers(SANDBOX)
    code, created = api.request("PUT", "/v1/services/sandbox",
                                {"listeners": [f"{SANDBOX}:53"], "allow": [{"zone": "ed448.test."}]},
                                {"If-Match": "0"})
    assert code == 201 and created["generation"] > changed["generation"]
    assert ask("www.ed448.test.", SANDBOX).rcode() == dns.rcode.NOERROR
    assert ask("www.rsasha256.example.", SANDBOX).rcode() == dns.rcode.REFUSED
    # the dry run gives the decision and the rule without a query upstream
    check = api.call("POST", "/v1/check", {"service": "sandbox", "name": "x.ed448.test.",
                                           "type": "AAAA"})
    assert (check["decision"], check["rule"]) == ("allow", "allow[0] ed448.test. secure")
    assert api.call("POST", "/v1/check", {"service": "agent", "name": "www.ed448.test."}
                    )["decision"] == "refuse"
    denials = api.call("GET", "/v1/denials?service=sandbox")["denials"]
    assert [(d["name"], d["decision"]) for d in denials] == [("www.rsasha256.example.",
                                                               "refuse")]
    assert api.request("GET", "/v1/pins") == (200, {"pins": []})  # no service pins here
    # deleted: its listener is closed, and the change is recorded
    api.call("DELETE", "/v1/services/sandbox", None, {"If-Match": str(created["generation"])})
    assert not answers(SANDBOX)
    assert api.request("GET", "/v1/services/sandbox")[0] == 404
    sidecar.stop()
    changes = [r for r in sidecar.records() if r.get("event") == "policy_change"]
    assert [(r["action"], r["service"], r["old_generation"], r["new_generation"])
            for r in changes] == [
        ("put", "agent", agent["generation"], changed["generation"]),
        ("put", "sandbox", None, created["generation"]),
        ("delete", "sandbox", created["generation"], None)]
    assert all(r["by"] == {"uid": os.getuid(), "pid": r["by"]["pid"]} for r in changes)
    assert changes[0]["before"]["allow"][1]["zone"] == "ed448.test."
    assert changes[0]["after"]["allow"] == [{"zone": "rsasha256.example.", "require": "secure"}]
    done = cli("verify-log", str(sidecar.log))
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout


def test_a_reload_replaces_runtime_changes(sidecar):
    api = sidecar.api
    api.call("PUT", "/v1/services/agent", {"listeners": [f"{ADDRESS}:53"], "allow": []},
             {"If-Match": str(generation(api, "agent"))})
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.REFUSED
    sidecar.config.write_text(sidecar.config.read_text())  # the same file, reloaded
    sidecar.process.send_signal(1)  # SIGHUP
    deadline = time.monotonic() + 20
    while ask("www.rsasha256.example.").rcode() != dns.rcode.NOERROR:
        assert time.monotonic() < deadline, "the reload did not put the file's services back"
        time.sleep(0.1)
    assert api.call("GET", "/v1/services/agent")["origin"] == "file"
    sidecar.stop()
    reloads = [r for r in sidecar.records() if r.get("action") == "reload"]
    assert [r["service"] for r in reloads] == ["agent"] and reloads[0]["by"] == {
        "reload": "SIGHUP"}


def test_tcp_needs_a_token_and_records_its_name(tree, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# who may change the policy\ncontroller:0123456789abcdef0123\n")
    running = Sidecar(tmp_path, f'{{listen: "{ADDRESS}:8053", token_file: {tokens}}}')
    try:
        running.wait(lambda: answers(ADDRESS) and ApiClient(f"{ADDRESS}:8053").request(
            "GET", "/v1/services")[0] == 401)
        wrong = ApiClient(f"{ADDRESS}:8053", "0123456789abcdef0124")
        assert wrong.request("GET", "/v1/services")[0] == 401
        api = ApiClient(f"{ADDRESS}:8053", "0123456789abcdef0123")
        api.call("DELETE", "/v1/services/agent", None,
                 {"If-Match": str(generation(api, "agent"))})
    finally:
        running.stop()
    change, = [r for r in running.records() if r.get("event")]
    assert change["by"] == {"token": "controller", "address": "127.0.0.1"}  # the client's


def test_check_config_refuses_tcp_without_a_token_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('api: {listen: "127.0.0.1:8053"}\n')
    done = cli("check-config", "--no-host", str(path))
    assert done.returncode == 3 and "api.token_file: missing" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("text, error", [
    ('{listen: "unix:run/api.sock"}', "api.listen: 'unix:run/api.sock': unix: takes an "
                                      "absolute path"),
    ('{listen: "unix:/run/api.sock", colour: 1}', "api.colour: unknown key"),
    ('{token_file: /t}', "api.listen: missing"),
    ('{listen: "unix:/run/api.sock"}\nworkers: 2\nlog: {path: /tmp/l}',
     "api: workers is 2: a runtime change must reach every worker's policy"),
])
def test_api_key_errors_name_the_field(text, error):
    from resolver.config import ConfigError, parse_config
    with pytest.raises(ConfigError) as fault:
        parse_config(yaml.safe_load(f"api: {text}\n"))
    assert str(fault.value).startswith(error)


def test_check_config_shows_the_api_and_checks_its_token_file(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("controller:short\n")
    path = tmp_path / "c.yaml"
    path.write_text(f'listen: ["127.0.0.1:5353"]\nmetrics: {{enabled: false}}\n'
                    f'api: {{listen: "unix:{tmp_path}/api.sock", persist: {tmp_path}/kept}}\n')
    done = cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert (f"  policy API: unix:{tmp_path}/api.sock, the peer's uid and pid recorded (socket "
            f"mode 0600), runtime changes kept in {tmp_path}/kept") in done.stdout.splitlines()
    path.write_text(f'api: {{listen: "127.0.0.1:8053", token_file: {tokens}}}\n')
    done = cli("check-config", str(path))
    assert done.returncode == 3
    assert done.stderr.strip().endswith("api.token_file: " + str(tokens) + ": line 1: the "
                                        "token of controller is shorter than 16 characters or "
                                        "has blanks")


def test_the_policy_command_line(sidecar, tmp_path):
    api = f"unix:{tmp_path / 'api.sock'}"
    listed = cli("policy", "list", "--api", api)
    assert listed.returncode == 0 and "agent\tgeneration" in listed.stdout
    made = cli("policy", "set", "sandbox", "-", "--api", api,
               stdin=f'listeners: ["{SANDBOX}:53"]\nallow: [{{zone: ed448.test.}}]\n')
    assert made.returncode == 0 and "service sandbox: generation" in made.stdout
    assert ask("www.ed448.test.", SANDBOX).rcode() == dns.rcode.NOERROR
    bad = cli("policy", "set", "sandbox", "-", "--api", api,
              stdin=f'listeners: ["{SANDBOX}:53"]\nallow: [{{zone: 3}}]\n')
    assert bad.returncode == status.API_REFUSED and "(field allow[0].zone)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    stale = cli("policy", "delete", "sandbox", "--if-match", "1", "--api", api)
    assert stale.returncode == status.API_REFUSED and "409" in stale.stderr
    assert cli("policy", "check", "--service", "sandbox", "www.ed448.test.", "--api",
               api).returncode == 0
    refused = cli("policy", "check", "--service", "sandbox", "a.example.", "--api", api)
    assert refused.returncode == 1 and refused.stdout.startswith("refuse: a.example. A")
    denials = cli("policy", "denials", "--service", "sandbox", "--since", "0", "--api", api)
    assert denials.returncode == 0 and json.loads(denials.stdout) == []  # none refused yet
    pins = cli("policy", "pins", "--api", api)
    assert pins.returncode == 0 and json.loads(pins.stdout) == []
    got = cli("policy", "get", "sandbox", "--api", api)
    assert json.loads(got.stdout)["service"]["allow"] == [{"zone": "ed448.test.",
                                                           "require": "secure"}]
    assert cli("policy", "delete", "sandbox", "--api", api).returncode == 0
    gone = cli("policy", "list", "--api", f"unix:{tmp_path / 'nothing.sock'}")
    assert gone.returncode == status.UNREACHABLE and "cannot reach the API" in gone.stderr
    offline = cli("policy", "check", "--config", str(sidecar.config), "--service", "agent",
                  "www.rsasha256.example.", "TXT")
    assert offline.returncode == 0 and offline.stdout.startswith("allow: www.rsasha256.example."
                                                                 " TXT")


OTHER = "  - {name: other, clients: [10.9.0.0/16], allow: []}\n"


def test_persisted_changes_outlive_a_reload_and_a_restart(tree, tmp_path):
    sock, kept = tmp_path / "api.sock", tmp_path / "kept.json"
    api_key = f'{{listen: "unix:{sock}", persist: {kept}}}'
    running = Sidecar(tmp_path, api_key)
    api = ApiClient(f"unix:{sock}")
    try:
        running.wait(lambda: sock.exists() and answers(ADDRESS))
        made = api.call("PUT", "/v1/services/sandbox", {"listeners": [f"{SANDBOX}:53"],
                                                        "allow": [{"zone": "ed448.test."}]},
                        {"If-Match": "0"})
        api.call("DELETE", "/v1/services/agent", None,
                 {"If-Match": str(generation(api, "agent"))})
        running.config.write_text(config_text(tmp_path, api_key, OTHER))
        running.process.send_signal(1)  # SIGHUP: the file's services, then the kept changes
        deadline = time.monotonic() + 20
        while len(names := [s["name"] for s in api.call("GET", "/v1/services")["services"]]) < 3:
            assert time.monotonic() < deadline, "no reload"
            time.sleep(0.1)
        assert names == ["other", "sandbox", "default"]  # the API wins for the services it named
        assert ask("www.ed448.test.", SANDBOX).rcode() == dns.rcode.NOERROR
    finally:
        running.stop()
    assert json.loads(kept.read_text())["services"] == {
        "agent": None, "sandbox": {"name": "sandbox", "listeners": [f"{SANDBOX}:53"],
                                   "allow": [{"zone": "ed448.test.", "require": "secure"}]}}
    again = Sidecar(tmp_path, api_key)  # a restart: the kept changes applied at start
    try:
        again.wait(lambda: answers(SANDBOX))
        assert ask("www.ed448.test.", SANDBOX).rcode() == dns.rcode.NOERROR
        entry = api.call("GET", "/v1/services/sandbox")
        assert entry["origin"] == "api" and entry["generation"] > made["generation"]
        assert api.request("GET", "/v1/services/agent")[0] == 404
    finally:
        again.stop()
    done = cli("verify-log", str(again.log))
    assert done.returncode == 0, done.stdout


def test_denials_are_one_entry_per_question_bounded():
    from resolver.frontend.denials import Denials
    denials = Denials(max_entries=2)
    denials.add(1.0, "s", "a.example.", "A", "refuse", None, "r1", "192.0.2.1")
    denials.add(2.0, "s", "b.example.", "A", "refuse", None, "r2", "192.0.2.1")
    denials.add(3.0, "s", "A.example.", "A", "refuse", None, "r3", "192.0.2.2")
    denials.add(4.0, "t", "c.example.", "A", "would_refuse", "allow[0] x.", "r4", "192.0.2.3")
    assert [(d["service"], d["name"], d["count"], d["first_seen"], d["last_seen"])
            for d in denials.recent()] == [("t", "c.example.", 1, 4.0, 4.0),
                                           ("s", "a.example.", 2, 1.0, 3.0)]
    assert [d["name"] for d in denials.recent("s", since=3.0)] == ["a.example."]
    denials.forget("s")
    assert [d["service"] for d in denials.recent()] == ["t"]


def test_malformed_requests_get_one_line_answers(sidecar, tmp_path):
    def raw(data: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(tmp_path / "api.sock"))
            conn.sendall(data)
            return conn.recv(65536)
    assert raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request")
    assert raw(b"PUT /v1/services/x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").startswith(
        b"HTTP/1.1 413 ")
    reply = raw(b"PUT /v1/services/x HTTP/1.1\r\nIf-Match: 0\r\nContent-Length: 5\r\n\r\n{nope")
    assert reply.startswith(b"HTTP/1.1 400 ") and b"the body is not JSON" in reply
    assert raw(b"GET /v2 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert ask("www.rsasha256.example.").rcode() == dns.rcode.NOERROR  # still serving


class _Pins:
    """A pins provider as resolver.frontend.pinning's: coroutines that remove pins."""

    def __init__(self) -> None:
        self.forgotten: list[str] = []
        self.kept: list[tuple[str, bool, bool]] = []

    async def forget(self, service: str) -> None:
        self.forgotten.append(service)

    async def revoke(self, service: str, keep) -> None:
        self.kept.append((service, keep("x.a.example."), keep("x.b.example.")))

    def snapshot(self, service: str) -> list:
        return []


class _Server:
    """What the store asks of the listeners: bind (refused for one address), unbind."""

    def __init__(self) -> None:
        from resolver.frontend.denials import Denials
        self.frontend = self
        self.denials, self.policy, self.bound = Denials(), None, []

    def use_policy(self, policy) -> None:
        self.policy = policy

    async def bind(self, host: str, port: int) -> None:
        if host == "127.0.9.9":
            raise OSError(98, "Address already in use")
        self.bound.append((host, port))

    async def unbind(self, host: str, port: int) -> None:
        self.bound.remove((host, port))


def test_the_store_forgets_pins_of_a_narrowed_or_deleted_service_and_binds_or_changes_nothing():
    import asyncio

    from resolver.config import parse_config
    from resolver.ops.policystore import PolicyStore, Refused
    config = parse_config(yaml.safe_load(
        'services: [{name: a, clients: [10.0.0.0/8], allow: [{zone: a.example.}]}]'))
    pins, server = _Pins(), _Server()
    store = PolicyStore(config, server, pins=pins)
    by = {"uid": 0, "pid": 1}

    async def go() -> None:
        wider = {"clients": ["10.0.0.0/8"], "allow": [{"zone": "a.example."},
                                                      {"zone": "b.example."}]}
        await store.put("a", wider, 1, by)
        assert pins.forgotten == pins.kept == []  # a rule added: nothing to forget
        await store.put("a", {"clients": ["10.0.0.0/8"], "allow": [{"zone": "b.example."}]},
                        store.generations["a"], by)
        assert pins.kept == [("a", False, True)]  # the names still allowed keep their pins
        await store.put("s", {"listeners": ["127.0.9.8:53"], "allow": []}, 0, by)
        assert server.bound == [("127.0.9.8", 53)]
        before = (store.config, dict(store.generations), store.generation)
        with pytest.raises(Refused) as refused:
            await store.put("t", {"listeners": ["127.0.9.8:53", "127.0.9.9:53"]}, 0, by)
        assert refused.value.field == "listeners[1]" and "Address already in use" in str(
            refused.value)
        assert (store.config, store.generations, store.generation) == before
        assert server.bound == [("127.0.9.8", 53)]
        await store.delete("s", store.generations["s"], by)
        assert pins.forgotten == ["s"] and server.bound == []
        assert server.policy.services == store.config.services

    asyncio.run(go())


def test_a_service_written_back_reads_to_the_same_service():
    """service_data is what GET returns and PUT takes: every key of a service survives the
    round trip. A new field of Service or AllowRule must be written by service_data too (and
    added here)."""
    import dataclasses

    from resolver.config import AllowRule, Service, parse_service, service_data
    assert [f.name for f in dataclasses.fields(Service)] == [
        "name", "listeners", "clients", "allow", "refuse_with", "rebinding_protection",
        "forward", "budgets", "pin", "mode"]
    assert [f.name for f in dataclasses.fields(AllowRule)] == [
        "zone", "require", "types", "allow_private", "expect"]
    text = """
        name: web
        listeners: ["127.0.0.1:53", "[::1]:53"]
        clients: [10.1.0.0/16, "fd00::/8"]
        allow:
          - {zone: example.com., require: insecure-ok, types: [A, AAAA], allow_private: true,
             expect: {addresses: [192.0.2.0/24, "2001:db8::/32"]}}
          - {zone: cluster.local.}
        refuse_with: nxdomain
        rebinding_protection: false
        forward: [{zone: cluster.local., addresses: ["10.96.0.10"]},
                  {zone: example.com., addresses: ["192.0.2.53"],
                   tls: {name: dns.example, spki_pins: ["%s"]}}]
        budgets: {query_rate: 2.5, max_label_length: 40, distinct_names_per_minute: 300}
        pin: {nft: {table: "inet sandbox", set4: allowed4, set6: allowed6}, grace: 60}
        mode: observe
    """ % ("A" * 43 + "=")
    service = parse_service(yaml.safe_load(text), "web")
    assert parse_service(json.loads(json.dumps(service_data(service))), "web") == service
    default = parse_service({"allow": [{"zone": "."}]}, "default")
    assert parse_service(service_data(default), "default") == default
    with pytest.raises(Exception, match="^name: 'other' is not the service named"):
        parse_service({"name": "other", "clients": ["10.0.0.0/8"]}, "web")
