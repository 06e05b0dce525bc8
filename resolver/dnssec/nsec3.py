"""Authenticated denial of existence with NSEC3 (RFC 5155 §8; RFC 9276 §3.2 for the iteration
cap). The records passed in must already have been validated."""

from __future__ import annotations

import base64
from collections.abc import Iterable

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset

from resolver.dnssec import canonical, crypto
from resolver.dnssec.config import (DEFAULT_CONFIG, Budget, BudgetExhausted, BudgetName,
                                    ValidatorConfig)
from resolver.dnssec.result import DenialResult, Verdict
from resolver.dnssec.typemap import (DS, NS, SOA, blocks_below, closer_name, has_type,
                                     nodata_problem, wildcard_of, wildcard_parent)
from resolver.ede import EDE
from resolver.errors import ResolverError

KIND = "nsec3"
KIND_OPTOUT = "nsec3-optout"
SHA1 = 1  # the only NSEC3 hash algorithm (RFC 5155 §11)
OPT_OUT = 0x01  # RFC 5155 §3.1.2.1

_B32HEX = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUV",
                          b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _owner_hash(owner: dns.name.Name) -> bytes | None:
    """The hash encoded in an NSEC3 owner's first label (Base32hex, RFC 4648 §7), or None."""
    label = owner.labels[0].upper() if len(owner.labels) > 1 else b""
    if len(label) != 32:
        return None
    try:
        return base64.b32decode(label.translate(_B32HEX))
    except ValueError:
        return None


class _Record:
    __slots__ = ("owner", "rdata", "hash", "next")

    def __init__(self, owner: dns.name.Name, rdata: dns.rdata.Rdata, owner_hash: bytes) -> None:
        self.owner, self.rdata, self.hash, self.next = owner, rdata, owner_hash, rdata.next

    def covers(self, digest: bytes) -> bool:
        """Hash order span, the last record wrapping to the first (RFC 5155 §8.3)."""
        if self.hash < self.next:
            return self.hash < digest < self.next
        return digest > self.hash or digest < self.next

    @property
    def opt_out(self) -> bool:
        return bool(self.rdata.flags & OPT_OUT)


class _Undecided(ResolverError):
    """The records cannot prove anything: carries the DenialResult to return."""

    def __init__(self, result: DenialResult) -> None:
        super().__init__(result.reason)
        self.result = result


def _bogus(reason: str, ede: EDE = EDE.NSEC_MISSING, kind: str = KIND,
           budget: BudgetName | None = None) -> _Undecided:
    return _Undecided(DenialResult(Verdict.BOGUS, kind, ede, reason, budget=budget))


class _Proof:
    """The NSEC3 records of one zone offered as one proof, and the hashes computed for it."""

    def __init__(self, rrsets: Iterable[dns.rrset.RRset], config: ValidatorConfig,
                 budget: Budget) -> None:
        limits = config.limits
        self.budget = budget
        self.records: list[_Record] = []
        self.hashes: dict[dns.name.Name, bytes] = {}
        params = None
        for rrset in rrsets:
            if rrset.rdtype != dns.rdatatype.NSEC3:
                continue
            owner_hash = _owner_hash(rrset.name)
            for rd in rrset:
                # RFC 5155 §8.1, §8.2: ignore unknown hash algorithms and flags.
                if rd.algorithm != SHA1 or rd.flags & ~OPT_OUT or owner_hash is None:
                    continue
                zone = rrset.name.parent()
                if params is None:
                    params = (zone, rd.salt, rd.iterations)
                if (zone, rd.salt, rd.iterations) != params:
                    continue  # one zone and one parameter set per proof
                self.records.append(_Record(rrset.name, rd, owner_hash))
        if not self.records:
            raise _bogus("no usable NSEC3 record")
        if len(self.records) > limits.max_nsec3_per_proof:
            raise _bogus(f"validation budget exhausted: more than {limits.max_nsec3_per_proof} "
                         "NSEC3 records in one proof", EDE.DNSSEC_BOGUS,
                         budget=BudgetName.NSEC3_RECORDS)
        self.zone, self.salt, self.iterations = params
        if self.iterations > limits.nsec3_max_iterations:
            raise _Undecided(DenialResult(
                Verdict.INSECURE, KIND, EDE.UNSUPPORTED_NSEC3_ITERATIONS,
                f"NSEC3 of {self.zone} uses {self.iterations} iterations, above "
                f"{limits.nsec3_max_iterations}: treated as insecure (RFC 9276)"))

    def hash(self, name: dns.name.Name) -> bytes:
        digest = self.hashes.get(name)
        if digest is None:
            self.budget.spend_nsec3_hash()
            digest = crypto.nsec3_hash(canonical.name_wire(name.labels), self.salt, self.iterations)
            self.hashes[name] = digest
        return digest

    def match(self, name: dns.name.Name) -> _Record | None:
        digest = self.hash(name)
        for rec in self.records:
            if rec.hash == digest:
                return rec
        return None

    def cover(self, name: dns.name.Name) -> _Record | None:
        digest = self.hash(name)
        for rec in self.records:
            if rec.covers(digest):
                return rec
        return None

    def in_zone(self, name: dns.name.Name) -> None:
        if not name.is_subdomain(self.zone):
            raise _bogus(f"{name} is not in the NSEC3 zone {self.zone}", EDE.DNSSEC_BOGUS)

    def closest_encloser(self, qname: dns.name.Name) -> tuple[dns.name.Name, _Record]:
        """The closest encloser proof (RFC 5155 §8.3): the deepest ancestor of ``qname`` with a
        matching NSEC3, and the NSEC3 covering the next closer name. Returns the closest
        encloser and the covering record."""
        self.in_zone(qname)
        name = qname
        while True:
            rec = self.match(name)
            if rec is not None:
                break
            if name == self.zone:
                raise _bogus(f"no NSEC3 matches an ancestor of {qname}")
            name = name.parent()
        if name == qname:
            raise _bogus(f"an NSEC3 shows that {qname} exists", EDE.DNSSEC_BOGUS)
        if blocks_below(rec.rdata):
            raise _bogus(f"the closest encloser {name} is a delegation or DNAME: its NSEC3 "
                         f"proves nothing below it", EDE.DNSSEC_BOGUS)
        next_closer = closer_name(qname, name)
        cover = self.cover(next_closer)
        if cover is None:
            raise _bogus(f"no NSEC3 covers the next closer name {next_closer}")
        return name, cover


def _opt_out(qname: dns.name.Name, ce: dns.name.Name) -> DenialResult:
    """The proof rests on an opt-out span, where an unsigned delegation may hide: never Secure
    (RFC 5155 §9.2; §8.6 extended beyond DS by Errata 3441)."""
    return DenialResult(Verdict.INSECURE, KIND_OPTOUT, None,
                        f"{qname} falls in an NSEC3 opt-out span", ce)


def _run(prove, rrsets, config: ValidatorConfig | None, budget: Budget | None) -> DenialResult:
    config = config or DEFAULT_CONFIG
    try:
        return prove(_Proof(rrsets, config, budget or Budget(config.limits)))
    except _Undecided as exc:
        return exc.result
    except BudgetExhausted as exc:
        return DenialResult(Verdict.BOGUS, KIND, EDE.DNSSEC_BOGUS, str(exc), budget=exc.budget)


def prove_nxdomain(qname: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], *,
                   config: ValidatorConfig | None = None,
                   budget: Budget | None = None) -> DenialResult:
    """Name error: a closest encloser proof for ``qname`` and an NSEC3 covering the wildcard at
    the closest encloser (RFC 5155 §8.4). When the next closer name falls in an opt-out span,
    an unsigned delegation could hide there, so the result is only INSECURE."""
    def prove(proof: _Proof) -> DenialResult:
        ce, cover = proof.closest_encloser(qname)
        if proof.cover(wildcard_of(ce)) is None:
            raise _bogus(f"no NSEC3 proves that {wildcard_of(ce)} does not exist")
        if cover.opt_out:
            return _opt_out(qname, ce)
        return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)
    return _run(prove, rrsets, config, budget)


def _matching_nodata(proof: _Proof, qname: dns.name.Name, qtype: int) -> DenialResult | None:
    rec = proof.match(qname)
    if rec is None:
        return None
    problem = nodata_problem(rec.rdata, qtype)
    if problem:
        raise _bogus(f"NSEC3 matching {qname}: {problem}", EDE.DNSSEC_BOGUS)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=qname)


def _wildcard_nodata(proof: _Proof, qname: dns.name.Name, qtype: int) -> DenialResult:
    ce, cover = proof.closest_encloser(qname)
    wildcard = wildcard_of(ce)
    rec = proof.match(wildcard)
    if rec is not None:
        problem = nodata_problem(rec.rdata, qtype)
        if problem:
            raise _bogus(f"NSEC3 matching {wildcard}: {problem}", EDE.DNSSEC_BOGUS)
    if cover.opt_out:
        return _opt_out(qname, ce)
    if rec is None:
        raise _bogus(f"no NSEC3 matches {qname} or the wildcard {wildcard}")
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)


def prove_nodata(qname: dns.name.Name, qtype: int, rrsets: Iterable[dns.rrset.RRset], *,
                 config: ValidatorConfig | None = None,
                 budget: Budget | None = None) -> DenialResult:
    """No data: the NSEC3 matching ``qname`` lists neither ``qtype`` nor CNAME (RFC 5155 §8.5;
    an empty non-terminal has a matching NSEC3 with an empty bitmap). With no matching NSEC3, a
    closest encloser proof whose next closer name is in an opt-out span is INSECURE (RFC 5155
    §8.6, for every type since Errata 3441); otherwise a wildcard no-data proof (§8.7)."""
    def prove(proof: _Proof) -> DenialResult:
        proof.in_zone(qname)
        found = _matching_nodata(proof, qname, qtype)
        if found is not None:
            return found
        return _wildcard_nodata(proof, qname, qtype)
    return _run(prove, rrsets, config, budget)


def prove_wildcard_nodata(qname: dns.name.Name, qtype: int, rrsets: Iterable[dns.rrset.RRset],
                          *, config: ValidatorConfig | None = None,
                          budget: Budget | None = None) -> DenialResult:
    """Wildcard no data: a closest encloser proof for ``qname`` and an NSEC3 matching the
    wildcard at the closest encloser that lists neither ``qtype`` nor CNAME (RFC 5155 §8.7)."""
    return _run(lambda proof: _wildcard_nodata(proof, qname, qtype), rrsets, config, budget)


def prove_wildcard_answer(qname: dns.name.Name, wildcard: dns.name.Name,
                          rrsets: Iterable[dns.rrset.RRset], *,
                          config: ValidatorConfig | None = None,
                          budget: Budget | None = None) -> DenialResult:
    """A positive answer synthesised from ``wildcard``: an NSEC3 covers the next closer name
    of ``qname`` below the wildcard's parent, the closest encloser (RFC 5155 §8.8); INSECURE
    when that NSEC3 has opt-out (RFC 5155 §9.2)."""
    def prove(proof: _Proof) -> DenialResult:
        try:
            ce = wildcard_parent(wildcard)
        except ValueError as exc:
            raise _bogus(str(exc), EDE.DNSSEC_BOGUS) from None
        proof.in_zone(qname)
        if not qname.is_subdomain(ce) or qname == ce:
            raise _bogus(f"{qname} is not below the wildcard's parent {ce}", EDE.DNSSEC_BOGUS)
        next_closer = closer_name(qname, ce)
        cover = proof.cover(next_closer)
        if cover is None:
            raise _bogus(f"no NSEC3 covers the next closer name {next_closer}")
        if cover.opt_out:
            return _opt_out(qname, ce)
        return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)
    return _run(prove, rrsets, config, budget)


def prove_no_ds(name: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], *,
                config: ValidatorConfig | None = None,
                budget: Budget | None = None) -> DenialResult:
    """Insecure delegation: the parent's NSEC3 matching ``name`` has NS and lacks DS and SOA
    (RFC 5155 §8.9, RFC 6840 §4.4), or ``name`` falls in an opt-out span, proven by a closest
    encloser proof whose next closer name is covered by an opt-out NSEC3 (RFC 5155 §8.6):
    INSECURE with kind "nsec3-optout"."""
    def prove(proof: _Proof) -> DenialResult:
        proof.in_zone(name)
        rec = proof.match(name)
        if rec is not None:
            if not has_type(rec.rdata, NS) or has_type(rec.rdata, SOA):
                raise _bogus(f"the NSEC3 matching {name} is not from the parent side of a "
                             "delegation", EDE.DNSSEC_BOGUS)
            if has_type(rec.rdata, DS):
                raise _bogus(f"the NSEC3 matching {name} lists DS", EDE.DNSSEC_BOGUS)
            return DenialResult(Verdict.SECURE, KIND, closest_encloser=name)
        ce, cover = proof.closest_encloser(name)
        if not cover.opt_out:
            raise _bogus(f"{name} does not exist and is not in an opt-out span",
                         EDE.DNSSEC_BOGUS)
        return _opt_out(name, ce)
    return _run(prove, rrsets, config, budget)
