"""Where our memory goes (issue #20): ``python -m bench.memtrace OUT [--lines] serve
--config ...`` runs the resolver's CLI; when the file ``OUT.go`` appears, it writes to ``OUT``
the objects alive by type (count and bytes by ``sys.getsizeof``: every object the garbage
collector tracks and the strings, bytes and numbers they hold), then removes ``OUT.go``.
With ``--lines`` it runs under tracemalloc (25 frames; several times slower) and adds the 40
source lines holding most memory and the allocation tracebacks behind the biggest.
bench/memory.py --trace uses it."""

from __future__ import annotations

import collections
import gc
import os
import sys
import threading
import time
import tracemalloc


def census() -> list[str]:
    """Objects alive by type: the GC's, and the untracked objects they refer to."""
    seen: set[int] = set()
    count: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    tracked = gc.get_objects()
    for obj in tracked:
        for o in [obj, *gc.get_referents(obj)]:
            if id(o) in seen or (o is not obj and gc.is_tracked(o)):
                continue
            seen.add(id(o))
            kind = type(o)
            name = f"{kind.__module__}.{kind.__qualname__}" if type(kind.__module__) is str \
                else kind.__qualname__
            count[name] += 1
            try:
                size[name] += sys.getsizeof(o)
            except Exception:  # noqa: BLE001 - a broken __sizeof__ counts as its type's size
                size[name] += kind.__basicsize__
    lines = [f"objects: {sum(size.values()) / 2**20:.1f} MiB in {sum(count.values()):,d}"]
    for name, total in size.most_common(40):
        lines.append(f"{total / 2**20:8.2f} MiB {count[name]:9,d}  {name}")
    return lines


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trimmed() -> list[str]:
    """RSS before and after glibc's malloc_trim(0): memory free in the heap but not returned."""
    import ctypes
    before = rss_mib()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return [f"RSS {before:.1f} MiB (no malloc_trim here)"]
    return [f"RSS {before:.1f} MiB, {rss_mib():.1f} MiB after malloc_trim(0)"]


def lines_report() -> list[str]:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines = [f"\ntraced: {total / 2**20:.1f} MiB"]
    for stat in snapshot.statistics("lineno")[:40]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:9,d} blocks  "
                     f"{frame.filename.split('site-packages/')[-1].replace(os.getcwd() + '/', '')}"
                     f":{frame.lineno}")
    lines.append("\nbiggest allocation tracebacks:")
    for stat in snapshot.statistics("traceback")[:25]:
        lines.append(f"{stat.size / 2**20:.2f} MiB, {stat.count:,d} blocks")
        lines += ["    " + line for line in stat.traceback.format()[-16:]]
    return lines


def _watch(out: str) -> None:
    while True:
        if os.path.exists(out + ".go"):
            gc.collect()
            try:
                text = census() + (lines_report() if tracemalloc.is_tracing() else []) \
                    + trimmed()
            except Exception as exc:  # noqa: BLE001 - said in the file, not lost in a thread
                text = [f"census failed: {exc!r}"]
            with open(out, "w") as f:
                f.write("\n".join(text) + "\n")
            os.unlink(out + ".go")
        time.sleep(0.2)


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    if argv[:1] == ["--lines"]:
        tracemalloc.start(25)
        argv = argv[1:]
    threading.Thread(target=_watch, args=(out,), daemon=True).start()
    from resolver import cli
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
