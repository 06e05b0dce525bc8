"""Draws the offered-load sweep of bench/qps.sh: achieved queries per second and p99 latency
against the offered rate, one line per resolver, into a PNG (matplotlib: pip install '.[bench]').

    python3 bench/plot.py [--figures bench/qps.json] [--out bench/qps.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=HERE / "qps.json")
    parser.add_argument("--out", type=Path, default=HERE / "qps.png")
    args = parser.parse_args()
    figures = json.loads(args.figures.read_text())
    fig, (achieved, p99) = plt.subplots(1, 2, figsize=(12, 5))
    for name, steps in figures["sweep"].items():
        offered = [s["offered"] / 1e3 for s in steps]
        achieved.plot(offered, [s["achieved"] / 1e3 for s in steps], marker="o", label=name)
        p99.plot(offered, [s["p99_ms"] for s in steps], marker="o", label=name)
    top = max(s["offered"] for steps in figures["sweep"].values() for s in steps) / 1e3
    achieved.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1,
                  label="achieved = offered")
    achieved.set(xlabel="offered (k queries/s)", ylabel="achieved (k answers/s)",
                 title="Throughput against offered load")
    p99.set(xlabel="offered (k queries/s)", ylabel="p99 latency (ms, log scale)",
            title="p99 latency against offered load", yscale="log")
    for axes in (achieved, p99):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    fig.suptitle("\n".join(line.lstrip("# ") for line in figures["header"][:2]), fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"# plot written to {args.out}")


if __name__ == "__main__":
    main()
