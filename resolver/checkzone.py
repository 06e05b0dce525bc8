"""``dnssec-sidecar check-zone``: validate a signed zone file (RFC 1035 §5 master format)
offline, as ldns-verify-zone does: its DNSKEY set from a DS or DNSKEY trust file or its own SEP
keys (RFC 4035 §5.2, RFC 4034 §2.1.1), then every authoritative RRset, NSEC and NSEC3 records
included (RFC 4035 §5.3; glue and a delegation's NS left out, RFC 4035 §2.2), through the same
validator as serve (resolver.dnssec). It exits 0 when every RRset is Secure."""

from __future__ import annotations

import argparse
import sys

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from resolver import status
from resolver.dnssec import ValidatorConfig, Verdict, authenticate_dnskeys, validate_rrset
from resolver.status import Failure

SEP_FLAG = 0x0001  # RFC 4034 §2.1.1


def _trust(zone: dns.zone.Zone, path: str | None) -> tuple[dns.rrset.RRset | None, str]:
    """The DS or DNSKEY records to trust the zone's keys through, and how they were chosen."""
    apex = zone.origin
    if path:
        records = _read_zone(path, origin=apex, check_origin=False)
        for rdtype in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            found = records.get_rrset(apex, rdtype)
            if found:
                return found, f"{len(found)} {dns.rdatatype.to_text(rdtype)} from {path}"
        raise Failure(path, f"no DS or DNSKEY record for {apex}", status.INVALID)
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    if keys is None:
        return None, "none"
    sep = [rd for rd in keys if rd.flags & SEP_FLAG] or list(keys)
    return dns.rrset.from_rdata(apex, keys.ttl, *sep), "the zone's own SEP keys"


def _read_zone(path: str, **options) -> dns.zone.Zone:
    """A zone file, or a :class:`Failure` naming it: unreadable, or not a zone."""
    try:
        return dns.zone.from_file(path, relativize=False, **options)
    except OSError as exc:
        raise Failure(path, f"cannot read: {exc.strerror or exc}", status.UNREADABLE) from None
    except (dns.exception.DNSException, UnicodeDecodeError) as exc:
        raise Failure(path, str(exc) or type(exc).__name__, status.INVALID) from None


def run(args: argparse.Namespace) -> int:
    """Validate every authoritative RRset of a signed zone file (RFC 4035 §5.2-§5.3). A file
    that cannot be read or parsed is one line on stderr and its exit status."""
    try:
        zone = _read_zone(args.zonefile, origin=args.origin)
        trust, how = _trust(zone, args.trust)
    except Failure as exc:
        print(f"check-zone: {exc}", file=sys.stderr)
        return exc.status
    config = ValidatorConfig(allow_sha1=args.allow_sha1)
    apex = zone.origin
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    key_sigs = zone.get_rrset(apex, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    print(f"zone {apex}  trust: {how}")
    if keys is None or trust is None:
        print("  no DNSKEY at the apex: the zone is unsigned")
        return status.FOUND
    keyset = authenticate_dnskeys(keys, key_sigs, trust, now=args.time, config=config)
    print(f"  DNSKEY: {keyset.verdict.value}"
          + (f" via key {keyset.key.tag} algorithm {keyset.key.algorithm}" if keyset.key else "")
          + (f"  ({keyset.reason}) [EDE {int(keyset.ede)}]" if keyset.ede is not None else ""))
    if keyset.verdict is not Verdict.SECURE:
        return status.FOUND
    cuts = {name for name, node in zone.nodes.items()
            if name != apex and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)}
    counts = {verdict: 0 for verdict in Verdict}
    for name in sorted(zone.nodes):
        if any(name != cut and name.is_subdomain(cut) for cut in cuts):
            continue  # glue: not authoritative, not signed (RFC 4035 §2.2)
        node = zone.nodes[name]
        for rdataset in node:
            rdtype = rdataset.rdtype
            if rdtype == dns.rdatatype.RRSIG or (name in cuts and rdtype not in (
                    dns.rdatatype.DS, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)):
                continue
            rrset = dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
            sigs = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            sig_rrset = dns.rrset.from_rdata_list(name, sigs.ttl, list(sigs)) if sigs else None
            result = validate_rrset(rrset, sig_rrset, keys, now=args.time, config=config)
            counts[result.verdict] += 1
            if args.verbose or not result.secure:
                detail = result.reason or (f"{name}/{dns.rdatatype.to_text(rdtype)}: "
                                           f"key {result.key.tag}")
                ede = f" [EDE {int(result.ede)}]" if result.ede is not None else ""
                print(f"  {result.verdict.value.upper():8s} {detail}{ede}")
    print("  " + ", ".join(f"{n} {v.value}" for v, n in counts.items() if n))
    secure = counts[Verdict.BOGUS] == 0 and counts[Verdict.INDETERMINATE] == 0
    return status.OK if secure else status.FOUND
