"""Resolution: iteration from the root and forwarding (iterator), upstream queries over UDP and
TCP (transport), and the cache of validated answers (cache) with its compiled hit path on raw
bytes (_fastcache). Cache keys are names in canonical wire form (resolver.dnssec.canonical,
RFC 4034 §6.2, RFC 4343)."""
