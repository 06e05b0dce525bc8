"""Each of our commands, run as a user would in a fresh process, prints nothing on stderr but
our own lines: no dependency's warning, no traceback (issue #14 §1).

A deprecation in a dependency once put eight lines of cryptography's DSA warning in front of
every command. Run against the newest releases too (`.ci/run` does), this file names such a
break instead of leaving it a mystery.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "tests" / "testtree"
ZONE = TREE / "zones" / "ed25519.example"
LISTEN = "127.0.0.91"

# Our own stderr lines: a command's one-line error, or a record of the process log (cli.py's
# format) from one of our loggers.
OURS = re.compile(r"^(dnssec-sidecar[: ]|\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                  r"(resolver\b|dnssec-sidecar:))")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("dnssec-sidecar")
    return [str(script)] if script.exists() else [sys.executable, "-m", "resolver.cli"]


def _env() -> dict[str, str]:
    """A user's environment: no warning filters of the test runner's."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "PYTHONDEVMODE")}


def _foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not OURS.match(line)]


@pytest.mark.parametrize("args", [
    ["--version"],
    ["check-config", str(TREE / "resolver.yaml")],
    ["check-zone", str(ZONE / "signed.zone"), "--origin", "ed25519.example.",
     "--trust", str(ZONE / "ds"), "--time", "2026-06-01T00:00:00Z"],
], ids=["version", "check-config", "check-zone"])
def test_a_command_prints_only_our_lines(args):
    done = subprocess.run(_command() + args, capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()
    assert _foreign(done.stderr) == [], done.stderr


def test_verify_log_prints_only_our_lines(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("")
    done = subprocess.run(_command() + ["verify-log", str(log)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert _foreign(done.stderr) == [], done.stderr


def test_serve_prints_only_our_lines_from_start_to_stop(tmp_path):
    config = tmp_path / "config.yaml"
    base = (TREE / "resolver.yaml").read_text()
    config.write_text(re.sub(r"(?m)^listen: .*$", f'listen: ["{LISTEN}:53"]', base)
                      + f'metrics: {{listen: "{LISTEN}:9153"}}\n')
    server = subprocess.Popen(_command() + ["serve", "--config", str(config), "-v"], cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        for _ in range(1200):  # bounded wait for the TCP listener (60 s)
            try:
                socket.create_connection((LISTEN, 53), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.05)
        else:
            pytest.fail("the resolver did not start listening")
        server.send_signal(signal.SIGTERM)
        stderr = server.communicate(timeout=30)[1]
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr
    assert _foreign(stderr) == [], stderr


def test_no_module_of_ours_imports_with_a_warning():
    """With warnings made errors, every module of the package imports: the resolver itself does
    not load what warns (dnspython's DNSSEC module loads its DSA support, which cryptography
    deprecates: the resolver has its own key tags and validator)."""
    modules = sorted(f"resolver.{p.stem}" for p in (ROOT / "resolver").glob("*.py")
                     if not p.stem.startswith("_"))
    modules += sorted(f"resolver.dnssec.{p.stem}" for p in (ROOT / "resolver" / "dnssec").glob(
        "*.py") if not p.stem.startswith("_"))
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, *modules], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
