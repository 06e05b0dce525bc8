"""The DNSSEC posture of the zones each service expects (issue #18): ``posture`` (one zone's
state and what changed), ``events`` (event records in the forensic chain, the process log,
counts), ``check`` (the background check, the canaries, the observers the resolver's owner
wires in), ``report`` (the ``posture`` command's table)."""
