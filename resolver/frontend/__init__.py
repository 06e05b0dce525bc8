"""The client side: resolution for clients (resolution), answers (answers), the per-query steps
with their record, metrics and dnstap (pipeline), the UDP and TCP listeners (listeners),
services and their allowlists (policy), the limits on queries waiting for resolutions
(admission, compiled), and the compiled hit path and UDP listener (_fastpath)."""
