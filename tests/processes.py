"""Child processes of the tests and benchmarks (servers, resolvers) stopped the one way."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds; reaped
    either way (a process that has already exited is only reaped)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
