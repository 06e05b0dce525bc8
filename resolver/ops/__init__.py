"""What operators watch: Prometheus metrics with /healthz and /readyz (metrics), and the dnstap
output of client and resolver messages (dnstap)."""
