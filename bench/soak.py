"""A bounded soak: mixed load through the real server against the test tree, then the checks
issue #7 asks of it: no errors, one forensic record per query, the chain verifies across
rotated files, RSS after warm-up against the end.

The mix is every name tests/testtree/tree.json gives an outcome for (secure, insecure, bogus,
nonexistent, unreachable, forwarded), drawn at random, plus a stream of uncached wildcard names.

    sudo python bench/soak.py [--seconds 600]      # needs: apt-get install dnsperf
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from tests.testtree import authority, zonedata  # noqa: E402

ADDRESS = "127.0.0.74"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree listens on port 53")
    manifest = zonedata.manifest()
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    zones = {**manifest["zones"], **manifest.get("scenario_zones", {})}
    names = [key for entry in zones.values() for key in entry.get("expect", {}).get("names", {})]
    rng = random.Random(1)
    lines = [rng.choice(names) for _ in range(6000)]
    lines += [f"u{i}.wild.rsasha256.example. A" for i in range(4000)]
    rng.shuffle(lines)
    with tempfile.TemporaryDirectory() as tmp, authority.start_tree(forwarder=True):
        Path(tmp, "queries.txt").write_text("\n".join(lines) + "\n")
        Path(tmp, "config.yaml").write_text(
            f'listen: ["{ADDRESS}:53"]\n'
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            "metrics: {enabled: false}\n"
            f"log: {{path: {tmp}/log.jsonl, max_bytes: 52428800, keep: 100}}\n"
            "timeouts: {upstream_ms: 300, query_ms: 2000}\n"
            f'forward: [{{zone: fwd.example., addresses: ["{manifest["forwarder"]}"]}}]\n')
        server = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                   f"{tmp}/config.yaml"], cwd=ROOT_DIR, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(2)
        warm = subprocess.run(["dnsperf", "-s", ADDRESS, "-d", f"{tmp}/queries.txt", "-l",
                               str(min(60, args.seconds // 10)), "-q", "32", "-t", "5"],
                              capture_output=True, text=True).stdout
        rss_warm = rss_mib(server.pid)
        main_run = subprocess.run(["dnsperf", "-s", ADDRESS, "-d", f"{tmp}/queries.txt", "-l",
                                   str(args.seconds), "-q", "32", "-t", "5"],
                                  capture_output=True, text=True).stdout
        rss_end = rss_mib(server.pid)
        server.terminate()
        errors = server.communicate(timeout=60)[1]
        files = sorted(glob.glob(f"{tmp}/log.jsonl.*"), key=lambda p: -int(p.rsplit(".", 1)[1]))
        files.append(f"{tmp}/log.jsonl")
        verify = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", *files],
                                capture_output=True, text=True, cwd=ROOT_DIR)
        records = sum(1 for path in files for _ in open(path, encoding="utf-8"))

    def sent(report: str) -> int:
        return next(int(line.split()[2]) for line in report.splitlines()
                    if "Queries sent:" in line)

    queries = sent(warm) + sent(main_run)
    print("\n".join(line for line in main_run.splitlines()
                    if any(k in line for k in ("Queries sent", "Queries completed",
                                               "Queries lost", "Response codes",
                                               "Queries per second"))))
    print(f"queries sent (warm-up + run): {queries}; forensic records: {records} "
          f"({'equal' if records == queries else 'DIFFERENT'})")
    print(f"log files: {len(files)}; verify-log: {verify.stdout.strip().splitlines()[0]}")
    print(f"RSS after warm-up {rss_warm:.1f} MiB, at the end {rss_end:.1f} MiB")
    print(f"resolver stderr: {len(errors.splitlines())} lines, "
          f"{errors.count('Traceback')} tracebacks")


if __name__ == "__main__":
    main()
