"""Write the seed corpus: the queries and responses of fuzz/tree.py's seed set, one file each;
with ``--limit N`` an even sample of N of them (a short CI run spends its time fuzzing, not
replaying seeds).

    python -m fuzz.corpus DIR [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from fuzz.tree import seed_messages


def write(directory: Path, limit: int | None = None) -> int:
    seeds = seed_messages()
    if limit is not None and limit < len(seeds):
        seeds = seeds[::len(seeds) // limit][:limit]
    directory.mkdir(parents=True, exist_ok=True)
    for wire in seeds:
        (directory / hashlib.sha1(wire).hexdigest()).write_bytes(wire)
    return len(seeds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    print(f"{write(args.directory, args.limit)} seeds in {args.directory}")
