"""Scripted authoritative servers for the scenario files (tests/scenarios/*.yaml).

A scenario names its zones, the servers (loopback addresses) that serve them, the trust anchor,
and steps: client queries with the answers expected, and changes to the servers between
queries. ``tests/scenarios/README.md`` describes the format. The servers are the test tree's
(tests/testtree/authority.py), which answer from a zone the way RFC 1034 §4.3.2 and RFC 4035
§3.1 ask; the zones come from

- ``tree: true``: a zone of the signed test tree, served at its own address;
- ``file: PATH``: a zone file (relative to tests/), served as it is (the RFC vectors);
- ``records: TEXT``: zone text completed here (SOA, apex NS, delegations with glue and DS to
  the scenario's child zones) and signed with dnspython's ``dns.dnssec.sign_zone`` using keys
  made for the run (an independent signer, not the resolver's code), unless ``sign: false``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.name
import dns.rdatatype
import dns.rrset
import dns.zone
import yaml
from dns.dnssectypes import Algorithm

from tests.conftest import private_key
from tests.testtree import NOW, authority, zonedata

TESTS = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TTL = 300


def load_all() -> list[dict]:
    """Every scenario of every file, each with ``file`` set to its file's name."""
    out = []
    for path in sorted(HERE.glob("*.yaml")):
        for scenario in yaml.safe_load(path.read_text()):
            scenario["file"] = path.name
            out.append(scenario)
    return out


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


@dataclasses.dataclass
class Built:
    """A scenario made ready: zones by name, servers, root hints and trust anchors."""
    zones: dict[str, zonedata.TestZone]
    servers: dict[str, dict]  # address -> {"zones": [...], knobs...}
    hints: list[tuple[str, str]]
    anchors: list[str]
    now: int


def _servers_of(scenario: dict) -> dict[str, dict]:
    out = {}
    for address, spec in scenario["servers"].items():
        spec = {"zones": spec} if isinstance(spec, list) else dict(spec)
        spec.setdefault("zones", [])
        out[address] = spec
    return out


def _addresses(servers: dict, zone: str) -> list[str]:
    return [a for a, s in servers.items() if zone in s["zones"]]


def _base(key: str) -> str:
    """The zone name of a zone key: ``example.@v2`` is a second version of ``example.``."""
    return key.split("@", 1)[0]


def _parent(zones: dict, name: str) -> str | None:
    n = _name(_base(name))
    while n != dns.name.root:
        n = n.parent()
        if n.to_text() in zones:
            return n.to_text()
    return None


def build(scenario: dict, directory: Path) -> Built:
    """Complete, sign and write the scenario's zones (children first, so each parent holds its
    children's DS); return what the servers and the resolver need."""
    specs = scenario["zones"]
    directory.mkdir(parents=True, exist_ok=True)
    servers = _servers_of(scenario)
    now = int(scenario.get("time", NOW))
    texts: dict[str, str] = {}
    for key, spec in specs.items():
        if "records" in spec:
            texts[key] = _complete(key, spec, specs, servers)
    ds: dict[str, list[str]] = {}
    built: dict[str, zonedata.TestZone] = {}
    keys: dict[str, dict] = {}  # zone name -> algorithm -> (private, DNSKEY): versions share
    for key in sorted(specs, key=lambda z: (-len(_name(_base(z))), z)):  # deepest first
        spec, zone = specs[key], _base(key)
        if spec.get("tree"):
            built[zone] = zonedata.load(zone)
            ds[zone] = [rd.to_text() for rd in (built[zone].ds() or [])]
            continue
        if "file" in spec:
            text = (TESTS / spec["file"]).read_text()
            for old, new in spec.get("replace", {}).items():
                text = text.replace(old, new)
            z = dns.zone.from_text(text, origin=zone, relativize=False, check_origin=False)
            denial = "nsec3" if z.get_rdataset(zone, "NSEC3PARAM") else "nsec"
        else:
            text = texts[key]
            for child, lines in ds.items():
                if "@" not in child and _parent(specs, child) == zone \
                        and specs[child].get("ds") != "none":
                    text += "".join(f"{child} {TTL} IN DS {line}\n" for line in lines)
            z = dns.zone.from_text(text, origin=zone, relativize=False)
            denial = _sign(z, spec.get("sign", {}), now, keys.setdefault(zone, {}))
        if "@" not in key:
            dnskeys = z.get_rdataset(zone, "DNSKEY")
            ds[zone] = [dns.dnssec.make_ds(zone, rd, "SHA256").to_text()
                        for rd in (dnskeys or []) if rd.flags & 1]
            if isinstance(spec.get("ds"), list):
                ds[zone] = spec["ds"]
            ds[zone] += spec.get("ds_extra", [])
        path = directory / f"{key.rstrip('.').replace('@', '-') or 'root'}.zone"
        path.write_text(z.to_text(relativize=False))
        built[key] = zonedata.TestZone(zone, {"file": str(path), "denial": denial,
                                              "kind": "scenario"})
    root = [a for a, s in servers.items() if "." in s["zones"]]
    hints = [(f"ns{i}.", a) for i, a in enumerate(root)]
    if scenario.get("tree_root"):
        hints = list(zonedata.manifest()["root_hints"].items())
    anchor = scenario.get("anchor", ".")
    anchors = [f"{anchor} IN DS {line}" for line in ds.get(anchor, [])]
    if anchor == "." and scenario.get("tree_root"):
        anchors = authority.trust_anchor_lines()
    return Built(built, servers, hints, anchors, now)


def _complete(key: str, spec: dict, specs: dict, servers: dict) -> str:
    """SOA and apex NS (``ns<i>.<zone>``, one per address serving it, glue inside), and for
    each child zone of the scenario its NS and glue (its DS comes once the child is signed)."""
    zone = _base(key)

    def sub(label: str, owner: str) -> str:
        return f"{label}.{owner}".replace("..", ".")

    lines = [f"{zone} {TTL} IN SOA {sub('ns0', zone)} {sub('hostmaster', zone)} "
             f"1 3600 600 86400 {TTL}"]

    def ns_lines(owner: str):
        out = []
        for i, address in enumerate(_addresses(servers, owner) or ["127.0.0.254"]):
            out.append(f"{owner} {TTL} IN NS {sub(f'ns{i}', owner)}")
            out.append(f"{sub(f'ns{i}', owner)} {TTL} IN A {address}")
        return out

    lines += ns_lines(zone)
    for child in specs:
        if "@" not in child and child != zone and _parent(specs, child) == zone:
            lines += spec.get("delegations", {}).get(child) or ns_lines(child)
    text = spec["records"] or ""
    return "\n".join(lines) + "\n" + text + "\n"


def _sign(z: dns.zone.Zone, sign, now: int, made: dict) -> str | None:
    """Sign with one CSK per algorithm of ``sign["algorithms"]`` (default 13), reusing the
    zone's keys in ``made``. NSEC: ``dns.dnssec.sign_zone``; NSEC3 (``sign["nsec3"]``:
    ``{iterations, salt, optout}``): the chain made here (dnspython 2.9 signs NSEC only), every
    RRset signed with ``dns.dnssec.sign``. ``sign: false``: left unsigned."""
    if sign is False:
        return None
    keys = []
    for algorithm in sign.get("algorithms", [13]):
        if algorithm not in made:
            private = private_key(algorithm)
            made[algorithm] = (private, dns.dnssec.make_dnskey(
                private.public_key(), Algorithm(algorithm), flags=257))
        keys.append(made[algorithm])
    window = {"inception": now - 86400, "expiration": now + 86400 * 30,
              "policy": dns.dnssec.allow_all_policy}
    if "nsec3" not in sign:
        dns.dnssec.sign_zone(z, keys=keys, **window)
        return "nsec"
    with z.writer() as txn:
        for _, dnskey in keys:
            txn.add(z.origin, TTL, dnskey)
        _nsec3_chain(z, txn, sign["nsec3"] or {})
    with z.writer() as txn:
        for name, node in list(z.nodes.items()):
            for rds in list(node.rdatasets):
                if _signed(z, name, rds.rdtype):
                    rrset = dns.rrset.from_rdata_list(name, rds.ttl, list(rds))
                    for private, dnskey in keys:
                        txn.add(name, rds.ttl, dns.dnssec.sign(
                            rrset, private, z.origin, dnskey, **window))
    return "nsec3"


def _cut(z: dns.zone.Zone, name: dns.name.Name) -> dns.name.Name | None:
    """The delegation at or above ``name`` inside the zone, if any."""
    while name != z.origin:
        if z.get_rdataset(name, "NS") is not None:
            return name
        name = name.parent()
    return None


def _signed(z: dns.zone.Zone, name: dns.name.Name, rdtype: int) -> bool:
    """RFC 4035 §2.2: every authoritative RRset is signed; at a delegation only DS (and NSEC3
    records, which have their own owners); glue never."""
    cut = _cut(z, name)
    if cut is None:
        return rdtype != dns.rdatatype.RRSIG
    return name == cut and rdtype == dns.rdatatype.DS


def _nsec3_chain(z: dns.zone.Zone, txn, p: dict) -> None:
    """The NSEC3PARAM and NSEC3 chain of RFC 5155 §7.1: one NSEC3 per authoritative name and
    empty non-terminal (glue left out); with opt-out, none for delegations without DS."""
    iterations, salt, optout = p.get("iterations", 0), p.get("salt", ""), p.get("optout", False)
    txn.add(z.origin, TTL, dns.rdata.from_text(
        "IN", "NSEC3PARAM", f"1 0 {iterations} {salt or '-'}"))
    types: dict[dns.name.Name, set[str]] = {}
    for name, node in z.nodes.items():
        cut = _cut(z, name)
        if cut is not None and cut != name:
            continue  # glue
        present = {dns.rdatatype.to_text(r.rdtype) for r in node.rdatasets}
        if name == z.origin:
            present |= {"NSEC3PARAM", "DNSKEY"}
        if cut == name and "DS" not in present and optout:
            continue
        signed = cut != name or "DS" in present
        types[name] = present | ({"RRSIG"} if signed else set())
        parent = name
        while parent != z.origin:  # empty non-terminals
            parent = parent.parent()
            types.setdefault(parent, set())
    hashed = sorted((dns.dnssec.nsec3_hash(n, salt or None, iterations, 1).lower(), n)
                    for n in types)
    for i, (digest, name) in enumerate(hashed):
        following = hashed[(i + 1) % len(hashed)][0]
        text = (f"1 {1 if optout else 0} {iterations} {salt or '-'} {following} "
                + " ".join(sorted(types[name])))
        txn.add(dns.name.from_text(digest, z.origin), TTL,
                dns.rdata.from_text("IN", "NSEC3", text))


def _rrsets(lines: list[str]) -> list[dns.rrset.RRset]:
    """Records as ``owner [TTL] TYPE rdata`` (class IN, TTL 300 by default), grouped."""
    out: list[dns.rrset.RRset] = []
    for line in lines:
        owner, rest = line.split(None, 1)
        first, rest2 = rest.split(None, 1)
        ttl, rest = (int(first), rest2) if first.isdigit() else (TTL, rest)
        rdtype, rdata = rest.split(None, 1)
        rrset = dns.rrset.from_text(owner, ttl, "IN", rdtype, rdata)
        same = next((r for r in out if r.name == rrset.name and r.rdtype == rrset.rdtype
                     and r.covers == rrset.covers), None)
        if same is None:
            out.append(rrset)
        else:
            same.union_update(rrset)
    return out


class Scripted(authority.Server):
    """A test server that answers some questions with scripted replies: ``canned`` maps
    ``"NAME TYPE"`` (TYPE ``*``: every type but DS) to ``{rcode, aa, answer, authority,
    additional}``; everything else is answered from its zones."""

    def __init__(self, *args, canned: dict | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.canned = canned or {}

    def handle(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
            q = query.question[0]
        except Exception:  # noqa: BLE001 - the base class answers what it cannot parse
            return super().handle(wire, transport)
        name, rdtype = q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)
        reply = self.canned.get(f"{name} {rdtype}")
        if reply is None and q.rdtype != dns.rdatatype.DS:
            reply = self.canned.get(f"{name} *")
        if reply is None:
            return super().handle(wire, transport)
        super().handle(wire, transport)  # recorded like every query
        response = dns.message.make_response(query, our_payload=authority.EDNS_PAYLOAD)
        response.set_rcode(dns.rcode.from_text(reply.get("rcode", "NOERROR")))
        if reply.get("aa", True):
            response.flags |= dns.flags.AA
        for section in ("answer", "authority", "additional"):
            getattr(response, section).extend(_rrsets(reply.get(section, [])))
        return response.to_wire(max_size=authority.MAX_MESSAGE)


class Servers:
    """The scenario's servers, running; ``apply`` changes them between steps."""

    def __init__(self, built: Built) -> None:
        self.built = built
        self.queries: list = []
        self.errors: list[str] = []
        servers = []
        for address, spec in built.servers.items():
            knobs = {k: v for k, v in spec.items() if k != "zones"}
            servers.append(Scripted(address, [built.zones[z] for z in spec["zones"]],
                                    queries=self.queries, errors=self.errors, **knobs))
        self.tree = authority.Tree(servers, self.queries, self.errors)

    def __enter__(self) -> "Servers":
        self.tree.start()
        return self

    def __exit__(self, *exc) -> None:
        self.tree.stop()

    def apply(self, changes: dict) -> None:
        """``{address: {zones: [...], knob: value, ...}}``: what a server serves and its fault
        knobs from now on (RFC 1034 §4.3.2 answers of another zone set, e.g. a re-signed
        zone, or a server turned lame)."""
        for address, spec in changes.items():
            server = self.tree.servers[address]
            spec = dict(spec)
            if "zones" in spec:
                server.zones = [self.built.zones[z] for z in spec.pop("zones")]
                server.responder = authority.Responder(server.zones, errors=self.errors)
            if "canned" in spec:
                server.canned = spec.pop("canned") or {}
            server.set_faults(**spec)
