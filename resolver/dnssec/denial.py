"""Denial-of-existence proofs over whichever records a response carries: NSEC (RFC 4035 §5.4)
or NSEC3 (RFC 5155 §8). Each function takes the already validated NSEC or NSEC3 RRsets of the
response's authority section and returns a DenialResult."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dns.name
import dns.rdatatype
import dns.rrset

from resolver.dnssec import nsec, nsec3
from resolver.dnssec.config import Budget, ValidatorConfig
from resolver.dnssec.result import DenialResult, Verdict
from resolver.ede import EDE


def _dispatch(rrsets: Iterable[dns.rrset.RRset], config: ValidatorConfig | None,
              budget: Budget | None, with_nsec: Callable[[list], DenialResult],
              with_nsec3: Callable[..., DenialResult], what: Callable[[], str]) -> DenialResult:
    """The proof with the records there are; ``what()`` says what was to be proven, rendered
    only when there is no record to prove it with."""
    rrsets = list(rrsets)
    if any(r.rdtype == dns.rdatatype.NSEC3 for r in rrsets):
        return with_nsec3(rrsets, config=config, budget=budget)
    if any(r.rdtype == dns.rdatatype.NSEC for r in rrsets):
        return with_nsec(rrsets)
    return DenialResult(Verdict.BOGUS, "none", EDE.NSEC_MISSING,
                        f"no NSEC or NSEC3 record to prove {what()}")


def prove_nxdomain(qname: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], *,
                   config: ValidatorConfig | None = None,
                   budget: Budget | None = None) -> DenialResult:
    """``qname`` does not exist (RFC 4035 §3.1.3.2, RFC 5155 §8.4)."""
    return _dispatch(rrsets, config, budget, lambda r: nsec.prove_nxdomain(qname, r),
                     lambda r, **kw: nsec3.prove_nxdomain(qname, r, **kw),
                     lambda: f"that {qname} does not exist")


def prove_nodata(qname: dns.name.Name, qtype: int, rrsets: Iterable[dns.rrset.RRset], *,
                 config: ValidatorConfig | None = None,
                 budget: Budget | None = None) -> DenialResult:
    """``qname`` exists without ``qtype``, directly or through a wildcard (RFC 4035 §3.1.3.1,
    §3.1.3.4; RFC 5155 §8.5-§8.7)."""
    return _dispatch(rrsets, config, budget, lambda r: nsec.prove_nodata(qname, qtype, r),
                     lambda r, **kw: nsec3.prove_nodata(qname, qtype, r, **kw),
                     lambda: f"that {qname} has no {dns.rdatatype.to_text(qtype)}")


def prove_wildcard_nodata(qname: dns.name.Name, qtype: int, rrsets: Iterable[dns.rrset.RRset],
                          *, config: ValidatorConfig | None = None,
                          budget: Budget | None = None) -> DenialResult:
    """The wildcard that would answer ``qname`` lacks ``qtype`` (RFC 4035 §3.1.3.4,
    RFC 5155 §8.7)."""
    return _dispatch(rrsets, config, budget,
                     lambda r: nsec.prove_wildcard_nodata(qname, qtype, r),
                     lambda r, **kw: nsec3.prove_wildcard_nodata(qname, qtype, r, **kw),
                     lambda: f"that no wildcard gives {qname} a {dns.rdatatype.to_text(qtype)}")


def prove_wildcard_answer(qname: dns.name.Name, wildcard: dns.name.Name,
                          rrsets: Iterable[dns.rrset.RRset], *,
                          config: ValidatorConfig | None = None,
                          budget: Budget | None = None) -> DenialResult:
    """An answer for ``qname`` synthesised from ``wildcard`` was the right one (RFC 4035
    §5.3.4, RFC 5155 §8.8)."""
    return _dispatch(rrsets, config, budget,
                     lambda r: nsec.prove_wildcard_answer(qname, wildcard, r),
                     lambda r, **kw: nsec3.prove_wildcard_answer(qname, wildcard, r, **kw),
                     lambda: f"that {qname} does not exist beside {wildcard}")


def prove_no_ds(name: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], *,
                config: ValidatorConfig | None = None,
                budget: Budget | None = None) -> DenialResult:
    """The delegation ``name`` has no DS, so the child zone is insecure (RFC 4035 §5.2,
    RFC 6840 §4.4, RFC 5155 §8.6, §8.9)."""
    return _dispatch(rrsets, config, budget, lambda r: nsec.prove_no_ds(name, r),
                     lambda r, **kw: nsec3.prove_no_ds(name, r, **kw),
                     lambda: f"that {name} has no DS")
