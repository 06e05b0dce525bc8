"""The forensic log: one hash-chained record per client query. Its fields (record), their
encoding and chain (seal), the writer (log) and its files (files), the compiled chain and hit
records (_fastlog) over the queue the writer drains (_queue), and the checker behind
``dnssec-sidecar verify-log`` (verify)."""
