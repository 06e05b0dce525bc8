"""Authenticated denial of existence with NSEC3 (RFC 5155 §8; RFC 9276 §3.2 for the iteration
cap). The records passed in must already have been validated."""

from __future__ import annotations

import base64
import bisect
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


def usable(owner: dns.name.Name, rdata: dns.rdata.Rdata) -> bytes | None:
    """The owner hash of an NSEC3 record a proof may use, or None: unknown hash algorithms and
    flags are ignored (RFC 5155 §8.1, §8.2)."""
    if rdata.algorithm != SHA1 or rdata.flags & ~OPT_OUT:
        return None
    return _owner_hash(owner)


class _Listed:
    """The NSEC3 records one response offered, searched in order."""

    def __init__(self, records: list[_Record]) -> None:
        self.records = records

    def match(self, digest: bytes) -> _Record | None:
        return next((rec for rec in self.records if rec.hash == digest), None)

    def cover(self, digest: bytes) -> _Record | None:
        return next((rec for rec in self.records if rec.covers(digest)), None)


class Index:
    """Validated NSEC3 records of one zone and parameter set kept sorted by owner hash, for
    proofs about names no response was about (RFC 8198 §5.2). The caller bounds its size."""

    def __init__(self, zone: dns.name.Name, salt: bytes, iterations: int) -> None:
        self.zone, self.salt, self.iterations = zone, salt, iterations
        self._hashes: list[bytes] = []
        self._records: dict[bytes, _Record] = {}

    def add(self, owner: dns.name.Name, rdata: dns.rdata.Rdata) -> bytes | None:
        """Keep a record; returns its owner hash, or None when it is unusable or of another
        zone or parameter set."""
        digest = usable(owner, rdata)
        if digest is None or owner.parent() != self.zone or \
                (rdata.salt, rdata.iterations) != (self.salt, self.iterations):
            return None
        if digest not in self._records:
            bisect.insort(self._hashes, digest)
        self._records[digest] = _Record(owner, rdata, digest)
        return digest

    def remove(self, digest: bytes) -> None:
        if self._records.pop(digest, None) is not None:
            del self._hashes[bisect.bisect_left(self._hashes, digest)]

    def match(self, digest: bytes) -> _Record | None:
        return self._records.get(digest)

    def cover(self, digest: bytes) -> _Record | None:
        """The record before ``digest`` in hash order (the last one wraps), if it covers it."""
        if not self._hashes:
            return None
        rec = self._records[self._hashes[bisect.bisect_left(self._hashes, digest) - 1]]
        return rec if rec.covers(digest) else None


def _offered(rrsets: Iterable[dns.rrset.RRset], limits) -> tuple:
    """(zone, salt, iterations, _Listed) of the usable NSEC3 records in ``rrsets``: one zone
    and one parameter set per proof, the first record's."""
    records, params = [], None
    for rrset in rrsets:
        if rrset.rdtype != dns.rdatatype.NSEC3:
            continue
        for rd in rrset:
            owner_hash = usable(rrset.name, rd)
            if owner_hash is None:
                continue
            zone = rrset.name.parent()
            if params is None:
                params = (zone, rd.salt, rd.iterations)
            if (zone, rd.salt, rd.iterations) != params:
                continue
            records.append(_Record(rrset.name, rd, owner_hash))
    if not records:
        raise _bogus("no usable NSEC3 record")
    if len(records) > limits.max_nsec3_per_proof:
        raise _bogus(f"validation budget exhausted: more than {limits.max_nsec3_per_proof} "
                     "NSEC3 records in one proof", EDE.DNSSEC_BOGUS,
                     budget=BudgetName.NSEC3_RECORDS)
    return (*params, _Listed(records))


class _Proof:
    """NSEC3 records of one zone offered as one proof (a response's, or an :class:`Index`),
    the hashes computed for it, and the records it used."""

    def __init__(self, zone: dns.name.Name, salt: bytes, iterations: int, records,
                 config: ValidatorConfig, budget: Budget) -> None:
        limits = config.limits
        self.zone, self.salt, self.iterations = zone, salt, iterations
        self.records, self.budget = records, budget
        self.hashes: dict[dns.name.Name, bytes] = {}
        self.used: list[_Record] = []
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
        return self._used(self.records.match(self.hash(name)))

    def cover(self, name: dns.name.Name) -> _Record | None:
        return self._used(self.records.cover(self.hash(name)))

    def _used(self, rec: _Record | None) -> _Record | None:
        if rec is not None and rec not in self.used:
            self.used.append(rec)
        return rec

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


def _attempt(make_proof, prove) -> DenialResult:
    """``prove(make_proof())``, its undecided and over-budget ends as results."""
    try:
        return prove(make_proof())
    except _Undecided as exc:
        return exc.result
    except BudgetExhausted as exc:
        return DenialResult(Verdict.BOGUS, KIND, EDE.DNSSEC_BOGUS, str(exc), budget=exc.budget)


def _run(prove, rrsets, config: ValidatorConfig | None, budget: Budget | None) -> DenialResult:
    config = config or DEFAULT_CONFIG
    return _attempt(lambda: _Proof(*_offered(rrsets, config.limits), config,
                                   budget or Budget(config.limits)), prove)


def prove_nxdomain(qname: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], *,
                   config: ValidatorConfig | None = None,
                   budget: Budget | None = None) -> DenialResult:
    """Name error: a closest encloser proof for ``qname`` and an NSEC3 covering the wildcard at
    the closest encloser (RFC 5155 §8.4). When the next closer name falls in an opt-out span,
    an unsigned delegation could hide there, so the result is only INSECURE."""
    return _run(lambda proof: _nxdomain(proof, qname), rrsets, config, budget)


def _nxdomain(proof: _Proof, qname: dns.name.Name) -> DenialResult:
    ce, cover = proof.closest_encloser(qname)
    if proof.cover(wildcard_of(ce)) is None:
        raise _bogus(f"no NSEC3 proves that {wildcard_of(ce)} does not exist")
    if cover.opt_out:
        return _opt_out(qname, ce)
    return DenialResult(Verdict.SECURE, KIND, closest_encloser=ce)


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
    return _run(lambda proof: _nodata(proof, qname, qtype), rrsets, config, budget)


def _nodata(proof: _Proof, qname: dns.name.Name, qtype: int) -> DenialResult:
    proof.in_zone(qname)
    found = _matching_nodata(proof, qname, qtype)
    if found is not None:
        return found
    return _wildcard_nodata(proof, qname, qtype)


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
    return _run(lambda proof: _wildcard_answer(proof, qname, wildcard), rrsets, config, budget)


def _wildcard_answer(proof: _Proof, qname: dns.name.Name,
                     wildcard: dns.name.Name) -> DenialResult:
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


class Prover:
    """The proofs above over an :class:`Index` instead of a response's records, for aggressive
    use of the cache (RFC 8198 §5.2): the hashes of one name shared between its proofs and
    spent from ``budget``. Each method returns the result and the owner hashes of the records
    the proof used, to be sent as its evidence."""

    def __init__(self, index: Index, config: ValidatorConfig, budget: Budget) -> None:
        self._index, self._config, self._budget = index, config, budget
        self._proof: _Proof | None = None

    def _make(self) -> _Proof:
        if self._proof is None:
            index = self._index
            self._proof = _Proof(index.zone, index.salt, index.iterations, index, self._config,
                                 self._budget)
        self._proof.used = []
        return self._proof

    def _try(self, prove) -> tuple[DenialResult, list[bytes]]:
        result = _attempt(self._make, prove)
        used = self._proof.used if self._proof is not None else []
        return result, [rec.hash for rec in used]

    def nxdomain(self, qname: dns.name.Name) -> tuple[DenialResult, list[bytes]]:
        return self._try(lambda proof: _nxdomain(proof, qname))

    def nodata(self, qname: dns.name.Name,
               qtype: int) -> tuple[DenialResult, list[bytes]]:
        return self._try(lambda proof: _nodata(proof, qname, qtype))

    def wildcard_answer(self, qname: dns.name.Name,
                        wildcard: dns.name.Name) -> tuple[DenialResult, list[bytes]]:
        return self._try(lambda proof: _wildcard_answer(proof, qname, wildcard))
