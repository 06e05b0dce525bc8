"""The ``dnssec-sidecar`` command."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from resolver import __version__
from resolver.dnssec import Verdict, ValidatorConfig, authenticate_dnskeys, validate_rrset

SEP_FLAG = 0x0001  # RFC 4034 §2.1.1


def parse_time(text: str) -> int:
    """POSIX seconds from an RFC 3339 timestamp or a number of seconds since the epoch."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 time or epoch seconds: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time needs a UTC offset or Z: {text!r}")
    return int(moment.timestamp())


def _trust(zone: dns.zone.Zone, path: str | None) -> tuple[dns.rrset.RRset | None, str]:
    """The DS or DNSKEY records to trust the zone's keys through, and how they were chosen."""
    apex = zone.origin
    if path:
        records = dns.zone.from_file(path, origin=apex, relativize=False, check_origin=False)
        for rdtype in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            found = records.get_rrset(apex, rdtype)
            if found:
                return found, f"{len(found)} {dns.rdatatype.to_text(rdtype)} from {path}"
        raise SystemExit(f"check-zone: {path}: no DS or DNSKEY record for {apex}")
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    if keys is None:
        return None, "none"
    sep = [rd for rd in keys if rd.flags & SEP_FLAG] or list(keys)
    return dns.rrset.from_rdata(apex, keys.ttl, *sep), "the zone's own SEP keys"


def check_zone(args: argparse.Namespace) -> int:
    """Validate every authoritative RRset of a signed zone file (RFC 4035 §5.2-§5.3)."""
    try:
        zone = dns.zone.from_file(args.zonefile, origin=args.origin, relativize=False)
    except (OSError, dns.exception.DNSException) as exc:
        print(f"check-zone: {args.zonefile}: {exc}", file=sys.stderr)
        return 2
    config = ValidatorConfig(allow_sha1=args.allow_sha1)
    apex = zone.origin
    trust, how = _trust(zone, args.trust)
    keys = zone.get_rrset(apex, dns.rdatatype.DNSKEY)
    key_sigs = zone.get_rrset(apex, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    print(f"zone {apex}  trust: {how}")
    if keys is None or trust is None:
        print("  no DNSKEY at the apex: the zone is unsigned")
        return 1
    keyset = authenticate_dnskeys(keys, key_sigs, trust, now=args.time, config=config)
    print(f"  DNSKEY: {keyset.verdict.value}"
          + (f" via key {keyset.key.tag} algorithm {keyset.key.algorithm}" if keyset.key else "")
          + (f"  ({keyset.reason}) [EDE {int(keyset.ede)}]" if keyset.ede is not None else ""))
    if keyset.verdict is not Verdict.SECURE:
        return 1
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
    return 0 if counts[Verdict.BOGUS] == 0 and counts[Verdict.INDETERMINATE] == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnssec-sidecar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check-zone", help="validate every RRset of a signed zone file",
        description="Validate the DNSKEY set of a signed zone file from a DS or DNSKEY trust "
                    "file (default: the zone's own SEP keys), then every authoritative RRset.")
    check.add_argument("zonefile")
    check.add_argument("--origin", type=dns.name.from_text, default=None,
                       help="zone name, when the file has no $ORIGIN")
    check.add_argument("--trust", metavar="FILE",
                       help="zone-format file with the zone's DS (from the parent) or DNSKEY")
    check.add_argument("--time", type=parse_time, default=None,
                       help="validation time (RFC 3339 or epoch seconds); default: now")
    check.add_argument("--allow-sha1", action="store_true",
                       help="validate algorithms 5 and 7 (RSASHA1), off per RFC 9905")
    check.add_argument("-v", "--verbose", action="store_true", help="list every RRset")
    check.set_defaults(run=check_zone)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
