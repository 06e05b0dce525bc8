"""The nftables side of pinning (issue #17), run inside a network namespace of its own:
``unshare -n python -m tests.pinning_netns CASE DIR`` prints one JSON object of what it saw,
which tests/test_pinning.py checks. Each case sets up lo, the sandbox table and its sets, so
that nothing touches the host's ruleset.

- ``pinner``: resolver.frontend.pinning.Pinner against the kernel: timeouts set and refreshed
  (never shortened), concurrent answers in one transaction, forget, lookup, a failed update.
- ``sandbox``: the README's ruleset (with a last ``reject``, so that a refused connect fails
  at once), a signed zone served by the scenario runner, the sidecar with ``pin``: a
  client connects to the addresses it resolved, not to one never resolved nor to one of a
  refused name; the hint of an HTTPS record is pinned, a loopback hint refused; after TTL +
  grace the pin is gone; IPv4 and IPv6; a reload's narrower rule removes pins at once; with
  the sets gone, answers are SERVFAIL.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.name
import dns.rdatatype
import yaml

ROOT_DIR = Path(__file__).resolve().parent.parent


def readme_ruleset() -> str:
    """The sandbox ruleset of README.md (its first ``nft`` block), so that the one the README
    gives is the one tested."""
    text = (ROOT_DIR / "README.md").read_text()
    return text.split("```nft\n", 1)[1].split("```", 1)[0]


def sh(command: str) -> str:
    return subprocess.run(command, shell=True, check=True, capture_output=True,
                          text=True).stdout


def elements(set_name: str) -> dict[str, dict]:
    """The kernel's elements of ``inet sandbox <set_name>``: address -> {timeout, expires}."""
    from resolver.nft import Nft
    nft = Nft()
    try:
        info = nft.set_info("inet", "sandbox", set_name, elements=True)
    finally:
        nft.close()
    out = {}
    for item in info.get("elem", []):
        elem = item["elem"] if isinstance(item, dict) else {"val": item}
        out[elem["val"]] = {"timeout": elem.get("timeout"), "expires": elem.get("expires")}
    return out


def setup() -> None:
    """lo up, README's ruleset, and a last rule that rejects what the README's drops, so that
    a refused connect fails at once instead of timing out."""
    sh("ip link set lo up")
    subprocess.run(["nft", "-f", "-"], input=readme_ruleset(), text=True, check=True)
    sh("nft add rule inet sandbox egress meta l4proto tcp reject with tcp reset")


# --- pinner ----------------------------------------------------------------------------------

def case_pinner(directory: Path, readd: bool | None = None) -> dict:
    """``readd``: refresh with add, delete, add (True), add alone (False), or as the kernel
    allows (None)."""
    from resolver.config import parse_config
    from resolver.frontend import pinning
    from resolver.frontend.pinning import Element, Pinner, PinError
    from resolver.frontend.policy import Policy
    setup()
    config = parse_config(yaml.safe_load("""
        services:
          - {name: a, clients: ["127.0.0.1/32"], allow: [{zone: example.}],
             pin: {nft: {table: "inet sandbox", set4: allowed4, set6: allowed6}, grace: 100}}
          - {name: b, clients: ["127.0.0.2/32"], allow: [{zone: example.}],
             pin: {nft: {table: "ip spare", set4: spare4}}}
        """))
    sh("nft add table ip spare && nft add set ip spare spare4 '{ type ipv4_addr; flags timeout; }'")
    sh("nft add set ip spare scratch '{ type ipv4_addr; flags timeout; }' && "
       "nft add element ip spare scratch '{ 192.0.2.1 timeout 10s }' && "
       "nft add element ip spare scratch '{ 192.0.2.1 timeout 100s }'")
    out: dict = {"kernel_updates": "timeout 1m40s" in sh("nft list set ip spare scratch")}
    now = [1_000_000.0]
    pinner = Pinner(config.services, clock=lambda: now[0], readd=readd)
    name = dns.name.from_text("www.example.")

    async def run() -> None:
        first = await pinner.pin("a", name, [Element("192.0.2.1", 4, "www.example.", 50),
                                             Element("2001:db8::1", 6, "www.example.", 50)])
        out["first"] = list(first.added)
        out["after_first"] = {**elements("allowed4"), **elements("allowed6")}
        await pinner.pin("a", name, [Element("192.0.2.1", 4, "www.example.", 500)])
        out["longer"] = elements("allowed4")["192.0.2.1"]
        await pinner.pin("a", dns.name.from_text("cdn.example."),
                         [Element("192.0.2.1", 4, "cdn.example.", 5)])
        out["shorter"] = elements("allowed4")["192.0.2.1"]
        out["lookup"] = pinner.lookup("a", "192.0.2.1")
        out["lookup_none"] = pinner.lookup("a", "192.0.2.99")
        await pinner.pin("a", dns.name.from_text("old.other."),
                         [Element("192.0.2.7", 4, "old.other.", 50)])
        policy = Policy(config)  # old.other. is in no rule of a's
        out["revoked"] = await pinner.revoke("a", lambda n: policy.check_name(
            config.services[0], dns.name.from_text(n)).allowed)
        out["after_revoke"] = sorted(elements("allowed4"))
        before = dict(pinner.stats)
        await asyncio.gather(*(pinner.pin("a", name, [Element(f"192.0.2.{i}", 4, "www.example.",
                                                              60)]) for i in range(10, 30)))
        out["concurrent_transactions"] = pinner.stats["transactions"] - before["transactions"]
        out["concurrent_elements"] = sorted(a for a in elements("allowed4") if a != "192.0.2.1")
        out["snapshot"] = len(pinner.snapshot("a"))
        out["forgotten"] = await pinner.forget("a")
        out["after_forget"] = {**elements("allowed4"), **elements("allowed6")}
        out["lookup_after_forget"] = pinner.lookup("a", "192.0.2.1")
        sh("nft delete table ip spare")  # service b's updates now fail: fail closed
        try:
            await pinner.pin("b", name, [Element("192.0.2.2", 4, "www.example.", 50)])
            out["failed"] = None
        except PinError as exc:
            out["failed"] = str(exc)
        good, bad = await asyncio.gather(
            pinner.pin("a", name, [Element("192.0.2.5", 4, "www.example.", 50)]),
            pinner.pin("b", name, [Element("192.0.2.3", 4, "www.example.", 50)]),
            return_exceptions=True)
        out["batch_good"] = list(good.added) if not isinstance(good, Exception) else str(good)
        out["batch_bad"] = type(bad).__name__
        out["lookup_failed"] = pinner.lookup("b", "192.0.2.3")
        now[0] += 200  # past TTL + grace of 192.0.2.5 in the table
        out["lookup_expired"] = pinner.lookup("a", "192.0.2.5")
        pinning.MAX_PINS = 1  # the table holds one expired pin: swept to make room, then full
        await pinner.pin("a", name, [Element("192.0.2.6", 4, "www.example.", 50)])
        try:
            await pinner.pin("a", name, [Element("192.0.2.8", 4, "www.example.", 50)])
            out["full"] = None
        except PinError as exc:
            out["full"] = str(exc)
        out["readd"] = pinner.readd

    asyncio.run(run())
    pinner.close()
    return out


# --- sandbox ---------------------------------------------------------------------------------

SIDECAR, LISTEN_PORT = "127.0.0.53", 8443
ZONE_RECORDS = (
    "www 4 IN A 192.0.2.1\n"
    "www 4 IN AAAA 2001:db8::1\n"
    "other 300 IN A 192.0.2.2\n"          # never resolved
    "svc 300 IN HTTPS 1 . alpn=h2 ipv4hint=192.0.2.4 ipv6hint=2001:db8::4\n"
    "rebind 300 IN HTTPS 1 . ipv4hint=127.0.0.1 ipv6hint=::1\n"
    "srv 300 IN SRV 0 0 443 www.denied.sc.\n"
    "out 300 IN HTTPS 1 www.denied.sc.\n")
DENIED_RECORDS = "www 300 IN A 192.0.2.3\n"
ADDRESSES = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1", "2001:db8::4")
SERVICES = """
services:
  - name: sandbox
    listeners: ["127.0.0.53:53"]
    allow: [{zone: allowed.sc.}]
    pin: {nft: {table: "inet sandbox", set4: allowed4, set6: allowed6}, grace: 2}
"""


def connects(address: str) -> str:
    """``ok`` when a TCP connection to ``address`` is made, else the error's name."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect((address, LISTEN_PORT))
            return "ok"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__


def case_sandbox(directory: Path) -> dict:
    from tests.onpath import resolvers
    from tests.scenarios import runner
    setup()
    listeners = []
    for address in ADDRESSES:
        if ":" in address:
            sh(f"ip -6 addr add {address}/128 dev lo nodad")
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        else:
            sh(f"ip addr add {address}/32 dev lo")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((address, LISTEN_PORT))
        sock.listen(16)
        listeners.append(sock)
    scenario = {"zones": {".": {"records": ""}, "sc.": {"records": ""},
                          "allowed.sc.": {"records": ZONE_RECORDS},
                          "denied.sc.": {"records": DENIED_RECORDS}},
                "servers": {"127.0.0.161": ["."], "127.0.0.162": ["sc."],
                            "127.0.0.163": ["allowed.sc.", "denied.sc."]}}
    built = runner.build(scenario, directory / "zones")
    out: dict = {"before": {a: connects(a) for a in ADDRESSES}}
    with runner.Servers(built), resolvers.start(
            "dnssec-sidecar", SIDECAR, directory / "sidecar", hints=built.hints,
            anchors=built.anchors, now=built.now, extra=SERVICES,
            upstream_ms=2000) as sidecar:  # no server here fails: a loaded machine is slow
        def ask(name: str, rdtype: str) -> dict:
            reply = sidecar.ask(name, rdtype)
            ede = [o for o in reply.options if o.otype == 15]
            return {"rcode": reply.rcode(), "answer": [r.to_text() for r in reply.answer],
                    "ede": ede[0].text if ede else None}
        out["www_a"] = ask("www.allowed.sc.", "A")
        out["www_aaaa"] = ask("www.allowed.sc.", "AAAA")
        out["denied"] = ask("www.denied.sc.", "A")
        out["svc"] = ask("svc.allowed.sc.", "HTTPS")
        out["rebind"] = ask("rebind.allowed.sc.", "HTTPS")
        out["srv"] = ask("srv.allowed.sc.", "SRV")
        out["out"] = ask("out.allowed.sc.", "HTTPS")
        out["pinned"] = {**elements("allowed4"), **elements("allowed6")}
        out["after"] = {a: connects(a) for a in ADDRESSES}
        # a reload that narrows the rule to www: svc's pins (TTL 300) go at once
        path = directory / "sidecar" / "sidecar.yaml"
        path.write_text(path.read_text().replace("{zone: allowed.sc.}", "{zone: www.allowed.sc.}"))
        sidecar.process.send_signal(signal.SIGHUP)
        for _ in range(300):
            if "reload (SIGHUP) applied" in sidecar.log.read_text():
                break
            time.sleep(0.05)
        out["reloaded"] = {**elements("allowed4"), **elements("allowed6")}
        out["www_again"] = ask("www.allowed.sc.", "A")  # from the cache: pinned again
        # TTL (4 s) + grace (2 s): wait, bounded, for the kernel to drop the pins
        for _ in range(300):
            if not {**elements("allowed4"), **elements("allowed6")}:
                break
            time.sleep(0.1)
        out["expired"] = {**elements("allowed4"), **elements("allowed6")}
        out["after_expiry"] = {a: connects(a) for a in ("192.0.2.1", "2001:db8::1")}
        sh("nft flush ruleset")  # the sets are gone: answers fail closed
        out["unpinnable"] = ask("www.allowed.sc.", "A")
        sidecar.stop()
        out["records"] = [json.loads(line) for line in
                          (directory / "sidecar" / "lookups.log").read_text().splitlines()]
    for sock in listeners:
        sock.close()
    return out


CASES = {"pinner": case_pinner, "pinner-readd": lambda d: case_pinner(d, readd=True),
         "sandbox": case_sandbox}

if __name__ == "__main__":
    result = CASES[sys.argv[1]](Path(sys.argv[2]))
    print(json.dumps(result, default=str))
