"""The resolver with its built-in defaults (127.0.0.1:53, IANA root hints, root trust anchors),
run inside a network namespace with nothing but loopback, so not one packet can head for a
public address: every upstream attempt fails at once, and the client gets SERVFAIL with EDE 22.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, subprocess, sys, time
    import dns.message, dns.query, dns.flags, dns.rcode
    server = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "-v"],
                              stderr=subprocess.PIPE, text=True)
    result = {}
    try:
        for _ in range(600):  # bounded wait for the listener: 60 s, for a loaded machine
            try:
                q = dns.message.make_query("example.com.", "A", want_dnssec=True)
                r = dns.query.udp(q, "127.0.0.1", port=53, timeout=0.5)
                break
            except (OSError, dns.exception.Timeout):
                time.sleep(0.1)
        result["rcode"] = dns.rcode.to_text(r.rcode())
        result["ede"] = [(o.code, o.text) for o in r.options if o.otype == 15]
        t = dns.query.tcp(dns.message.make_query("example.org.", "AAAA"), "127.0.0.1", port=53,
                          timeout=10)
        result["tcp_rcode"] = dns.rcode.to_text(t.rcode())
    finally:
        server.terminate()
        result["stderr"] = server.communicate(timeout=10)[1][-2000:]
        result["exit"] = server.returncode
    print(json.dumps(result))
""")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and ip to make an isolated network namespace")
def test_builtin_defaults_in_a_namespace_with_no_route_out():
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec {sys.executable} -c \"$0\"",
         PROBE], capture_output=True, text=True, timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    import json
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rcode"] == "SERVFAIL", result
    assert result["ede"] and result["ede"][0][0] == 22, result  # No Reachable Authority
    assert "root" in result["ede"][0][1] or "." in result["ede"][0][1]
    assert result["tcp_rcode"] == "SERVFAIL", result
    assert "listening on 127.0.0.1:53" in result["stderr"], result["stderr"]
    assert result["exit"] in (0, -15), result
