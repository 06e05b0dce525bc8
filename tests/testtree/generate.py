#!/usr/bin/env python3
"""Build the DNSSEC test tree in tests/testtree/zones/ and tests/testtree/tree.json (and the
sample resolver config tests/testtree/resolver.yaml).

The zones are signed by signers this project did not write: BIND's
``dnssec-signzone`` (package bind9-utils) and ldns' ``ldns-signzone``
(package ldnsutils).  This script only writes the unsigned zone files, asks
the tools for keys, signatures and DS records, and then damages a few zones
on purpose (documented per zone in README.md and tree.json).

Usage::

    python tests/testtree/generate.py             # rebuild, reusing the checked-in keys
    python tests/testtree/generate.py --new-keys  # rebuild with fresh keys
    python tests/testtree/generate.py --check     # only run the independent checks

After building, the independent checks run (dnssec-verify, ldns-verify-zone at
the fixed time, and dnspython's validator) and the build fails if any zone does
not pass or fail exactly as intended.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from testtree import (  # noqa: E402
    EXPIRATION,
    EXPIRED_EXPIRATION,
    EXPIRED_INCEPTION,
    INCEPTION,
    NOTYET_EXPIRATION,
    NOTYET_INCEPTION,
    NOW,
    NOW_TEXT,
)

ZONES = HERE / "zones"
MANIFEST = HERE / "tree.json"

TTL = 3600
SERIAL = 2026010101
ADDR_PREFIX = "127.0.0."

ALG_NAMES = {
    5: "RSASHA1",
    7: "NSEC3RSASHA1",
    8: "RSASHA256",
    10: "RSASHA512",
    13: "ECDSAP256SHA256",
    14: "ECDSAP384SHA384",
    15: "ED25519",
    16: "ED448",
    200: "UNASSIGNED-200",
}
# ldns-keygen spells algorithm 7 differently.
LDNS_ALG_NAMES = {**ALG_NAMES, 7: "RSASHA1-NSEC3-SHA1"}
RSA_ALGS = {5, 7, 8, 10}
RSA_BITS = {"ksk": 2048, "zsk": 1024, "csk": 2048}

# keytrap: trap.keytrap.example. A is signed with this address, then rewritten to the next,
# so none of its RRSIGs verifies with any of the colliding keys.
KEYTRAP_SIGNED_ADDR = "192.0.2.250"
KEYTRAP_SERVED_ADDR = "192.0.2.251"

# The algorithm number given to the "unknownalg" zone; no signer implements it.
UNKNOWN_ALG = 200

# Names for the resolver's failure and size tests inside good signed zones.
BIG_TXT_ZONE = "rsasha256.example."  # big.<zone> TXT, ~3000 bytes: truncated over UDP
CHAIN_ZONE = "ecdsap256.example."  # chain1..chain15 CNAME chain to www; loop-a <-> loop-b
CHAIN_LINKS = 15

# Addresses with a test server that serves no zone (REFUSED to everything), or with nothing
# listening at all; and the recursive stub ("forwarder") serving the whole tree.
LAME_ADDRS = (51, 52)
UNREACHABLE_ADDRS = (54,)
FORWARDER_ADDR = 60
RESOLVER_LISTEN = "127.0.0.2:53"

# Hostile zones (issue #7; tree.json "scenario_zones", kind "hostile"), 127.0.0.90 and up.
KEYTRAP_HEAVY_KEYS = 50  # keytrap-heavy: 1 KSK + 49 ZSKs, one key tag, every RRset signed by all
SIGFLOOD_RRSIGS = 100  # sigflood: RRSIGs on flood.<zone> A, none of which verifies
NSEC3_LONG_SALT = "5a" * 255  # nsec3salt and nsec3heavy: the longest salt (RFC 5155 §3.2)
NSEC3_HEAVY_ITERATIONS = 150  # the most dnssec-signzone 9.18 writes; 3 x the cap of 50
NSEC3FLOOD_NAMES = 40  # nsec3flood: names, hence NSEC3 records, in the zone
NSEC3FLOOD_EXTRA = 30  # ... and how many its server adds to every negative answer (cap: 10)
# large: TXT RRs of 255 bytes, about 60 KiB on the wire, TCP only. The data signed (owner names
# uncompressed) stays under 64 KiB: ldns-signzone 1.8.3 silently signs a truncated buffer beyond.
LARGE_TXT_RRS = 228
HOP_LINKS = 15  # hop-a/hop-b: c1 -> c2 -> ... -> c15 -> www, alternating zones
DEEP_LEVELS = 32  # deep: zone cuts a.deep.example., a.a.deep.example., ... 32 levels
NXNS_NAMES = 60  # nxns: glueless NS names, all NXDOMAIN in victim.test.


@dataclasses.dataclass
class Spec:
    name: str  # absolute, with trailing dot
    parent: str | None
    addr: int  # last octet of the 127.0.0.x server address
    kind: str  # root | tld | child | insecure | broken
    signer: str = "none"  # bind | ldns | none | ldns+fabricated
    alg: int | None = None
    keys: str = "split"  # split (KSK+ZSK) | csk
    denial: str | None = None  # nsec | nsec3 | nsec3-optout
    nsec3_iterations: int = 0
    nsec3_salt: str = ""  # hex, "" = no salt
    inception: str = INCEPTION
    expiration: str = EXPIRATION
    ds_digests: tuple = (2,)
    breakage: str | None = None
    dname_to: str | None = None
    cname_out: str | None = None
    notes: str = ""
    extra_flags: list = dataclasses.field(default_factory=list)
    # scenario zones (kind "scenario", listed under "scenario_zones" in tree.json)
    scenario: str | None = None
    nameservers: list | None = None  # [(NS name, last octet of its address)]; default ns.<zone>
    glue: bool = True  # glue for in-bailiwick NS names in the parent's delegation
    served: bool = True  # a test server serves the zone at its address
    # hostile zones (kind "hostile")
    hostile: str | None = None  # the attack it stages
    behaviour: dict | None = None  # knobs of its server (authority.Server), e.g. nsec3_flood

    @property
    def dirname(self) -> str:
        return "root" if self.name == "." else self.name.rstrip(".")

    @property
    def server(self) -> str:
        return f"{ADDR_PREFIX}{self.addr}"

    @property
    def ns(self) -> str:
        return self.ns_list[0][0]

    @property
    def ns_list(self) -> list[tuple[str, str]]:
        """(NS name, address) of every name server of the zone."""
        if self.name == ".":
            return [("a.root-servers.test.", self.server)]
        if self.nameservers:
            return [(n, f"{ADDR_PREFIX}{a}" if a else None) for n, a in self.nameservers]
        return [(f"ns.{self.name}", self.server)]


GOOD_CHILDREN = [
    # name, parent, addr, alg, signer, denial, keys
    ("rsasha256.example.", "example.", 20, 8, "bind", "nsec", "split"),
    ("rsasha512.test.", "test.", 21, 10, "ldns", "nsec3", "csk"),
    ("ecdsap256.example.", "example.", 22, 13, "ldns", "nsec", "split"),
    ("ecdsap384.test.", "test.", 23, 14, "bind", "nsec3", "csk"),
    ("ed25519.example.", "example.", 24, 15, "bind", "nsec3", "split"),
    ("ed448.test.", "test.", 25, 16, "ldns", "nsec", "csk"),
]


def build_specs() -> list[Spec]:
    specs = [
        Spec(".", None, 10, "root", "bind", 8, "split", "nsec",
             notes="Root zone. Its DS (zones/root/ds) is the trust anchor."),
        Spec("test.", ".", 11, "tld", "bind", 13, "split", "nsec3-optout",
             notes="NSEC3, 0 iterations, no salt, opt-out (dnssec-signzone -A): "
                   "the unsigned delegation insecure.test. has no NSEC3 of its own."),
        Spec("example.", ".", 12, "tld", "ldns", 8, "split", "nsec",
             notes="NSEC TLD with signed, unsigned and broken delegations."),
    ]
    names = [c[0] for c in GOOD_CHILDREN]
    for i, (name, parent, addr, alg, signer, denial, keys) in enumerate(GOOD_CHILDREN):
        s = Spec(name, parent, addr, "child", signer, alg, keys, denial,
                 cname_out=names[(i + 1) % len(names)])
        if name == "ecdsap256.example.":
            s.dname_to = "ed25519.example."
        if name == "ecdsap384.test.":
            s.ds_digests = (2, 4)
        if name == "ed25519.example.":
            s.extra_flags = ["-x"]  # DNSKEY RRset signed by the KSK only
        s.notes = (f"{ALG_NAMES[alg]} ({'KSK+ZSK' if keys == 'split' else 'single CSK'}), "
                   f"{denial.upper()}, signed by {'dnssec-signzone' if signer == 'bind' else 'ldns-signzone'}.")
        if s.dname_to:
            s.notes += f" Has dname.{name} DNAME {s.dname_to}"
        if s.ds_digests != (2,):
            s.notes += " DS in the parent with digest types 2 (SHA-256) and 4 (SHA-384)."
        if s.extra_flags == ["-x"]:
            s.notes += " DNSKEY RRset signed by the KSK only (dnssec-signzone -x)."
        specs.append(s)
    # Unsigned zones behind insecure delegations.
    specs.append(Spec("insecure.example.", "example.", 30, "insecure",
                      notes="Unsigned zone; delegation from an NSEC parent without DS."))
    specs.append(Spec("insecure.test.", "test.", 31, "insecure",
                      notes="Unsigned zone; delegation from an NSEC3 opt-out parent without DS "
                            "(no NSEC3 record of its own in test.)."))
    for i, (name, *_rest) in enumerate(GOOD_CHILDREN):
        specs.append(Spec(f"insecure.{name}", name, 32 + i, "insecure",
                          notes="Unsigned zone; delegation without DS from a signed child zone."))
    # Broken zones.
    specs += [
        Spec("expired.example.", "example.", 40, "broken", "bind", 13, "split", "nsec",
             inception=EXPIRED_INCEPTION, expiration=EXPIRED_EXPIRATION, breakage="expired",
             extra_flags=["-P"],
             notes="Every RRSIG valid only 2020-01-01..2021-01-01 (dnssec-signzone -P: "
                   "its own post-sign check would reject the past window)."),
        Spec("notyet.example.", "example.", 41, "broken", "ldns", 13, "split", "nsec",
             inception=NOTYET_INCEPTION, expiration=NOTYET_EXPIRATION, breakage="notyet",
             notes="Every RRSIG valid only 2035-01-01..2038-01-01, after NOW (the window ends before "
                   "2038-01-19: ldns 1.8.3 misreads later RRSIG times)."),
        Spec("wrongds.example.", "example.", 42, "broken", "bind", 13, "split", "nsec",
             breakage="wrongds",
             notes="Correctly signed zone, but the DS in example. is the DS of a third "
                   "key (keys/...unpublished...) that is neither published nor used."),
        Spec("nosig.test.", "test.", 43, "broken", "ldns", 13, "split", "nsec",
             breakage="nosig",
             notes="Signed by ldns-signzone; the RRSIGs of www A and www AAAA were then deleted."),
        Spec("badsig.test.", "test.", 44, "broken", "ldns", 13, "split", "nsec3",
             breakage="badsig",
             notes="Signed by ldns-signzone; one byte of the www A RRSIG's signature was then inverted."),
        Spec("unknownalg.example.", "example.", 45, "broken", "ldns+fabricated", UNKNOWN_ALG,
             "csk", "nsec", breakage="unknownalg",
             notes="Only key: a DNSKEY of algorithm 200 (unassigned) with placeholder key bytes; "
                   "the DS in example. (made by ldns-key2ds) has algorithm 200 too. The NSEC chain "
                   "was made by ldns-signzone with a throw-away ECDSA key whose RRSIGs were then "
                   "rewritten to algorithm 200 with placeholder signature bytes: no software can "
                   "sign or verify algorithm 200, the zone must be treated as insecure from the DS."),
        Spec("nsec3iter.test.", "test.", 46, "broken", "ldns", 13, "split", "nsec3",
             nsec3_iterations=100, nsec3_salt="cafe", breakage="nsec3iter",
             notes="Correctly signed; NSEC3 with 100 extra iterations and salt CAFE "
                   "(ldns-signzone -t 100 -s cafe)."),
        Spec("keytrap.example.", "example.", 47, "broken", "ldns", 13, "split", "nsec",
             breakage="keytrap", extra_flags=["-A"],  # every RRset signed by all 5 keys
             notes="KeyTrap shape (CVE-2023-50387): 5 ECDSA P-256 keys (1 KSK, 4 ZSKs) sharing one "
                   "key tag, every RRset carrying 5 RRSIGs with that tag (ldns-signzone -A). Keys "
                   "found by a bounded, seeded search in generate.py (cryptography); signatures by "
                   "ldns-signzone. Everything is valid except trap.keytrap.example. A: signed as "
                   f"{KEYTRAP_SIGNED_ADDR}, then rewritten to {KEYTRAP_SERVED_ADDR}, so its 5 RRSIGs "
                   "x 5 same-tag keys = 25 signature checks all fail; a validator must stop early "
                   "(budget) instead."),
        Spec("sha1.example.", "example.", 48, "broken", "bind", 5, "csk", "nsec",
             breakage="sha1",
             notes="Signed only with RSASHA1 (algorithm 5), one 2048-bit CSK. Cryptographically "
                   "valid; validators that no longer accept SHA-1 treat it as unsupported (insecure)."),
    ]
    # Scenario zones for the resolver's failure tests (tree.json "scenario_zones").
    specs += [
        Spec("lame.example.", "example.", 50, "scenario", scenario="lame",
             nameservers=[("ns1.lame.example.", 51), ("ns2.lame.example.", 50)],
             notes="Unsigned, no DS. Two NS: ns1 (127.0.0.51) is lame (a server that serves no "
                   "zone and answers REFUSED), ns2 (127.0.0.50) serves the zone: resolution "
                   "succeeds through ns2."),
        Spec("alllame.example.", "example.", 52, "scenario", scenario="alllame",
             nameservers=[("ns1.alllame.example.", 51), ("ns2.alllame.example.", 52)],
             served=False,
             notes="Unsigned, no DS. Both NS (127.0.0.51, 127.0.0.52) are lame: servers that serve "
                   "no zone and answer REFUSED. The zone file is what it would hold; nobody serves "
                   "it."),
        Spec("unreachable.example.", "example.", 54, "scenario", scenario="unreachable",
             served=False,
             notes="Unsigned, no DS. Its only NS (127.0.0.54) has nothing listening (UDP: "
                   "ICMP port unreachable, TCP: connection refused). Nobody serves the zone "
                   "file."),
        Spec("loop1.example.", "example.", 55, "scenario", scenario="loop",
             nameservers=[("ns.loop2.example.", 55)], glue=False,
             notes="Unsigned, no DS. NS ns.loop2.example., whose address is only in "
                   "loop2.example., whose NS ns.loop1.example. has its address only in "
                   "loop1.example.: a glueless "
                   "delegation cycle. The server at 127.0.0.55 serves loop1, but no resolver can "
                   "find that address."),
        Spec("loop2.example.", "example.", 56, "scenario", scenario="loop",
             nameservers=[("ns.loop1.example.", 56)], glue=False,
             notes="The other half of the loop1.example. cycle (served at 127.0.0.56)."),
        Spec("fwd.example.", "example.", 57, "scenario", "ldns", 13, "split", "nsec",
             scenario="forward",
             notes="Signed (ECDSAP256SHA256, KSK+ZSK, NSEC, ldns-signzone), DS in example.: the "
                   "zone the sample resolver config forwards to the recursive stub at "
                   f"127.0.0.{FORWARDER_ADDR}. Also resolvable by iteration (its own server)."),
    ]
    return specs + hostile_specs()


def hostile_specs() -> list[Spec]:
    """Zones and servers that attack a resolver (issue #7): work amplification in the
    validator (KeyTrap, signature and NSEC3 floods, NSEC3 hashing), big answers, long CNAME
    chains, referral loops, deep delegations and NXNS. README.md says what each must do."""
    def h(name, parent, addr, hostile, signer="none", alg=None, denial=None, **kw) -> Spec:
        return Spec(name, parent, addr, "hostile", signer, alg, kw.pop("keys", "split"), denial,
                    hostile=hostile, **kw)

    specs = [
        h("keytrap-heavy.example.", "example.", 90, "keytrap-heavy", "ldns", 8, "nsec",
          notes=f"KeyTrap at scale (CVE-2023-50387): besides a KSK and a ZSK, {KEYTRAP_HEAVY_KEYS} "
                "RSASHA256 1024-bit ZSKs sharing one key tag: one modulus, public exponents "
                "chosen so the key tag checksum (RFC 4034 App. B) comes out equal. All are "
                "published; ldns-signzone signs the zone with the KSK and the ZSK, and "
                f"trap.<zone> A with the {KEYTRAP_HEAVY_KEYS} colliding keys (a second run with "
                "-A, whose trap RRSIGs replace the first run's). trap A was rewritten after "
                f"signing: {KEYTRAP_HEAVY_KEYS}^2 checks that all fail for a validator without "
                "budgets."),
        h("sigflood.example.", "example.", 91, "sigflood", "ldns", 13, "nsec",
          notes=f"Signature flood: flood.<zone> A carries {SIGFLOOD_RRSIGS} RRSIGs by the ZSK's "
                "tag, copies of the real one with the expiration moved back 1..N seconds after "
                "signing: each is a full signature check that fails."),
        h("nsec3salt.test.", "test.", 92, "nsec3salt", "bind", 13, "nsec3",
          nsec3_salt=NSEC3_LONG_SALT,
          notes="NSEC3 with a 255-byte salt (the maximum) and 0 iterations, dnssec-signzone: "
                "legitimate, every proof must validate (ldns-signzone 1.8.3 crashes on salts of "
                "128 bytes or more)."),
        h("nsec3heavy.test.", "test.", 93, "nsec3heavy", "bind", 13, "nsec3",
          nsec3_iterations=NSEC3_HEAVY_ITERATIONS, nsec3_salt=NSEC3_LONG_SALT,
          notes=f"NSEC3 with {NSEC3_HEAVY_ITERATIONS} iterations (over the cap of 50) and a "
                "255-byte salt, dnssec-signzone: denial proofs are insecure (RFC 9276) and must "
                "cost no hashing."),
        h("nsec3flood.test.", "test.", 94, "nsec3flood", "ldns", 13, "nsec3",
          behaviour={"nsec3_flood": NSEC3FLOOD_EXTRA},
          notes=f"NSEC3 proof flood (CVE-2023-50868): {NSEC3FLOOD_NAMES} names, so as many "
                f"NSEC3 records; its server adds {NSEC3FLOOD_EXTRA} of them (with RRSIGs) to "
                "every negative answer."),
        h("large.example.", "example.", 95, "large", "ldns", 13, "nsec",
          notes=f"txt.<zone> TXT: {LARGE_TXT_RRS} RRs of 255 bytes, about 60 KiB with its "
                "RRSIG: TC over UDP, near the 64 KiB limit over TCP (the signed data, with "
                "uncompressed owner names, is just under 64 KiB)."),
        h("hop-a.example.", "example.", 96, "hop", "ldns", 13, "nsec",
          notes=f"With hop-b.example.: c1 -> c2 -> ... -> c{HOP_LINKS} -> www.hop-a.example., "
                "each CNAME pointing into the other zone (odd links here, even ones there)."),
        h("hop-b.example.", "example.", 97, "hop", "ldns", 13, "nsec",
          notes="The even links of the hop-a.example. CNAME chain."),
        h("refloop.example.", "example.", 98, "refloop",
          notes="Unsigned; delegates sub.refloop.example. to ns.sub.refloop.example. "
                "(127.0.0.99), a server that refers every query back up to refloop.example."),
        h("sub.refloop.example.", "refloop.example.", 99, "refloop", served=False,
          behaviour={"refer": {"zone": "refloop.example.",
                               "nameservers": [["ns.refloop.example.", f"{ADDR_PREFIX}98"]]}},
          notes="Never served: its server (127.0.0.99) answers every query with a referral up "
                "to refloop.example. (the file shows what the zone would hold)."),
        h("victim.test.", "test.", 103, "nxns",
          notes=f"Unsigned; the zone the {NXNS_NAMES} NS names of nxns.example. point into. "
                "None of them exists: each lookup is an NXDOMAIN from this server, which counts "
                "what an NXNS attack makes a resolver send it."),
        h("nxns.example.", "example.", 102, "nxns", served=False, glue=False,
          nameservers=[(f"ns{i}.victim.test.", None) for i in range(1, NXNS_NAMES + 1)],
          notes=f"NXNS: delegated to {NXNS_NAMES} NS names without glue, all in victim.test., "
                "none of which exists. Nobody serves the zone."),
    ]
    parent = "deep.example."
    specs.append(h(parent, "example.", 100, "deep",
                   notes=f"Unsigned; the top of {DEEP_LEVELS} zone cuts below it, each one label "
                         "deeper (a.deep.example., a.a.deep.example., ...), alternating between "
                         "127.0.0.100 (even levels) and 127.0.0.101 (odd levels)."))
    for level in range(1, DEEP_LEVELS + 1):
        name = "a." * level + "deep.example."
        specs.append(h(name, parent, 100 + level % 2, "deep",
                       notes=f"Level {level} of the deep.example. delegation chain."))
        parent = name
    return specs


# ---------------------------------------------------------------- helpers


def run(cmd, cwd=None, check=True):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n"
                           f"{p.stdout}\n{p.stderr}")
    return p


def tool_versions() -> dict:
    v = {}
    try:
        v["dnssec-signzone"] = run(["dnssec-signzone", "-V"]).stdout.strip() or \
            run(["dnssec-signzone", "-V"]).stderr.strip()
    except (OSError, RuntimeError):
        v["dnssec-signzone"] = None
    try:
        v["ldns-signzone"] = run(["ldns-signzone", "-v"]).stdout.strip()
    except (OSError, RuntimeError):
        v["ldns-signzone"] = None
    return v


def parse_rrs(text: str, rdtype=None) -> list[tuple[dns.name.Name, int, dns.rdata.Rdata]]:
    """Parse one-RR-per-line master-file text with absolute owner names."""
    out = []
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        owner = dns.name.from_text(toks[0])
        i = 1
        ttl = TTL
        if toks[i].isdigit():
            ttl = int(toks[i])
            i += 1
        if toks[i].upper() == "IN":
            i += 1
        rtype = dns.rdatatype.from_text(toks[i])
        rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, " ".join(toks[i + 1:]),
                                 origin=dns.name.root, relativize=False)
        if rdtype is None or rtype == rdtype:
            out.append((owner, ttl, rd))
    return out


def rr_line(owner, ttl, rd) -> str:
    return f"{owner}\t{ttl}\tIN\t{dns.rdatatype.to_text(rd.rdtype)}\t{rd.to_text()}"


def zone_header(spec: Spec) -> list[str]:
    z = spec.name
    host = "hostmaster." + ("root-servers.test." if z == "." else z)
    return [
        f"; {z} -- dnssec-sidecar test tree, written by tests/testtree/generate.py",
        f"$TTL {TTL}",
        f"{z}\tIN\tSOA\t{spec.ns} {host} {SERIAL} 7200 3600 1209600 3600",
    ] + [f"{z}\tIN\tNS\t{ns}" for ns, _addr in spec.ns_list]


def in_bailiwick(name: str, zone: str) -> bool:
    return dns.name.from_text(name).is_subdomain(dns.name.from_text(zone))


def delegation_lines(child: Spec, ds_text: str | None) -> list[str]:
    lines = [f"{child.name}\tIN\tNS\t{ns}" for ns, _addr in child.ns_list]
    if child.glue:  # glue only for NS names inside the child zone
        lines += [f"{ns}\tIN\tA\t{addr}" for ns, addr in child.ns_list
                  if in_bailiwick(ns, child.name)]
    if ds_text:
        for owner, ttl, rd in parse_rrs(ds_text, dns.rdatatype.DS):
            lines.append(rr_line(owner, TTL, rd))
    return lines


def child_content(spec: Spec, specs_by_name: dict) -> list[str]:
    z = spec.name
    n = spec.addr
    lines = zone_header(spec)
    if spec.kind == "child":
        algtext = ALG_NAMES[spec.alg]
        signer = "dnssec-signzone" if spec.signer == "bind" else "ldns-signzone"
        lines += [
            f"{z}\tIN\tMX\t10 mail.{z}",
            f'{z}\tIN\tTXT\t"dnssec-sidecar test zone" "algorithm {spec.alg} {algtext}" "signer {signer}"',
            f"{spec.ns}\tIN\tA\t{spec.server}",
            f"www.{z}\tIN\tA\t192.0.2.{n}",
            f"www.{z}\tIN\tAAAA\t2001:db8::{n}",
            f"mail.{z}\tIN\tA\t192.0.2.{n}",
            f"*.wild.{z}\tIN\tA\t192.0.2.{n}",
            f'*.wild.{z}\tIN\tTXT\t"wildcard"',
            f"a.b.c.{z}\tIN\tA\t192.0.2.{n}",
            f"cname.{z}\tIN\tCNAME\twww.{z}",
            f"cname-out.{z}\tIN\tCNAME\twww.{spec.cname_out}",
            f"cname-insecure.{z}\tIN\tCNAME\twww.insecure.{z}",
        ]
        if spec.dname_to:
            lines.append(f"dname.{z}\tIN\tDNAME\t{spec.dname_to}")
        if z == BIG_TXT_ZONE:
            lines.append(f"big.{z}\tIN\tTXT\t" + " ".join(f'"{t}"' for t in big_txt_strings()))
        if z == CHAIN_ZONE:
            # chain1 -> chain2 -> ... -> chain15 -> www: chainK is 16-K CNAME links from www
            for k in range(1, CHAIN_LINKS):
                lines.append(f"chain{k}.{z}\tIN\tCNAME\tchain{k + 1}.{z}")
            lines.append(f"chain{CHAIN_LINKS}.{z}\tIN\tCNAME\twww.{z}")
            lines.append(f"loop-a.{z}\tIN\tCNAME\tloop-b.{z}")
            lines.append(f"loop-b.{z}\tIN\tCNAME\tloop-a.{z}")
    elif spec.kind == "broken":
        lines += [
            f'{z}\tIN\tTXT\t"dnssec-sidecar broken test zone: {spec.breakage}"',
            f"{spec.ns}\tIN\tA\t{spec.server}",
            f"www.{z}\tIN\tA\t192.0.2.{n}",
            f"www.{z}\tIN\tAAAA\t2001:db8::{n}",
            f"*.wild.{z}\tIN\tA\t192.0.2.{n}",
        ]
        if spec.breakage == "keytrap":
            lines.append(f"trap.{z}\tIN\tA\t{KEYTRAP_SIGNED_ADDR}")
    elif spec.kind == "tld":
        lines.append(f"{spec.ns}\tIN\tA\t{spec.server}")
    elif spec.kind == "insecure":
        lines += [
            f'{z}\tIN\tTXT\t"dnssec-sidecar unsigned test zone"',
            f"{spec.ns}\tIN\tA\t{spec.server}",
            f"www.{z}\tIN\tA\t192.0.2.{n}",
        ]
    elif spec.kind == "hostile":
        lines += hostile_content(spec)
    elif spec.kind == "scenario":
        lines += [
            f'{z}\tIN\tTXT\t"dnssec-sidecar scenario zone: {spec.scenario}"',
            f"www.{z}\tIN\tA\t192.0.2.{n}",
        ]
        if spec.scenario == "forward":
            lines += [f"www.{z}\tIN\tAAAA\t2001:db8::{n}",
                      f"cname.{z}\tIN\tCNAME\twww.{z}"]
        # addresses of every name server name inside this zone, whichever zone it serves
        # (for loop1/loop2 these are the only records of the other zone's server)
        seen = set()
        for other in specs_by_name.values():
            for ns, addr in other.ns_list:
                if in_bailiwick(ns, z) and ns not in seen:
                    seen.add(ns)
                    lines.append(f"{ns}\tIN\tA\t{addr}")
    return lines


def hostile_content(spec: Spec) -> list[str]:
    """The records of a hostile zone besides SOA and NS: a TXT, its name server's address, www,
    and what its attack needs."""
    z, n = spec.name, spec.addr
    lines = [f'{z}\tIN\tTXT\t"dnssec-sidecar hostile test zone: {spec.hostile}"',
             f"www.{z}\tIN\tA\t192.0.2.{n}"]
    lines += [f"{ns}\tIN\tA\t{addr}" for ns, addr in spec.ns_list
              if addr and in_bailiwick(ns, z)]
    if spec.hostile == "keytrap-heavy":
        lines.append(f"trap.{z}\tIN\tA\t{KEYTRAP_SIGNED_ADDR}")
    elif spec.hostile == "sigflood":
        lines.append(f"flood.{z}\tIN\tA\t192.0.2.{n}")
    elif spec.hostile == "nsec3flood":
        lines += [f"h{i:03d}.{z}\tIN\tA\t192.0.2.{n}" for i in range(1, NSEC3FLOOD_NAMES + 1)]
    elif spec.hostile == "large":
        lines += [f'txt.{z}\tIN\tTXT\t"' + (f"{i:04d} " + "large answer filler " * 13)[:255] + '"'
                  for i in range(LARGE_TXT_RRS)]
    elif spec.hostile == "hop":
        a, b = "hop-a.example.", "hop-b.example."
        for k in range(1, HOP_LINKS + 1):
            here = a if k % 2 else b
            if here == z:
                target = f"c{k + 1}.{b if k % 2 else a}" if k < HOP_LINKS else f"www.{a}"
                lines.append(f"c{k}.{z}\tIN\tCNAME\t{target}")
    return lines


def big_txt_strings() -> list[str]:
    """12 character-strings of 250 bytes: a TXT RR of about 3000 bytes, which does not fit
    into a 1232-byte UDP answer."""
    out = []
    for i in range(1, 13):
        head = f"big TXT chunk {i:02d} of 12 "
        out.append((head + "0123456789abcdefghijklmnopqrstuvwxyz" * 8)[:250])
    return out


# ---------------------------------------------------------------- keys


@dataclasses.dataclass
class Key:
    base: str  # file base name, without .key/.private
    role: str  # ksk | zsk | csk | unpublished-ksk
    published: bool = True

    def dnskey(self, keydir: Path):
        text = (keydir / f"{self.base}.key").read_text()
        rrs = parse_rrs(text, dns.rdatatype.DNSKEY)
        assert len(rrs) == 1, self.base
        return rrs[0][2]

    def key_line(self, keydir: Path) -> str:
        owner, _ttl, rd = parse_rrs((keydir / f"{self.base}.key").read_text(),
                                    dns.rdatatype.DNSKEY)[0]
        return rr_line(owner, TTL, rd)


def keygen(spec: Spec, role: str, keydir: Path) -> Key:
    ksk = role in ("ksk", "csk", "unpublished-ksk")
    if spec.signer == "bind":
        cmd = ["dnssec-keygen", "-q", "-C", "-K", keydir, "-a", ALG_NAMES[spec.alg], "-n", "ZONE"]
        if spec.alg in RSA_ALGS:
            cmd += ["-b", RSA_BITS["ksk" if ksk else "zsk"]]
        if ksk:
            cmd += ["-f", "KSK"]
        base = run(cmd + [spec.name]).stdout.strip().splitlines()[-1]
    else:
        cmd = ["ldns-keygen", "-r", "/dev/urandom", "-a", LDNS_ALG_NAMES[spec.alg]]
        if spec.alg in RSA_ALGS:
            cmd += ["-b", RSA_BITS["ksk" if ksk else "zsk"]]
        if ksk:
            cmd += ["-k"]
        base = run(cmd + [spec.name], cwd=keydir).stdout.strip().splitlines()[-1]
        ds = keydir / f"{base}.ds"
        if ds.exists():
            ds.unlink()
    return Key(base, role, published=(role != "unpublished-ksk"))


def reuse_key(old_entry: dict | None, role: str, index: int, spec: Spec, keydir: Path) -> Key | None:
    """Copy a key of the same role/algorithm from the previous tree, if there is one."""
    if not old_entry:
        return None
    same = [k for k in old_entry.get("keys", []) if k["role"] == role and k["algorithm"] == spec.alg]
    if index >= len(same):
        return None
    src = HERE / same[index]["file"]
    base = Path(same[index]["file"]).name
    if not (src.parent / f"{base}.key").exists() or not (src.parent / f"{base}.private").exists():
        return None
    for ext in (".key", ".private"):
        shutil.copy2(src.parent / f"{base}{ext}", keydir / f"{base}{ext}")
    return Key(base, role, published=(role != "unpublished-ksk"))


def make_keys(spec: Spec, keydir: Path, old_entry: dict | None) -> list[Key]:
    roles = ["csk"] if spec.keys == "csk" else ["ksk", "zsk"]
    if spec.breakage == "wrongds":
        roles.append("unpublished-ksk")
    keys = []
    count = collections.Counter()
    for role in roles:
        k = reuse_key(old_entry, role, count[role], spec, keydir) or keygen(spec, role, keydir)
        count[role] += 1
        keys.append(k)
    return keys


def keytrap_keys(spec: Spec, keydir: Path, ksks=1, zsks=4, limit=300_000) -> list[Key]:
    """Find ECDSA P-256 keys sharing one key tag: 1 KSK (flags 257) + 4 ZSKs (256).

    Private scalars are derived from a fixed seed and a counter, so the search
    is reproducible (same keys every run) and bounded by `limit`.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    curve = ec.SECP256R1()
    buckets: dict[int, list] = collections.defaultdict(list)
    found = None
    for i in range(1, limit):
        scalar = int.from_bytes(hashlib.sha256(b"dnssec-sidecar keytrap %d" % i).digest(), "big")
        scalar = scalar % (order - 1) + 1
        priv = ec.derive_private_key(scalar, curve)
        pub = priv.public_key().public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)[1:]
        for flags in (256, 257):
            rd = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY,
                                     flags.to_bytes(2, "big") + bytes([3, 13]) + pub, 0, 4 + len(pub))
            tag = dns.dnssec.key_id(rd)
            buckets[tag].append((i, flags, scalar, rd))
            b = buckets[tag]
            if sum(1 for e in b if e[1] == 257) >= ksks and sum(1 for e in b if e[1] == 256) >= zsks:
                # one key may sit in the bucket with both flag values; use distinct keys
                chosen, used = [], set()
                for want, n in ((257, ksks), (256, zsks)):
                    for e in b:
                        if e[1] == want and e[0] not in used and n > 0:
                            chosen.append(e)
                            used.add(e[0])
                            n -= 1
                if len(chosen) == ksks + zsks:
                    found = (tag, chosen)
                    break
        if found:
            break
    if not found:
        raise RuntimeError(f"no {ksks + zsks}-way key tag collision within {limit} keys")
    tag, chosen = found
    keys = []
    for n, (i, flags, scalar, rd) in enumerate(chosen):
        role = "ksk" if flags == 257 else "zsk"
        base = f"K{spec.name}+013+{tag:05d}-{n + 1}"
        (keydir / f"{base}.key").write_text(
            f"; keytrap key #{n + 1} (search counter {i}), key tag {tag}, flags {flags}\n"
            f"{spec.name} IN DNSKEY {rd.to_text()}\n")
        (keydir / f"{base}.private").write_text(
            "Private-key-format: v1.2\n"
            "Algorithm: 13 (ECDSAP256SHA256)\n"
            f"PrivateKey: {base64.b64encode(scalar.to_bytes(32, 'big')).decode()}\n")
        keys.append(Key(base, role))
    return keys


def _probable_prime(seed: bytes, bits: int) -> int:
    """The first probable prime (Miller-Rabin, 40 fixed bases) at or after a number derived
    from ``seed``: deterministic keys without a key generator."""
    stream = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(bits // 256 + 1))
    n = int.from_bytes(stream, "big") >> (len(stream) * 8 - bits) | 1 << (bits - 1) | 1
    while True:
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for a in range(2, 42):
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n
        n += 2


def rsa_tag_collision_keys(spec: Spec, keydir: Path, count: int) -> list[Key]:
    """A KSK and a ZSK with tags of their own, then ``count`` RSASHA256 ZSKs that share one key
    tag (RFC 4034 App. B).

    All share one 1024-bit modulus from seeded primes; the 4-byte public exponents differ.
    The key tag sums RDATA octets, the even-offset ones shifted left by 8: the exponent's
    octets sit at offsets 5..8, so exponents whose octet sums at odd offsets (120) and at even
    offsets (254) stay the same give one tag. Those sums also fix e mod 3 (256 = 1 mod 3) at 2,
    so 3 never divides e.
    """
    p = _probable_prime(b"dnssec-sidecar keytrap-heavy p", 512)
    q = _probable_prime(b"dnssec-sidecar keytrap-heavy q", 512)
    n, lam = p * q, (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    modulus = n.to_bytes((n.bit_length() + 7) // 8, "big")
    colliding = (int.from_bytes(bytes([e0, 254 - e1, 120 - e0, e1]), "big")
                 for e0 in range(1, 120) for e1 in range(1, 254, 2))
    exponents = iter([(257, 65537), (256, 65539)] + [(256, e) for e in colliding])
    keys: list[Key] = []
    tags = []
    for flags, e in exponents:
        if math.gcd(e, lam) != 1:
            continue
        rdata = flags.to_bytes(2, "big") + bytes([3, 8, 4]) + e.to_bytes(4, "big") + modulus
        rd = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, rdata, 0, len(rdata))
        tag = dns.dnssec.key_id(rd)
        tags.append(tag)
        d = pow(e, -1, lam)
        base = f"K{spec.name}+008+{tag:05d}-{len(keys) + 1}"
        (keydir / f"{base}.key").write_text(
            f"; keytrap-heavy key #{len(keys) + 1}, key tag {tag}, flags {flags}, exponent {e}\n"
            f"{spec.name} IN DNSKEY {rd.to_text()}\n")
        fields = [("Modulus", n), ("PublicExponent", e), ("PrivateExponent", d),
                  ("Prime1", p), ("Prime2", q), ("Exponent1", d % (p - 1)),
                  ("Exponent2", d % (q - 1)), ("Coefficient", pow(q, -1, p))]
        (keydir / f"{base}.private").write_text(
            "Private-key-format: v1.2\nAlgorithm: 8 (RSASHA256)\n" + "".join(
                f"{k}: {base64.b64encode(v.to_bytes((v.bit_length() + 7) // 8, 'big')).decode()}\n"
                for k, v in fields))
        keys.append(Key(base, "ksk" if flags == 257 else "zsk"))
        if len(keys) == count + 2:
            break
    if len(set(tags[2:])) != 1 or len(set(tags)) != 3:
        raise RuntimeError(f"key tags {tags}: the exponent arithmetic is off")
    return keys


def flood_rrsigs(spec: Spec, signed: Path) -> None:
    """Replace the RRSIG of flood.<zone> A by SIGFLOOD_RRSIGS copies whose expiration moved
    back 1..N seconds: all in their window, none verifies (the expiration is signed)."""
    flood = f"flood.{spec.name}"
    out, done = [], 0
    for line in signed.read_text().splitlines():
        t = line.split()
        if len(t) > 4 and t[0] == flood and t[3] == "RRSIG" and t[4] == "A":
            owner, ttl, rd = parse_rrs(line)[0]
            out += [rr_line(owner, ttl, rd.replace(expiration=rd.expiration - k))
                    for k in range(1, SIGFLOOD_RRSIGS + 1)]
            done += 1
            continue
        out.append(line)
    assert done == 1, done
    signed.write_text("\n".join(out) + "\n")


def unknownalg_key(spec: Spec, keydir: Path) -> Key:
    """A DNSKEY of an unassigned algorithm; the public key bytes are a placeholder."""
    pub = hashlib.sha512(b"dnssec-sidecar placeholder public key for algorithm 200").digest()
    base = f"K{spec.name}+{UNKNOWN_ALG:03d}+placeholder"
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY,
                             f"257 3 {UNKNOWN_ALG} {base64.b64encode(pub).decode()}")
    (keydir / f"{base}.key").write_text(
        f"; placeholder key of unassigned algorithm {UNKNOWN_ALG}, key tag {dns.dnssec.key_id(rd)};"
        " there is no private key\n"
        f"{spec.name} IN DNSKEY {rd.to_text()}\n")
    return Key(base, "csk")


# ---------------------------------------------------------------- DS


def make_ds_text(spec: Spec, keys: list[Key], keydir: Path) -> str:
    """DS RRset for the parent, produced by the signer's own tool, checked with dnspython."""
    lines = []
    for k in keys:
        if k.role == "zsk":
            continue
        if spec.breakage == "wrongds" and k.role != "unpublished-ksk":
            continue
        if spec.breakage != "wrongds" and k.role == "unpublished-ksk":
            continue
        for digest in spec.ds_digests:
            if spec.signer == "bind":
                dname = {1: "SHA-1", 2: "SHA-256", 4: "SHA-384"}[digest]
                out = run(["dnssec-dsfromkey", "-a", dname, f"{k.base}.key"], cwd=keydir).stdout
            else:
                out = run(["ldns-key2ds", "-n", f"-{digest}",
                           f"{k.base}.key"], cwd=keydir).stdout
            rrs = parse_rrs(out, dns.rdatatype.DS)
            assert len(rrs) == 1, out
            owner, _ttl, ds = rrs[0]
            expect = dns.dnssec.make_ds(spec.name, k.dnskey(keydir), digest,
                                        policy=dns.dnssec.allow_all_policy)
            if ds != expect:
                raise RuntimeError(f"DS from the tool disagrees with dnspython for {k.base}: {ds} / {expect}")
            lines.append(rr_line(owner, TTL, ds))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- signing


def sign_bind(spec: Spec, unsigned: Path, keys: list[Key], keydir: Path, out: Path) -> str:
    src = keydir.parent / "signer-input.zone"
    pub = [k for k in keys if k.published]
    src.write_text(unsigned.read_text() + "; DNSKEYs\n" +
                   "".join(k.key_line(keydir) + "\n" for k in pub))
    cmd = ["dnssec-signzone", "-o", spec.name, "-f", out, "-s", spec.inception,
           "-e", spec.expiration, "-N", "keep", "-K", keydir]
    if spec.denial and spec.denial.startswith("nsec3"):
        cmd += ["-3", spec.nsec3_salt or "-", "-H", spec.nsec3_iterations]
        if spec.denial == "nsec3-optout":
            cmd += ["-A"]
    if spec.keys == "csk":
        cmd += ["-z"]
    cmd += spec.extra_flags
    for k in pub:
        if k.role in ("ksk", "csk"):
            cmd += ["-k", keydir / k.base]
    cmd += [src] + [keydir / k.base for k in pub if k.role == "zsk"]
    p = run(cmd, cwd=keydir)
    src.unlink()
    for f in keydir.glob("dsset-*"):  # the DS goes to ../ds instead
        f.unlink()
    return p.stdout + p.stderr


def sign_ldns(spec: Spec, unsigned: Path, keys: list[Key], keydir: Path, out: Path,
              extra_input: str = "") -> str:
    src = unsigned
    if extra_input:
        src = keydir.parent / "signer-input.zone"
        src.write_text(unsigned.read_text() + extra_input)
    cmd = ["ldns-signzone", "-i", spec.inception, "-e", spec.expiration, "-o", spec.name, "-f", out]
    if spec.denial and spec.denial.startswith("nsec3"):
        cmd += ["-n", "-a", "1", "-t", spec.nsec3_iterations]
        if spec.nsec3_salt:
            cmd += ["-s", spec.nsec3_salt]
        if spec.denial == "nsec3-optout":
            cmd += ["-p"]
    cmd += spec.extra_flags
    cmd += [src] + [keydir / k.base for k in keys if k.published]
    p = run(cmd, cwd=keydir)
    if extra_input:
        src.unlink()
    return p.stdout + p.stderr


def sign_keytrap_heavy(spec: Spec, unsigned: Path, keys: list[Key], keydir: Path, out: Path,
                       extra_input: str) -> None:
    """Sign with the KSK and the ZSK of their own tags, then give trap.<zone> A the RRSIGs of
    the colliding keys from a second run with all keys and -A: only the trap carries them,
    which keeps the zone small (fast to load) and its other answers SECURE whatever order the
    keys come in, while the trap costs KEYTRAP_HEAVY_KEYS^2 checks."""
    sign_ldns(spec, unsigned, keys[:2], keydir, out, extra_input)
    every = out.parent / "every-key.zone"
    sign_ldns(dataclasses.replace(spec, extra_flags=["-A"]), unsigned, keys, keydir, every,
              extra_input)
    trap, shared = f"trap.{spec.name}", str(dns.dnssec.key_id(keys[2].dnskey(keydir)))

    def is_trap_sig(line: str) -> bool:
        t = line.split()
        return len(t) > 4 and t[0] == trap and t[3] == "RRSIG" and t[4] == "A"

    sigs = [line for line in every.read_text().splitlines()
            if is_trap_sig(line) and line.split()[10] == shared]
    every.unlink()
    assert len(sigs) == len(keys) - 2, len(sigs)
    lines = [line for line in out.read_text().splitlines() if not is_trap_sig(line)]
    out.write_text("\n".join(lines + sigs) + "\n")


def break_nosig(spec: Spec, signed: Path):
    """Delete the RRSIGs covering www A and www AAAA (ldns writes one RR per line)."""
    www = f"www.{spec.name}"
    kept, dropped = [], 0
    for line in signed.read_text().splitlines():
        t = line.split()
        if len(t) > 4 and t[0] == www and t[3] == "RRSIG" and t[4] in ("A", "AAAA"):
            dropped += 1
            continue
        kept.append(line)
    assert dropped == 2, dropped
    signed.write_text("\n".join(kept) + "\n")


def break_badsig(spec: Spec, signed: Path):
    """Invert one byte in the middle of the www A RRSIG's signature."""
    www = f"www.{spec.name}"
    out, done = [], 0
    for line in signed.read_text().splitlines():
        t = line.split()
        if len(t) > 4 and t[0] == www and t[3] == "RRSIG" and t[4] == "A":
            owner, ttl, rd = parse_rrs(line)[0]
            sig = bytearray(rd.signature)
            sig[len(sig) // 2] ^= 0xFF
            line = rr_line(owner, ttl, rd.replace(signature=bytes(sig)))
            done += 1
        out.append(line)
    assert done == 1, done
    signed.write_text("\n".join(out) + "\n")


def break_keytrap(spec: Spec, signed: Path):
    """Change the address of trap.<zone> A after signing: its RRSIGs (one per colliding key)
    then verify with none of the keys that share their key tag."""
    trap = f"trap.{spec.name}"
    out, done = [], 0
    for line in signed.read_text().splitlines():
        t = line.split()
        if len(t) > 4 and t[0] == trap and t[3] == "A" and t[4] == KEYTRAP_SIGNED_ADDR:
            line = line.replace(KEYTRAP_SIGNED_ADDR, KEYTRAP_SERVED_ADDR)
            done += 1
        out.append(line)
    assert done == 1, done
    signed.write_text("\n".join(out) + "\n")


def fabricate_unknownalg(spec: Spec, signed: Path, key: Key, keydir: Path):
    """Rewrite the throw-away ECDSA RRSIGs into algorithm-200 RRSIGs with placeholder bytes."""
    dnskey = key.dnskey(keydir)
    tag = dns.dnssec.key_id(dnskey)
    out = []
    for line in signed.read_text().splitlines():
        t = line.split()
        if len(t) > 3 and t[3] == "RRSIG":
            owner, ttl, rd = parse_rrs(line)[0]
            filler = hashlib.sha512(b"placeholder signature, algorithm 200: " +
                                    owner.to_wire() + rd.type_covered.to_bytes(2, "big")).digest()
            rd = rd.replace(algorithm=UNKNOWN_ALG, key_tag=tag, signature=filler)
            line = rr_line(owner, ttl, rd)
        out.append(line)
    signed.write_text("\n".join(out) + "\n")


# ---------------------------------------------------------------- build


def hostile_expectations(spec: Spec) -> dict:
    """What a resolver with the default limits answers for a hostile zone's names."""
    z = spec.name
    if spec.hostile == "deep":
        if spec.name != "deep.example.":
            return {"zone": "insecure", "ede": None, "names": {}}
        level = lambda k: "a." * k + z  # noqa: E731
        return {"zone": "insecure", "ede": None, "names": {
            f"www.{level(DEEP_LEVELS)} A": (
                "INSECURE answer after 10 referrals and 11 questions from the root: at most 10 "
                "minimised queries (RFC 9156 §2.3), then the full name; each server answers from "
                f"the deepest zone it holds, not one label at a time through {DEEP_LEVELS + 2} "
                "cuts (over the default budget of 30)"),
            f"www.{level(8)} A": "INSECURE answer after 10 referrals, within the budget"}}
    table = {
        "keytrap-heavy": ("secure", None, {
            f"trap.{z} A": f"BOGUS, EDE 6: {KEYTRAP_HEAVY_KEYS} RRSIGs x {KEYTRAP_HEAVY_KEYS} "
                           "same-tag keys; the validator stops at its budget",
            f"www.{z} A": "SECURE (signed by the ZSK of its own tag)",
            f"{z} DNSKEY": f"SECURE ({KEYTRAP_HEAVY_KEYS + 2} keys, signed by the KSK)"}),
        "sigflood": ("secure", None, {
            f"flood.{z} A": f"BOGUS, EDE 6: {SIGFLOOD_RRSIGS} RRSIGs, none verifies; the "
                            "validator stops at its per-RRset budget of 8",
            f"www.{z} A": "SECURE"}),
        "nsec3salt": ("secure", None, {
            f"www.{z} A": "SECURE", f"www.{z} MX": "NODATA, proven SECURE (255-byte salt)",
            f"nonexistent.{z} A": "NXDOMAIN, proven SECURE (255-byte salt)"}),
        "nsec3heavy": ("insecure", 27, {
            f"www.{z} A": "SECURE (only denial proofs depend on the NSEC3 parameters)",
            f"nonexistent.{z} A": f"NXDOMAIN, INSECURE, EDE 27: {NSEC3_HEAVY_ITERATIONS} "
                                  "iterations exceed the default cap of 50 (RFC 9276)"}),
        "nsec3flood": ("secure", None, {
            f"www.{z} A": "SECURE", f"h001.{z} A": "SECURE",
            f"nonexistent.{z} A": f"BOGUS, EDE 6: {NSEC3FLOOD_EXTRA} extra NSEC3 records "
                                  "exhaust the per-query signature budget"}),
        "large": ("secure", None, {
            f"txt.{z} TXT": "SECURE, about 60 KiB: TC over UDP, complete over TCP"}),
        "hop": ("secure", None, {
            f"c1.{z} A": f"SERVFAIL, EDE 0: {HOP_LINKS} CNAMEs across two zones exceed the "
                         "default CNAME budget of 12",
            f"www.{z} A": "SECURE"} if z == "hop-a.example." else {
            f"c{HOP_LINKS - 11}.{z} A": "SECURE after 12 CNAMEs across two zones (the default "
                                        "CNAME budget)",
            f"www.{z} A": "SECURE"}),
        "refloop": ("insecure", None, {
            f"www.{z} A": "INSECURE",
            f"www.sub.{z} A": "SERVFAIL, EDE 22: the child's server refers back up to "
                              "refloop.example. (lame)"}),
        "nxns": ("insecure", None, {f"www.{z} A": "INSECURE"}),
    }
    if spec.name == "sub.refloop.example.":
        return {"zone": "servfail", "ede": 22, "names": {}}
    if spec.name == "nxns.example.":
        return {"zone": "servfail", "ede": 22, "names": {
            f"www.{z} A": f"SERVFAIL, EDE 22: none of the {NXNS_NAMES} glueless NS names "
                          "exists; the NS lookups stop at the per-delegation budget"}}
    zone, ede, names = table[spec.hostile]
    return {"zone": zone, "ede": ede, "breakage": spec.hostile, "names": names}


def expectations(spec: Spec) -> dict:
    z = spec.name
    if spec.kind == "hostile":
        return hostile_expectations(spec)
    if spec.kind == "scenario":
        return {
            "lame": {"zone": "insecure", "ede": None,
                     "names": {f"www.{z} A": "INSECURE answer 192.0.2.50 from ns2 (ns1 is lame: "
                                             "REFUSED)"}},
            "alllame": {"zone": "servfail", "ede": 22,
                        "names": {f"www.{z} A": "SERVFAIL, EDE 22 No Reachable Authority "
                                                "(every NS answers REFUSED)"}},
            "unreachable": {"zone": "servfail", "ede": 22,
                            "names": {f"www.{z} A": "SERVFAIL, EDE 22 No Reachable Authority "
                                                    "(nothing listens at the only NS)"}},
            "loop": {"zone": "servfail", "ede": 22,
                     "names": {f"www.{z} A": "SERVFAIL, EDE 22 No Reachable Authority "
                                             "(glueless delegation cycle loop1 <-> loop2)"}},
            "forward": {"zone": "secure", "ede": None,
                        "names": {f"www.{z} A": "SECURE (through the forwarder, with the sample "
                                                "config's forward: entry)",
                                  f"cname.{z} A": "SECURE CNAME to www",
                                  f"nonexistent.{z} A": "NXDOMAIN, proven SECURE"}},
        }[spec.scenario]
    if spec.kind == "insecure":
        return {"zone": "insecure", "ede": None,
                "names": {f"www.{z} A": "INSECURE answer (unsigned zone below a DS-less delegation)",
                          f"{z} DS": ("NODATA, INSECURE: no DS in the parent, NSEC3 opt-out, "
                                      "no NSEC3 at this name" if spec.parent == "test."
                                      else "NODATA, proven SECURE: no DS in the parent")}}
    if spec.kind in ("root", "tld", "child"):
        names = {f"{z} SOA": "SECURE", f"{z} DNSKEY": "SECURE (authenticated by the parent's DS)",
                 ("nonexistent. A" if z == "." else f"nonexistent.{z} A"):
                     "NXDOMAIN, proven SECURE",
                 f"{z} A": "NODATA, proven SECURE"}
        if spec.kind == "child":
            names.update({
                f"www.{z} A": "SECURE", f"www.{z} AAAA": "SECURE", f"{z} MX": "SECURE",
                f"{z} TXT": "SECURE", f"www.{z} MX": "NODATA, proven SECURE",
                f"b.c.{z} A": "NODATA at an empty non-terminal, proven SECURE",
                f"a.b.c.{z} A": "SECURE",
                f"foo.wild.{z} A": "SECURE wildcard answer (from *.wild), no closer match proven",
                f"foo.wild.{z} MX": "wildcard NODATA, proven SECURE",
                f"cname.{z} A": "SECURE CNAME to www (same zone)",
                f"cname-out.{z} A": f"SECURE CNAME to www.{spec.cname_out}",
                f"insecure.{z} DS": "NODATA, proven SECURE: no DS (insecure delegation)",
                f"www.insecure.{z} A": "INSECURE",
                f"cname-insecure.{z} A": f"SECURE CNAME into the unsigned zone insecure.{z}: "
                                         "the answer is INSECURE",
            })
            if spec.dname_to:
                names[f"www.dname.{z} A"] = f"SECURE DNAME to {spec.dname_to} (synthesized CNAME)"
            if z == BIG_TXT_ZONE:
                names[f"big.{z} TXT"] = ("SECURE, about 3000 bytes: truncated (TC) over UDP at "
                                         "1232 bytes, complete over TCP")
            if z == CHAIN_ZONE:
                names[f"chain1.{z} A"] = (f"SERVFAIL, EDE 0: {CHAIN_LINKS} CNAMEs exceed the "
                                          "default CNAME budget of 12 (chainK is "
                                          f"{CHAIN_LINKS + 1}-K CNAMEs from www)")
                names[f"chain4.{z} A"] = "SECURE after 12 CNAMEs, the default CNAME budget"
                names[f"loop-a.{z} A"] = "SERVFAIL, EDE 0: CNAME loop loop-a <-> loop-b"
        if spec.name == "test.":
            names["insecure.test. DS"] = ("NODATA, INSECURE: opt-out, no NSEC3 at "
                                          "insecure.test.")
            names["nonexistent.test. A"] = ("NXDOMAIN, INSECURE: the covering NSEC3 has the "
                                            "opt-out flag (dnssec-signzone -A)")
        if spec.name == "example.":
            names["insecure.example. DS"] = ("NODATA, proven SECURE (NSEC with NS, no DS bit)")
        return {"zone": "secure", "ede": None, "names": names}
    b = spec.breakage
    # zone verdict, EDE, text for www A, text for the DNSKEY RRset
    table = {
        "expired": ("bogus", 7, "BOGUS, EDE 7: every RRSIG expired (2021-01-01)", None),
        "notyet": ("bogus", 8, "BOGUS, EDE 8: every RRSIG not yet valid (2035-01-01)", None),
        "wrongds": ("bogus", 9, "BOGUS, EDE 9: no DNSKEY matches the DS (DNSKEY Missing; "
                                "EDE 6 acceptable)", None),
        "nosig": ("bogus", 10, "BOGUS, EDE 10: www A/AAAA have no RRSIG",
                  "SECURE (only www A/AAAA lack RRSIGs)"),
        "badsig": ("bogus", 6, "BOGUS, EDE 6: the www A RRSIG does not verify",
                   "SECURE (only the www A RRSIG is damaged)"),
        "unknownalg": ("insecure", 1, "INSECURE: only algorithm 200 in DS and DNSKEY (an "
                                      "informational Unsupported DNSKEY Algorithm EDE may "
                                      "accompany the answer)", None),
        "nsec3iter": ("insecure", 27, "SECURE (the data; only denial proofs depend on the "
                                      "100 NSEC3 iterations)", "SECURE"),
        "keytrap": ("bogus", 6, None, None),
        "sha1": ("secure", None, "INSECURE: RSASHA1 only, and SHA-1 is off by default "
                                 "(RFC 9905; an informational Unsupported DNSKEY Algorithm EDE "
                                 "may accompany the answer); SECURE with allow_sha1", None),
    }
    zone, ede, text, dnskey_text = table[b]
    names = {f"www.{z} A": text, f"{z} DNSKEY": dnskey_text or text}
    if b == "nosig":
        names[f"www.{z} AAAA"] = text
        names[f"{z} TXT"] = "SECURE"
    if b == "badsig":
        names[f"www.{z} AAAA"] = "SECURE"
    if b == "nsec3iter":
        names[f"nonexistent.{z} A"] = ("NXDOMAIN, INSECURE, EDE 27: 100 NSEC3 iterations exceed "
                                       "the default cap of 50 (RFC 9276)")
    if b == "keytrap":
        names = {f"trap.{z} A": "BOGUS, EDE 6 (budget exhausted under default limits)",
                 f"www.{z} A": "SECURE (5 RRSIGs, one per colliding key)",
                 f"{z} DNSKEY": "SECURE from the DS if max_keys_per_tag >= 5 (the KSK sorts last "
                                "among the 5 same-tag keys)"}
    return {"zone": zone, "ede": ede, "breakage": b, "names": names}


def scenario_queries() -> list[dict]:
    """Queries a resolver test can run against the started tree, with what the resolver should
    answer. outcome: secure (AD, NOERROR), nxdomain (AD, NXDOMAIN), insecure (no AD),
    bogus (SERVFAIL: validation failed), servfail (SERVFAIL: resolution failed)."""
    out = []

    def q(name, qname, qtype, outcome, rcode, ede=None, note="", answer=None, config=None):
        e = {"name": name, "qname": qname, "qtype": qtype, "outcome": outcome, "rcode": rcode,
             "ad": outcome in ("secure", "nxdomain"), "ede": ede, "note": note}
        if answer is not None:
            e["answer"] = answer
        if config:
            e["config"] = config
        out.append(e)

    q("secure-answer", "www.rsasha256.example.", "A", "secure", "NOERROR", answer=["192.0.2.20"])
    q("secure-nsec3-answer", "www.ecdsap384.test.", "A", "secure", "NOERROR",
      answer=["192.0.2.23"])
    q("secure-nxdomain-nsec", "nonexistent.rsasha256.example.", "A", "nxdomain", "NXDOMAIN")
    q("secure-nxdomain-nsec3", "nonexistent.ed25519.example.", "A", "nxdomain", "NXDOMAIN")
    q("secure-nodata", "www.ed448.test.", "MX", "secure", "NOERROR", answer=[],
      note="NODATA, proven")
    q("secure-nodata-ent", "b.c.rsasha512.test.", "A", "secure", "NOERROR", answer=[],
      note="empty non-terminal")
    q("wildcard", "foo.wild.ecdsap256.example.", "A", "secure", "NOERROR",
      answer=["192.0.2.22"], note="synthesised from *.wild; RRSIG labels 3")
    q("wildcard-nsec3", "foo.wild.ed25519.example.", "A", "secure", "NOERROR",
      answer=["192.0.2.24"])
    q("wildcard-nodata", "foo.wild.ecdsap256.example.", "MX", "secure", "NOERROR", answer=[])
    q("dname", "www.dname.ecdsap256.example.", "A", "secure", "NOERROR", answer=["192.0.2.24"],
      note="DNAME to ed25519.example. with a synthesised (unsigned) CNAME")
    q("cname-in-zone", "cname.ed448.test.", "A", "secure", "NOERROR", answer=["192.0.2.25"])
    q("cname-signed-to-signed", "cname-out.rsasha256.example.", "A", "secure", "NOERROR",
      answer=["192.0.2.21"], note="CNAME to www.rsasha512.test.: two signed zones")
    q("cname-into-insecure", "cname-insecure.rsasha256.example.", "A", "insecure", "NOERROR",
      answer=["192.0.2.32"], note="signed CNAME to www.insecure.rsasha256.example. (unsigned)")
    q("cname-chain-15", f"chain1.{CHAIN_ZONE}", "A", "servfail", "SERVFAIL", 0,
      note=f"{CHAIN_LINKS} CNAMEs in one zone (chainK is {CHAIN_LINKS + 1}-K links from www), "
           "over the resolver's default CNAME budget of 12; secure (192.0.2.22) with a budget "
           "of 15 or more")
    q("cname-chain-12", f"chain4.{CHAIN_ZONE}", "A", "secure", "NOERROR", answer=["192.0.2.22"],
      note="12 CNAMEs: exactly the default CNAME budget")
    q("cname-loop", f"loop-a.{CHAIN_ZONE}", "A", "servfail", "SERVFAIL", 0,
      note="loop-a CNAME loop-b CNAME loop-a")
    q("big-answer-tcp", f"big.{BIG_TXT_ZONE}", "TXT", "secure", "NOERROR",
      note="about 3000 bytes: TC over UDP (1232), retried over TCP")
    q("insecure-below-nsec", "www.insecure.example.", "A", "insecure", "NOERROR",
      answer=["192.0.2.30"])
    q("insecure-below-optout", "www.insecure.test.", "A", "insecure", "NOERROR",
      answer=["192.0.2.31"])
    q("insecure-below-nsec3", "www.insecure.ed25519.example.", "A", "insecure", "NOERROR",
      answer=["192.0.2.36"])
    q("lame-one-ns", "www.lame.example.", "A", "insecure", "NOERROR", answer=["192.0.2.50"],
      note="ns1 (127.0.0.51) REFUSED, ns2 (127.0.0.50) answers")
    q("lame-all-ns", "www.alllame.example.", "A", "servfail", "SERVFAIL", 22,
      note="127.0.0.51 and 127.0.0.52 both REFUSED")
    q("unreachable", "www.unreachable.example.", "A", "servfail", "SERVFAIL", 22,
      note="nothing listens at 127.0.0.54")
    q("referral-loop", "www.loop1.example.", "A", "servfail", "SERVFAIL", 22,
      note="glueless delegation cycle loop1.example. <-> loop2.example.")
    q("forward", "www.fwd.example.", "A", "secure", "NOERROR", answer=["192.0.2.57"],
      config="forward", note=f"with forward: fwd.example. -> 127.0.0.{FORWARDER_ADDR}")
    q("forward-nxdomain", "nonexistent.fwd.example.", "A", "nxdomain", "NXDOMAIN",
      config="forward")
    q("expired", "www.expired.example.", "A", "bogus", "SERVFAIL", 7)
    q("notyet", "www.notyet.example.", "A", "bogus", "SERVFAIL", 8)
    q("wrongds", "www.wrongds.example.", "A", "bogus", "SERVFAIL", 9, note="EDE 6 acceptable")
    q("nosig", "www.nosig.test.", "A", "bogus", "SERVFAIL", 10)
    q("nosig-other-data", "nosig.test.", "TXT", "secure", "NOERROR")
    q("badsig", "www.badsig.test.", "A", "bogus", "SERVFAIL", 6)
    q("keytrap", "trap.keytrap.example.", "A", "bogus", "SERVFAIL", 6,
      note="budget reason under the default limits")
    q("unknownalg", "www.unknownalg.example.", "A", "insecure", "NOERROR",
      answer=["192.0.2.45"], note="EDE 1 (Unsupported DNSKEY Algorithm) may accompany it")
    q("sha1", "www.sha1.example.", "A", "insecure", "NOERROR", answer=["192.0.2.48"],
      note="SHA-1 disabled (default), EDE 1 may accompany it; SECURE with allow_sha1")
    q("nsec3-iterations", "nonexistent.nsec3iter.test.", "A", "insecure", "NXDOMAIN", 27,
      note="100 iterations > the default cap of 50")
    # hostile zones: what the resolver answers, and quickly, at its default limits
    q("keytrap-heavy", "trap.keytrap-heavy.example.", "A", "bogus", "SERVFAIL", 6,
      note=f"{KEYTRAP_HEAVY_KEYS} same-tag keys x {KEYTRAP_HEAVY_KEYS} RRSIGs; budget reason")
    q("signature-flood", "flood.sigflood.example.", "A", "bogus", "SERVFAIL", 6,
      note=f"{SIGFLOOD_RRSIGS} RRSIGs that do not verify; per-RRset budget")
    q("nsec3-long-salt", "nonexistent.nsec3salt.test.", "A", "nxdomain", "NXDOMAIN",
      note="255-byte salt, 0 iterations: legitimate")
    q("nsec3-heavy", "nonexistent.nsec3heavy.test.", "A", "insecure", "NXDOMAIN", 27,
      note=f"{NSEC3_HEAVY_ITERATIONS} iterations and a 255-byte salt: no hashing, insecure")
    q("nsec3-flood", "nonexistent.nsec3flood.test.", "A", "bogus", "SERVFAIL", 6,
      note=f"{NSEC3FLOOD_EXTRA} NSEC3 records stuffed into the answer")
    q("near-64k-tcp", "txt.large.example.", "TXT", "secure", "NOERROR",
      note="about 60 KiB signed: TC over UDP, complete over TCP")
    q("cname-chain-across-zones", "c1.hop-a.example.", "A", "servfail", "SERVFAIL", 0,
      note=f"{HOP_LINKS} CNAMEs alternating between hop-a and hop-b")
    q("referral-back-up", "www.sub.refloop.example.", "A", "servfail", "SERVFAIL", 22,
      note="the child's server refers back up to its parent zone: lame")
    q("deep-delegation", "www." + "a." * DEEP_LEVELS + "deep.example.", "A", "insecure",
      "NOERROR", note=f"{DEEP_LEVELS} zone cuts below deep.example. on two servers: 10 referrals "
      "(RFC 9156 §2.3 caps the minimised queries, the servers answer from their deepest zones); "
      "one label a cut would take 34, over the depth budget")
    q("nxns", "www.nxns.example.", "A", "servfail", "SERVFAIL", 22,
      note=f"{NXNS_NAMES} glueless NS names that do not exist")
    return out


def servers_table(specs: list[Spec]) -> dict:
    """Every 127.0.0.N of the tree and what it does (tree.json "servers")."""
    servers = {}
    for spec in specs:
        if spec.kind == "hostile" and (spec.served or spec.behaviour):
            # hostile: may serve several zones, or none and only misbehave (behaviour)
            entry = servers.setdefault(spec.server, {"role": "hostile", "zones": []})
            entry["zones"] += [spec.name] if spec.served else []
            if spec.behaviour:
                entry["behaviour"] = spec.behaviour
        elif spec.served:
            servers[spec.server] = {"role": "authoritative", "zones": [spec.name]}
    for a in LAME_ADDRS:
        servers[f"{ADDR_PREFIX}{a}"] = {"role": "lame", "zones": [],
                                         "note": "serves no zone: REFUSED to everything"}
    for a in UNREACHABLE_ADDRS:
        servers[f"{ADDR_PREFIX}{a}"] = {"role": "unreachable", "zones": [],
                                         "note": "nothing listens"}
    servers[f"{ADDR_PREFIX}{FORWARDER_ADDR}"] = {
        "role": "forwarder", "zones": [],
        "note": "recursive stub serving the whole tree (RA), started by "
                "authority.start_forwarder() or start_tree(forwarder=True)"}
    for spec in specs:
        for ns, addr in spec.ns_list:
            if addr is not None:  # NXNS names have no address
                servers[addr].setdefault("ns", []).append(ns)
    return dict(sorted(servers.items(), key=lambda kv: int(kv[0].rsplit(".", 1)[1])))


def build(args) -> None:
    old = json.loads(MANIFEST.read_text()) if MANIFEST.exists() and not args.new_keys else {"zones": {}}
    old["zones"] = {**old.get("zones", {}), **old.get("scenario_zones", {})}
    specs = build_specs()
    by_name = {s.name: s for s in specs}
    tmp = Path(tempfile.mkdtemp(prefix="zones.", dir=HERE))
    manifest_zones = {}
    ds_text: dict[str, str] = {}
    try:
        # children before parents: depth first by label count, deepest first
        order = sorted(specs, key=lambda s: -len(dns.name.from_text(s.name)))
        for spec in order:
            zdir = tmp / spec.dirname
            keydir = zdir / "keys"
            keydir.mkdir(parents=True)
            lines = child_content(spec, by_name)
            # delegations to this zone's children
            for c in specs:
                if c.parent == spec.name:
                    lines += delegation_lines(c, ds_text.get(c.name))
            if spec.name == ".":
                lines.append(f"a.root-servers.test.\tIN\tA\t{spec.server}")
            if spec.name == "test.":
                lines.append(f"a.root-servers.test.\tIN\tA\t{by_name['.'].server}")
            unsigned = zdir / "unsigned.zone"
            unsigned.write_text("\n".join(lines) + "\n")
            entry = {
                "file": None, "unsigned": f"zones/{spec.dirname}/unsigned.zone",
                "server": spec.server, "ns": spec.ns, "parent": spec.parent, "kind": spec.kind,
                "signer": None, "algorithm": spec.alg,
                "algorithm_name": ALG_NAMES.get(spec.alg) if spec.alg else None,
                "keys_layout": None, "denial": spec.denial, "nsec3": None, "ds": None,
                "ds_digest_types": list(spec.ds_digests) if spec.alg else [],
                "inception": None, "expiration": None, "keys": [], "notes": spec.notes,
            }
            if spec.kind == "hostile":
                entry["scenario"] = spec.hostile
                entry["served"] = spec.served
                entry["nameservers"] = [{"name": ns, "address": addr,
                                         "glue": spec.glue and in_bailiwick(ns, spec.name)}
                                        for ns, addr in spec.ns_list]
            if spec.kind == "scenario":
                entry["scenario"] = spec.scenario
                entry["served"] = spec.served
                entry["nameservers"] = [
                    {"name": ns, "address": addr,
                     "glue": spec.glue and in_bailiwick(ns, spec.name),
                     "role": ("authoritative" if spec.served and addr == spec.server else
                              "lame" if int(addr.rsplit(".", 1)[1]) in LAME_ADDRS else
                              "unreachable" if int(addr.rsplit(".", 1)[1]) in UNREACHABLE_ADDRS
                              else "authoritative")}
                    for ns, addr in spec.ns_list]
            if spec.signer == "none":
                keydir.rmdir()
                entry["file"] = entry["unsigned"]
                entry["signer"] = "unsigned"
                entry["expect"] = expectations(spec)
                manifest_zones[spec.name] = entry
                continue
            old_entry = old.get("zones", {}).get(spec.name)
            if spec.breakage == "keytrap":
                keys = keytrap_keys(spec, keydir)
            elif spec.hostile == "keytrap-heavy":
                keys = rsa_tag_collision_keys(spec, keydir, KEYTRAP_HEAVY_KEYS)
            elif spec.breakage == "unknownalg":
                keys = [unknownalg_key(spec, keydir)]
            else:
                keys = make_keys(spec, keydir, old_entry)
            signed = zdir / "signed.zone"
            if spec.breakage == "unknownalg":
                # throw-away key, only so that ldns-signzone writes the NSEC chain
                with tempfile.TemporaryDirectory() as td:
                    base = run(["ldns-keygen", "-r", "/dev/urandom", "-a", "ECDSAP256SHA256",
                                spec.name], cwd=td).stdout.strip()
                    cmd = ["ldns-signzone", "-d", "-i", spec.inception, "-e", spec.expiration,
                           "-o", spec.name, "-f", signed]
                    src = zdir / "signer-input.zone"
                    src.write_text(unsigned.read_text() + keys[0].key_line(keydir) + "\n")
                    run(cmd + [src, Path(td) / base])
                    src.unlink()
                fabricate_unknownalg(spec, signed, keys[0], keydir)
                signer_name = "ldns-signzone (NSEC chain) + generate.py (algorithm-200 placeholders)"
            elif spec.signer == "bind":
                sign_bind(spec, unsigned, keys, keydir, signed)
                signer_name = "dnssec-signzone"
            else:
                extra = ""
                if spec.breakage == "keytrap" or spec.hostile == "keytrap-heavy":
                    # ldns-signzone adds a key from its .key file only when no DNSKEY with the
                    # same key tag is in the zone yet: with colliding tags it would publish just
                    # one of them. So all of them go into its input.
                    extra = "".join(k.key_line(keydir) + "\n" for k in keys)
                if spec.hostile == "keytrap-heavy":
                    sign_keytrap_heavy(spec, unsigned, keys, keydir, signed, extra)
                else:
                    sign_ldns(spec, unsigned, keys, keydir, signed, extra)
                signer_name = "ldns-signzone"
            if spec.breakage == "nosig":
                break_nosig(spec, signed)
            elif spec.breakage == "badsig":
                break_badsig(spec, signed)
            elif spec.breakage == "keytrap" or spec.hostile == "keytrap-heavy":
                break_keytrap(spec, signed)
            elif spec.hostile == "sigflood":
                flood_rrsigs(spec, signed)
            if spec.breakage == "unknownalg":
                out = run(["ldns-key2ds", "-n", "-2", f"{keys[0].base}.key"], cwd=keydir).stdout
                owner, _t, ds = parse_rrs(out, dns.rdatatype.DS)[0]
                assert ds == dns.dnssec.make_ds(spec.name, keys[0].dnskey(keydir), 2,
                                                policy=dns.dnssec.allow_all_policy)
                text = rr_line(owner, TTL, ds) + "\n"
            else:
                text = make_ds_text(spec, keys, keydir)
            ds_text[spec.name] = text
            (zdir / "ds").write_text(text)
            entry.update({
                "file": f"zones/{spec.dirname}/signed.zone", "signer": signer_name,
                "keys_layout": "KSK+ZSK" if spec.keys == "split" else "CSK",
                "signer_flags": [f for f in spec.extra_flags],
                "ds": f"zones/{spec.dirname}/ds",
                "inception": spec.inception, "expiration": spec.expiration,
                "nsec3": ({"iterations": spec.nsec3_iterations, "salt": spec.nsec3_salt,
                           "optout": spec.denial == "nsec3-optout"}
                          if spec.denial and spec.denial.startswith("nsec3") else None),
                "keys": [{"file": f"zones/{spec.dirname}/keys/{k.base}", "role": k.role,
                          "algorithm": k.dnskey(keydir).algorithm,
                          "flags": k.dnskey(keydir).flags,
                          "tag": dns.dnssec.key_id(k.dnskey(keydir)),
                          "published": k.published} for k in keys],
                "expect": expectations(spec),
            })
            if spec.breakage == "keytrap":
                entry["keys_layout"] = "1 KSK + 4 ZSKs, one shared key tag"
            if spec.hostile == "keytrap-heavy":
                entry["keys_layout"] = f"KSK + ZSK + {len(keys) - 2} ZSKs sharing one key tag"
            manifest_zones[spec.name] = entry
        manifest = {
            "description": "dnssec-sidecar DNSSEC test tree; see README.md. Paths are relative to "
                           "tests/testtree/.",
            "inception": INCEPTION, "expiration": EXPIRATION, "now": NOW, "now_text": NOW_TEXT,
            "trust_anchor": "zones/root/ds",
            "root_hints": {"a.root-servers.test.": by_name["."].server},
            "tools": tool_versions(),
            "zones": {s.name: manifest_zones[s.name] for s in specs
                      if s.kind not in ("scenario", "hostile")},
            "scenario_zones": {s.name: manifest_zones[s.name] for s in specs
                               if s.kind in ("scenario", "hostile")},
            "servers": servers_table(specs),
            "forwarder": f"{ADDR_PREFIX}{FORWARDER_ADDR}",
            "resolver_listen": RESOLVER_LISTEN,
            "resolver_config": "resolver.yaml",
            "scenarios": scenario_queries(),
        }
        if ZONES.exists():
            shutil.rmtree(ZONES)
        tmp.rename(ZONES)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
        from testtree.authority import write_resolver_config
        write_resolver_config(manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ---------------------------------------------------------------- checks


def load_zone(entry_or_path, origin: str) -> dns.zone.Zone:
    path = HERE / entry_or_path
    return dns.zone.from_file(str(path), origin=origin, relativize=False)


def signed_rrsets(zone: dns.zone.Zone):
    """(rrset, rrsig_rrset|None) for every RRset the zone must sign (no glue, no delegation NS)."""
    apex = zone.origin
    cuts = {n for n, node in zone.nodes.items()
            if n != apex and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)}
    for name, node in sorted(zone.nodes.items()):
        below = any(name != c and name.is_subdomain(c) for c in cuts)
        if below:
            continue
        for rds in node.rdatasets:
            if rds.rdtype == dns.rdatatype.RRSIG:
                continue
            if name in cuts and rds.rdtype not in (dns.rdatatype.DS, dns.rdatatype.NSEC):
                continue
            rrset = dns.rrset.RRset(name, rds.rdclass, rds.rdtype)
            rrset.update(rds)
            covering = None
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rds.rdtype)
            if sigs:
                covering = dns.rrset.RRset(name, rds.rdclass, dns.rdatatype.RRSIG, rds.rdtype)
                covering.update(sigs)
            yield rrset, covering


def dnspython_check(name: str, entry: dict) -> dict:
    """Validate every RRset with dnspython at NOW, and the DNSKEY RRset against the DS."""
    zone = load_zone(entry["file"], name)
    origin = zone.origin
    dnskeys = zone.get_rdataset(origin, dns.rdatatype.DNSKEY)
    policy = dns.dnssec.allow_all_policy
    failures = {}
    total = sig_count = 0
    for rrset, sigs in signed_rrsets(zone):
        total += 1
        what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
        if sigs is None:
            failures[what] = "no RRSIG"
            continue
        errors = []
        for sig in sigs:  # every RRSIG must verify, one by one to keep each reason
            try:
                dns.dnssec.validate_rrsig(rrset, sig, {origin: dnskeys}, now=NOW, policy=policy)
            except Exception as e:  # ValidationFailure, UnsupportedAlgorithm, ...
                errors.append(f"{type(e).__name__}: {e}")
        if errors:
            failures[what] = "; ".join(sorted(set(errors)))
        sig_count += len(sigs)
    ds_ok, ds_notes = False, []
    for _owner, _ttl, ds in parse_rrs((HERE / entry["ds"]).read_text(), dns.rdatatype.DS):
        matching = [k for k in (dnskeys or [])
                    if dns.dnssec.key_id(k) == ds.key_tag and k.algorithm == ds.algorithm
                    and dns.dnssec.make_ds(origin, k, ds.digest_type, policy=policy) == ds]
        if not matching:
            ds_notes.append(f"DS {ds.key_tag}/{ds.algorithm}/{ds.digest_type}: no DNSKEY matches")
        for key in matching:
            sigs = zone.get_rdataset(origin, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
            sig_rrset = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                                        dns.rdatatype.DNSKEY)
            sig_rrset.update(sigs)
            try:
                dns.dnssec.validate((origin, dnskeys), sig_rrset,
                                    {origin: dns.rdataset.from_rdata(dnskeys.ttl, key)},
                                    now=NOW, policy=policy)
                ds_ok = True
            except Exception as e:
                ds_notes.append(f"DS {ds.key_tag}: DNSKEY RRset not signed by it: {type(e).__name__}: {e}")
    return {"total": total, "sigs": sig_count, "failures": failures, "ds_ok": ds_ok,
            "ds_notes": ds_notes}


def dnspython_verdict(name: str, brk: str | None, r: dict) -> bool:
    """Does the dnspython result match the intended breakage exactly?"""
    f = r["failures"]
    errors = set(f.values())
    if brk in (None, "nsec3iter", "sha1", "nsec3salt", "nsec3heavy", "nsec3flood", "large",
               "hop"):
        return not f and r["ds_ok"]
    if brk in ("keytrap", "keytrap-heavy", "sigflood"):
        bad = f"{'flood' if brk == 'sigflood' else 'trap'}.{name} A"
        return list(f) == [bad] and r["ds_ok"] and "verify failure" in f[bad]
    if brk == "expired":
        return len(f) == r["total"] and all("expired" in e for e in errors) and not r["ds_ok"]
    if brk == "notyet":
        return len(f) == r["total"] and all("not yet valid" in e for e in errors) and not r["ds_ok"]
    if brk == "wrongds":
        return not f and not r["ds_ok"]
    if brk == "nosig":
        return set(f) == {n for n in f if n.startswith("www.") and n.split()[1] in ("A", "AAAA")} \
            and len(f) == 2 and errors == {"no RRSIG"} and r["ds_ok"]
    if brk == "badsig":
        return list(f) == [next(iter(f))] and next(iter(f)).startswith("www.") and \
            next(iter(f)).endswith(" A") and r["ds_ok"]
    if brk == "unknownalg":
        return len(f) == r["total"] and all("UnsupportedAlgorithm" in e or "unsupported" in e.lower()
                                            or "unknown" in e.lower() for e in errors) \
            and not r["ds_ok"]
    return False


# intended results of the external tools for each breakage: True = the tool accepts the zone
TOOL_PASSES = {None: True, "expired": False, "notyet": False, "wrongds": True, "nosig": False,
               "badsig": False, "unknownalg": False, "nsec3iter": True, "keytrap": False,
               "sha1": True, "keytrap-heavy": False, "sigflood": False, "nsec3salt": True,
               "nsec3heavy": True, "nsec3flood": True, "large": True, "hop": True}


def check(manifest: dict) -> bool:
    """Run the independent checks; return True if every zone behaves as intended."""
    ok_all = True
    have_bind = shutil.which("dnssec-verify") is not None
    have_ldns = shutil.which("ldns-verify-zone") is not None
    if not (have_bind and have_ldns):
        print("note: dnssec-verify / ldns-verify-zone missing, only the dnspython check runs")

    def verdict(good):
        return "as intended" if good else "UNEXPECTED"

    for name, e in {**manifest["zones"], **manifest.get("scenario_zones", {})}.items():
        if e["signer"] == "unsigned":
            continue
        path = HERE / e["file"]
        brk = e["expect"].get("breakage")
        print(f"{name} [{e['kind']}{' ' + brk if brk else ''}] signer: {e['signer']}")
        if have_bind:
            # dnssec-verify has no time option: it checks at the machine's clock.
            # -z: a CSK signs everything; -x: DNSKEY RRset signed by the KSK only
            flags = ["-z"] if e["keys_layout"] == "CSK" else []
            if "-x" in e.get("signer_flags", []):
                flags.append("-x")
            p = run(["dnssec-verify", *flags, "-o", name, path], check=False)
            res = p.returncode == 0
            msg = ((p.stdout + p.stderr).strip().splitlines() or ["?"])[-1]
            good = res == TOOL_PASSES[brk]
            print(f"  dnssec-verify (machine clock): {'pass' if res else 'FAIL'} [{verdict(good)}] {msg}")
            ok_all &= good
        if have_ldns:
            p = run(["ldns-verify-zone", "-t", NOW_TEXT, path], check=False)
            res = p.returncode == 0
            out = (p.stdout + p.stderr).strip().splitlines() or ["?"]
            errors = [ln for ln in out if ln.startswith("Error")]
            msg = out[-1] + (f" ({len(errors)} errors, first: {errors[0]})" if errors else "")
            good = res == TOOL_PASSES[brk]
            print(f"  ldns-verify-zone -t {NOW_TEXT}: {'pass' if res else 'FAIL'} [{verdict(good)}] {msg}")
            ok_all &= good
            if brk in ("expired", "notyet"):
                t = "20200601000000" if brk == "expired" else "20360601000000"
                p = run(["ldns-verify-zone", "-t", t, path], check=False)
                res = p.returncode == 0
                msg = ((p.stdout + p.stderr).strip().splitlines() or ["?"])[-1]
                print(f"  ldns-verify-zone -t {t} (inside its window): "
                      f"{'pass' if res else 'FAIL'} [{verdict(res)}] {msg}")
                ok_all &= res
        r = dnspython_check(name, e)
        good = dnspython_verdict(name, brk, r)
        print(f"  dnspython at NOW: {r['total']} RRsets ({r['sigs']} RRSIGs), "
              f"{r['total'] - len(r['failures'])} with every RRSIG valid, "
              f"DNSKEY RRset authenticated by the parent's DS: {r['ds_ok']} [{verdict(good)}]")
        for what, err in list(r["failures"].items())[:4]:
            print(f"      {what}: {err}")
        if len(r["failures"]) > 4:
            print(f"      ... {len(r['failures']) - 4} more")
        for n in r["ds_notes"]:
            print(f"      {n}")
        ok_all &= good
    return ok_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-keys", action="store_true", help="generate fresh keys instead of reusing")
    ap.add_argument("--check", action="store_true", help="only run the independent checks")
    ap.add_argument("--no-check", action="store_true", help="skip the checks after building")
    args = ap.parse_args()
    if not args.check:
        for tool in ("dnssec-signzone", "dnssec-keygen", "dnssec-dsfromkey", "ldns-signzone",
                     "ldns-keygen", "ldns-key2ds"):
            if shutil.which(tool) is None:
                sys.exit(f"{tool} not found: apt-get install -y bind9-utils ldnsutils")
        build(args)
    if args.no_check:
        return 0
    manifest = json.loads(MANIFEST.read_text())
    ok = check(manifest)
    print("ALL CHECKS AS INTENDED" if ok else "SOME CHECKS UNEXPECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
