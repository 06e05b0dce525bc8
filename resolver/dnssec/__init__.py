"""DNSSEC validation: signatures (RFC 4035 §5.3), chain of trust (RFC 4035 §5.2) and
authenticated denial (RFC 4035 §5.4, RFC 5155 §8), over dnspython RRsets.

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
