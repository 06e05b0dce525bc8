"""dnssec-sidecar: a strict DNSSEC-validating recursive resolver for workloads and agents."""

__version__ = "0.1.0"
