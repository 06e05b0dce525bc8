"""Verdicts and the evidence behind them (RFC 4033 §5, RFC 4035 §4.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import dns.name
import dns.rdata
import dns.rrset

from resolver.dnssec.config import BudgetName
from resolver.ede import EDE
from resolver.errors import ResolverError


class Verdict(str, Enum):
    """The four security states of RFC 4035 §4.3."""

    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The DNSKEY that proved (or was meant to prove) a signature; results share it."""

    owner: dns.name.Name
    tag: int
    algorithm: int
    flags: int


@dataclass(slots=True)
class ValidationResult:
    """Outcome of checking an RRset against its RRSIGs and keys (treat as read-only; not frozen
    only because frozen dataclasses cost a microsecond on the validation hot path).

    ``key`` and ``rrsig`` name the key and signature that proved a Secure verdict, or the last
    ones tried for a Bogus one. ``ttl`` is the longest TTL the RRset may be cached for: the
    smallest of its original TTL and the time left until the signature expires (RFC 4035 §5.3.3).
    For a DNSKEY set authenticated from a DS set, ``ds`` is the DS RDATA that matched."""

    verdict: Verdict
    ede: EDE | None = None
    reason: str = ""
    key: KeyInfo | None = None
    rrsig: dns.rdata.Rdata | None = None
    ttl: int | None = None
    ds: dns.rdata.Rdata | None = None
    budget: BudgetName | None = None  # the work budget a Bogus verdict ran out of

    @property
    def secure(self) -> bool:
        return self.verdict is Verdict.SECURE


@dataclass(frozen=True, slots=True)
class DenialResult:
    """Outcome of an authenticated-denial proof (RFC 4035 §5.4, RFC 5155 §8).

    SECURE: proven. INSECURE: the records prove only an opt-out span or use NSEC3 iterations
    above the cap (RFC 9276 §3.2). BOGUS: not proven. ``kind`` is "nsec", "nsec3" or
    "nsec3-optout"; ``closest_encloser`` is set where the proof establishes one."""

    verdict: Verdict
    kind: str
    ede: EDE | None = None
    reason: str = ""
    closest_encloser: dns.name.Name | None = None
    budget: BudgetName | None = None  # the work budget a Bogus verdict ran out of

    @property
    def secure(self) -> bool:
        return self.verdict is Verdict.SECURE


@dataclass(slots=True)
class Proof:
    """What a verdict rests on, for answers and for the forensic log."""

    zone: dns.name.Name | None = None
    zones: list[str] = field(default_factory=list)  # the chain of zone cuts, root first
    signatures: list = field(default_factory=list)  # (owner, type, signer, key tag, alg, inc, exp)
    denial: str | None = None  # "nsec", "nsec3", "nsec3-optout"
    notes: list[str] = field(default_factory=list)
    #: The NSEC or NSEC3 records ("owner type") a cached proof answered with, no server asked
    #: (RFC 8198); empty for an answer fetched.
    synthesised: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Answer:
    """The validated outcome for one name and type: positive (``rrsets``, the answer RRsets
    with their RRSIGs, the chain of CNAMEs included) or negative (``rcode`` NXDOMAIN or NOERROR,
    ``authority`` the SOA and denial records with their RRSIGs). ``verdicts`` gives, for a
    chain across zones, each link's verdict by the names it holds (owners, and the name a
    negative link was asked for); a name absent from it has ``verdict``."""

    rcode: int
    verdict: Verdict
    rrsets: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    ede: EDE | None = None
    reason: str = ""
    proof: Proof = field(default_factory=Proof)
    ttl: int = 0
    verdicts: dict[dns.name.Name, Verdict] = field(default_factory=dict)

    def verdict_of(self, name: dns.name.Name) -> Verdict:
        verdicts = self.verdicts  # most answers have none: no name hashed (dnspython's, in Python)
        return verdicts.get(name, self.verdict) if verdicts else self.verdict


class ResolutionFailed(ResolverError):
    """The query cannot be answered: SERVFAIL with this EDE and reason (RFC 8914), the proof
    gathered so far for the log, and the work budget it ran out of, if that is why."""

    def __init__(self, ede: EDE, reason: str, proof: Proof | None = None,
                 budget: BudgetName | None = None) -> None:
        super().__init__(reason)
        self.ede, self.reason, self.proof, self.budget = ede, reason, proof, budget
