"""The base of every exception class resolver/ defines, so that ``except ResolverError`` catches
what this package raises on purpose and nothing else: a bug elsewhere stays a bug.
tests/test_errors.py checks that each of them derives from it."""


class ResolverError(Exception):
    """Base of this package's exceptions."""
