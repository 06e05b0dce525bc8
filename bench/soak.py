"""A bounded soak (issue #7, Load): mixed load through the real server against the test tree,
then the checks issue #7 asks of it: no errors, one forensic record per query, the chain
verifies across rotated files, and RSS flat after warm-up (sampled over the run; the slope of
a least-squares line through the samples after warm-up).

The mix is every name tests/testtree/tree.json gives an outcome for (secure, insecure, bogus,
nonexistent, unreachable, forwarded; not the hostile zones, whose attacks are measured on their
own), drawn at random, plus a stream of uncached wildcard names. It is sent to three services
at once, one dnsperf per listener: ``open`` (everything), ``agent`` (``example.`` only,
insecure answers allowed: the ``test.`` names are refused) and ``payments`` (two zones,
Secure only: most names refused).

It also prints the forensic log's size on disk per query (issue #18), for ``--compress none``
(the default) or ``gzip`` (``log.compress``).

    sudo python bench/soak.py [--seconds 600] [--warmup 60] [--compress gzip]
    # needs: apt-get install dnsperf
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT_DIR))

from resolver.forensic.files import Lines  # noqa: E402
from tests.testtree import authority, zonedata  # noqa: E402

SERVICES = {  # listener address: (service name, its allow rules)
    "127.0.0.74": ("open", "[{zone: example., require: insecure-ok}, "
                           "{zone: test., require: insecure-ok}]"),
    "127.0.0.75": ("agent", "[{zone: example., require: insecure-ok}]"),
    "127.0.0.76": ("payments", "[{zone: rsasha256.example., require: secure}, "
                               "{zone: ed25519.example., require: secure}]"),
}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    n = len(samples)
    if n < 2:
        return float("nan")
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return 60 * sum((t - mean_t) * (r - mean_r) for t, r in samples) / var if var else 0.0


def sample_rss(pid: int, interval: float, stop: threading.Event,
               out: list[tuple[float, float]]) -> None:
    start = time.monotonic()
    while not stop.wait(interval):
        out.append((time.monotonic() - start, rss_mib(pid)))


def config_text(tmp: str, manifest: dict, compress: str = "none") -> str:
    (hint_name, hint_addr), = manifest["root_hints"].items()
    anchors = ", ".join(f'"{a}"' for a in authority.trust_anchor_lines(manifest))
    services = "".join(f"  - {{name: {name}, listeners: [\"{address}:53\"], allow: {allow}}}\n"
                       for address, (name, allow) in SERVICES.items())
    return (f"listen: [{', '.join(f'{a}:53' for a in SERVICES)}]\n"
            f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
            f"trust_anchors: [{anchors}]\n"
            f'validation: {{time: "{authority.validation_time()}"}}\n'
            f"{authority.outgoing_line()}\n"
            "metrics: {enabled: false}\n"
            f"log: {{path: {tmp}/log.jsonl, max_bytes: 52428800, keep: 100, "
            f"compress: {compress}}}\n"
            "timeouts: {upstream_ms: 300, query_ms: 2000}\n"
            f'forward: [{{zone: fwd.example., addresses: ["{manifest["forwarder"]}"]}}]\n'
            f"services:\n{services}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60, help="seconds before the RSS slope")
    parser.add_argument("--compress", choices=("none", "gzip"), default="none",
                        help="log.compress")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the tree listens on port 53")
    manifest = zonedata.manifest()
    zones = {**manifest["zones"], **manifest.get("scenario_zones", {})}
    names = [key for entry in zones.values() if entry.get("kind") != "hostile"
             for key in entry.get("expect", {}).get("names", {})]  # attacks are measured apart
    rng = random.Random(1)
    lines = [rng.choice(names) for _ in range(6000)]
    lines += [f"u{i}.wild.rsasha256.example. A" for i in range(4000)]
    rng.shuffle(lines)
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, authority.start_tree(forwarder=True):
        Path(tmp, "queries.txt").write_text("\n".join(lines) + "\n")
        Path(tmp, "config.yaml").write_text(config_text(tmp, manifest, args.compress))
        server = subprocess.Popen([sys.executable, "-m", "resolver.cli", "serve", "--config",
                                   f"{tmp}/config.yaml"], cwd=ROOT_DIR, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(2)
        stop = threading.Event()
        sampler = threading.Thread(target=sample_rss, daemon=True, args=(
            server.pid, max(1.0, args.seconds / 120), stop, samples))
        sampler.start()
        runs = [subprocess.Popen(["dnsperf", "-s", address, "-d", f"{tmp}/queries.txt", "-l",
                                  str(args.seconds), "-q", "16", "-t", "5"],
                                 stdout=subprocess.PIPE, text=True) for address in SERVICES]
        reports = [run.communicate()[0] for run in runs]
        stop.set()
        sampler.join()
        server.terminate()
        errors = server.communicate(timeout=60)[1]
        files = sorted(glob.glob(f"{tmp}/log.jsonl.*"), key=lambda p: -int(p.rsplit(".", 1)[1]))
        files.append(f"{tmp}/log.jsonl")
        verify = subprocess.run([sys.executable, "-m", "resolver.cli", "verify-log", *files],
                                capture_output=True, text=True, cwd=ROOT_DIR)
        records = sum(1 for path in files for _ in Lines(path))
        on_disk = sum(os.path.getsize(path) for path in files)
        raw = sum(len(line) for path in files for line in Lines(path))

    def figure(report: str, label: str) -> int:
        return next(int(line.split()[2]) for line in report.splitlines() if label in line)

    for address, report in zip(SERVICES, reports):
        print(f"--- service {SERVICES[address][0]} ({address})")
        print("\n".join(line for line in report.splitlines()
                        if any(k in line for k in ("Queries sent", "Queries lost",
                                                   "Response codes", "Queries per second"))))
    queries = sum(figure(report, "Queries sent:") for report in reports)
    lost = sum(figure(report, "Queries lost:") for report in reports)
    after = [(t, r) for t, r in samples if t >= args.warmup]
    print(f"queries sent: {queries}, lost: {lost}; forensic records: {records} "
          f"({'equal' if records == queries else 'DIFFERENT'})")
    print(f"log files: {len(files)}; verify-log: {verify.stdout.strip().splitlines()[0]}")
    print(f"forensic log on disk (log.compress: {args.compress}): {on_disk} octets, "
          f"{on_disk / max(1, records):.0f} a query ({raw / max(1, records):.0f} a record "
          f"uncompressed)")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s {r:.1f}" for t, r in samples[::max(
        1, len(samples) // 12)]))
    if after:
        print(f"RSS after warm-up ({args.warmup} s) {after[0][1]:.1f} MiB, at the end "
              f"{after[-1][1]:.1f} MiB, max {max(r for _, r in after):.1f} MiB; slope "
              f"{slope_per_minute(after):+.3f} MiB/min over {len(after)} samples")
    print(f"resolver stderr: {len(errors.splitlines())} lines, "
          f"{errors.count('Traceback')} tracebacks")


if __name__ == "__main__":
    main()
