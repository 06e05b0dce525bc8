"""The forensic log: one hash-chained record per client query (log), its compiled chain, queue
and cache-hit records (_fastlog), and the checker behind ``dnssec-sidecar verify-log`` (verify)."""
