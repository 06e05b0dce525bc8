"""A DNSSEC test tree (root, two TLDs, children, broken zones) signed by
BIND's dnssec-signzone and NLnet Labs' ldns-signzone.

The zone files, keys and the manifest ``tree.json`` are checked in; tests
never need the signers.  ``python tests/testtree/generate.py`` rebuilds them
(see README.md).  Every signature in the good zones carries the same fixed
validity window, so tests validate at the fixed time ``NOW``.
"""

from pathlib import Path

# RRSIG validity window of every good zone (dnssec-signzone -s/-e,
# ldns-signzone -i/-e take these strings verbatim).
INCEPTION = "20260101000000"
EXPIRATION = "20360101000000"
INCEPTION_EPOCH = 1767225600  # 2026-01-01T00:00:00Z
EXPIRATION_EPOCH = 2082758400  # 2036-01-01T00:00:00Z

# The time at which tests validate: 2026-06-01T00:00:00Z.
NOW = 1780272000
NOW_TEXT = "20260601000000"

# Windows of the two broken-by-time zones.
EXPIRED_INCEPTION = "20200101000000"
EXPIRED_EXPIRATION = "20210101000000"
NOTYET_INCEPTION = "20350101000000"
# ldns 1.8.3 reads RRSIG times past 2038-01-19 as earlier than the inception,
# so the window ends before 2^31 seconds.
NOTYET_EXPIRATION = "20380101000000"

HERE = Path(__file__).resolve().parent
ZONES_DIR = HERE / "zones"
MANIFEST = HERE / "tree.json"
