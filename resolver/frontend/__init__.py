"""The client side: the query pipeline, answers and listeners (server), services and their
allowlists (policy), the limits on queries waiting for resolutions (admission, compiled), and
the compiled hit path and UDP listener (_fastpath)."""
