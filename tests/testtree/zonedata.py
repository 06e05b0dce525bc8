"""Read the test tree and pick the records an authoritative server would return.

Only dnspython and hashlib are used here (not dnspython's DNSSEC module, whose import warns
under newer cryptography releases), so the helpers serve both the validator tests and a
test authoritative server::

    from testtree import zonedata
    z = zonedata.load("ecdsap256.example.")
    z.rrset("www.ecdsap256.example.", "A"), z.rrsigs("www.ecdsap256.example.", "A")
    z.dnskeys(), z.ds()                      # DNSKEY RRset, the parent's DS RRset
    z.select_nxdomain("nope.ecdsap256.example.")   # [(NSEC RRset, its RRSIG RRset), ...]

The ``select_*`` methods follow RFC 4035 §3.1.3 (NSEC) and RFC 5155 §7.2 (NSEC3):
they return the NSEC or NSEC3 RRsets, each with its RRSIG RRset, that a server
puts in the authority section of that kind of response.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterator

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from . import HERE, MANIFEST

IN = dns.rdataclass.IN
NSEC = dns.rdatatype.NSEC
NSEC3 = dns.rdatatype.NSEC3
RRSIG = dns.rdatatype.RRSIG
NS = dns.rdatatype.NS
DS = dns.rdatatype.DS

Pair = tuple[dns.rrset.RRset, dns.rrset.RRset | None]


def _name(n) -> dns.name.Name:
    return n if isinstance(n, dns.name.Name) else dns.name.from_text(n)


def _type(t) -> int:
    return dns.rdatatype.from_text(t) if isinstance(t, str) else int(t)


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def zone_names(*kinds: str, breakage: str | None = None) -> list[str]:
    """Names of the zones of the given kinds (root, tld, child, insecure, broken), in
    manifest order; with ``breakage``, only the broken zone broken that way."""
    out = []
    for name, entry in manifest()["zones"].items():
        if kinds and entry["kind"] not in kinds:
            continue
        if breakage is not None and entry["expect"].get("breakage") != breakage:
            continue
        out.append(name)
    return out


def read_rrset_file(path, rdtype) -> dns.rrset.RRset:
    """An RRset from a one-RR-per-line file such as zones/<zone>/ds."""
    rrset = None
    for line in (HERE / path).read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        rr = dns.rrset.from_text(*_split_rr(line))
        if rr.rdtype != _type(rdtype):
            continue
        if rrset is None:
            rrset = rr
        else:
            rrset.union_update(rr)
    return rrset


def _split_rr(line: str):
    toks = line.split()
    owner, ttl, rdclass, rdtype, rest = toks[0], toks[1], toks[2], toks[3], " ".join(toks[4:])
    return owner, int(ttl), rdclass, rdtype, rest


def trust_anchor() -> dns.rrset.RRset:
    """The root zone's DS RRset: the trust anchor of the tree."""
    return read_rrset_file(manifest()["trust_anchor"], DS)


def scenario_zone_names(*scenarios: str) -> list[str]:
    """Names of the scenario zones (tree.json "scenario_zones": lame, alllame, unreachable,
    loop, forward), in manifest order; with arguments, only those scenarios."""
    return [name for name, entry in manifest().get("scenario_zones", {}).items()
            if not scenarios or entry["scenario"] in scenarios]


def entry(name) -> dict:
    """The tree.json entry of a zone, from "zones" or "scenario_zones"."""
    name = _name(name).to_text()
    m = manifest()
    if name in m["zones"]:
        return m["zones"][name]
    return m.get("scenario_zones", {})[name]


@functools.lru_cache(maxsize=None)
def load(name: str) -> "TestZone":
    name = _name(name).to_text()
    return TestZone(name, entry(name))


class TestZone:
    """One zone of the tree: its records, and the denial records a server would pick."""

    def __init__(self, name: str, entry: dict):
        self.name = dns.name.from_text(name)
        self.entry = entry
        self.zone = dns.zone.from_file(str(HERE / entry["file"]), origin=self.name,
                                       relativize=False)
        self.cuts = {n for n, node in self.zone.nodes.items()
                     if n != self.name and node.get_rdataset(IN, NS) is not None}
        # names of the zone's own data (not NSEC3 owners, not glue below a cut)
        self.names = sorted(n for n, node in self.zone.nodes.items()
                            if any(r.rdtype not in (NSEC3, RRSIG) for r in node.rdatasets)
                            and not self.below_cut(n))
        self.nsec_owners = sorted(n for n, node in self.zone.nodes.items()
                                  if node.get_rdataset(IN, NSEC) is not None)
        param = self.zone.get_rdataset(self.name, dns.rdatatype.NSEC3PARAM)
        self.nsec3param = param[0] if param else None
        self.nsec3_by_hash = {}
        for n, node in self.zone.nodes.items():
            if node.get_rdataset(IN, NSEC3) is not None:
                self.nsec3_by_hash[n.labels[0].decode().upper()] = n
        self.nsec3_hashes = sorted(self.nsec3_by_hash)

    # ------------------------------------------------------------------ records

    @property
    def kind(self) -> str:
        return self.entry["kind"]

    @property
    def denial(self) -> str | None:
        return self.entry["denial"]

    def below_cut(self, name: dns.name.Name) -> bool:
        return any(name != c and name.is_subdomain(c) for c in self.cuts)

    def rrset(self, owner, rdtype) -> dns.rrset.RRset | None:
        owner, rdtype = _name(owner), _type(rdtype)
        rds = self.zone.get_rdataset(owner, rdtype)
        if rds is None:
            return None
        rrset = dns.rrset.RRset(owner, IN, rdtype)
        rrset.update(rds)
        return rrset

    def rrsigs(self, owner, rdtype) -> dns.rrset.RRset | None:
        owner, rdtype = _name(owner), _type(rdtype)
        rds = self.zone.get_rdataset(owner, RRSIG, rdtype)
        if not rds:
            return None
        rrset = dns.rrset.RRset(owner, IN, RRSIG, rdtype)
        rrset.update(rds)
        return rrset

    def pair(self, owner, rdtype) -> Pair:
        return self.rrset(owner, rdtype), self.rrsigs(owner, rdtype)

    def dnskeys(self) -> dns.rrset.RRset | None:
        return self.rrset(self.name, dns.rdatatype.DNSKEY)

    def ds(self) -> dns.rrset.RRset | None:
        """The DS RRset the parent zone publishes for this zone (for the root: the trust
        anchor)."""
        if not self.entry.get("ds"):
            return None
        return read_rrset_file(self.entry["ds"], DS)

    def signed_rrsets(self) -> Iterator[Pair]:
        """Every RRset the zone signs: all authoritative data, NSEC/NSEC3 and the DS at cuts,
        not the NS of a delegation nor glue."""
        for name in sorted(self.zone.nodes):
            if self.below_cut(name):
                continue
            node = self.zone.nodes[name]
            for rds in node.rdatasets:
                if rds.rdtype == RRSIG:
                    continue
                if name in self.cuts and rds.rdtype not in (DS, NSEC):
                    continue
                yield self.pair(name, rds.rdtype)

    # ------------------------------------------------------------------ existence

    def exists(self, name) -> bool:
        """Whether ``name`` exists in the zone, as a node with data or as an empty
        non-terminal (RFC 4592)."""
        name = _name(name)
        return any(n.is_subdomain(name) for n in self.names)

    def closest_encloser(self, qname) -> dns.name.Name:
        """The deepest existing ancestor of ``qname`` (``qname`` itself if it exists)."""
        name = _name(qname)
        while not self.exists(name):
            name = name.parent()
        return name

    @staticmethod
    def next_closer(qname, ce) -> dns.name.Name:
        qname = _name(qname)
        return dns.name.Name(qname.labels[-(len(ce.labels) + 1):])

    @staticmethod
    def wildcard(ce) -> dns.name.Name:
        return dns.name.Name((b"*",) + _name(ce).labels)

    # ------------------------------------------------------------------ NSEC

    def nsec_matching(self, name) -> Pair | None:
        name = _name(name)
        if name not in self.nsec_owners:
            return None
        return self.pair(name, NSEC)

    def nsec_covering(self, name) -> Pair:
        """The NSEC whose span holds ``name`` (its owner is the last one before ``name`` in
        canonical order; the last NSEC wraps to the apex)."""
        name = _name(name)
        before = [o for o in self.nsec_owners if o < name]
        owner = before[-1] if before else self.nsec_owners[-1]
        return self.pair(owner, NSEC)

    # ------------------------------------------------------------------ NSEC3

    def nsec3_hash(self, name) -> str:
        """RFC 5155 §5: IH(salt, x, 0) = H(x || salt), IH(salt, x, k) = H(IH(k-1) || salt)."""
        p = self.nsec3param
        assert p.algorithm == 1, "NSEC3 hash algorithm 1 (SHA-1) is the only one defined"
        digest = _name(name).canonicalize().to_wire()
        for _ in range(p.iterations + 1):
            digest = hashlib.sha1(digest + p.salt).digest()
        return base64.b32hexencode(digest).decode()

    def nsec3_matching(self, name) -> Pair | None:
        h = self.nsec3_hash(name)
        owner = self.nsec3_by_hash.get(h)
        return None if owner is None else self.pair(owner, NSEC3)

    def nsec3_covering(self, name) -> Pair:
        h = self.nsec3_hash(name)
        assert h not in self.nsec3_by_hash, f"{name} has an NSEC3 of its own"
        before = [x for x in self.nsec3_hashes if x < h]
        owner = self.nsec3_by_hash[before[-1] if before else self.nsec3_hashes[-1]]
        return self.pair(owner, NSEC3)

    def _nsec3_ce_proof(self, qname) -> list[Pair]:
        """Closest encloser proof (RFC 5155 §7.2.1): the NSEC3 matching the closest
        provable encloser and the one covering the next closer name."""
        ce = self.closest_encloser(qname)
        # an encloser without an NSEC3 of its own (opt-out, names below a delegation) cannot
        # be the provable closest encloser: move up
        while self.nsec3_matching(ce) is None:
            ce = ce.parent()
        return [self.nsec3_matching(ce), self.nsec3_covering(self.next_closer(qname, ce))]

    # ------------------------------------------------------------------ selections

    def select_nxdomain(self, qname) -> list[Pair]:
        qname = _name(qname)
        assert not self.exists(qname), f"{qname} exists"
        ce = self.closest_encloser(qname)
        if self.denial == "nsec":
            return _unique([self.nsec_covering(qname), self.nsec_covering(self.wildcard(ce))])
        return _unique(self._nsec3_ce_proof(qname) + [self.nsec3_covering(self.wildcard(ce))])

    def select_nodata(self, qname, qtype=None) -> list[Pair]:
        """NODATA at an existing name, empty non-terminals included (RFC 4035 §3.1.3.1,
        RFC 5155 §7.2.3); for DS at a delegation without an NSEC3 of its own (opt-out), the
        closest encloser proof (§7.2.4)."""
        qname = _name(qname)
        assert self.exists(qname), f"{qname} does not exist"
        if self.denial == "nsec":
            m = self.nsec_matching(qname)
            return [m] if m else [self.nsec_covering(qname)]  # empty non-terminal
        m = self.nsec3_matching(qname)
        if m:
            return [m]
        assert qtype is not None and _type(qtype) == DS, f"no NSEC3 at {qname}"
        return _unique(self._nsec3_ce_proof(qname))

    def select_wildcard_answer(self, qname, wildcard) -> list[Pair]:
        """A positive answer expanded from ``wildcard``: proof that ``qname`` itself does not
        exist (RFC 4035 §3.1.3.3, RFC 5155 §7.2.6)."""
        qname = _name(qname)
        if self.denial == "nsec":
            return [self.nsec_covering(qname)]
        ce = _name(wildcard).parent()
        return [self.nsec3_covering(self.next_closer(qname, ce))]

    def select_wildcard_nodata(self, qname, qtype=None) -> list[Pair]:
        """The wildcard that would answer ``qname`` lacks the type (RFC 4035 §3.1.3.4,
        RFC 5155 §7.2.5)."""
        qname = _name(qname)
        ce = self.closest_encloser(qname)
        wc = self.wildcard(ce)
        if self.denial == "nsec":
            return _unique([self.nsec_covering(qname), self.nsec_matching(wc)])
        return _unique(self._nsec3_ce_proof(qname) + [self.nsec3_matching(wc)])

    def select_no_ds(self, delegation) -> list[Pair]:
        """Referral to an insecure delegation: the NSEC or NSEC3 of the delegation name, or
        for an opted-out delegation the closest encloser proof (RFC 5155 §7.2.7)."""
        return self.select_nodata(delegation, DS)


def _unique(pairs: list[Pair | None]) -> list[Pair]:
    out, seen = [], set()
    for p in pairs:
        assert p is not None and p[0] is not None
        if p[0].name in seen:
            continue
        seen.add(p[0].name)
        out.append(p)
    return out
