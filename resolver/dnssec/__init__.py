"""DNSSEC validation: signatures (RFC 4035 §5.3), chain of trust (RFC 4035 §5.2) and
authenticated denial (RFC 4035 §5.4, RFC 5155 §8), over dnspython RRsets.

The compiled core: ``canonical`` (names and canonical form, RFC 4034 §6), ``crypto`` (keys and
algorithms, RFC 3110, 5702, 6605, 8080) and ``verify`` (signed data and the RRSIG loop,
RFC 4034 §3.1.8.1, RFC 4035 §5.3). Above it: ``sigcrypt`` (RRsets and DNSKEY sets), ``nsec``,
``nsec3`` and ``denial`` (denial proofs), ``chain`` and ``zone`` (the chain of trust),
``validator`` (one reply judged), ``anchors``, ``config`` (limits), ``result`` (verdicts).

>>> result = validate_rrset(rrset, rrsigs, dnskeys, now=1780272000)
>>> result.verdict, result.ede, result.key
"""

from resolver.dnssec import denial
from resolver.dnssec.config import (DEFAULT_CONFIG, Budget, BudgetExhausted, BudgetName,
                                    Limits, ValidatorConfig)
from resolver.dnssec.result import DenialResult, KeyInfo, ValidationResult, Verdict
from resolver.dnssec.sigcrypt import authenticate_dnskeys, dnskey_tag, validate_rrset
from resolver.ede import EDE

__all__ = [
    "DEFAULT_CONFIG", "EDE", "Budget", "BudgetExhausted", "BudgetName", "DenialResult", "KeyInfo",
    "Limits", "ValidationResult", "ValidatorConfig", "Verdict", "authenticate_dnskeys", "denial",
    "dnskey_tag", "validate_rrset",
]
