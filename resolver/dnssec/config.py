"""Validator settings and the per-client-query work budget (KeyTrap, CVE-2023-50387;
NSEC3 hash floods, CVE-2023-50868): the one definition of each limit. The compiled RRSIG loop
(resolver.dnssec.verify) is handed them by sigcrypt.py and the denial proofs read them here;
the algorithms validated follow RFC 8624 §3.1 and RFC 9905 §2, NSEC3 iterations RFC 9276 §3.2.

``Limits`` and ``ValidatorConfig`` are configuration types (the ``limits`` and ``validation``
keys, read by resolver.config) defined here, not in resolver.config.schema, because the
validator needs them and the dnssec layer is below config: it may not import upward."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from resolver.errors import ResolverError


@dataclass(frozen=True, slots=True)
class Limits:
    """Work limits. Defaults sit where Unbound, Knot Resolver, BIND and PowerDNS settled after
    KeyTrap: a handful of checks per RRset, a few dozen per client query."""

    #: Signature verifications spent on one RRset before giving up on it.
    max_sig_checks_per_rrset: int = 8
    #: DNSKEYs tried for one RRSIG whose key tag and algorithm they share (tag collisions).
    max_keys_per_tag: int = 2
    #: DS records considered for one zone's DNSKEY set.
    max_ds_per_zone: int = 8
    #: NSEC3 records considered in one denial proof.
    max_nsec3_per_proof: int = 10
    #: Signature verifications across the whole chain of one client query.
    max_sig_checks_per_query: int = 32
    #: NSEC3 owner-name hashes across one client query.
    max_nsec3_hashes_per_query: int = 300
    #: NSEC3 iterations above which a zone is treated as insecure (RFC 9276 §3.2, EDE 27).
    nsec3_max_iterations: int = 50

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"limits.{name}: must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    """Validator settings.

    ``allow_sha1`` enables algorithms 5 RSASHA1 and 7 RSASHA1-NSEC3-SHA1. RFC 8624 §3.1 kept
    them for validation, but RFC 9905 §2 (2025) says operators MUST treat them as unsupported,
    so they are off by default and zones signed only with them are insecure."""

    allow_sha1: bool = False
    limits: Limits = field(default_factory=Limits)


DEFAULT_LIMITS = Limits()
DEFAULT_CONFIG = ValidatorConfig(limits=DEFAULT_LIMITS)


class BudgetName(StrEnum):
    """Which work budget a failure ran out of: the label of the ``budget_exhausted`` metric,
    carried by the failure from where the budget is spent (never read back from its text)."""

    UPSTREAM_QUERIES = "upstream_queries"
    SIG_CHECKS_PER_RRSET = "sig_checks_per_rrset"
    SIG_CHECKS_PER_QUERY = "sig_checks_per_query"
    NSEC3_HASHES = "nsec3_hashes"
    NSEC3_RECORDS = "nsec3_records"


class BudgetExhausted(ResolverError):
    """A per-query work limit was reached; the data is then Bogus with EDE 6."""

    def __init__(self, reason: str, budget: BudgetName) -> None:
        super().__init__(reason)
        self.budget = budget


class Budget:
    """Work spent on one client query, across every RRset and proof in its chain."""

    __slots__ = ("limits", "sig_checks", "nsec3_hashes")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.sig_checks = 0
        self.nsec3_hashes = 0

    def spend_sig_check(self) -> None:
        if self.sig_checks >= self.limits.max_sig_checks_per_query:
            raise BudgetExhausted(
                f"validation budget exhausted: {self.limits.max_sig_checks_per_query} "
                "signature checks per query", BudgetName.SIG_CHECKS_PER_QUERY)
        self.sig_checks += 1

    def spend_nsec3_hash(self) -> None:
        if self.nsec3_hashes >= self.limits.max_nsec3_hashes_per_query:
            raise BudgetExhausted(
                f"validation budget exhausted: {self.limits.max_nsec3_hashes_per_query} "
                "NSEC3 hashes per query", BudgetName.NSEC3_HASHES)
        self.nsec3_hashes += 1
